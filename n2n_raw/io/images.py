"""sRGB image files: folders of images, decoding to RGB, PNG writing, and the ImageNet-val training filter.

Every decoded image is a uint8 array (H, W, 3) in RGB order. Decoding follows the Neighbor2Neighbor
reference: PIL's ``convert("RGB")`` (grayscale is replicated to 3 channels, CMYK is converted, alpha is
dropped, palettes are expanded); no EXIF rotation is applied. 16-bit grayscale (modes ``I;16*`` / ``I``) is
scaled to 8 bits (value/257, rounded) instead of being clipped at 255 as a bare ``convert`` would do.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from n2n_raw.errors import InputError
from n2n_raw.io.atomic import atomic_path

__all__ = ["IMAGE_EXTS", "is_image_file", "list_images", "read_rgb", "validation_folder_images", "write_png"]

#: File suffixes treated as images (compared lower-case, so ``.JPEG`` counts too).
IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".ppm"})


def is_image_file(path: str | os.PathLike) -> bool:
    """True for a file whose suffix is in :data:`IMAGE_EXTS` (any case) and whose name does not start with '.'."""
    p = Path(path)
    return p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".") and p.is_file()


def _sort_key(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """The image files in ``folder`` (and its sub-folders when ``recursive``), sorted by their path relative to
    ``folder`` as a string (plain code-point order, as Python's ``sorted`` on file names).

    Hidden files and folders (names starting with '.', e.g. macOS ``._x.jpg`` resource forks) are skipped.
    Raises InputError when the folder does not exist or holds no image.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    found: list[Path] = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            found.extend(Path(dirpath) / f for f in filenames
                         if Path(f).suffix.lower() in IMAGE_EXTS and not f.startswith("."))
    else:
        found = [p for p in root.iterdir() if is_image_file(p)]
    if not found:
        exts = ", ".join(sorted(e[1:] for e in IMAGE_EXTS))
        raise InputError(f"{root}: holds no images ({exts})")
    return sorted(found, key=lambda p: _sort_key(p, root))


def validation_folder_images(folder: str | os.PathLike) -> list[Path]:
    """The images of a validation folder, as the paper's loader finds them.

    ``folder/test/`` is used when it exists and holds images (the reference reads BSD300 from
    ``BSD300/test/``), otherwise ``folder`` itself; not recursive; sorted by file name.
    Raises InputError when neither holds an image.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    test = root / "test"
    if test.is_dir() and any(is_image_file(p) for p in test.iterdir()):
        return list_images(test, recursive=False)
    return list_images(root, recursive=False)


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode.startswith("I;16") or im.mode == "I":
        a = np.asarray(im.convert("I") if im.mode != "I" else im, dtype=np.int64)
        if im.mode == "I" and a.max(initial=0) <= 255:
            a8 = np.clip(a, 0, 255).astype(np.uint8)
        else:  # 16-bit values: map 0..65535 onto 0..255
            a8 = np.floor(np.clip(a, 0, 65535) / 257.0 + 0.5).astype(np.uint8)
        return Image.fromarray(a8, mode="L").convert("RGB")
    return im.convert("RGB")


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to RGB.

    Returns:
        uint8 array (H, W, 3), values 0..255, C-contiguous. Any PIL mode is converted (L, LA, 1, P, PA, RGBA,
        CMYK, YCbCr, I;16, ...): grayscale becomes 3 equal channels, alpha is dropped.
    Raises:
        InputError ``"<path>: unreadable image (...)"`` for a missing, non-image, corrupt or truncated file
        (the whole image is decoded here, so truncation is caught now, not later).
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # corrupt EXIF, palette transparency, large-image warnings
            with Image.open(path) as im:
                im.load()
                rgb = np.array(_to_rgb(im), dtype=np.uint8)
    except MemoryError:
        raise
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except Exception as e:  # PIL raises many types for broken files (OSError, SyntaxError, struct.error, ...)
        raise InputError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"{path}: unreadable image (decoded to shape {rgb.shape})")
    return np.ascontiguousarray(rgb)


def quantize_uint8(pred01: np.ndarray) -> np.ndarray:
    """The sRGB protocol's rounding: clamp to [0, 1], ``floor(x·255 + 0.5)``, clip to [0, 255], as uint8.

    Args:
        pred01: float array of any shape, nominally in [0, 1] (out-of-range values are clamped; NaN is refused).
            The arithmetic runs in the input's floating dtype (float32 stays float32, as in the reference,
            whose prediction is a float32 array), so ties round exactly as there.
    Returns:
        uint8 array of the same shape.
    """
    x = np.asarray(pred01)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    if np.isnan(x).any():
        raise ValueError("quantize_uint8: prediction contains NaN")
    x = np.clip(x, 0, 1)
    x = np.floor(x * x.dtype.type(255) + x.dtype.type(0.5))
    return np.clip(x, 0, 255).astype(np.uint8)


def write_png(path: str | os.PathLike, rgb_u8: np.ndarray, force: bool = False) -> Path:
    """Write a uint8 (H, W, 3) RGB (or (H, W) grayscale) array as a lossless PNG, atomically.

    Refuses an existing ``path`` unless ``force`` (InputError); the data go to a temporary file renamed into
    place, so an interrupted write leaves nothing. Returns ``path`` as a Path.
    """
    a = np.asarray(rgb_u8)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise ValueError(f"write_png expects uint8 (H, W, 3) or (H, W), got {a.dtype} {a.shape}")
    with atomic_path(path, force=force) as tmp:
        Image.fromarray(np.ascontiguousarray(a)).save(tmp, format="PNG")
    return Path(path)
