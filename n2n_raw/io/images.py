"""sRGB image files: folders of images, decoding to RGB, PNG writing, and the ImageNet-val training filter.

Every decoded image is a uint8 array (H, W, 3) in RGB order. Decoding follows the Neighbor2Neighbor
reference: PIL's ``convert("RGB")`` (grayscale is replicated to 3 channels, CMYK is converted, alpha is
dropped, palettes are expanded); no EXIF rotation is applied. 16-bit grayscale (modes ``I;16*`` / ``I``) is
scaled to 8 bits (value/257, rounded) instead of being clipped at 255 as a bare ``convert`` would do.
"""
from __future__ import annotations

import collections
import multiprocessing
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..errors import InputError
from .atomic import atomic_path, check_writable
from .store import StoreWriter

__all__ = ["IMAGE_EXTS", "is_image_file", "list_images", "read_rgb", "validation_folder_images", "write_png",
           "prepare_srgb"]

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


# ---------------------------------------------------------------------------------------------------------------
# prepare srgb: the ImageNet-val filter


def _init_worker() -> None:
    # Ctrl-C goes to the whole process group: let the parent handle it (it terminates the pool) so the
    # workers don't each print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _probe_and_decode(args: tuple[str, int, int]):
    """Worker: ("ok", rgb) | ("size", (w, h)) | ("bad", message). The size comes from the header first, so
    images that are skipped are never decoded."""
    path, lo, hi = args
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                w, h = im.size
    except MemoryError:
        raise
    except Exception as e:
        return "bad", f"{type(e).__name__}: {e}"
    if not (lo <= w <= hi and lo <= h <= hi):
        return "size", (w, h)
    try:
        return "ok", read_rgb(path)
    except InputError as e:
        return "bad", str(e)


def prepare_srgb(input_dir: str | os.PathLike, out: str | os.PathLike, *, min_size: int = 256,
                 max_size: int = 512, workers: int | None = None, force: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> dict:
    """Build an sRGB training store from a folder of images (the paper's ImageNet-val filter).

    Every readable image under ``input_dir`` (recursive, see :func:`list_images`) whose width AND height are
    both within [min_size, max_size] (inclusive) is decoded to RGB (:func:`read_rgb`) and stored as one
    uint8 (H, W, 3) item of an ``"srgb"`` store (:class:`~n2n_raw.io.store.StoreWriter`), with item attr
    ``source`` = its path relative to ``input_dir`` (POSIX form). Items are in sorted path order whatever
    ``workers`` is. Unreadable files (corrupt, truncated, not images) are counted and skipped.

    Args:
        input_dir: folder of images (ImageNet ``ILSVRC2012_img_val``: 50,000 JPEGs → 44,328 kept).
        out: the HDF5 file to write; refused if it exists unless ``force``.
        min_size, max_size: inclusive side-length bounds in pixels.
        workers: decoding processes (default ``os.cpu_count()``); 1 decodes in this process. Memory stays
            bounded: at most a few images per worker are in flight.
        progress: optional ``callable(done, total)`` called after each file (total = files listed).
    Returns:
        ``{"kept", "skipped_size", "unreadable", "unreadable_files", "total", "seconds", "images_per_s"}``:
        counts (int), the unreadable files' relative paths (list of str), the number of image files listed,
        wall seconds (float), and images_per_s = files examined per second of wall time (float).
    Raises:
        InputError for a missing/empty folder, an existing output without ``force``, bad sizes or worker
        counts, and when no image is kept (then no file is written). An exception (or Ctrl-C) mid-way leaves
        neither the output nor a temporary file.
    """
    t0 = time.perf_counter()
    input_dir = Path(input_dir)
    if min_size < 1 or max_size < min_size:
        raise InputError(f"--min-size {min_size} / --max-size {max_size}: need 1 <= min-size <= max-size")
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise InputError(f"--workers {workers}: must be at least 1")
    files = list_images(input_dir, recursive=True)
    total = len(files)
    workers = min(workers, total)
    counts = {"kept": 0, "skipped_size": 0, "unreadable": 0, "unreadable_files": []}
    sources = {"kind": "srgb-folder", "input_dir": str(input_dir), "min_size": int(min_size),
               "max_size": int(max_size)}
    tasks = ((str(p), int(min_size), int(max_size)) for p in files)

    # The output is checked (and refused) before any decoding; the pool is started before the HDF5 file is
    # opened so that no worker inherits an open file.
    check_writable(out, force)
    pool = _start_pool(workers) if workers > 1 else None
    try:
        with StoreWriter(out, "srgb", force=force, sources=sources) as writer:
            _fill(writer, files, tasks, pool, workers, input_dir, counts, progress)
            if counts["kept"] == 0:
                raise InputError(f"{input_dir}: no readable image has both sides within [{min_size}, {max_size}] "
                                 f"({total} files: {counts['skipped_size']} skipped by size, "
                                 f"{counts['unreadable']} unreadable)")
            sources.update(counts, total=total)  # stored in the file's ``sources`` attr when the store closes
        if pool is not None:
            pool.close()
    except BaseException:
        if pool is not None:
            pool.terminate()
        raise
    finally:
        if pool is not None:
            pool.join()

    seconds = time.perf_counter() - t0
    return {**counts, "total": total, "seconds": seconds, "images_per_s": total / seconds if seconds > 0 else 0.0}


def _start_pool(workers: int):
    return multiprocessing.get_context().Pool(workers, initializer=_init_worker)


def _fill(writer: StoreWriter, files: list[Path], tasks, pool, workers: int, input_dir: Path, counts: dict,
          progress) -> None:
    """Feed every file through the probe/decoder (in ``pool`` if given) and store the results in file order."""
    total = len(files)

    def consume(done: int, path: Path, result) -> None:
        status, value = result
        if status == "ok":
            writer.add(value, source=_sort_key(path, input_dir))
            counts["kept"] += 1
        elif status == "size":
            counts["skipped_size"] += 1
        else:
            counts["unreadable"] += 1
            counts["unreadable_files"].append(_sort_key(path, input_dir))
        if progress is not None:
            progress(done, total)

    if pool is None:
        for i, (path, task) in enumerate(zip(files, tasks)):
            consume(i + 1, path, _probe_and_decode(task))
    else:
        _run_pool(pool, files, tasks, workers, consume)


def _run_pool(pool, files: list[Path], tasks, workers: int, consume) -> None:
    """Decode in ``pool`` with a bounded window of in-flight tasks (memory stays bounded however slow the
    writer is), consuming the results in file order."""
    window = 4 * workers
    pending: collections.deque = collections.deque()
    done = 0
    for path, task in zip(files, tasks):
        pending.append((path, pool.apply_async(_probe_and_decode, (task,))))
        if len(pending) >= window:
            p, r = pending.popleft()
            done += 1
            consume(done, p, r.get())
    while pending:
        p, r = pending.popleft()
        done += 1
        consume(done, p, r.get())
