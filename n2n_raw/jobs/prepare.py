"""``n2n-raw prepare``: a folder of data into one training store (a job, not a format).

:func:`prepare_sidd` (a SIDD-Medium raw folder: thread pool, progress, CFA phase check) and
:func:`prepare_dng` (a folder of camera raw files) and :func:`prepare_srgb` (a folder of images through the
paper's size filter, in worker processes); the formats are read through :mod:`n2n_raw.io`.
"""
from __future__ import annotations

import collections
import concurrent.futures
import itertools
import multiprocessing
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator

from PIL import Image

from n2n_raw.errors import InputError
from n2n_raw.io.atomic import check_writable
from n2n_raw.io.camera_raw import find_raws, read_raw
from n2n_raw.io.images import _sort_key, list_images, read_rgb
from n2n_raw.io.sidd import FrameSet, find_frames, frame_cfa, read_frame
from n2n_raw.io.store import StoreWriter
from n2n_raw.method import cfa_check

__all__ = ["prepare_dng", "prepare_sidd", "prepare_srgb"]

MAX_WORKERS = 8  # prepare_dng: decoded frames in flight stay bounded (a 16 MP frame is 64 MB)


def _ordered_map(fn: Callable, items: list, workers: int) -> Iterator:
    """``map(fn, items)`` in order, with at most ``workers`` calls running ahead (bounded memory)."""
    if workers <= 1:
        for it in items:
            yield fn(it)
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as ex:
        source = iter(items)
        pending = collections.deque(ex.submit(fn, it) for it in itertools.islice(source, workers))
        try:
            while pending:
                result = pending.popleft().result()
                nxt = next(source, _END)
                if nxt is not _END:
                    pending.append(ex.submit(fn, nxt))
                yield result
        finally:
            for fut in pending:
                fut.cancel()


_END = object()


def prepare_sidd(root, out, *, with_gt: bool = False, workers: int | None = None, force: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> dict:
    """Convert a SIDD-Medium raw folder into the training store (``n2n-raw prepare sidd``).

    For every frame set from :func:`find_frames`: the NOISY frame (float32 (H, W) in [0, 1], MATLAB
    orientation; and its GT with ``with_gt``) goes to a raw :class:`~n2n_raw.io.store.StoreWriter` item with
    attrs ``cfa``, ``cfa_source``, ``phone``, ``iso``, ``scene``, ``source`` (path relative to ``root``).
    The CFA comes from the METADATA file (phone hint from the scene name); without a METADATA file, from the
    phone in the scene name. Frames are read by ``workers`` threads (default min(4, CPUs)) a few at a time
    and written in order, so memory stays at a few frames. With ``with_gt``, frames without a GT file are
    skipped. ``progress(done, total)`` is called after each frame. Prints nothing.
    Returns {"frames": written, "skipped": skipped, "seconds": elapsed}.
    """
    t0 = time.perf_counter()
    root = Path(root)
    sets = find_frames(root)
    jobs = [s for s in sets if s.gt is not None or not with_gt]
    skipped = len(sets) - len(jobs)
    if not jobs:
        raise InputError(f"{root}: no NOISY frame has a GT file beside it (needed by --with-gt)")
    if workers is None:
        workers = min(4, os.cpu_count() or 1)

    def rel(p: Path) -> str:
        try:
            return p.relative_to(root).as_posix()
        except ValueError:
            return p.as_posix()

    def load(fs: FrameSet):
        noisy = read_frame(fs.noisy)
        if noisy.shape[0] % 2 or noisy.shape[1] % 2:
            raise InputError(f"{fs.noisy}: mosaic of {noisy.shape[0]}x{noisy.shape[1]}; raw mosaics need even "
                             f"sizes")
        gt = None
        if with_gt:
            gt = read_frame(fs.gt)
            if gt.shape != noisy.shape:
                raise InputError(f"{fs.gt}: shape {gt.shape} differs from its noisy frame's {noisy.shape}")
        info = frame_cfa(fs)
        return fs, noisy, gt, info

    total = len(jobs)
    done = 0
    with StoreWriter(out, "raw", force=force, sources=[rel(s.noisy) for s in jobs]) as writer:
        for fs, noisy, gt, info in _ordered_map(load, jobs, int(workers)):
            cfa_check.cfa_phase_check(noisy, info["cfa"])
            writer.add(noisy, gt=gt, scene=fs.scene, source=rel(fs.noisy), **info)
            done += 1
            if progress is not None:
                progress(done, total)
    return {"frames": done, "skipped": skipped, "seconds": time.perf_counter() - t0}


def prepare_dng(root: str | os.PathLike, out: str | os.PathLike, *, workers: int | None = None,
                force: bool = False, progress: Callable[[int, int], None] | None = None) -> dict:
    """Read every camera raw file (DNG, NEF, CR2, ...; see :func:`n2n_raw.io.camera_raw.find_raws`) under ``root`` into a raw training store (``n2n_raw.io.store``) at ``out``.

    Each readable file becomes one item: float32 (H, W) mosaic in [0, 1] with attrs ``cfa``, ``source``
    (path relative to ``root``, POSIX style) and ``bits``; the store's ``sources`` lists those paths.
    Files are decoded by a small thread pool (``workers``, default min(4, CPUs), at most
    ``MAX_WORKERS`` = 8; :func:`_ordered_map`) and consumed in order, with at most ``workers + 1`` frames in
    memory. Every frame goes through
    :func:`n2n_raw.method.cfa_check.cfa_phase_check`; a mismatch is a warning naming the file.

    Args:
        progress: called as ``progress(done, total)`` after each file (read or skipped).
    Returns:
        ``{"frames": n, "skipped": k, "seconds": t, "errors": [one-line message per skipped file]}``.
    Raises:
        InputError: no raw file under ``root``, none readable, or ``out`` exists without ``force``.
    """
    t0 = time.perf_counter()
    root = Path(root)
    files = find_raws(root)
    base = root if root.is_dir() else root.parent
    workers = max(1, min(4, os.cpu_count() or 1) if workers is None else min(int(workers), MAX_WORKERS))
    sources: list[str] = []
    errors: list[str] = []

    def load(p: Path):
        try:
            return read_raw(p, clip=False)  # unclipped: noise below black is kept, dark means unbiased
        except InputError as e:
            return e

    with StoreWriter(out, "raw", force=force, sources=sources) as store:
        for done, (p, result) in enumerate(zip(files, _ordered_map(load, files, workers)), 1):
            if isinstance(result, InputError):
                errors.append(str(result))
            else:
                rel = p.relative_to(base).as_posix()
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    cfa_check.cfa_phase_check(result.mosaic, result.cfa)
                for wmsg in caught:
                    warnings.warn(f"{p}: {wmsg.message}", stacklevel=2)
                store.add(result.mosaic, cfa=result.cfa, source=rel, bits=result.bits)
                sources.append(rel)
            del result  # the next frame is decoded while this one is no longer held
            if progress is not None:
                progress(done, len(files))
        if not sources:
            first = f" (first error: {errors[0]})" if errors else ""
            raise InputError(f"{root}: none of the {len(files)} raw files could be read{first}")
    return {"frames": len(sources), "skipped": len(errors), "seconds": time.perf_counter() - t0,
            "errors": errors}


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
