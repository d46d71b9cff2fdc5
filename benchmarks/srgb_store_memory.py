"""Bounded host memory when training from a large sRGB store (crops are read from the file per step).

Writes an sRGB store of ``--size-gb`` (default 8) of 512×512 uint8 images in a temporary folder (cheaply: four
dead-leaves pictures cut at different offsets), drops it from the page cache, then trains ``--steps`` steps
(batch 4, patch 256, CPU) from it in a child process and reads the child's peak RSS (``wait4``). For the speed
of the data path it compares, against the same training on a small store of the first ``--small`` images:

- ``small store, host crops``: the same on-demand reads from a file that fits in the page cache;
- ``small store, in memory``: the whole small set in memory (``--data-on-device on``, which on CPU holds it in
  one host tensor): what holding the set in memory buys;

and times the host data path alone (``make_batch``, ms per batch of 4 crops) on the large store against the
same images held in memory (the former in-memory path, ``SrgbSource.from_images``).

    python benchmarks/srgb_store_memory.py                      # 8 GB, 100 steps
    python benchmarks/srgb_store_memory.py --steps 60 --repeats 3  # three rounds in rotated order
    python benchmarks/srgb_store_memory.py --size-gb 1 --steps 20 --keep --dir /data/tmp
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import device_name, git_rev  # noqa: E402  (benchmarks/common.py, beside this script)
from n2n_raw.config import TrainConfig  # noqa: E402
from n2n_raw.training.batches import make_batch  # noqa: E402
from n2n_raw.training.sources import SrgbSource, load_source  # noqa: E402
from n2n_raw.io.store import Store, StoreWriter  # noqa: E402
from n2n_raw.sim.dead_leaves import dead_leaves_set  # noqa: E402

SIDE = 512
MARGIN = 64  # offsets of the cut: 64² × 4 distinct images


def write_store(path: Path, count: int, bases: list[np.ndarray]) -> float:
    """``count`` 512×512 images cut from ``bases`` at offsets that differ per item; returns seconds."""
    t0 = time.perf_counter()
    with StoreWriter(path, "srgb") as w:
        for k in range(count):
            dy, dx = (k * 7) % MARGIN, (k * 13 // 4) % MARGIN
            w.add(np.ascontiguousarray(bases[k % len(bases)][dy:dy + SIDE, dx:dx + SIDE]))
    return time.perf_counter() - t0


def drop_from_page_cache(path: Path) -> None:
    """Ask the kernel to forget the file's cached pages (clean pages; no root needed), so reads are cold."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def train_child(store: Path, run: Path, steps: int, batch: int, patch: int, on_device: str) -> dict:
    """``n2n-raw train`` in a child process: its peak RSS (MB) and steps/s after the first logging interval."""
    every = max(1, steps // 5)
    cmd = [sys.executable, str(ROOT / "cli.py"), "train", "--mode", "srgb", "--data", str(store), "--out", str(run),
           "--steps", str(steps), "--epochs", "1", "--batch-size", str(batch), "--patch-size", str(patch),
           "--device", "cpu", "--log-every", str(every), "--val-every", "0", "--data-on-device", on_device]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(p.pid, 0)
    err = p.stderr.read()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"training failed ({p.returncode}): {err.strip().splitlines()[-1:]}")
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    first, last = rows[0], rows[-1]  # the first interval holds the warm-up
    done = int(last["step"]) - int(first["step"])
    secs = float(last["seconds"]) - float(first["seconds"])
    return {"rss_mb": usage.ru_maxrss / 1024, "steps_s": done / secs if done else float("nan")}


def data_path_ms(source, batches: int, batch: int) -> float:
    make_batch(source, batches, batch, 0, None)  # warm-up (first calls pay for imports and allocations)
    t0 = time.perf_counter()
    for s in range(batches):
        make_batch(source, s, batch, 0, None)
    return (time.perf_counter() - t0) / batches * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gb", type=float, default=8.0, help="Size of the large store (GiB of pixels).")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--patch", type=int, default=256)
    ap.add_argument("--small", type=int, default=256, help="Images in the small store (fits in memory).")
    ap.add_argument("--data-batches", type=int, default=200, help="Batches timed on the data path alone.")
    ap.add_argument("--dir", type=Path, default=None, help="Where the temporary folder goes (default: system temp).")
    ap.add_argument("--keep", action="store_true", help="Keep the stores and runs (prints where).")
    ap.add_argument("--repeats", type=int, default=1, help="Rounds of the three training runs, each round in a "
                    "rotated order (a shared machine drifts, and the first run after the write was always the "
                    "large store); the table gives the median steps/s and the range.")
    a = ap.parse_args()

    print(f"commit {git_rev(ROOT)}; device {device_name(torch.device('cpu'))}; torch {torch.__version__}")
    tmp = Path(tempfile.mkdtemp(prefix="n2n-store-mem-", dir=a.dir))
    try:
        count = math.ceil(a.size_gb * 2**30 / (SIDE * SIDE * 3))
        bases = dead_leaves_set(4, SIDE + MARGIN, SIDE + MARGIN, seed=1)
        big, small = tmp / "big.h5", tmp / "small.h5"
        secs = write_store(big, count, bases)
        gb = big.stat().st_size / 2**30
        print(f"large store: {count} images of {SIDE}×{SIDE}, {gb:.2f} GiB on disk, written in {secs:.0f} s "
              f"({gb / secs:.2f} GiB/s)")
        write_store(small, a.small, bases)
        print(f"small store: the first {a.small} of them, {small.stat().st_size / 2**20:.0f} MiB")

        # The data path alone: cold reads from the large store against the same images in memory.
        drop_from_page_cache(big)
        lazy = load_source(TrainConfig(mode="srgb", data=str(big), patch_size=a.patch).resolved())
        cold = data_path_ms(lazy, a.data_batches, a.batch)
        st = Store(small)
        memory = SrgbSource.from_images([st.read(i) for i in range(len(st))], st.names, a.patch)
        st.close()
        mem = data_path_ms(memory, a.data_batches, a.batch)
        del lazy, memory
        print(f"data path (make_batch, batch {a.batch}, patch {a.patch}, {a.data_batches} batches): large store, "
              f"cold reads {cold:.2f} ms/batch; in memory {mem:.2f} ms/batch")

        runs = [("large store, host crops", big, "off"), ("small store, host crops", small, "off"),
                ("small store, in memory", small, "on")]
        print(f"training: {a.steps} steps, batch {a.batch}, patch {a.patch}, CPU, each in a child process")
        results: dict[str, list] = {label: [] for label, _, _ in runs}
        for r in range(a.repeats):
            for k in range(len(runs)):
                label, store, on_device = runs[(k + r) % len(runs)]
                drop_from_page_cache(big)  # every large-store run reads cold
                res = train_child(store, tmp / f"run{r}-{k}", a.steps, a.batch, a.patch, on_device)
                results[label].append(res)
                print(f"  round {r + 1}: {label:<24} peak RSS {res['rss_mb']:7.0f} MB   {res['steps_s']:.3f} "
                      f"steps/s", flush=True)
        if a.repeats > 1:
            for label, rs in results.items():
                speeds = [x["steps_s"] for x in rs]
                print(f"  {label:<24} peak RSS {max(x['rss_mb'] for x in rs):7.0f} MB   {np.median(speeds):.3f} "
                      f"steps/s (median of {len(rs)}: {min(speeds):.3f}-{max(speeds):.3f})")
    finally:
        if a.keep:
            print(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
