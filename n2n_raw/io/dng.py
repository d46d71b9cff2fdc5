"""DNG files: read Bayer mosaics with rawpy, write DNGs with pidng, render previews with LibRaw.

- :func:`read_dng` → :class:`RawImage`: float32 (H, W) mosaic in [0, 1] (black level subtracted per 2×2
  position, divided by white − black, clipped), its CFA pattern (one of ``n2n_raw.bayer.CFAS``), levels, bits.
- :func:`write_dng` writes an uncompressed 10/12/16-bit CFA DNG through the optional ``pidng`` package
  (``pip install 'n2n-raw[dng]'``); rawpy reads it back bit-exactly. :func:`write_denoised_dng` writes a
  denoised [0, 1] mosaic with the levels, CFA, bit depth and colour metadata of its source DNG.
- :func:`render_preview` renders a mosaic with the source file's own metadata (camera white balance);
  :func:`save_png` writes it.
- :func:`find_dngs` and :func:`prepare_dng` turn a folder of DNGs into a training store.

rawpy (LibRaw) cannot write raw files; LibRaw refuses DNGs smaller than 22×22 pixels.
"""
from __future__ import annotations

import contextlib
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..bayer import CFAS, cfa_phase_check, check_cfa
from ..errors import InputError
from .atomic import atomic_path
from .store import StoreWriter

WRITE_BITS = (10, 12, 16)
MIN_SIZE = 22  # LibRaw refuses smaller images
MAX_WORKERS = 8  # prepare_dng: decoded frames in flight stay bounded (a 16 MP frame is 64 MB)
_EXTRA = "pip install 'n2n-raw[dng]'"
# sRGB (linear, D65) → XYZ, as LibRaw uses it to turn a DNG ColorMatrix into rgb_cam.
_XYZ_RGB = np.array([[0.412453, 0.357580, 0.180423],
                     [0.212671, 0.715160, 0.072169],
                     [0.019334, 0.119193, 0.950227]])


@dataclass
class RawImage:
    """One Bayer frame read from a DNG.

    Attributes:
        mosaic: float32 (H, W), H and W even, values in [0, 1]:
            clip((raw − black) / (white − black), 0, 1) with ``black`` per 2×2 position.
        cfa: the 2×2 pattern of ``mosaic``, one of "RGGB", "BGGR", "GRBG", "GBRG".
        black_level: black level (raw units) at each 2×2 cell position, row-major: (0,0), (0,1), (1,0), (1,1).
        white_level: saturation level (raw units).
        bits: bit depth, the bit length of ``white_level`` (10, 12, 14, 16, ...).
        color_matrix: XYZ → camera RGB (3×3 float64, DNG ColorMatrix convention, rows normalised as LibRaw
            does), or None when the file carries none.
        as_shot_neutral: camera RGB of a neutral grey (DNG AsShotNeutral: 1 / white-balance multipliers,
            G = 1), or None when the file carries none.
    """

    mosaic: np.ndarray
    cfa: str
    black_level: tuple[float, float, float, float]
    white_level: float
    bits: int
    color_matrix: np.ndarray | None = field(default=None, repr=False)
    as_shot_neutral: tuple[float, float, float] | None = None


def _rawpy():
    import rawpy  # a core dependency; imported lazily to keep `import n2n_raw.io.dng` cheap
    return rawpy


def _pidng(path):
    try:
        from pidng.core import RAW2DNG
        from pidng.defs import CalibrationIlluminant, PhotometricInterpretation
        from pidng.dng import DNGTags, Tag
    except ImportError:
        raise InputError(f"{path}: writing DNG files needs the optional extra: {_EXTRA}") from None
    return RAW2DNG, DNGTags, Tag, PhotometricInterpretation, CalibrationIlluminant


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a DNG file")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None


@contextlib.contextmanager
def _libraw_errors(path: Path):
    """Turn rawpy/LibRaw exceptions raised in the block into one-line InputErrors naming ``path``."""
    rawpy = _rawpy()
    try:
        yield
    except rawpy.LibRawFileUnsupportedError:
        raise InputError(f"{path}: not a raw file LibRaw can read (not a DNG, or damaged)") from None
    except (rawpy.LibRawIOError, rawpy.LibRawDataError):
        raise InputError(f"{path}: cannot read the DNG (truncated or damaged file)") from None
    except rawpy.LibRawError as e:
        msg = e.args[0].decode("ascii", "replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise InputError(f"{path}: cannot read the DNG ({msg})") from None


def _open(path: Path):
    """rawpy.imread + unpack (LibRaw decodes lazily: decode now so damage shows up here)."""
    _check_file(path)
    with _libraw_errors(path):
        raw = _rawpy().imread(str(path))
        try:
            raw.unpack()
        except BaseException:
            raw.close()
            raise
    return raw


def _cfa_of(raw, path: Path) -> str:
    """The 2×2 pattern of ``raw_image_visible``; InputError for non-Bayer data."""
    rawpy = _rawpy()
    if raw.raw_type != rawpy.RawType.Flat:
        raise InputError(f"{path}: a linear (demosaiced) DNG, not a Bayer mosaic; only 2×2 Bayer CFA raw "
                         "files are supported")
    pattern = raw.raw_pattern
    if pattern is None or np.asarray(pattern).shape != (2, 2):
        shape = "none" if pattern is None else "×".join(map(str, np.asarray(pattern).shape))
        raise InputError(f"{path}: the colour filter array is not a 2×2 Bayer pattern (pattern {shape}: X-Trans "
                         "or another CFA); only RGGB, BGGR, GRBG and GBRG are supported")
    desc = raw.color_desc.decode("ascii", "replace")
    try:
        colours = raw.raw_colors_visible[:2, :2]
        cfa = "".join(desc[int(c)] for c in colours.ravel())
    except (IndexError, ValueError):
        cfa = "?"
    if cfa not in CFAS:
        raise InputError(f"{path}: unsupported colour filter pattern {cfa!r} (colours {desc!r}); only RGGB, BGGR, "
                         "GRBG and GBRG are supported")
    return cfa


def _color_meta(raw) -> tuple[np.ndarray | None, tuple[float, float, float] | None]:
    """(ColorMatrix XYZ→camera 3×3, AsShotNeutral) reconstructed from LibRaw's rgb_cam and camera WB."""
    matrix = None
    try:
        rgb_cam = np.asarray(raw.color_matrix, np.float64)[:3, :3]
        if np.all(np.isfinite(rgb_cam)) and abs(np.linalg.det(rgb_cam)) > 1e-9 \
                and not np.allclose(rgb_cam, np.eye(3)):
            # LibRaw: cam_rgb = ColorMatrix · xyz_rgb (rows normalised to 1); rgb_cam = inverse of cam_rgb.
            matrix = np.linalg.inv(rgb_cam) @ np.linalg.inv(_XYZ_RGB)
    except (AttributeError, ValueError, np.linalg.LinAlgError):
        matrix = None
    neutral = None
    wb = np.asarray(getattr(raw, "camera_whitebalance", [0, 0, 0]), np.float64)[:3]
    if np.all(np.isfinite(wb)) and np.all(wb > 0):
        neutral = tuple(float(wb[1] / v) for v in wb)
    return matrix, neutral


def read_dng(path: str | os.PathLike) -> RawImage:
    """Read a Bayer DNG (or any raw file LibRaw reads) into a normalised float32 mosaic.

    Args:
        path: the file.
    Returns:
        :class:`RawImage` with ``mosaic`` float32 (H, W) in [0, 1], H and W even, MATLAB/file orientation
        (LibRaw's visible area, no rotation applied).
    Raises:
        InputError: missing/unreadable file, not a raw file, truncated, not a 2×2 Bayer CFA (X-Trans,
            linear DNG), odd-sized visible area (nothing is cropped silently), white level ≤ black level.
    """
    path = Path(path)
    with _open(path) as raw, _libraw_errors(path):
        cfa = _cfa_of(raw, path)
        mosaic = np.array(raw.raw_image_visible, dtype=np.float32)  # a copy: valid after the file closes
        colours = np.array(raw.raw_colors_visible[:2, :2])
        per_colour = np.asarray(raw.black_level_per_channel, np.float64)
        white = float(raw.white_level)
        matrix, neutral = _color_meta(raw)
    h, w = mosaic.shape
    if h % 2 or w % 2:
        raise InputError(f"{path}: odd-sized mosaic {h}×{w}; Bayer mosaics need even height and width")
    black = per_colour[colours]  # (2, 2) black level per cell position
    if white <= black.max():
        raise InputError(f"{path}: white level {white:g} is not above the black level {black.max():g}")
    cells = mosaic.reshape(h // 2, 2, w // 2, 2)  # a view: normalise per 2×2 position without a full black map
    b = black.astype(np.float32)[None, :, None, :]
    cells -= b
    cells /= np.float32(white) - b
    np.clip(mosaic, 0.0, 1.0, out=mosaic)
    return RawImage(mosaic=mosaic, cfa=cfa, black_level=tuple(float(v) for v in black.ravel()),
                    white_level=white, bits=max(int(white).bit_length(), 1), color_matrix=matrix,
                    as_shot_neutral=neutral)


def _rationals(values, denominator: int = 10000) -> list[list[int]]:
    return [[int(round(float(v) * denominator)), denominator] for v in values]


def write_dng(path: str | os.PathLike, mosaic: np.ndarray, cfa: str, bits: int = 16,
              black_level: float | Sequence[float] = 0, white_level: float | None = None, force: bool = False,
              *, color_matrix: np.ndarray | None = None,
              as_shot_neutral: Sequence[float] | None = None) -> Path:
    """Write an uncompressed CFA DNG (via pidng) that rawpy reads back bit-exactly.

    Args:
        path: output file; refused if it exists unless ``force``; written to a temporary name then renamed.
        mosaic: uint16 (H, W) raw values in [0, 2**bits − 1]; H, W even and ≥ 22 (LibRaw's minimum).
        cfa: its 2×2 pattern (one of RGGB, BGGR, GRBG, GBRG).
        bits: 10, 12 (packed) or 16. A 10-bit row whose width is not a multiple of 4 is padded to one and the
            image is cut back with the DNG ActiveArea tag.
        black_level: one value, or four for the 2×2 cell positions row-major (integers, raw units).
        white_level: saturation level; default 2**bits − 1.
        color_matrix: XYZ → camera 3×3 (DNG ColorMatrix1, D65); default identity.
        as_shot_neutral: camera RGB of grey (DNG AsShotNeutral); default (1, 1, 1).
    Returns:
        The written path.
    Raises:
        InputError: existing output without ``force``; pidng not installed.
        ValueError: bad array shape/dtype/values or arguments.
    """
    path = Path(path)
    cfa = check_cfa(cfa)
    if bits not in WRITE_BITS:
        raise ValueError(f"bits must be one of {WRITE_BITS}, got {bits}")
    data = np.asarray(mosaic)
    if data.ndim != 2 or not np.issubdtype(data.dtype, np.integer):
        raise ValueError(f"write_dng needs an integer (H, W) mosaic, got {data.dtype} {data.shape}")
    h, w = mosaic.shape
    if h % 2 or w % 2 or h < MIN_SIZE or w < MIN_SIZE:
        raise ValueError(f"write_dng needs even H, W ≥ {MIN_SIZE}, got {h}×{w}")
    top = (1 << bits) - 1
    if data.size and (data.min() < 0 or data.max() > top):
        raise ValueError(f"values must lie in [0, {top}] for {bits} bits, got [{data.min()}, {data.max()}]")
    blacks = [black_level] * 4 if np.isscalar(black_level) else list(black_level)
    if len(blacks) != 4 or any(not 0 <= float(b) <= top for b in blacks):
        raise ValueError(f"black_level must be one value or four in [0, {top}], got {black_level!r}")
    white = top if white_level is None else int(round(float(white_level)))
    if not max(float(b) for b in blacks) < white <= top:
        raise ValueError(f"white_level must lie in (black, {top}], got {white_level!r}")
    matrix = np.eye(3) if color_matrix is None else np.asarray(color_matrix, np.float64)
    neutral = (1.0, 1.0, 1.0) if as_shot_neutral is None else tuple(float(v) for v in as_shot_neutral)
    if matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)) or len(neutral) != 3 or min(neutral) <= 0:
        raise ValueError("color_matrix must be a finite 3×3 and as_shot_neutral three positive numbers")

    RAW2DNG, DNGTags, Tag, Photometric, Illuminant = _pidng(path)
    data = data.astype(np.uint16)
    stored_w = w
    if bits == 10 and w % 4:  # pidng packs 10-bit rows in groups of 4 pixels
        stored_w = w + 4 - w % 4
        data = np.pad(data, ((0, 0), (0, stored_w - w)), mode="edge")
    data = np.ascontiguousarray(data)
    tags = DNGTags()
    tags.set(Tag.ImageWidth, stored_w)
    tags.set(Tag.ImageLength, h)
    tags.set(Tag.TileWidth, stored_w)
    tags.set(Tag.TileLength, h)
    tags.set(Tag.Orientation, 1)
    tags.set(Tag.PhotometricInterpretation, Photometric.Color_Filter_Array)
    tags.set(Tag.SamplesPerPixel, 1)
    tags.set(Tag.BitsPerSample, bits)
    tags.set(Tag.CFARepeatPatternDim, [2, 2])
    tags.set(Tag.CFAPattern, ["RGB".index(c) for c in cfa])
    tags.set(Tag.BlackLevelRepeatDim, [2, 2])
    tags.set(Tag.BlackLevel, [int(round(float(b))) for b in blacks])
    tags.set(Tag.WhiteLevel, white)
    tags.set(Tag.ColorMatrix1, _rationals(matrix.ravel()))
    tags.set(Tag.CalibrationIlluminant1, Illuminant.D65)
    tags.set(Tag.AsShotNeutral, _rationals(neutral))
    tags.set(Tag.Make, "n2n-raw")
    tags.set(Tag.Model, "n2n-raw")
    tags.set(Tag.UniqueCameraModel, "n2n-raw")
    if stored_w != w:
        tags.set(Tag.ActiveArea, [0, 0, h, w])  # top, left, bottom, right
    writer = RAW2DNG()
    writer.options(tags, path="", compress=False)  # pidng's compressed mode is broken
    buf = writer.convert(data)
    with atomic_path(path, force) as tmp:
        with open(tmp, "wb") as f:
            f.write(buf)
    return path


def _denormalise(mosaic01: np.ndarray, black: Sequence[float], white: float, top: int) -> np.ndarray:
    """float (H, W) in [0, 1] → uint16 raw values: x·(white − black) + black, rounded, clipped to [0, top]."""
    x = np.asarray(mosaic01, np.float64)
    h, w = x.shape
    b = np.asarray(black, np.float64).reshape(1, 2, 1, 2)
    raw = x.reshape(h // 2, 2, w // 2, 2) * (white - b) + b
    return np.clip(np.rint(raw), 0, top).astype(np.uint16).reshape(h, w)


def _check_mosaic01(mosaic01, shape, src: Path) -> np.ndarray:
    x = np.asarray(mosaic01)
    if x.shape != shape:
        raise ValueError(f"mosaic shape {x.shape} != source {src} visible size {shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("the mosaic holds NaN or Inf values")
    return x


def write_denoised_dng(src_path: str | os.PathLike, denoised01: np.ndarray, out_path: str | os.PathLike,
                       force: bool = False) -> Path:
    """Write a denoised mosaic as a DNG with its source's CFA, levels, bit depth and colour metadata.

    Args:
        src_path: the DNG the mosaic came from (read with :func:`read_dng`).
        denoised01: float (H, W) in [0, 1] (values outside are clipped after denormalising), the source's size.
        out_path: output DNG (refused if it exists unless ``force``).
    Returns:
        The written path. The sample size is the smallest of 10, 12, 16 bits that holds the source's bit
        depth (a 14-bit source is stored in 16-bit samples with its own white level). The colour matrix is
        the one LibRaw derived from the source (rows normalised as LibRaw does), so LibRaw renders the
        written file like the source; other converters may show small colour differences.
    """
    src_path = Path(src_path)
    src = read_dng(src_path)
    x = _check_mosaic01(denoised01, src.mosaic.shape, src_path)
    bits = min(b for b in WRITE_BITS if b >= min(src.bits, 16))  # 14-bit sources go into 16-bit samples
    top = (1 << bits) - 1
    raw = _denormalise(x, src.black_level, src.white_level, top)
    return write_dng(out_path, raw, src.cfa, bits, black_level=src.black_level,
                     white_level=min(src.white_level, top), force=force, color_matrix=src.color_matrix,
                     as_shot_neutral=src.as_shot_neutral)


def render_preview(src_path: str | os.PathLike, mosaic01: np.ndarray | None = None) -> np.ndarray:
    """Render a mosaic to 8-bit sRGB with LibRaw, using the source file's metadata and camera white balance.

    Args:
        src_path: a DNG readable by :func:`read_dng`.
        mosaic01: float (H, W) in [0, 1] of the source's visible size (e.g. denoised), written into the
            file's raw buffer after denormalising; None renders the file as it is.
    Returns:
        uint8 (H', W', 3) sRGB; (H', W') is LibRaw's output size (the visible size, rotated by the file's
        orientation if it has one).
    """
    src_path = Path(src_path)
    with _open(src_path) as raw, _libraw_errors(src_path):
        _cfa_of(raw, src_path)
        if mosaic01 is not None:
            visible = raw.raw_image_visible
            x = _check_mosaic01(mosaic01, visible.shape, src_path)
            if x.shape[0] % 2 or x.shape[1] % 2:
                raise InputError(f"{src_path}: odd-sized mosaic {x.shape[0]}×{x.shape[1]}")
            black = np.asarray(raw.black_level_per_channel, np.float64)[np.array(raw.raw_colors_visible[:2, :2])]
            visible[...] = _denormalise(x, black.ravel(), float(raw.white_level), np.iinfo(visible.dtype).max)
        rgb = raw.postprocess(use_camera_wb=True, output_bps=8)
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def save_png(path: str | os.PathLike, rgb_uint8: np.ndarray, force: bool = False) -> Path:
    """Write a rendered preview, uint8 (H, W, 3), as PNG: :func:`n2n_raw.io.images.write_png` (atomic; refuses
    an existing file unless ``force``)."""
    from .images import write_png
    return write_png(path, rgb_uint8, force=force)


def find_dngs(root: str | os.PathLike) -> list[Path]:
    """Every ``*.dng`` (any case) under ``root``, recursively, sorted; ``root`` itself if it is a DNG file.

    Raises:
        InputError: ``root`` missing, or no DNG found.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root}: no such file or folder")
    if root.is_file():
        if root.suffix.lower() != ".dng":
            raise InputError(f"{root}: not a .dng file")
        return [root]
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".dng" and p.is_file())
    if not files:
        raise InputError(f"{root}: no .dng files found (searched recursively)")
    return files


def prepare_dng(root: str | os.PathLike, out: str | os.PathLike, *, workers: int | None = None,
                force: bool = False, progress: Callable[[int, int], None] | None = None) -> dict:
    """Read every DNG under ``root`` into a raw training store (``n2n_raw.io.store``) at ``out``.

    Each readable file becomes one item: float32 (H, W) mosaic in [0, 1] with attrs ``cfa``, ``source``
    (path relative to ``root``, POSIX style) and ``bits``; the store's ``sources`` lists those paths.
    Files are decoded by a small thread pool (``workers``, default min(4, CPUs), at most
    ``MAX_WORKERS`` = 8) and consumed in order, with at most ``workers + 1`` frames in memory. Every frame goes through
    :func:`n2n_raw.bayer.cfa_phase_check`; a mismatch is a warning naming the file.

    Args:
        progress: called as ``progress(done, total)`` after each file (read or skipped).
    Returns:
        ``{"frames": n, "skipped": k, "seconds": t, "errors": [one-line message per skipped file]}``.
    Raises:
        InputError: no DNG under ``root``, none readable, or ``out`` exists without ``force``.
    """
    t0 = time.perf_counter()
    root = Path(root)
    files = find_dngs(root)
    base = root if root.is_dir() else root.parent
    workers = max(1, min(4, os.cpu_count() or 1) if workers is None else min(int(workers), MAX_WORKERS))
    sources: list[str] = []
    errors: list[str] = []

    def load(p: Path):
        try:
            return read_dng(p)
        except InputError as e:
            return e

    with StoreWriter(out, "raw", force=force, sources=sources) as store, \
            ThreadPoolExecutor(max_workers=workers) as pool:
        pending = []
        it = iter(files)
        for p in it:  # prime the window
            pending.append((p, pool.submit(load, p)))
            if len(pending) > workers:
                break
        done = 0
        while pending:
            p, fut = pending.pop(0)
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(load, nxt)))
            result = fut.result()
            del fut
            if isinstance(result, InputError):
                errors.append(str(result))
            else:
                rel = p.relative_to(base).as_posix()
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    cfa_phase_check(result.mosaic, result.cfa)
                for wmsg in caught:
                    warnings.warn(f"{p}: {wmsg.message}", stacklevel=2)
                store.add(result.mosaic, cfa=result.cfa, source=rel, bits=result.bits)
                sources.append(rel)
            del result
            done += 1
            if progress is not None:
                progress(done, len(files))
        if not sources:
            first = f" (first error: {errors[0]})" if errors else ""
            raise InputError(f"{root}: none of the {len(files)} .dng files could be read{first}")
    return {"frames": len(sources), "skipped": len(errors), "seconds": time.perf_counter() - t0,
            "errors": errors}
