"""Throughput: training steps/s and crops/s, achieved TFLOP/s, peak memory; inference MP/s; prepare images/s.

n2n-raw is timed through its real training loop (``train``: data path, compiled step, fused optimiser,
logging, with the per-device defaults of ``n2n_raw/accel.py`` unless overridden), against a plain fp32 eager
implementation of the same step written the way the reference does it (boolean-mask sub-sampling with
data-dependent shapes, a fresh mask generator per call, noise from torch.normal, host crops), at the same
batch and patch size, on the same machine and in one run.

    python benchmarks/throughput.py                       # CPU: batch 4, sRGB patch 128 and raw patch 256
    python benchmarks/throughput.py --device cuda --batches 4,64,256 --patch 256 --steps 30 --warmup 20
    python benchmarks/throughput.py --device cuda --compile off --cuda-graphs off ...   # ablations
    python benchmarks/throughput.py --submit-full         # + submit-sidd on a full 40×32 block file

FLOP cost model (neighbor2neighbor.md): sRGB 256×256 crop = 38.9 GFLOP no-grad full pass + ≈29 GFLOP
forward+backward on the half-size sub-image ≈ 68 GFLOP; it scales with the patch area. Raw 4×128×128 ≈ 17.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import device_name, git_rev  # noqa: E402  (benchmarks/common.py, beside this script)
from n2n_raw.accel import place_model  # noqa: E402
from n2n_raw.training.batches import make_batch  # noqa: E402
from n2n_raw.training.sources import RawSource, SrgbSource, default_raw_items  # noqa: E402
from n2n_raw.inference.tiling import run_batched  # noqa: E402
from n2n_raw.evaluation.metrics import MEGAPIXEL  # noqa: E402
from n2n_raw.sim.dead_leaves import dead_leaves_set  # noqa: E402
from n2n_raw.method.unet import UNet  # noqa: E402

GFLOP_PER_CROP = {"srgb": 68.0 / (256 * 256), "raw": 17.0 / (256 * 256)}  # per input pixel of the crop
PEAK_TFLOPS = {"H100": 800.0, "H200": 800.0}


# ----------------------------------------------------------------------------- the plain eager baseline

def _plain_masks(n, h, w, seed, device):
    """Boolean masks the way the reference builds them: one per sub-image, data-dependent indexing."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    idx_pairs = torch.tensor([[0, 1], [0, 2], [1, 3], [2, 3], [1, 0], [2, 0], [3, 1], [3, 2]])
    rd = torch.randint(0, 8, (n * h // 2 * w // 2,), generator=g)
    pair = idx_pairs[rd]
    base = torch.arange(n * h // 2 * w // 2) * 4
    m1 = torch.zeros(n * h // 2 * w // 2 * 4, dtype=torch.bool)
    m2 = torch.zeros_like(m1)
    m1[base + pair[:, 0]] = True
    m2[base + pair[:, 1]] = True
    return m1.to(device), m2.to(device)


def _plain_sub(img, mask):
    n, c, h, w = img.shape
    out = torch.zeros(n, c, h // 2, w // 2, dtype=img.dtype, device=img.device)
    for i in range(c):
        cells = torch.nn.functional.unfold(img[:, i:i + 1], kernel_size=2, stride=2)  # (n, 4, L)
        cells = cells.permute(0, 2, 1).reshape(-1)
        out[:, i] = cells[mask].reshape(n, h // 2, w // 2)
    return out


def plain_step(model, opt, clean, noisy_fn, step, gamma=1.0):
    noisy = noisy_fn(clean)
    m1, m2 = _plain_masks(noisy.shape[0], noisy.shape[2], noisy.shape[3], step, noisy.device)
    g1, g2 = _plain_sub(noisy, m1), _plain_sub(noisy, m2)
    with torch.no_grad():
        fy = model(noisy)
    fg1, fg2 = _plain_sub(fy, m1), _plain_sub(fy, m2)
    out = model(g1)
    diff = out - g2
    loss = torch.mean(diff ** 2) + gamma * torch.mean((diff - (fg1 - fg2)) ** 2)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


# ----------------------------------------------------------------------------- measurements

def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_mem_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_plain(mode, batch, patch, device, steps, warmup):
    """The plain fp32 eager step (module docstring) on the host data path."""
    torch.manual_seed(0)
    ch = 3 if mode == "srgb" else 4
    model = UNet(ch, ch).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    if mode == "srgb":
        src = SrgbSource.from_images(dead_leaves_set(16, patch, patch, seed=1), [str(i) for i in range(16)], patch)
        add_noise = lambda c: c + torch.normal(0.0, 25 / 255, size=c.shape, device=c.device)  # noqa: E731
    else:
        src = RawSource(default_raw_items(count=4, size=(patch + 64, patch + 64)), patch)
        add_noise = lambda c: c  # noqa: E731
    for s in range(warmup):
        plain_step(model, opt, make_batch(src, s, batch, 0, None).to(device), add_noise, s)
    sync(device)
    t0 = time.perf_counter()
    for s in range(steps):
        plain_step(model, opt, make_batch(src, warmup + s, batch, 0, None).to(device), add_noise, warmup + s)
    sync(device)
    return steps / (time.perf_counter() - t0)


def bench_ours(mode, batch, patch, device, steps, warmup, opts):
    """n2n-raw's real training loop (``train``: data path, compiled step, optimiser, logging) on its built-in
    data. Timed from its own metrics: the last ``steps`` steps, after at least ``warmup`` steps (compilation
    and CUDA-graph recording happen there)."""
    from n2n_raw.config import TrainConfig
    from n2n_raw.training.loop import train
    rounds = 1 + -(-warmup // steps)  # warm-up rounded up to whole logging intervals, then one timed one
    cfg = TrainConfig(mode=mode, steps=steps * rounds, epochs=1, batch_size=batch, patch_size=patch,
                      device=device.type, val_every=0, pictures=False, log_every=steps, default_data_size=64, **opts)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory() as td:
        said = []
        with contextlib.redirect_stderr(io.StringIO()):  # the loop's progress line
            train(cfg, Path(td) / "run", log=said.append)
        rows = list(csv.DictReader(open(Path(td) / "run" / "metrics.csv")))
    for line in said:
        if line.startswith("warning"):
            print(line, flush=True)
    return float(rows[-1]["crops_per_s"]) / batch, said[0].split("; ")[-1]


def bench_train(mode, batch, patch, device, steps, warmup, opts, variant):
    if variant == "plain":
        steps_s, how = bench_plain(mode, batch, patch, device, steps, warmup), "fp32 eager, host crops"
    else:
        steps_s, how = bench_ours(mode, batch, patch, device, steps, warmup, opts)
    crops = batch * steps_s
    side = patch // 2 if mode == "raw" else patch  # raw patch is mosaic pixels; cost model per packed 128²
    gflop = GFLOP_PER_CROP[mode] * (patch * patch if mode == "srgb" else (2 * side) ** 2)
    return {"steps_s": steps_s, "crops_s": crops, "tflops": crops * gflop / 1e3, "mem_mb": peak_mem_mb(device),
            "how": how}


def bench_infer(device, precision, n_blocks=64):
    model = place_model(UNet(4, 4), device).eval()  # as evaluate/denoise/submit-sidd place it
    x = torch.rand(n_blocks, 4, 128, 128)
    run_batched(model, x[:8], 32, device, precision)
    sync(device)
    t0 = time.perf_counter()
    run_batched(model, x, 32, device, precision)
    sync(device)
    dt = time.perf_counter() - t0
    mp = n_blocks * 256 * 256 / MEGAPIXEL
    return {"mp_s": mp / dt, "s_per_mp": dt / mp, "sidd_1280_blocks_s": dt / n_blocks * 1280}


def bench_submit(device, precision, cfa_mode="rggb"):
    """The real ``submit-sidd`` path on a full-size 40×32 synthetic block file (untrained raw U-Net): the
    denoising time it reports (after a warm-up on CUDA) and the wall time of the whole call."""
    from n2n_raw import checkpoint as ckpt
    from n2n_raw.sim.sidd_world import make_sidd_world
    from n2n_raw.jobs.submit import submit
    with tempfile.TemporaryDirectory() as td:
        world = make_sidd_world(Path(td) / "w", scenes_per_phone=0, n_images=40, blocks_per_image=32,
                                frame_size=(512, 640))
        path = ckpt.save_checkpoint(Path(td), 0, UNet(4, 4), None, {"mode": "raw", "cfa_mode": cfa_mode})
        t0 = time.perf_counter()
        r = submit(path, world["bench_noisy"], Path(td) / "SubmitRaw.mat", device=device.type, precision=precision,
                   warn=lambda s: None)
        return {"blocks": r["blocks"], "denoise_s": r["seconds"], "call_s": time.perf_counter() - t0}


def bench_prepare(n=48):
    from PIL import Image
    from n2n_raw.jobs.prepare import prepare_srgb
    with tempfile.TemporaryDirectory() as td:
        rng = np.random.default_rng(0)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(Path(td) / f"{i}.jpg", quality=95)
        c = prepare_srgb(td, Path(td) / "out.h5", workers=1)
    return {"images_s": c["images_per_s"], "kept": c["kept"]}


PAPER_CROPS = 1_108_200 * 4  # the paper's schedule: 1,108,200 steps of batch 4


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", default="4")
    ap.add_argument("--patch", type=int, default=128, help="sRGB patch (raw uses twice this in mosaic pixels)")
    ap.add_argument("--modes", default="srgb,raw")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation, CUDA graphs)")
    ap.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    ap.add_argument("--compile", default="auto", choices=("auto", "on", "off"))
    ap.add_argument("--cuda-graphs", default="auto", choices=("auto", "on", "off"))
    ap.add_argument("--data-on-device", default="auto", choices=("auto", "on", "pinned", "off"))
    ap.add_argument("--repeats", type=int, default=1, help="alternate n2n-raw and plain this many times; "
                    "print the median (steps/s) of each")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--skip-extras", action="store_true", help="no inference or prepare timing")
    ap.add_argument("--submit-full", action="store_true",
                    help="also time submit-sidd on a full 40×32 block file (≈ 4 min on 2 CPU cores)")
    args = ap.parse_args()
    device = torch.device(args.device)
    opts = {"precision": args.precision, "compile": args.compile, "cuda_graphs": args.cuda_graphs,
            "data_on_device": args.data_on_device}
    name = device_name(device)
    print(f"commit {git_rev(ROOT)}; device {name}; torch {torch.__version__}; options {opts}")
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    print(f"{'mode':<5} {'variant':<8} {'batch':>5} {'patch':>5} {'steps/s':>8} {'crops/s':>8} {'TFLOP/s':>8} "
          f"{'of peak':>7} {'peak MB':>8}  how")
    best: dict = {}
    for mode in args.modes.split(","):
        patch = args.patch if mode == "srgb" else 2 * args.patch
        for b in (int(v) for v in args.batches.split(",")):
            variants = ("n2n-raw",) if args.skip_baseline else ("n2n-raw", "plain")
            runs: dict = {v: [] for v in variants}
            for _ in range(args.repeats):  # alternate, so a drift in the machine's speed hits both alike
                for variant in variants:
                    runs[variant].append(bench_train(mode, b, patch, device, args.steps, args.warmup, opts, variant))
            for variant, rs in runs.items():
                r = sorted(rs, key=lambda x: x["steps_s"])[len(rs) // 2]  # the median run
                frac = f"{100 * r['tflops'] / peak:.1f}%" if peak else "-"
                spread = f" (runs {min(x['steps_s'] for x in rs):.2f}–{max(x['steps_s'] for x in rs):.2f})" if len(rs) > 1 else ""
                print(f"{mode:<5} {variant:<8} {b:>5} {patch:>5} {r['steps_s']:>8.2f} {r['crops_s']:>8.1f} "
                      f"{r['tflops']:>8.3f} {frac:>7} {r['mem_mb']:>8.0f}  {r['how']}{spread}", flush=True)
                if variant == "n2n-raw" and r["crops_s"] > best.get(mode, (0, 0))[1]:
                    best[mode] = (b, r["crops_s"])
    for mode, (b, crops) in best.items():
        extra = ""
        if mode == "srgb":  # the paper's schedule is in 256² crops; scale by the cost model if patch differs
            per = crops * (args.patch / 256) ** 2
            extra = f"; the paper's schedule ({PAPER_CROPS:,} crops of 256²) ≈ {PAPER_CROPS / per / 60:.1f} min"
        print(f"fastest {mode}: batch {b}, {crops:.1f} crops/s{extra}")
    if args.submit_full:
        r = bench_submit(device, args.precision)
        print(f"submit-sidd, {r['blocks']} blocks (40×32, rggb): denoising {r['denoise_s']:.2f} s, "
              f"whole call (read, denoise, write SubmitRaw.mat, verify) {r['call_s']:.1f} s")
    if args.skip_extras:
        return
    r = bench_infer(device, args.precision)
    print(f"inference (raw 4×128×128 blocks, batch 32): {r['mp_s']:.2f} MP/s, {r['s_per_mp']:.3f} s/MP, "
          f"1280 SIDD blocks ≈ {r['sidd_1280_blocks_s']:.1f} s")
    r = bench_prepare()
    print(f"prepare srgb (48 JPEGs 400×300, 1 worker): {r['images_s']:.1f} images/s")


if __name__ == "__main__":
    main()
