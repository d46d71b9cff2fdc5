"""Denoise files with a checkpoint: the file-format side of ``n2n-raw denoise``.

sRGB checkpoints: PNG/JPEG/TIFF/... → same-named PNG; ``.npy`` float32 (H, W, 3) in [0, 1] (unclipped input
allowed) → ``.npy`` float32 (the network output, unclamped, lossless).
Raw checkpoints: DNG or any Bayer camera raw LibRaw reads → denoised DNG carrying the source's metadata + a
PNG preview rendered by LibRaw; ``.npy``
float32 (H, W) Bayer mosaic → ``.npy``; SIDD ``.MAT`` frame → ``.npy`` (CFA from the METADATA file beside it, else the scene folder's phone).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from n2n_raw.accel import inference_precision, place_model
from n2n_raw.cfa import check_cfa
from n2n_raw.errors import InputError
from n2n_raw.inference import multiscale as multiscale_
from n2n_raw.inference import tiling
from n2n_raw.inference.onnx_engine import resolve_engine
from n2n_raw.inference.profile import profile_from_dng
from n2n_raw.inference.tiling import OVERLAP  # processing pixels of context kept around each tile
from n2n_raw.io import camera_raw, dng, sidd
from n2n_raw.io.atomic import atomic_path, check_writable
from n2n_raw.io.images import is_image_file, quantize_uint8, read_rgb, write_png
from n2n_raw.method import bayer
from n2n_raw.method.gat_unet import GatUNet, packed_profile
from n2n_raw.method.noise_profile import NoiseProfile, estimate_profile


def ready(model: torch.nn.Module, device: torch.device, precision: str = "fp32", engine: str = "auto"
          ) -> tuple[torch.nn.Module, str, str]:
    """A model made ready to denoise: placed on ``device`` in eval mode, with the inference precision
    (:func:`~n2n_raw.accel.inference_precision`: fp32 unless bf16 is asked for) and the engine
    (:func:`~n2n_raw.inference.onnx_engine.resolve_engine`) it runs with. Returns (model, precision, engine)."""
    model = place_model(model, device).eval()
    precision = inference_precision(precision)
    return model, precision, resolve_engine(engine, device, precision)

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


@dataclass
class Loaded:
    """One input read for denoising.

    kind: "rgb" (an image file: float32 (H, W, 3) in [0, 1]), "rgb-npy" ((H, W, 3), unclipped allowed),
    "camera-raw" (DNG or any Bayer raw: float32 (H, W) mosaic, black 0 and white 1, unclipped), "npy-mosaic"
    ((H, W), CFA from the caller) or "sidd-mat" ((H, W) in [0, 1], CFA from its METADATA file or its scene folder's phone).
    """
    kind: str
    array: np.ndarray
    cfa: str | None = None


def read_input(path: str | Path, mode: str, cfa: str | None = None) -> Loaded:
    """Read a file for a ``mode`` ("srgb" or "raw") checkpoint; ``cfa`` overrides a raw file's own CFA.

    Raises InputError for a file the mode cannot take (one line naming it and the reason)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if mode == "srgb":
        if suffix == ".npy":
            return Loaded("rgb-npy", load_npy(path, 3, "float32 (H, W, 3)"))
        if not is_image_file(path):
            raise InputError(f"{path}: not an image or .npy file (sRGB checkpoint)")
        return Loaded("rgb", read_rgb(path).astype(np.float32) / 255.0)
    override = check_cfa(cfa) if cfa else None
    if suffix in camera_raw.RAW_SUFFIXES:
        r = camera_raw.read_raw(path, clip=False)  # as training saw it: noise below black kept, dark means unbiased
        return Loaded("camera-raw", r.mosaic, override or r.cfa)
    if suffix == ".npy":
        return Loaded("npy-mosaic", load_npy(path, 2, "a float32 (H, W) Bayer mosaic"), override)
    if suffix == ".mat":
        m = sidd.read_frame(path)
        if override is None:  # as prepare and train read a scene folder: METADATA beside it, else the phone
            override = sidd.frame_cfa(sidd.frame_set(path))["cfa"]
        return Loaded("sidd-mat", m, override)
    raise InputError(f"{path}: unsupported input for a raw checkpoint (expected a camera raw file such as "
                     f".dng/.nef/.cr2, a .npy mosaic or a SIDD .MAT frame)")


#: What each kind of input (:class:`Loaded`) is written as.
OUTPUTS = {"rgb": (".png",), "rgb-npy": (".npy",), "camera-raw": (".dng", ".png"), "npy-mosaic": (".npy",),
           "sidd-mat": (".npy",)}


def denoise_array(model: torch.nn.Module, meta: dict, x: np.ndarray, cfa: str | None = None, *,
                  tile: int | None = None, device="cpu", precision: str = "fp32",
                  log: Callable[[str], None] | None = None, name: str = "input",
                  profile: NoiseProfile | None = None, engine: str = "torch", ensemble: int = 1,
                  multiscale: bool = True, coarse_model: torch.nn.Module | None = None) -> np.ndarray:
    """Denoise one array with a checkpoint's model; returns float32 of the input's shape (unclamped).

    sRGB checkpoints: ``x`` (H, W, 3) float in [0, 1]. Raw checkpoints: ``x`` (H, W) Bayer mosaic, H and W
    even, black 0 and white 1 (values below 0 allowed); ``cfa`` is its pattern (needed by ``rggb`` checkpoints,
    which unify every CFA to RGGB). ``tile``: None tiles only when one pass would not fit in memory.
    A :class:`~n2n_raw.method.gat_unet.GatUNet` is given this mosaic's noise profile first: ``profile`` (e.g. the
    DNG's tag), else the blind estimate from ``x`` itself. ``ensemble`` (raw, ``rggb`` checkpoints): average
    over that many Bayer-preserving views (:data:`ENSEMBLES`; that many times the time). ``multiscale`` (a
    GatUNet, mosaics of at least 64 pixels a side): denoise at full and half scale and keep the fusion of least
    estimated risk (:mod:`n2n_raw.inference.multiscale`; (E + 1)·5/4 passes for E views: 1.6× the time with 4); ``coarse_model``: a second model
    for the half scale, its fusions among the candidates (:func:`n2n_raw.checkpoint.half_scale_model`; +0.3×).
    ``engine``: ``torch``,
    ``onnxruntime`` or ``auto`` (see :func:`n2n_raw.inference.tiling.forward_padded`).
    """
    x = np.asarray(x)
    check_ensemble(ensemble)
    if meta.get("mode") == "srgb":
        if x.ndim != 3 or x.shape[2] != 3:
            raise InputError(f"{name}: shape {x.shape}; an sRGB checkpoint takes (H, W, 3)")
        t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32))
        return tiling.forward_tiled(model, t, tile, OVERLAP, device, precision,
                                   log=_plan_logger(log, 1), engine=engine).permute(1, 2, 0).numpy()
    if x.ndim != 2:
        raise InputError(f"{name}: shape {x.shape}; a raw checkpoint takes an (H, W) Bayer mosaic")
    if x.shape[0] % 2 or x.shape[1] % 2:
        raise InputError(f"{name}: odd-sized mosaic {x.shape[0]}×{x.shape[1]}; Bayer mosaics need even sides")
    mode = meta.get("cfa_mode", "rggb")
    if mode == "rggb" and cfa is None:
        raise InputError(f"{name}: a mosaic needs its CFA (--cfa; the checkpoint unifies CFAs to RGGB)")
    views = ENSEMBLES[ensemble] if mode == "rggb" else ENSEMBLES[1]  # positional channels follow the CFA
    plan_log = _plan_logger(log, 2)  # the first pass's plan only: the others repeat it or a smaller one

    def runner(net: torch.nn.Module) -> multiscale_.Run:
        def run(m: np.ndarray, prof: NoiseProfile | None, n: int) -> tuple[np.ndarray, np.ndarray]:
            """(mean of the first ``n`` views, the first view) of ``net`` on mosaic ``m`` with profile ``prof``."""
            nonlocal plan_log
            if prof is not None:
                net.set_profile(*packed_profile(prof.a, prof.b, cfa, mode))
            out = first = None
            for hflip, vflip, transpose in views[:n]:
                v, c = bayer.augment(m, cfa, hflip, vflip, transpose)
                d = tiling.denoise_mosaic(net, np.ascontiguousarray(v), c, mode, tile, 2 * OVERLAP, device,
                                          precision, log=plan_log, engine=engine)
                plan_log = None
                d = d[::-1] if vflip else d  # undone in the reverse order: flips, then the transpose
                d = d[:, ::-1] if hflip else d
                d = d.T if transpose else d
                if out is None:
                    out, first = d.copy(), d
                else:
                    out += d
            return out / np.float32(n), first
        return run

    x = x.astype(np.float32, copy=False)
    run = runner(model)
    if not isinstance(model, GatUNet):
        return run(x, None, len(views))[0]
    p = profile if profile is not None else estimate_profile(x, shared=True)
    model.set_profile(*packed_profile(p.a, p.b, cfa, mode))
    if log is not None:
        log(f"noise profile ({p.source}) {model.describe_profile()}")
    if not multiscale or min(x.shape) < multiscale_.MIN_SIDE:
        return run(x, p, len(views))[0]
    half_runs = [("own", run)]
    if isinstance(coarse_model, GatUNet):
        half_runs.append(("starting", runner(coarse_model)))
    out, choice = multiscale_.denoise_two_scale(run, x, p, len(views), half_runs=half_runs)
    if log is not None:
        log(choice.describe())
    return out


def check_ensemble(ensemble: int) -> int:
    if ensemble not in ENSEMBLES:
        raise InputError(f"--ensemble: must be one of {', '.join(map(str, ENSEMBLES))}, got {ensemble}")
    return ensemble


#: Bayer-preserving views of a mosaic for a self-ensemble, as (hflip, vflip, transpose): each view is brought to
#: RGGB phase by the packing (a one-pixel shift, as for the CFAs that are not RGGB), denoised, brought back and
#: averaged. 2: the transpose; 4: with the 180° rotation; 8: the eight symmetries of the square.
ENSEMBLES = {1: ((False, False, False),),
             2: ((False, False, False), (False, False, True)),
             4: ((False, False, False), (False, False, True), (True, True, False), (True, True, True)),
             8: tuple((h, v, t) for t in (False, True) for h in (False, True) for v in (False, True))}


def denoise_file(model: torch.nn.Module, meta: dict, path: Path, out_dir: Path, *, tile: int | None = None,
                 cfa: str | None = None, force: bool = False, device="cpu", precision: str = "fp32",
                 log: Callable[[str], None] | None = None, keep_tone: bool | None = None,
                 engine: str = "torch", ensemble: int = 1, multiscale: bool = True,
                 coarse_model: torch.nn.Module | None = None) -> tuple[list[Path], int]:
    """Denoise one file into ``out_dir``; returns (written paths, pixel count).

    ``keep_tone``: a camera raw's DNG takes its low frequencies from the source (:func:`restore_tone`); None: only
    for models trained from scratch by N2N, whose short runs may shift a plane's level. A
    :class:`~n2n_raw.method.gat_unet.GatUNet` was trained to be unbiased, and the low-frequency noise that tone
    restoration lets back (a tenth of σ) cost it 0.6 dB on a smooth real mosaic (benchmarks/RESULTS.md).
    ``engine``: ``torch``, ``onnxruntime`` or ``auto`` (see :func:`n2n_raw.inference.tiling.forward_padded`).
    ``ensemble``, ``multiscale``, ``coarse_model``: see :func:`denoise_array`.

    ``tile``: None tiles only when one pass would not fit in memory (:func:`n2n_raw.inference.tiling.plan_tiles`), an
    int forces windows of at most that many input pixels. ``log`` receives the tiling plan as one line.
    Every output path is checked before any work, so nothing is overwritten without ``force``.
    """
    path, out_dir = Path(path), Path(out_dir)
    inp = read_input(path, meta.get("mode"), cfa)
    targets = [check_writable(out_dir / f"{path.stem}{suffix}", force) for suffix in OUTPUTS[inp.kind]]
    y = denoise_array(model, meta, inp.array, inp.cfa, tile=tile, device=device, precision=precision, log=log,
                      name=str(path), profile=profile_from_dng(path) if inp.kind == "camera-raw" else None,
                      engine=engine, ensemble=ensemble, multiscale=multiscale, coarse_model=coarse_model)
    pixels = inp.array.shape[0] * inp.array.shape[1]
    if inp.kind == "rgb":
        return [write_png(targets[0], quantize_uint8(y), force)], pixels
    if inp.kind == "camera-raw":
        if keep_tone or (keep_tone is None and not isinstance(model, GatUNet)):
            y = restore_tone(y, inp.array)
        y = np.minimum(y, 1.0)  # below black stays (raw values >= 0 on write); above white is saturation
        written = [dng.write_denoised_dng(path, y, targets[0], force=force)]
        written.append(write_png(targets[1], dng.render_preview(path, y), force=force))
        return written, pixels
    return [save_npy(targets[0], y, force)], pixels


#: σ, in CFA-plane pixels, of the low-pass whose content a denoised photo takes from its source.
TONE_SIGMA = 3.0


def restore_tone(denoised: np.ndarray, noisy: np.ndarray, sigma: float = TONE_SIGMA) -> np.ndarray:
    """Give a denoised Bayer mosaic its source's low frequencies, per CFA plane.

    out = d + G_σ(y − d) on each 2×2-position plane, G_σ a Gaussian (σ in plane pixels, reflected at the
    borders). Noise is zero-mean, so G_σ(y) is the clean picture's low-pass up to noise of σ_n/(2√π·σ) (a
    tenth of it at σ = 3, left as smooth, low-frequency grain); a short self-supervised run, on the other
    hand, may shift a plane's level by a few percent, which a photo editor's tone curve amplifies into
    visible colour and tone shifts. σ = 3 was chosen on the Canon colour chart in darktable (block-mean
    change of the render: 2.4 levels of 255 at σ 8, 1.2 at 4, 0.84 at 3, 0.56 at 2; see
    benchmarks/RESULTS.md). Detail finer than σ is the network's.

    Args:
        denoised, noisy: float (H, W) mosaics of one frame, H and W even, black 0 and white 1.
    Returns:
        float32 (H, W).
    """
    d = np.asarray(denoised, np.float32)
    y = np.asarray(noisy, np.float32)
    if d.shape != y.shape or d.ndim != 2 or d.shape[0] % 2 or d.shape[1] % 2:
        raise ValueError(f"restore_tone: expected two (H, W) mosaics with even sides, got {d.shape} and {y.shape}")
    return d + multiscale_.lowpass_planes(y - d, sigma)


def _plan_logger(log: Callable[[str], None] | None, scale: int):
    """The plan as one line in the input's pixels (``scale`` 2: a packed mosaic)."""
    return None if log is None else (lambda plan: log(plan.describe(scale)))
