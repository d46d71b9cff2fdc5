"""Reading camera raw files: any 2×2 Bayer raw that LibRaw decodes (DNG, NEF, CR2, CR3, ARW, RAF, ORF, RW2, ...).

:func:`read_raw` → :class:`RawImage`, a float32 (H, W) mosaic in [0, 1] of LibRaw's visible area in stored
(file) orientation, with its CFA and levels. What is not a 2×2 Bayer mosaic (X-Trans, Foveon, multi-plane
stacks, linear/demosaiced DNGs) and what is broken (white level not above black) raise :class:`InputError`
naming the file and the reason. :func:`find_raws` lists the raw files of a folder.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from n2n_raw.cfa import CFAS, PACK_ORDER
from n2n_raw.errors import InputError

#: File name suffixes of the camera raw formats LibRaw reads (lower case). A Foveon (.x3f) or X-Trans (.raf of
#: some Fujifilm bodies) file is found by this list and refused when read.
RAW_SUFFIXES = frozenset(
    ".dng .nef .nrw .cr2 .cr3 .crw .arw .srf .sr2 .raf .orf .rw2 .rwl .pef .ptx .srw .kdc .dcr .k25 .dcs "
    ".erf .3fr .fff .iiq .mef .mos .mrw .x3f .raw .gpr .cap .bay .nksc".split()) - {".nksc"}


# sRGB (linear, D65) → XYZ, as LibRaw uses it to turn a DNG ColorMatrix into rgb_cam.
_XYZ_RGB = np.array([[0.412453, 0.357580, 0.180423],
                     [0.212671, 0.715160, 0.072169],
                     [0.019334, 0.119193, 0.950227]])


@dataclass
class RawImage:
    """One Bayer frame read from a raw file.

    Attributes:
        mosaic: float32 (H, W), H and W even: (raw − black) / (white − black) with ``black`` per 2×2
            position, clipped to [0, 1] unless read with ``clip=False`` (then noise below black stays negative).
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


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a raw file")
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
        raise InputError(f"{path}: not a raw file LibRaw can read (not a camera raw or DNG, or damaged)") from None
    except (rawpy.LibRawIOError, rawpy.LibRawDataError):
        raise InputError(f"{path}: cannot read the raw file (truncated or damaged)") from None
    except rawpy.LibRawError as e:
        msg = e.args[0].decode("ascii", "replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise InputError(f"{path}: cannot read the raw file ({msg})") from None


def _open(path: Path, unpack: bool = True):
    """rawpy.imread + unpack (LibRaw decodes lazily: decode now so damage shows up here); ``unpack=False``
    leaves the decoding to the caller, who may need only the sizes."""
    _check_file(path)
    with _libraw_errors(path):
        raw = _rawpy().imread(str(path))
        try:
            _check_holds_pixels(raw, path)
            if unpack:
                raw.unpack()
        except BaseException:
            raw.close()
            raise
    return raw


#: Fewest bits per stored pixel a raw file can hold its image in. Real raws take 1.9 (the lossy Kodak DC50)
#: to 16; lossless JPEG spends at least 1 bit per sample. Below this the file cannot hold the pixels it
#: declares, and what LibRaw returns for them is whatever its buffer held (zeros, or a previous file's data).
MIN_BITS_PER_PIXEL = 1 / 8


def _check_holds_pixels(raw, path: Path) -> None:
    """InputError when the file is far too small for the pixels it declares (metadata-only or truncated)."""
    pixels = int(raw.sizes.raw_height) * int(raw.sizes.raw_width)
    size = path.stat().st_size
    if pixels and size * 8 < MIN_BITS_PER_PIXEL * pixels:
        raise InputError(f"{path}: no pixel data ({size / 1e3:.1f} kB for {raw.sizes.raw_width}×"
                         f"{raw.sizes.raw_height} pixels: a metadata-only or truncated file)")


def _cfa_of(raw, path: Path) -> str:
    """The 2×2 pattern of ``raw_image_visible``; InputError for non-Bayer data."""
    rawpy = _rawpy()
    if raw.raw_type != rawpy.RawType.Flat:
        kind = "a linear (demosaiced) DNG" if path.suffix.lower() == ".dng" else \
            "a multi-plane raw (several values per pixel)"
        raise InputError(f"{path}: {kind}, not a Bayer mosaic; only 2×2 Bayer CFA raw files are supported")
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


def probe_rgb_cam(path: Path) -> np.ndarray | None:
    """LibRaw's camera → linear sRGB matrix (3×3) for a file whose matrix LibRaw does not expose.

    For cameras without a matrix in the file, LibRaw may still apply one of its own tables (rawpy shows
    neither, e.g. for the Kodak DC50). Its renders in camera colour and in sRGB differ by exactly that
    matrix (both linear, same demosaic and white balance), so a least-squares fit over unclipped pixels
    recovers it. Returns None when too few pixels are usable.
    """
    renders = []
    rawpy = _rawpy()
    for space in (rawpy.ColorSpace.raw, rawpy.ColorSpace.sRGB):
        with _open(path) as raw, _libraw_errors(path):
            renders.append(raw.postprocess(output_color=space, gamma=(1, 1), no_auto_bright=True, output_bps=16,
                                           user_wb=[1.0, 1.0, 1.0, 1.0], half_size=True, user_flip=0)
                           .reshape(-1, 3).astype(np.float64))
    cam, rgb = renders
    ok = (cam.max(1) < 60000) & (rgb.max(1) < 60000) & (rgb.min(1) > 0) & (cam.min(1) > 64)  # unclipped
    if ok.sum() < 100:
        return None
    m, *_ = np.linalg.lstsq(cam[ok], rgb[ok], rcond=None)
    return np.round(m.T, 4)


def read_raw(path: str | os.PathLike, clip: bool = True) -> RawImage:
    """Read a Bayer raw file (DNG or any camera format LibRaw reads) into a normalised float32 mosaic.

    Args:
        path: the file.
        clip: clip to [0, 1]. ``False`` keeps values below black (negative) and above white: read noise
            around black is symmetric, so clipping it biases dark pixels upwards (a low-light frame whose
            mean sits a few DN above black reads several DN too bright), and only the unclipped values
            write back bit-exactly.
    Returns:
        :class:`RawImage` with ``mosaic`` float32 (H, W), in [0, 1] when clipped, H and W even,
        MATLAB/file orientation (LibRaw's visible area, no rotation applied).
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
    if h < 2 or w < 2:
        raise InputError(f"{path}: no image data ({h}×{w})")
    if not mosaic.any():  # LibRaw hands back zeros (and, depending on what it read before, any black level)
        raise InputError(f"{path}: no pixel data (every pixel is 0: a metadata-only or truncated file)")
    if h % 2 or w % 2:
        raise InputError(f"{path}: odd-sized mosaic {h}×{w}; Bayer mosaics need even height and width")
    black = per_colour[colours]  # (2, 2) black level per cell position
    if white <= black.max():
        raise InputError(f"{path}: white level {white:g} is not above the black level {black.max():g}")
    _warn_missing_black(path, mosaic, black, white)
    cells = mosaic.reshape(h // 2, 2, w // 2, 2)  # a view: normalise per 2×2 position without a full black map
    b = black.astype(np.float32)[None, :, None, :]
    cells -= b
    cells /= np.float32(white) - b
    if clip:
        np.clip(mosaic, 0.0, 1.0, out=mosaic)
    return RawImage(mosaic=mosaic, cfa=cfa, black_level=tuple(float(v) for v in black.ravel()),
                    white_level=white, bits=max(int(white).bit_length(), 1), color_matrix=matrix,
                    as_shot_neutral=neutral)


#: Alias kept for callers written when only DNG was read; every format :func:`read_raw` takes is accepted.
read_dng = read_raw


def _warn_missing_black(path: Path, mosaic: np.ndarray, black: np.ndarray, white: float) -> None:
    """Warn when the file states no black level (0) yet its darkest pixels sit far above 0.

    Such a file (e.g. a DNG written without a BlackLevel tag) is normalised with black 0, so dark areas keep a
    pedestal: colours look washed out and the noise model is off. Nothing is guessed: the user is told.
    """
    if black.any() or not mosaic.size:
        return
    darkest = float(np.percentile(mosaic[::4, ::4], 0.1))  # robust to a few dead pixels; a strided sample is enough
    if darkest > max(16.0, 0.02 * white):
        warnings.warn(f"{path}: the file states no black level, but its darkest pixels are at {darkest:.0f} "
                      f"(white {white:g}): the true black is probably near there; it is treated as 0",
                      stacklevel=3)


def find_raws(root: str | os.PathLike) -> list[Path]:
    """Every raw file (by suffix, see :data:`RAW_SUFFIXES`; any case) under ``root``, recursively, sorted;
    ``root`` itself if it is a file.

    Raises:
        InputError: ``root`` missing, or no raw file found.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root}: no such file or folder")
    if root.is_file():
        return [root]
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in RAW_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"{root}: no camera raw files found (searched recursively for "
                         ".dng, .nef, .cr2, .arw, ... files)")
    return files


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




#: Narrowest masked strip read as optical black (pixels): thinner borders are often a sensor's transition rows.
MIN_MASKED_STRIP = 8


@dataclass(frozen=True)
class OpticalBlack:
    """The mean of a raw file's masked (optically black) pixels per 2×2 position of the visible mosaic.

    Attributes:
        mean: raw units, at positions (0,0), (0,1), (1,0), (1,1) of the visible area's CFA phase.
        std: the pixels' standard deviation at each position (raw units): the read noise.
        count: pixels averaged per position.
        where: which strips were read: "left", "right" (the strips beside the image, in its rows), else
            "top", "bottom".
        stated: the file's black levels at the same positions (raw units), as :func:`read_raw` uses them.
        cfa: the visible mosaic's 2×2 pattern.
    """

    mean: tuple[float, float, float, float]
    std: tuple[float, float, float, float]
    count: int
    where: str
    stated: tuple[float, float, float, float]
    cfa: str

    def spread(self) -> float:
        """Largest difference between two positions' means (raw units)."""
        return max(self.mean) - min(self.mean)

    def standard_error(self) -> float:
        """Standard error of one position's mean (raw units), the largest of the four."""
        return max(self.std) / max(self.count, 1) ** 0.5


def optical_black(path: str | os.PathLike) -> OpticalBlack | None:
    """The optical black of a raw file whose stored image keeps its masked borders, else None.

    Cameras read a few rows and columns of light-shielded pixels beside the image; where the file keeps them
    (rawpy's ``raw_image`` larger than the visible area; many DNGs crop them away), their mean per 2×2
    position is each channel's true black, read in the same exposure. The strips beside the image (left,
    right: the image's own rows) are read when at least :data:`MIN_MASKED_STRIP` pixels wide, as they share
    any offset that depends on the row; else the strips above and below. Strips whose mean is outside the
    file's [0, white] range are skipped (some cameras store other data there).

    Raises:
        InputError: as :func:`read_raw` for a file that cannot be opened or is not a Bayer mosaic (one that
            keeps no masked border returns None before its pixels are decoded).
    """
    path = Path(path)
    with _open(path, unpack=False) as raw, _libraw_errors(path):
        s = raw.sizes
        top, left, h, w = int(s.top_margin), int(s.left_margin), int(s.height), int(s.width)
        rows, cols = int(s.raw_height), int(s.raw_width)
        if max(top, left, rows - top - h, cols - left - w) < MIN_MASKED_STRIP:
            return None  # no masked border kept (most DNGs): nothing to decode
        raw.unpack()
        cfa = _cfa_of(raw, path)  # a one-line InputError for what is not a Bayer mosaic, before its pixels
        full = raw.raw_image
        rows, cols = full.shape
        white = float(raw.white_level)
        stated = np.asarray(raw.black_level_per_channel, np.float64)[np.array(raw.raw_colors_visible[:2, :2])]
        sides = {"left": (slice(top, top + h), slice(0, left)), "right": (slice(top, top + h), slice(left + w, cols)),
                 "top": (slice(0, top), slice(left, left + w)), "bottom": (slice(top + h, rows), slice(left, left + w))}
        strips = {}
        for name, (ys, xs) in sides.items():
            part = full[ys, xs]
            if min(part.shape) < MIN_MASKED_STRIP:
                continue
            # position relative to the visible area's origin, so that (0, 0) is the visible mosaic's (0, 0)
            dy, dx = (ys.start - top) % 2, (xs.start - left) % 2
            planes = [np.asarray(part[(py - dy) % 2::2, (px - dx) % 2::2], np.float64) for py, px in PACK_ORDER]
            if all(0 < p.mean() < white for p in planes):
                strips[name] = planes
    chosen = [n for n in ("left", "right") if n in strips] or [n for n in ("top", "bottom") if n in strips]
    if not chosen:
        return None
    planes = [np.concatenate([strips[n][k].ravel() for n in chosen]) for k in range(4)]
    return OpticalBlack(mean=tuple(float(p.mean()) for p in planes), std=tuple(float(p.std()) for p in planes),
                        count=min(p.size for p in planes), where=" and ".join(chosen),
                        stated=tuple(float(v) for v in stated.ravel()), cfa=cfa)
