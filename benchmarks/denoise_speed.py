"""Full-frame denoising: the ``denoise_mosaic`` path (memory-planned tiling) against one untiled pass.

For each synthetic Bayer mosaic size (RGGB, ``rggb`` mode, a random-init raw U-Net, fp32) this times, in one
process and back to back:

- ``untiled``: one forward pass of the packed (4, H/2, W/2) input, padded to the 32-grid (the floor);
- ``auto``: ``denoise_mosaic`` with ``--tile auto``'s plan (packing, planning, passes, unpacking);
- ``forced``: ``denoise_mosaic`` with a small injected memory budget (``--budget-gb``), to show the overhead
  of tiling when memory does require it.

(``--repeats``: in turn, several times) and prints the ratio to the untiled pass (target for ``auto``: <= 1.25) and the peak memory of each case:
on CPU the resident set sampled every 5 ms above the case's starting point (``ru_maxrss`` only grows, so it
is printed once at the end as a cross-check), on CUDA ``torch.cuda.max_memory_allocated``. The plan's
estimated peak is printed beside it.

    python benchmarks/denoise_speed.py                                  # CPU, 12 MP and 24 MP
    python benchmarks/denoise_speed.py --device cuda --sizes 4000x3000,6000x4000,8000x6000
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import device_name, git_rev  # noqa: E402  (benchmarks/common.py, beside this script)
from n2n_raw import bayer, infer  # noqa: E402
from n2n_raw.accel import place_model  # noqa: E402
from n2n_raw.metrics import MEGAPIXEL  # noqa: E402
from n2n_raw.unet import UNet  # noqa: E402


class PeakRSS:
    """Peak resident set size of this process while in the ``with`` block, sampled from /proc/self/statm."""

    def __init__(self, every: float = 0.005):
        self.every, self.page = every, os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _poll(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.every)

    def __enter__(self):
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        self.above = self.peak - self.start


def measure(fn, device: torch.device) -> tuple[float, int]:
    """(seconds, peak bytes above the starting point) of ``fn()``."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize(device)
        return time.perf_counter() - t0, torch.cuda.max_memory_allocated(device) - base
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
    return dt, mem.above


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="4000x3000,6000x4000", help="mosaic W×H, comma-separated (MP: 2^20 pixels)")
    ap.add_argument("--budget-gb", type=float, default=2.0, help="memory budget of the forced-tiling case")
    ap.add_argument("--skip-forced", action="store_true")
    ap.add_argument("--repeats", type=int, default=1, help="run the cases in turn this many times; the table "
                    "gives the median time (a shared machine drifts) and the range")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = place_model(UNet(4, 4).eval(), device)
    print(f"commit {git_rev(ROOT)}; device {device_name(device)}; torch {torch.__version__}; fp32; raw U-Net "
          f"(random init), RGGB mosaic, rggb mode; memory at hand {infer.available_memory(device) / 1e9:.1f} GB")
    infer.forward_padded(model, torch.rand(1, 4, 64, 64, device=device), "fp32")  # warm-up (oneDNN/cuDNN)
    print(f"{'mosaic':>11} {'MP':>5} {'case':<8} {'s':>7} {'× untiled':>9} {'peak GB':>8} {'est. GB':>8}  plan")
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.lower().split("x"))
        mosaic = np.random.default_rng(0).random((h, w), dtype=np.float32) * 0.5 + 0.1
        packed, _ = bayer.to_packed(torch.from_numpy(mosaic), "RGGB", "rggb")
        x = packed[None].to(device)
        plans: list = []
        # partial binds the arrays now (a lambda would look them up after the `del` below)
        cases = [("untiled", partial(infer.forward_padded, model, x, "fp32"), None),
                 ("auto", partial(infer.denoise_mosaic, model, mosaic, "RGGB", "rggb", device=device,
                                  precision="fp32", log=plans.append), None)]
        if not args.skip_forced:
            budget = int(args.budget_gb * 1e9)
            cases.append(("forced", partial(infer.denoise_mosaic, model, mosaic, "RGGB", "rggb", device=device,
                                            precision="fp32", budget=budget, log=plans.append), budget))
        runs: dict[str, list] = {name: [] for name, _, _ in cases}
        for r in range(args.repeats):
            for name, fn, _ in cases:
                n_plans = len(plans)
                dt, peak = measure(fn, device)
                runs[name].append((dt, peak, plans[-1] if len(plans) > n_plans else None))
                if args.repeats > 1:
                    print(f"  run {r + 1} {name:<8} {dt:7.1f} s", flush=True)
        floor = float(np.median([dt for dt, _, _ in runs["untiled"]]))
        for name, _, _ in cases:
            times = [dt for dt, _, _ in runs[name]]
            dt, peak, plan = float(np.median(times)), max(p for _, p, _ in runs[name]), runs[name][-1][2]
            if plan is not None:
                est, text = f"{plan.peak_bytes / 1e9:8.2f}", plan.describe(scale=2)
            else:
                est = f"{infer.plan_tiles(model, tuple(packed.shape), device, budget=1 << 62).peak_bytes / 1e9:8.2f}"
                text = "one forward pass of the packed input"
            spread = f" ({min(times):.1f}-{max(times):.1f} s)" if len(times) > 1 else ""
            print(f"{w:>5}×{h:<5} {w * h / MEGAPIXEL:5.1f} {name:<8} {dt:7.1f} {dt / floor:9.2f} {peak / 1e9:8.2f} "
                  f"{est}  {text}{spread}", flush=True)
        del x, packed, mosaic, cases  # free this size's arrays before the next
    if device.type == "cpu":
        print(f"ru_maxrss of the whole run: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
