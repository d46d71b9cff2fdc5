"""Denoise files with a checkpoint: the file-format side of ``n2n-raw denoise``.

sRGB checkpoints: PNG/JPEG/TIFF/... → same-named PNG; ``.npy`` float32 (H, W, 3) in [0, 1] (unclipped input
allowed) → ``.npy`` float32 (the network output, unclamped, lossless).
Raw checkpoints: DNG or any Bayer camera raw LibRaw reads → denoised DNG carrying the source's metadata + a
PNG preview rendered by LibRaw; ``.npy``
float32 (H, W) Bayer mosaic → ``.npy``; SIDD ``.MAT`` frame → ``.npy`` (CFA from the METADATA file beside it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import infer
from .errors import InputError
from .io.atomic import atomic_path, check_writable

from .infer import OVERLAP  # processing pixels of context kept around each tile


def load_npy(path: Path, ndim: int, what: str) -> np.ndarray:
    """A float array from ``.npy`` without pickle; (H, W, 3) for ``ndim=3``, (H, W) for ``ndim=2``."""
    try:
        a = np.load(path, allow_pickle=False)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - numpy raises ValueError, SyntaxError, TokenError... for damaged headers
        raise InputError(f"{path}: not a readable .npy array ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if not np.issubdtype(a.dtype, np.floating):
        raise InputError(f"{path}: dtype {a.dtype}; expected float32 values in [0, 1]")
    if a.ndim != ndim or (ndim == 3 and a.shape[2] != 3):
        raise InputError(f"{path}: shape {a.shape}; expected {what}")
    if min(a.shape[:2]) < 2:
        raise InputError(f"{path}: image {a.shape[0]}×{a.shape[1]} is too small")
    if not np.isfinite(a).all():
        raise InputError(f"{path}: holds NaN or Inf values")
    return a.astype(np.float32, copy=False)


def save_npy(path: Path, a: np.ndarray, force: bool) -> Path:
    with atomic_path(path, force) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, a.astype(np.float32))
    return path


def denoise_file(model: torch.nn.Module, meta: dict, path: Path, out_dir: Path, *, tile: int | None = None,
                 cfa: str | None = None, force: bool = False, device="cpu", precision: str = "fp32",
                 log: Callable[[str], None] | None = None) -> tuple[list[Path], int]:
    """Denoise one file into ``out_dir``; returns (written paths, pixel count).

    ``tile``: None tiles only when one pass would not fit in memory (:func:`n2n_raw.infer.plan_tiles`), an
    int forces windows of at most that many input pixels. ``log`` receives the tiling plan as one line.
    """
    path, out_dir = Path(path), Path(out_dir)
    suffix = path.suffix.lower()
    if meta.get("mode") == "srgb":
        if suffix == ".npy":
            x = load_npy(path, 3, "float32 (H, W, 3)")
            target = check_writable(out_dir / f"{path.stem}.npy", force)
            y = _denoise_rgb(model, x, tile, device, precision, log)
            return [save_npy(target, y, force)], x.shape[0] * x.shape[1]
        from .io.images import is_image_file, read_rgb, write_png
        from .metrics import quantize_uint8
        if not is_image_file(path):
            raise InputError(f"{path}: not an image or .npy file (sRGB checkpoint)")
        target = check_writable(out_dir / f"{path.stem}.png", force)
        rgb = read_rgb(path)
        y = _denoise_rgb(model, rgb.astype(np.float32) / 255.0, tile, device, precision, log)
        return [write_png(target, quantize_uint8(y), force)], rgb.shape[0] * rgb.shape[1]
    return _denoise_raw_file(model, meta, path, out_dir, tile, cfa, force, device, precision, log)


def _plan_logger(log: Callable[[str], None] | None, scale: int):
    """The plan as one line in the input's pixels (``scale`` 2: a packed mosaic)."""
    return None if log is None else (lambda plan: log(plan.describe(scale)))


def _denoise_rgb(model, x: np.ndarray, tile: int | None, device, precision: str, log) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
    return infer.denoise_tiled(model, t, tile, OVERLAP, device, precision,
                               log=_plan_logger(log, 1)).permute(1, 2, 0).numpy()


def _denoise_raw_file(model, meta, path: Path, out_dir: Path, tile: int | None, cfa: str | None, force: bool,
                      device, precision: str, log) -> tuple[list[Path], int]:
    from .bayer import check_cfa
    mode = meta.get("cfa_mode", "rggb")
    suffix = path.suffix.lower()
    override = check_cfa(cfa) if cfa else None
    run = lambda m, c: infer.denoise_mosaic(model, m, c, mode, tile, 2 * OVERLAP, device, precision,  # noqa: E731
                                            log=_plan_logger(log, 2))
    from .io import dng
    if suffix in dng.RAW_SUFFIXES:
        targets = [check_writable(out_dir / f"{path.stem}.dng", force),
                   check_writable(out_dir / f"{path.stem}.png", force)]
        r = dng.read_raw(path, clip=False)  # as training saw it: noise below black kept, dark means unbiased
        y = np.minimum(run(r.mosaic, override or r.cfa), 1.0)  # below black stays (raw values >= 0 on write)
        written = [dng.write_denoised_dng(path, y, targets[0], force=force)]
        from .io.images import write_png
        written.append(write_png(targets[1], dng.render_preview(path, y), force=force))
        return written, r.mosaic.size
    if suffix == ".npy":
        m = load_npy(path, 2, "a float32 (H, W) Bayer mosaic")
        if m.shape[0] % 2 or m.shape[1] % 2:
            raise InputError(f"{path}: odd-sized mosaic {m.shape[0]}×{m.shape[1]}; Bayer mosaics need even sides")
        if mode == "rggb" and override is None:
            raise InputError(f"{path}: a .npy mosaic needs --cfa (the checkpoint unifies CFAs to RGGB)")
        target = check_writable(out_dir / f"{path.stem}.npy", force)
        return [save_npy(target, run(m, override), force)], m.size
    if suffix == ".mat":
        from .io import sidd
        target = check_writable(out_dir / f"{path.stem}.npy", force)
        m = sidd.read_frame(path)
        if m.shape[0] % 2 or m.shape[1] % 2:
            raise InputError(f"{path}: odd-sized mosaic {m.shape[0]}×{m.shape[1]}")
        c = override
        if c is None:
            meta_path = path.with_name(path.name.replace("NOISY", "METADATA").replace("GT", "METADATA"))
            if meta_path == path or not meta_path.is_file():
                raise InputError(f"{path}: no metadata file {meta_path.name} beside it; pass --cfa")
            c = sidd.read_metadata(meta_path).cfa
        return [save_npy(target, run(m, c), force)], m.size
    raise InputError(f"{path}: unsupported input for a raw checkpoint (expected a camera raw file such as .dng/.nef/.cr2, a .npy mosaic or a SIDD .MAT frame)")
