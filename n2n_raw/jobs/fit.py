"""``n2n-raw fit``: denoise your own raw photos with nothing else: train on them, then denoise them.

Neighbor2Neighbor needs no clean images and no noise model, so the photos to denoise are also the training
set. :func:`fit` checks every input and output first (a mistake costs nothing and leaves nothing behind), trains
a raw U-Net on the photos (a normal run folder: config.json, metrics.csv, checkpoints; reusable with
``n2n-raw denoise --checkpoint RUN``), then denoises each photo into a DNG plus a PNG preview.

The settings (:data:`n2n_raw.config.FIT_DEFAULTS`) were chosen on real photos against BM3D (the README's
"fit: denoise your own photos"; ``benchmarks/peers.py``).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Sequence

from n2n_raw.accel import pick_device
from n2n_raw.checkpoint import half_scale_model, load_model
from n2n_raw.config import FIT_DEFAULTS, SCRATCH_DEFAULTS, TrainConfig
from n2n_raw.errors import InputError
from n2n_raw.evaluation.metrics import MEGAPIXEL
from n2n_raw.inference.photos import OUTPUTS, check_ensemble, denoise_file, ready
from n2n_raw.inference.profile import black_offset_note
from n2n_raw.io.atomic import check_writable
from n2n_raw.io.camera_raw import RAW_SUFFIXES, find_raws, optical_black, read_raw
from n2n_raw.jobs.export import SUFFIXES, check_available, check_format, default_model_id
from n2n_raw.jobs.export import export as export_model
from n2n_raw.training.loop import train
from n2n_raw.training.runfolder import check_run_dir

MIN_PATCH = 128  # the smallest raw crop the U-Net takes (half-size sub-image of 4×32×32 after packing)


def find_photos(photos: Sequence[str | os.PathLike]) -> list[Path]:
    """The raw files named by ``photos``: files as given, folders searched recursively (see ``find_raws``).

    Returns:
        Distinct paths, in the order given (a folder's files sorted).
    Raises:
        InputError: nothing given, a missing path, a file that is not a camera raw by its suffix, a folder
            without raw files, or two photos whose outputs would share a name (same file stem).
    """
    if not photos:
        raise InputError("PHOTOS: give at least one camera raw file or folder")
    files: list[Path] = []
    seen: set[Path] = set()  # a file named twice (or inside a folder also given) is trained on and denoised once
    for p in map(Path, photos):
        if p.is_file() and p.suffix.lower() not in RAW_SUFFIXES:
            raise InputError(f"{p}: not a camera raw file by its name (expected .dng, .nef, .cr2, .arw, ...)")
        for f in find_raws(p):
            if f.resolve() not in seen:
                seen.add(f.resolve())
                files.append(f)
    stems: dict[str, Path] = {}
    for f in files:
        other = stems.setdefault(f.stem.lower(), f)
        if other != f:
            raise InputError(f"{f}: has the same name as {other}; their denoised outputs would collide "
                             "(denoise them in separate runs)")
    return files


def _patch_for(shapes: list[tuple[int, int]], asked: int | None) -> int:
    """The crop side: ``asked``, or the default shrunk (to a multiple of 128) to fit the smallest photo."""
    if asked is not None:
        return asked
    side = min(min(s) for s in shapes) - 2  # 2 pixels of room to start every crop on the red pixel
    if side < MIN_PATCH:
        h, w = min(shapes, key=min)
        raise InputError(f"photos: the smallest is {h}×{w} pixels; training needs at least "
                         f"{MIN_PATCH + 2}×{MIN_PATCH + 2}")
    return min(FIT_DEFAULTS["patch_size"], side // MIN_PATCH * MIN_PATCH)


def fit_config(files: Sequence[Path], *, steps: int | None = None, lr: float | None = None,
               batch_size: int | None = None, patch_size: int | None = None, seed: int = 0, device: str = "auto",
               precision: str = "auto", start_from: str | None = FIT_DEFAULTS["start_from"],
               target: str | None = None):
    """The :class:`~n2n_raw.config.TrainConfig` of a fit run on ``files`` (read once here: every photo must be
    a readable Bayer raw; a one-line InputError names the first that is not). None takes :data:`FIT_DEFAULTS`."""
    shapes = [read_raw(f).mosaic.shape for f in files]
    scratch = start_from in (None, "scratch")
    defaults = {**FIT_DEFAULTS, **(SCRATCH_DEFAULTS if scratch else {})}
    steps = steps if steps is not None else FIT_DEFAULTS["steps"]
    cfg = TrainConfig(mode="raw", photos=tuple(str(f) for f in files), steps=steps,
                      epochs=max(1, min(TrainConfig.epochs, steps)),  # fit has no --epochs: no note about them
                      lr=lr if lr is not None else defaults["lr"],
                      batch_size=batch_size if batch_size is not None else FIT_DEFAULTS["batch_size"],
                      patch_size=_patch_for(shapes, patch_size), seed=seed, val_every=0, device=device,
                      precision=precision, log_every=max(1, min(50, steps // 10)),
                      start_from=None if scratch else start_from, target=target or defaults["target"])
    cfg.resolved()  # option errors now, before anything is written
    return cfg


def fit(photos: Sequence[str | os.PathLike], run_dir: str | os.PathLike, *,
        denoised_dir: str | os.PathLike | None = None,
        steps: int | None = None, lr: float | None = None, batch_size: int | None = None,
        patch_size: int | None = None, seed: int = 0, force: bool = False, device: str = "auto",
        precision: str = "auto", start_from: str | None = FIT_DEFAULTS["start_from"],
        target: str | None = None, ensemble: int = FIT_DEFAULTS["ensemble"],
        multiscale: bool = FIT_DEFAULTS["multiscale"],
        log: Callable[[str], None] = print,
        progress: Callable[[int, int], None] | None = None, export: str | None = None) -> dict:
    """Train on ``photos`` (camera raw files or folders of them), then denoise each of them.

    Args:
        photos: raw files (DNG or any Bayer raw LibRaw reads) and/or folders searched recursively.
        run_dir: the run folder (as ``n2n-raw train --out`` writes it); must be empty or absent unless ``force``.
        denoised_dir: where ``STEM.dng`` (denoised, the source's metadata carried) and ``STEM.png`` (preview)
            go; default ``run_dir/denoised``. Existing outputs are refused unless ``force``.
        steps, lr, batch_size, patch_size: training settings; None takes :data:`FIT_DEFAULTS` (the patch
            is refused for photos smaller than 130 pixels). No validation: the method is self-supervised.
        start_from: "pretrained" (the shipped model, fine-tuned on the photos), "scratch" or None (a fresh
            U-Net, the paper's method alone), or a raw run folder / checkpoint.
        target: the self-supervised loss: "n2n" (Neighbor2Neighbor), "r2r" (Recorrupted-to-Recorrupted in
            the pretrained model's variance-stabilised domain) or "r2r-lin" (R2R in linear units, recorruption
            matched to each pixel's noise; see ``n2n-raw train --help``). None: r2r-lin, or n2n
            from scratch (:data:`SCRATCH_DEFAULTS`, which also sets a scratch run's default ``lr``).
        ensemble: denoise each photo as the mean of 1, 2, 4 or 8 Bayer-preserving views
            (:data:`n2n_raw.inference.photos.ENSEMBLES`).
        multiscale: denoise at full and half scale, fused as an unbiased risk estimate picks per photo
            (:mod:`n2n_raw.inference.multiscale`).
        log: receives training's log lines (settings, progress, notes).
        progress: called as ``progress(done, total)`` after each photo is denoised (``.close()`` called if any).
        export: "dtmodel" or "onnx": also write the model as ``run_dir/<id>.dtmodel`` (a darktable package,
            id :func:`n2n_raw.jobs.export.default_model_id`) or ``run_dir/<id>.onnx`` (:mod:`n2n_raw.jobs.export`).
    Returns:
        ``{"photos": [paths], "outputs": [[dng, png] per photo], "train": train summary,
        "train_seconds": s, "denoise_seconds": s, "megapixels": MP denoised, "export": ExportResult or None,
        "model": the trained model (on the device), "meta": its checkpoint metadata, "half_scale": the model
        two-scale inference ran at half scale beside it, or None}``.
    Raises:
        InputError: bad photos (missing, unreadable, not a Bayer raw, too small), an option out of range, a
            non-empty ``run_dir`` or an existing output without ``force``. Raised before anything is written.
    """
    files = find_photos(photos)
    run_dir = Path(run_dir)
    out_dir = Path(denoised_dir) if denoised_dir is not None else run_dir / "denoised"
    # Everything a user gave is checked before training: a mistake must not cost a training run.
    check_run_dir(run_dir, resume=False, force=force)
    for f in files:  # no folder made yet: train() would find the run folder not empty
        for suffix in OUTPUTS["camera-raw"]:
            check_writable(out_dir / f"{f.stem}{suffix}", force, make_folder=False)
    package = None
    if export is not None:  # format, file name and the onnx package, before training
        fmt = check_format(export)
        package = check_writable(run_dir / f"{default_model_id(run_dir)}{SUFFIXES[fmt]}", force, make_folder=False)
        check_available()
    cfg = fit_config(files, steps=steps, lr=lr, batch_size=batch_size, patch_size=patch_size, seed=seed,
                     device=device, precision=precision, start_from=start_from, target=target)
    dev = pick_device(device)  # refuses an unavailable device before the run folder is made
    check_ensemble(ensemble)

    t0 = time.perf_counter()
    summary = train(cfg, run_dir, force=force, log=log)
    t_train = time.perf_counter() - t0

    model, meta = load_model(run_dir, which="last")  # no validation: the newest; loaded once
    # exported first: denoising sets each photo's noise profile in the model (a GatUNet holds one), and the
    # package keeps the profile it was trained with
    exported = export_model(model, meta, package, force=force) if package is not None else None
    model, prec, engine = ready(model, dev, precision)
    half = half_scale_model(meta) if multiscale else None
    half = None if half is None else ready(half, dev, precision)[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs, pixels, t1 = [], 0, time.perf_counter()
    for f in files:
        ob = optical_black(f)
        note = black_offset_note(ob) if ob is not None else None
        if note:  # the photo's own black offset, which denoising reveals: say so where the user looks
            log(f"{f.name}: {note} (n2n-raw info {f.name})")
        written, n = denoise_file(model, meta, f, out_dir, force=force, device=dev, precision=prec, engine=engine,
                                  ensemble=ensemble, multiscale=multiscale, coarse_model=half,
                                  log=lambda line, f=f: log(f"{f.name}: {line}"))
        outputs.append(written)
        pixels += n
        if progress is not None:
            progress(len(outputs), len(files))
    if hasattr(progress, "close"):
        progress.close()
    t_denoise = time.perf_counter() - t1
    return {"photos": files, "outputs": outputs, "train": summary, "train_seconds": round(t_train, 2),
            "denoise_seconds": round(t_denoise, 2), "megapixels": pixels / MEGAPIXEL, "export": exported,
            "model": model, "meta": meta, "half_scale": half}
