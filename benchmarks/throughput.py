"""Throughput: training steps/s and crops/s, achieved TFLOP/s, peak memory; inference MP/s; prepare images/s.

Compares n2n-raw's training step with a plain fp32 eager implementation of the same step written the way
the reference does it (boolean-mask sub-sampling with data-dependent shapes, a fresh mask generator per
call, noise from torch.normal), at the same batch and patch size, on the same machine and in one run.

    python benchmarks/throughput.py                       # CPU: batch 4, sRGB patch 128 and raw patch 256
    python benchmarks/throughput.py --device cuda --batches 4,32,128 --patch 256

FLOP cost model (neighbor2neighbor.md): sRGB 256×256 crop = 38.9 GFLOP no-grad full pass + ≈29 GFLOP
forward+backward on the half-size sub-image ≈ 68 GFLOP; it scales with the patch area. Raw 4×128×128 ≈ 17.
"""
from __future__ import annotations

import argparse
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from n2n_raw.data import RawSource, SrgbSource, default_raw_items, make_batch  # noqa: E402
from n2n_raw.infer import run_batched  # noqa: E402
from n2n_raw.loss import n2n_loss  # noqa: E402
from n2n_raw.noise import make_noise  # noqa: E402
from n2n_raw.subsample import draw_masks  # noqa: E402
from n2n_raw.synthetic import dead_leaves_set  # noqa: E402
from n2n_raw.unet import UNet  # noqa: E402

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


def bench_train(mode, batch, patch, device, steps, warmup, precision, variant):
    torch.manual_seed(0)
    ch = 3 if mode == "srgb" else 4
    model = UNet(ch, ch).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    if mode == "srgb":
        src = SrgbSource(dead_leaves_set(16, patch, patch, seed=1), [str(i) for i in range(16)], patch)
        noise = make_noise("gauss25").to(device)
    else:
        src = RawSource(default_raw_items(count=4, size=(patch + 64, patch + 64)), patch)
        noise = None
    gen = torch.Generator(device=device)
    amp = device.type == "cuda" and precision == "bf16"

    def ours(step):
        x = make_batch(src, step, batch, 0, None).to(device, non_blocking=True)
        gen.manual_seed(step)
        y = noise(x, gen) if noise is not None else x
        masks = draw_masks(batch, y.shape[-2], y.shape[-1], gen)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss, _, _ = n2n_loss(model, y, masks, 1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def plain(step):
        x = make_batch(src, step, batch, 0, None).to(device)
        fn = (lambda c: c + torch.normal(0.0, 25 / 255, size=c.shape, device=c.device)) if noise else (lambda c: c)
        plain_step(model, opt, x, fn, step)

    fn = ours if variant == "n2n-raw" else plain
    for s in range(warmup):
        fn(s)
    sync(device)
    t0 = time.perf_counter()
    for s in range(steps):
        fn(warmup + s)
    sync(device)
    dt = time.perf_counter() - t0
    crops = batch * steps / dt
    side = patch // 2 if mode == "raw" else patch  # raw patch is mosaic pixels; cost model per packed 128²
    gflop = GFLOP_PER_CROP[mode] * (patch * patch if mode == "srgb" else (2 * side) ** 2)
    return {"steps_s": steps / dt, "crops_s": crops, "tflops": crops * gflop / 1e3, "mem_mb": peak_mem_mb(device)}


def bench_infer(device, precision, n_blocks=64):
    model = UNet(4, 4).to(device).eval()
    x = torch.rand(n_blocks, 4, 128, 128)
    run_batched(model, x[:8], 32, device, precision)
    sync(device)
    t0 = time.perf_counter()
    run_batched(model, x, 32, device, precision)
    sync(device)
    dt = time.perf_counter() - t0
    mp = n_blocks * 256 * 256 / 1e6
    return {"mp_s": mp / dt, "s_per_mp": dt / mp, "sidd_1280_blocks_s": dt / n_blocks * 1280}


def bench_prepare(n=48):
    from PIL import Image
    from n2n_raw.io.images import prepare_srgb
    with tempfile.TemporaryDirectory() as td:
        rng = np.random.default_rng(0)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(Path(td) / f"{i}.jpg", quality=95)
        c = prepare_srgb(td, Path(td) / "out.h5", workers=1)
    return {"images_s": c["images_per_s"], "kept": c["kept"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", default="4")
    ap.add_argument("--patch", type=int, default=128, help="sRGB patch (raw uses twice this in mosaic pixels)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args()
    device = torch.device(args.device)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    print(f"commit {commit}; device {name}; torch {torch.__version__}; precision {args.precision if device.type == 'cuda' else 'fp32'}")
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    print(f"{'mode':<5} {'variant':<8} {'batch':>5} {'patch':>5} {'steps/s':>8} {'crops/s':>8} {'TFLOP/s':>8} "
          f"{'of peak':>7} {'peak MB':>8}")
    for mode, patch in (("srgb", args.patch), ("raw", 2 * args.patch)):
        for b in (int(v) for v in args.batches.split(",")):
            for variant in (("n2n-raw",) if args.skip_baseline else ("n2n-raw", "plain")):
                r = bench_train(mode, b, patch, device, args.steps, args.warmup, args.precision, variant)
                frac = f"{100 * r['tflops'] / peak:.1f}%" if peak else "-"
                print(f"{mode:<5} {variant:<8} {b:>5} {patch:>5} {r['steps_s']:>8.2f} {r['crops_s']:>8.1f} "
                      f"{r['tflops']:>8.3f} {frac:>7} {r['mem_mb']:>8.0f}", flush=True)
    r = bench_infer(device, args.precision)
    print(f"inference (raw 4×128×128 blocks, batch 32): {r['mp_s']:.2f} MP/s, {r['s_per_mp']:.3f} s/MP, "
          f"1280 SIDD blocks ≈ {r['sidd_1280_blocks_s']:.1f} s")
    r = bench_prepare()
    print(f"prepare srgb (48 JPEGs 400×300, 1 worker): {r['images_s']:.1f} images/s")


if __name__ == "__main__":
    main()
