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

``--cli`` times instead, for the first size, what a user waits for against the floor, each case in a fresh
process of its own (as the command is; none holds another's memory), the cases in turn ``--repeats`` times:
``n2n-raw denoise`` of a ``.npy`` RGGB mosaic (interpreter start, imports, checkpoint, reading, packing, the
pass, writing: the whole command; with its default engine, and with ``--engine torch``), one bare forward
pass of the same architecture and weights in channels-last layout (input packed, padded and in memory; after
a small warm-up pass), the same with an NCHW input (what the command passed before), and ONNX Runtime's CPU
inference of the same graph (exported as ``n2n-raw export`` does), with its largest difference from PyTorch.
Targets: the command ≤ 1.15× the bare channels-last forward; ONNX Runtime is worth offering as the CPU engine
only if ≥ 1.1× faster than PyTorch and within 1e-4 of it.

    python benchmarks/denoise_speed.py --cli --sizes 4000x3000 --repeats 2
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
from n2n_raw.inference import tiling  # noqa: E402
from n2n_raw.method import bayer
from n2n_raw.accel import place_model  # noqa: E402
from n2n_raw.evaluation.metrics import MEGAPIXEL  # noqa: E402
from n2n_raw.method.unet import UNet  # noqa: E402


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
    ap.add_argument("--cli", action="store_true", help="the CLI's whole denoise against a bare channels-last "
                    "forward, and ONNX Runtime against PyTorch (see above)")
    ap.add_argument("--bare", choices=("channels-last", "nchw", "onnxruntime"), help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.bare:
        return bare_case(args)
    if args.cli:
        return cli_case(args, device)
    torch.manual_seed(0)
    model = place_model(UNet(4, 4).eval(), device)
    print(f"commit {git_rev(ROOT)}; device {device_name(device)}; torch {torch.__version__}; fp32; raw U-Net "
          f"(random init), RGGB mosaic, rggb mode; memory at hand {tiling.available_memory(device) / 1e9:.1f} GB")
    tiling.forward_padded(model, torch.rand(1, 4, 64, 64, device=device), "fp32")  # warm-up (oneDNN/cuDNN)
    print(f"{'mosaic':>11} {'MP':>5} {'case':<8} {'s':>7} {'× untiled':>9} {'peak GB':>8} {'est. GB':>8}  plan")
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.lower().split("x"))
        mosaic = np.random.default_rng(0).random((h, w), dtype=np.float32) * 0.5 + 0.1
        packed, _ = bayer.to_packed(torch.from_numpy(mosaic), "RGGB", "rggb")
        x = packed[None].to(device)
        plans: list = []
        # partial binds the arrays now (a lambda would look them up after the `del` below)
        cases = [("untiled", partial(tiling.forward_padded, model, x, "fp32"), None),
                 ("auto", partial(tiling.denoise_mosaic, model, mosaic, "RGGB", "rggb", device=device,
                                  precision="fp32", log=plans.append), None)]
        if not args.skip_forced:
            budget = int(args.budget_gb * 1e9)
            cases.append(("forced", partial(tiling.denoise_mosaic, model, mosaic, "RGGB", "rggb", device=device,
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
                est = f"{tiling.plan_tiles(model, tuple(packed.shape), device, budget=1 << 62).peak_bytes / 1e9:8.2f}"
                text = "one forward pass of the packed input"
            spread = f" ({min(times):.1f}-{max(times):.1f} s)" if len(times) > 1 else ""
            print(f"{w:>5}×{h:<5} {w * h / MEGAPIXEL:5.1f} {name:<8} {dt:7.1f} {dt / floor:9.2f} {peak / 1e9:8.2f} "
                  f"{est}  {text}{spread}", flush=True)
        del x, packed, mosaic, cases  # free this size's arrays before the next
    if device.type == "cpu":
        print(f"ru_maxrss of the whole run: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


def _packed_input(mosaic: np.ndarray) -> torch.Tensor:
    """The U-Net's input for a mosaic: packed (RGGB), padded to the 32-grid as n2n_raw.inference.tiling pads it."""
    packed, _ = bayer.to_packed(torch.from_numpy(mosaic), "RGGB", "rggb")
    ph, pw = packed.shape[-2:]
    return tiling.pad_reflect(packed[None], -(-ph // 32) * 32, -(-pw // 32) * 32)


def bare_case(args) -> None:
    """``--bare CASE --work DIR`` (run by ``--cli`` as a child process): one forward pass of the work folder's
    mosaic, after a small warm-up pass; prints the seconds and saves the output beside the mosaic."""
    from n2n_raw.checkpoint import load_model
    from n2n_raw.inference.onnx_engine import cpu_copy, write_onnx
    work = Path(args.work)
    base, _ = load_model(work / "run")
    x = _packed_input(np.load(work / "mosaic.npy"))
    if args.bare == "onnxruntime":
        import onnxruntime as ort
        write_onnx(cpu_copy(base), 4, work / "model.onnx")
        sess = ort.InferenceSession(str(work / "model.onnx"), providers=["CPUExecutionProvider"])
        run = lambda t: sess.run(None, {"input": t.numpy()})[0]  # noqa: E731
    else:
        model = place_model(base, torch.device("cpu"))
        layout = torch.channels_last if args.bare == "channels-last" else torch.contiguous_format

        def run(t):
            with torch.no_grad():
                return model(t.contiguous(memory_format=layout)).numpy()
    run(x[..., :64, :64].contiguous())  # warm-up: kernels chosen, threads started
    x = x.contiguous(memory_format=torch.channels_last) if args.bare == "channels-last" else x.contiguous()
    t0 = time.perf_counter()
    y = run(x)
    print(f"seconds {time.perf_counter() - t0:.3f}")
    np.save(work / f"out-{args.bare}.npy", np.ascontiguousarray(y))


def cli_case(args, device: torch.device) -> None:
    """``--cli``: the command's whole run against the floor (see the module docstring). Every case runs in a
    child process of its own (a fresh process, as the command is, and none holds another's memory)."""
    import subprocess
    import tempfile

    import onnxruntime as ort
    from n2n_raw.checkpoint import save_checkpoint
    w, h = (int(v) for v in args.sizes.split(",")[0].lower().split("x"))
    work = Path(tempfile.mkdtemp(prefix="denoise_speed_"))
    torch.manual_seed(0)  # timing does not depend on the weights: a random-init raw run stands for a trained one
    save_checkpoint(work / "run", 1, UNet(4, 4), None, {"mode": "raw", "target": "n2n", "cfa_mode": "rggb",
                                                        "config": {}, "metrics": {}})
    mosaic = np.random.default_rng(0).random((h, w), dtype=np.float32) * 0.5 + 0.1
    np.save(work / "mosaic.npy", mosaic)
    shape = tuple(_packed_input(mosaic).shape)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "n2n_raw.cli", "denoise", "--checkpoint", str(work / "run"),
               str(work / "mosaic.npy"), "--cfa", "RGGB", "--out", str(work / "out"), "--force", "--device", "cpu"]
    print(f"commit {git_rev(ROOT)}; {device_name(torch.device('cpu'))}; torch {torch.__version__}; onnxruntime "
          f"{ort.__version__}; fp32; {w}×{h} RGGB mosaic ({w * h / MEGAPIXEL:.1f} MP), packed and padded {shape}; "
          f"random-init raw U-Net; every case a fresh process")

    def child(cmd) -> tuple[float, str]:
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=work)
        if r.returncode:
            raise SystemExit(r.stderr)
        return time.perf_counter() - t0, r.stdout

    def bare(case):
        _, out = child([sys.executable, str(Path(__file__).resolve()), "--bare", case, "--work", str(work)])
        return float(out.split("seconds")[-1])

    cases = [("cli (whole command)", lambda: child(command)[0]),
             ("cli --engine torch", lambda: child(command + ["--engine", "torch"])[0]),
             ("bare forward, channels-last", lambda: bare("channels-last")),
             ("bare forward, NCHW", lambda: bare("nchw")),
             ("bare forward, onnxruntime", lambda: bare("onnxruntime"))]
    times: dict[str, list[float]] = {name: [] for name, _ in cases}
    for r in range(args.repeats):
        for name, fn in cases:
            times[name].append(fn())
            print(f"  run {r + 1} {name:<28} {times[name][-1]:7.1f} s", flush=True)
    floor_name = "bare forward, channels-last"
    ratios = {name: [t / f for t, f in zip(times[name], times[floor_name])] for name, _ in cases}
    print(f"{'case':<28} {'s (median)':>10} {'× bare CL':>9}  {'range':>13}  × bare CL per round")
    for name, _ in cases:
        t = times[name]
        print(f"{name:<28} {np.median(t):10.1f} {np.median(ratios[name]):9.2f}  {min(t):5.1f}-{max(t):5.1f} s  "
              + ", ".join(f"{v:.2f}" for v in ratios[name]))
    diff = float(np.abs(np.load(work / "out-onnxruntime.npy") - np.load(work / "out-channels-last.npy")).max())
    speed = np.median([a / b for a, b in zip(times[floor_name], times["bare forward, onnxruntime"])])
    print(f"onnxruntime vs PyTorch (channels-last), bare forward: {speed:.2f}× faster (median of rounds), "
          f"max |Δ| {diff:.2e}")

if __name__ == "__main__":
    main()
