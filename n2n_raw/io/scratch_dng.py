"""A CFA DNG written from scratch through the optional ``pidng`` package (``pip install 'n2n-raw[dng]'``).

Not how n2n-raw writes a denoised photo (that is :func:`n2n_raw.io.dng.write_denoised_dng`, which keeps its
source's tags): this is an independent writer, so tests and synthetic data can make DNG files that LibRaw
reads without the code under test having written them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from n2n_raw.cfa import check_cfa
from n2n_raw.errors import InputError
from n2n_raw.io.atomic import atomic_path
from n2n_raw.io.dng import MIN_SIZE

WRITE_BITS = (10, 12, 16)
_EXTRA = "pip install 'n2n-raw[dng]'"


def _pidng(path):
    try:
        from pidng.core import RAW2DNG
        from pidng.defs import CalibrationIlluminant, PhotometricInterpretation
        from pidng.dng import DNGTags, Tag
    except ImportError:
        raise InputError(f"{path}: writing DNG files needs the optional extra: {_EXTRA}") from None
    return RAW2DNG, DNGTags, Tag, PhotometricInterpretation, CalibrationIlluminant


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
