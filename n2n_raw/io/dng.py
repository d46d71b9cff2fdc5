"""Writing denoised DNGs that keep their source's metadata (reading raws is :mod:`n2n_raw.io.camera_raw`).

- :func:`write_denoised_dng` writes a denoised mosaic as a DNG that is its source with new pixels: for a DNG
  source every tag of IFD0, of the raw IFD and of the EXIF/GPS directories is carried as stored (see
  :data:`STORAGE_TAGS` for the few that are rewritten); for another format a DNG is built from what LibRaw and
  the file say (make, model, orientation, colour matrix, white balance, levels, EXIF basics). The stored area,
  masked border included, keeps its geometry, so ActiveArea/DefaultCrop stay valid.
- :func:`render_preview` renders a mosaic with the source file's own metadata (camera white balance);
  :func:`save_png` writes it.

rawpy (LibRaw) cannot write raw files; LibRaw refuses DNGs smaller than 22×22 pixels. A DNG made from
scratch (through pidng, for tests) is :func:`n2n_raw.io.scratch_dng.write_dng`.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Sequence

import numpy as np

from n2n_raw.errors import InputError
from n2n_raw.io import tiff
from n2n_raw.io.atomic import atomic_path
from n2n_raw.io.camera_raw import _XYZ_RGB, _cfa_of, _color_meta, _libraw_errors, _open, probe_rgb_cam
from n2n_raw.io.images import write_png
from n2n_raw.version import __version__

MIN_SIZE = 22  # LibRaw refuses smaller images


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


#: Tags that describe how the pixels are stored (rewritten for the new strip) or that are only valid for the
#: source's pixels or previews (dropped): every other tag of the source is carried unchanged.
STORAGE_TAGS = frozenset({
    254, 255,                 # NewSubfileType / SubfileType: the output's IFD0 is the full-resolution raw
    256, 257, 258, 259, 262,  # ImageWidth/Length, BitsPerSample, Compression, PhotometricInterpretation
    266, 273, 277, 278, 279,  # FillOrder, StripOffsets, SamplesPerPixel, RowsPerStrip, StripByteCounts
    284, 317, 322, 323, 324, 325, 338, 339, 340, 341, 347,  # planar, predictor, tiles, sample format, JPEG tables
    513, 514, 529, 530, 531, 532,  # JPEG interchange (embedded thumbnails), YCbCr of previews
    50712,                    # LinearizationTable: LibRaw has applied it, the stored values are linear
    50858, 51111,             # RawImageDigest, NewRawImageDigest: MD5 of the source's pixels
    50966, 50967, 50968, 50969, 50970, 50971,  # Preview* tags: they describe the dropped previews
})
PROCESSING_SOFTWARE = 11  # TIFF/EP ProcessingSoftware: says n2n-raw processed the file, Software stays as it was
_DNG_VERSION = 50706
_CFA_PHOTOMETRIC = 32803
_LIBRAW_FLIP_TO_ORIENTATION = {0: 1, 3: 3, 5: 8, 6: 6}  # LibRaw's sizes.flip → TIFF Orientation


def _raw_ifd(chain: list[tiff.Node], bo: str) -> tiff.Node | None:
    """The full-resolution CFA directory of a DNG: IFD0 or one of its SubIFDs (NewSubfileType 0, CFA)."""
    for node in [chain[0], *chain[0].children.get(330, [])]:
        if node.value(254, bo, 0) == 0 and node.value(262, bo) == _CFA_PHOTOMETRIC:
            return node
    return None


def _carry_dng(chain: list[tiff.Node], bo: str, shape: tuple[int, int], src: Path) -> tiff.Node:
    """IFD0 of the output: the source's IFD0 and raw IFD tags (raw IFD wins), less :data:`STORAGE_TAGS`,
    with its EXIF and GPS directories; previews and other SubIFDs are dropped."""
    raw = _raw_ifd(chain, bo)
    if raw is None:
        raise InputError(f"{src}: no full-resolution CFA image directory in the DNG")
    stored = (raw.value(257, bo), raw.value(256, bo))
    if stored != tuple(shape):
        raise InputError(f"{src}: LibRaw decodes {shape[0]}×{shape[1]} pixels but the raw directory stores "
                         f"{stored[0]}×{stored[1]}; cannot carry its geometry")
    out = tiff.Node()
    for node in ([chain[0], raw] if raw is not chain[0] else [raw]):
        out.entries.update({t: e for t, e in node.entries.items() if t not in STORAGE_TAGS})
        out.children.update({t: k for t, k in node.children.items() if t != 330})
    return out


def _rational_pairs(values, denominator: int = 1_000_000) -> list[int]:
    out = []
    for v in values:
        out += [int(round(float(v) * denominator)), denominator]
    return out


#: BlackLevel, BlackLevelDeltaH, BlackLevelDeltaV, WhiteLevel: in raw units, so scaled with the samples.
LEVEL_TAGS = (50714, 50715, 50716, 50717)


def _headroom(white: float) -> int:
    """The power of two that scales raw units up to 16 bits (1 for a 16-bit white level).

    A denoised value lies between two raw levels; at 10 or 12 bits rounding it to a whole level costs more
    than denoising gained on dark frames (measured 5.5 dB on a 10-bit burst, benchmarks/burst_fit.py). Scaling
    samples and levels alike by 2^k keeps k more bits of it, and raw editors read the same picture."""
    return 1 << max(0, int(np.floor(np.log2(65535.0 / max(white, 1.0)))))


def _scaled_levels(node: tiff.Node, k: int, bo: str) -> None:
    """Scale the level tags of ``node`` by ``k`` in place, keeping each tag's type (rationals: the numerator)."""
    if k == 1:
        return
    for tag in LEVEL_TAGS:
        ent = node.entries.get(tag)
        if ent is None:
            continue
        if ent.type in (5, 10):  # (numerator, denominator) pairs
            fmt = "I" if ent.type == 5 else "i"
            pairs = list(struct.unpack(f"{bo}{2 * ent.count}{fmt}", ent.data[:8 * ent.count]))
            for i in range(0, len(pairs), 2):
                if abs(pairs[i] * k) < 2 ** 31:
                    pairs[i] *= k
                elif pairs[i + 1] % k == 0:
                    pairs[i + 1] //= k
                else:
                    pairs[i], pairs[i + 1] = int(round(pairs[i] / pairs[i + 1] * k * 1000)), 1000
            node.entries[tag] = tiff.entry(tag, ent.type, pairs, bo)
        elif ent.type in (3, 4):
            vals = [int(v) * k for v in ent.values(bo)]
            node.entries[tag] = tiff.entry(tag, 4 if max(vals) > 65535 else ent.type, vals, bo)


def _black_entry(black: np.ndarray, bo: str) -> tiff.Entry:
    """BlackLevel as LONG when whole numbers (as cameras write it), else RATIONAL."""
    if np.all(black == np.round(black)):
        return tiff.entry(50714, 4, [int(v) for v in black], bo)
    return tiff.entry(50714, 5, _rational_pairs(black, 1000), bo)


def _tiff_metadata(path: Path) -> tuple[str | None, str | None]:
    """(Make, Model) from a TIFF-based camera raw's IFD0 (NEF, CR2, ARW, KDC, ...); (None, None) otherwise."""
    try:
        with open(path, "rb") as f:
            bo, chain = tiff.read_tiff(f.read())
    except (OSError, tiff.TiffError, ValueError, IndexError):
        return None, None
    make, model = chain[0].value(271, bo), chain[0].value(272, bo)
    return (make.strip() or None) if isinstance(make, str) else None, \
        (model.strip() or None) if isinstance(model, str) else None


def _build_dng(raw, src: Path, cfa: str, black: np.ndarray, white: float, bo: str) -> tiff.Node:
    """IFD0 (+ EXIF) for a non-DNG source, from what LibRaw and the file say.

    ColorMatrix1 is LibRaw's camera matrix (XYZ D65 → camera, its ``rgb_xyz_matrix``); when LibRaw shows none,
    the one that makes a DNG reader apply what LibRaw applies to the source (:func:`probe_rgb_cam`), or camera
    RGB taken as sRGB."""
    s = raw.sizes
    vh, vw = raw.raw_image_visible.shape
    e = lambda tag, typ, v: tiff.entry(tag, typ, v, bo)  # noqa: E731
    make, model = _tiff_metadata(src)
    cam_xyz = np.asarray(raw.rgb_xyz_matrix, np.float64)[:3, :3]
    if not np.all(np.isfinite(cam_xyz)) or abs(np.linalg.det(cam_xyz)) < 1e-9:
        cam_xyz, _ = _color_meta(raw)
        if cam_xyz is None:
            rgb_cam = probe_rgb_cam(src)
            rgb_cam = np.eye(3) if rgb_cam is None or abs(np.linalg.det(rgb_cam)) < 1e-6 else rgb_cam
            cam_xyz = np.linalg.inv(rgb_cam) @ np.linalg.inv(_XYZ_RGB)
    wb = np.asarray(raw.camera_whitebalance, np.float64)[:3]
    neutral = wb[1] / wb if np.all(np.isfinite(wb)) and np.all(wb > 0) else np.ones(3)
    node = tiff.Node()
    for ent in [e(33421, 3, [2, 2]), e(33422, 1, ["RGB".index(c) for c in cfa]),
                e(_DNG_VERSION, 1, [1, 4, 0, 0]), e(50707, 1, [1, 1, 0, 0]),
                e(274, 3, _LIBRAW_FLIP_TO_ORIENTATION.get(int(s.flip), 1)),
                e(50713, 3, [2, 2]),
                _black_entry(black.ravel(), bo),
                e(50717, 4, int(round(white))),
                e(50721, 10, _rational_pairs(cam_xyz.ravel(), 10000)), e(50778, 3, 21),  # D65
                e(50728, 5, _rational_pairs(neutral, 10000))]:
        node.entries[ent.tag] = ent
    if make:
        node.entries[271] = e(271, 2, make)
    if model:
        node.entries[272] = e(272, 2, model)
    if make or model:
        node.entries[50708] = e(50708, 2, " ".join(x for x in (make, model) if x))
    if (s.top_margin, s.left_margin, vh, vw) != (0, 0, s.raw_height, s.raw_width):
        node.entries[50829] = e(50829, 4, [s.top_margin, s.left_margin, s.top_margin + vh, s.left_margin + vw])
    other = raw.other if hasattr(raw, "other") else None
    exif = tiff.Node()
    if other is not None:
        if getattr(other, "artist", ""):
            node.entries[315] = e(315, 2, other.artist)
        if other.shutter_speed > 0:
            exif.entries[33434] = e(33434, 5, _rational_pairs([other.shutter_speed], 1_000_000))
        if other.aperture > 0:
            exif.entries[33437] = e(33437, 5, _rational_pairs([other.aperture], 100))
        if other.iso_speed > 0:
            exif.entries[34855] = e(34855, 3, min(int(round(other.iso_speed)), 65535))
        if other.timestamp is not None:
            exif.entries[36867] = e(36867, 2, other.timestamp.strftime("%Y:%m:%d %H:%M:%S"))
        if other.focal_length > 0:
            exif.entries[37386] = e(37386, 5, _rational_pairs([other.focal_length], 100))
    lens = getattr(getattr(raw, "lens", None), "model", "")
    if lens:
        exif.entries[42036] = e(42036, 2, lens)
    if exif.entries:
        exif.entries[36864] = tiff.Entry(36864, 7, 4, b"0231")  # ExifVersion
        node.children[34665] = [exif]
    return node


def write_denoised_dng(src_path: str | os.PathLike, denoised01: np.ndarray, out_path: str | os.PathLike,
                       force: bool = False) -> Path:
    """Write a denoised mosaic as a DNG: its source with new pixels.

    Args:
        src_path: the raw file the mosaic came from (read with :func:`read_raw`): a DNG or any camera raw.
        denoised01: float (H, W) in [0, 1] (values outside are clipped after denormalising), the source's
            visible size (what :func:`read_raw` returned).
        out_path: output DNG (refused if it exists unless ``force``; written to a temporary name and renamed).
    Returns:
        The written path. The whole stored area of the source is written, uncompressed, 16 bits per sample,
        in the source's byte order, in raw units scaled by 2^k up to 16 bits (:func:`_headroom`: ×4 for a
        14-bit white, ×64 for 10-bit; a 16-bit source is not scaled): the masked border as it was, the
        visible area with the denoised values (x·(white − black) + black per 2×2 position, rounded), and the
        level tags (:data:`LEVEL_TAGS`) scaled alike. ActiveArea, DefaultCrop and every other tag keep their
        meaning and value. A DNG source's tags are
        carried as stored except :data:`STORAGE_TAGS`; ProcessingSoftware names n2n-raw. A non-DNG source
        gets a DNG built from what it says (see :func:`_build_dng`).
    Raises:
        InputError: unreadable/unsupported source (as :func:`read_raw`), existing output without ``force``.
        ValueError: ``denoised01`` of the wrong shape or not finite.
    """
    src_path = Path(src_path)
    with _open(src_path) as raw, _libraw_errors(src_path):
        cfa = _cfa_of(raw, src_path)
        stored = np.array(raw.raw_image, dtype=np.uint16)  # the whole stored area, masked border included
        visible_shape = raw.raw_image_visible.shape
        top, left = int(raw.sizes.top_margin), int(raw.sizes.left_margin)
        black = np.asarray(raw.black_level_per_channel, np.float64)[np.array(raw.raw_colors_visible[:2, :2])]
        white = float(raw.white_level)
        if white <= black.max():
            raise InputError(f"{src_path}: white level {white:g} is not above the black level {black.max():g}")
        has_wb = all(v > 0 for v in list(raw.camera_whitebalance)[:3])
        x = _check_mosaic01(denoised01, visible_shape, src_path)
        with open(src_path, "rb") as f:
            head = f.read()
        try:
            bo, chain = tiff.read_tiff(head)
            is_dng = _DNG_VERSION in chain[0].entries
        except tiff.TiffError:
            bo, chain, is_dng = "<", [], False
        if is_dng:
            node = _carry_dng(chain, bo, stored.shape, src_path)
        else:
            bo = "<"
            node = _build_dng(raw, src_path, cfa, black, white, bo)
    vh, vw = visible_shape
    if 50717 not in node.entries:  # the default white, 2**BitsPerSample - 1, changes with the new 16-bit samples
        node.entries[50717] = tiff.entry(50717, 4, int(round(white)), bo)
    # A file stating no white balance gets one estimated from its pixels by LibRaw, with absolute thresholds
    # (blocks within 25 levels of white are skipped): scaled samples would change that estimate, so such a
    # file keeps its own units.
    k = _headroom(white) if has_wb else 1
    _scaled_levels(node, k, bo)
    stored = np.minimum(stored.astype(np.uint32) * k, 65535).astype(np.uint16)  # masked border, same scale
    stored[top:top + vh, left:left + vw] = _denormalise(x, black.ravel() * k, white * k, 65535)
    h, w = stored.shape
    e = lambda tag, typ, v: tiff.entry(tag, typ, v, bo)  # noqa: E731
    for ent in [e(254, 4, 0), e(256, 4, w), e(257, 4, h), e(258, 3, 16), e(259, 3, 1),
                e(262, 3, _CFA_PHOTOMETRIC), e(277, 3, 1), e(278, 4, h), e(284, 3, 1),
                e(PROCESSING_SOFTWARE, 2, f"n2n-raw {__version__}")]:
        node.entries[ent.tag] = ent
    data = tiff.write_tiff(node, stored.astype(f"{bo}u2").tobytes(), bo)
    with atomic_path(Path(out_path), force) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return Path(out_path)


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
    return write_png(path, rgb_uint8, force=force)
