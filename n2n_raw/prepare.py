"""``n2n-raw prepare sidd``: a SIDD-Medium raw folder into the training store (thread pool, progress, CFA
phase check). The file formats are read through :mod:`n2n_raw.io.sidd`."""
from __future__ import annotations

import collections
import concurrent.futures
import itertools
import os
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from . import bayer
from .errors import InputError
from .io.sidd import PHONE_CFA, FrameSet, find_frames, parse_scene_name, read_frame, read_metadata
from .io.sidd.names import _phone_of_scene
from .io.store import StoreWriter

__all__ = ["prepare_sidd"]


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


def _phase_check(mosaic: np.ndarray, cfa: str) -> None:
    bayer.cfa_phase_check(mosaic, cfa)


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
        hint = _phone_of_scene(fs.scene)
        if fs.meta is not None:
            meta = read_metadata(fs.meta, phone_hint=hint)
            info = {"cfa": meta.cfa, "cfa_source": meta.cfa_source, "phone": meta.phone, "iso": meta.iso}
        elif hint in PHONE_CFA:
            info = {"cfa": PHONE_CFA[hint], "cfa_source": "phone table", "phone": hint, "iso": None}
        else:
            raise InputError(f"{fs.noisy}: no METADATA file beside it and no SIDD phone in the folder name; "
                             f"cannot tell its CFA")
        if info["iso"] is None:
            try:
                info["iso"] = parse_scene_name(fs.scene)["iso"]
            except InputError:
                pass
        return fs, noisy, gt, info

    total = len(jobs)
    done = 0
    with StoreWriter(out, "raw", force=force, sources=[rel(s.noisy) for s in jobs]) as writer:
        for fs, noisy, gt, info in _ordered_map(load, jobs, int(workers)):
            _phase_check(noisy, info["cfa"])
            writer.add(noisy, gt=gt, scene=fs.scene, source=rel(fs.noisy), **info)
            done += 1
            if progress is not None:
                progress(done, total)
    return {"frames": done, "skipped": skipped, "seconds": time.perf_counter() - t0}
