"""Train the raw model that ships with n2n-raw (``n2n_raw/weights/raw-gat-unet.*``): supervised, synthetic noise.

    # the shipped weights: two stages, then --ship (one thread each, ≈ 50 min each on 2 shared cores)
    python benchmarks/pretrain_raw.py --steps 7000 --threads 1 --out runs/run
    python benchmarks/pretrain_raw.py --init runs/run/ckpt-00007000.json --steps 3500 --batch 6 --patch 96 \
        --lr 4e-4 --blur-prob 0.35 --threads 1 --seed 1 --val-every 500 --out runs/run2
    python benchmarks/pretrain_raw.py --ship runs/run2

What it learns from (nothing of a user's, no real noise, none of the benchmark's photos):
- clean linear content: the sRGB photographs of Kodak (24, four held out for the printed validation), BSD300
  test (100) and Set14 (12) (``../shared/data/validation``; see datasets/README.md), turned back into linear
  light (inverse sRGB curve), each also at half size (area mean: sharper, with less of the JPEG and demosaicking
  softness of the originals), plus 48 dead-leaves images (:mod:`n2n_raw.sim.dead_leaves`);
- each crop becomes an RGGB mosaic under a random camera: white-balance-like gains for R and B (0.3–1 of G),
  an exposure from 1/200 to 1 (log-uniform), and random flips and transposition of the RGB crop first;
- Poisson–Gaussian noise a·P(x/a) + N(0, b) with log10 a uniform in [−4.5, −1.3], b = a²·10^u with u uniform in
  [−1, 3] (shot-limited to read-limited), a varied ±10 % per plane; the model gets the true profile.

The loss is the MSE in linear units divided by the noise variance a·x + b at each pixel (the GAT domain's
weighting, without its bias), so every noise level and brightness counts alike. Adam with a cosine decay to
1e-5: stage 1 lr 1e-3, batch 8 of 64×64 packed crops (128×128 mosaics); stage 2 (``--init``) lr 4e-4, batch 6
of 96×96 with 35 % of the crops blurred first (soft optics and smooth scenes, which the photographs lack).
Numbers in benchmarks/RESULTS.md ("The shipped model").
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import VALIDATION, device_name, git_rev  # noqa: E402
from n2n_raw.checkpoint import load_model, save_checkpoint  # noqa: E402
from n2n_raw.io.images import read_rgb  # noqa: E402
from n2n_raw.method.gat_unet import GatUNet  # noqa: E402
from n2n_raw.sim.sidd_world import srgb_to_linear  # noqa: E402
from n2n_raw.sim.dead_leaves import dead_leaves  # noqa: E402
from n2n_raw.method.unet import UNet  # noqa: E402

HELD_OUT = 4  # the first Kodak images, kept for the printed validation


def _half(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
    return img[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))


def content(seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(training images, held-out images): float32 (H, W, 3) linear RGB in [0, 1]."""
    train, val = [], []
    for folder in ("Kodak", "BSD300", "Set14"):
        for i, p in enumerate(sorted((VALIDATION / folder).glob("*.png"))):
            lin = srgb_to_linear(read_rgb(p).astype(np.float32) / 255.0).astype(np.float32)
            if folder == "Kodak" and i < HELD_OUT:
                val.append(lin)
                continue
            train += [lin, _half(lin).astype(np.float32)]
    rng = np.random.default_rng(seed)
    train += [srgb_to_linear(dead_leaves(rng, 256, 384)).astype(np.float32) for _ in range(48)]
    return train, val


def draw_batch(rng: np.random.Generator, images: list[np.ndarray], batch: int, patch: int, blur_prob: float = 0.0):
    """(clean, noisy, a, b): clean/noisy float32 (batch, 4, patch, patch) packed RGGB; a, b (batch, 4).

    ``blur_prob``: the share of crops blurred first (Gaussian, σ log-uniform in 0.5–4 pixels): soft optics and
    smooth scenes, where a denoiser may average over wide areas, are rare in the sRGB photographs."""
    clean = np.empty((batch, 4, patch, patch), np.float32)
    a = np.empty((batch, 4), np.float32)
    b = np.empty((batch, 4), np.float32)
    side = 2 * patch
    for k in range(batch):
        img = images[rng.integers(len(images))]
        while min(img.shape[:2]) < side:
            img = images[rng.integers(len(images))]
        y = rng.integers(img.shape[0] - side + 1)
        x = rng.integers(img.shape[1] - side + 1)
        c = img[y:y + side, x:x + side]
        if rng.random() < 0.5:
            c = c[:, ::-1]
        if rng.random() < 0.5:
            c = c[::-1]
        if rng.random() < 0.5:
            c = c.transpose(1, 0, 2)
        if rng.random() < blur_prob:
            c = gaussian_filter(c, (*[math.exp(rng.uniform(math.log(0.5), math.log(4.0)))] * 2, 0), mode="reflect")
        gains = np.array([rng.uniform(0.3, 1.0), 1.0, rng.uniform(0.3, 1.0)], np.float32)
        c = c * gains * np.float32(math.exp(rng.uniform(math.log(1 / 200), 0.0)))
        clean[k] = (c[0::2, 0::2, 0], c[0::2, 1::2, 1], c[1::2, 0::2, 1], c[1::2, 1::2, 2])
        la = rng.uniform(-4.5, -1.3)
        a[k] = 10 ** la * rng.uniform(0.9, 1.1, 4)
        b[k] = 10 ** (2 * la + rng.uniform(-1.0, 3.0)) * rng.uniform(0.9, 1.1, 4)
    lam = clean / a[:, :, None, None]
    noisy = rng.poisson(lam).astype(np.float32) * a[:, :, None, None]
    noisy += rng.standard_normal(clean.shape, dtype=np.float32) * np.sqrt(b)[:, :, None, None]
    return clean, noisy, a, b


def loss_fn(model: GatUNet, clean: torch.Tensor, noisy: torch.Tensor, a: torch.Tensor, b: torch.Tensor):
    """Noise-variance-weighted MSE over a batch whose items have their own profiles (set item by item through
    the buffers' broadcast: the buffers hold (N, 4, 1, 1) here)."""
    model.a, model.b = a[:, :, None, None], b[:, :, None, None]
    out = model(noisy)
    var = a[:, :, None, None] * clean.clamp(min=0) + b[:, :, None, None]
    return ((out - clean) ** 2 / var).mean()


@torch.no_grad()
def validate(model: GatUNet, images: list[np.ndarray], levels=((1e-3, 1e-5), (1e-2, 1e-4), (3e-4, 3e-6))):
    """PSNR (data range 1) on the held-out images' central 256×256 mosaics, at a few (a, b), exposure 0.5."""
    rng = np.random.default_rng(123)
    out = []
    for a_, b_ in levels:
        se, n = 0.0, 0
        for img in images:
            h, w = img.shape[:2]
            c = img[h // 2 - 128:h // 2 + 128, w // 2 - 128:w // 2 + 128] * np.float32(0.5)
            clean = np.stack([c[0::2, 0::2, 0], c[0::2, 1::2, 1], c[1::2, 0::2, 1], c[1::2, 1::2, 2]])[None]
            noisy = (rng.poisson(clean / a_) * a_ + rng.normal(0, math.sqrt(b_), clean.shape)).astype(np.float32)
            model.set_profile([a_] * 4, [b_] * 4)
            d = model(torch.from_numpy(noisy)).numpy()
            se += float(((d - clean) ** 2).sum())
            n += clean.size
        out.append(round(10 * math.log10(n / se), 2))
    return out


def ship(ckpt: Path) -> None:
    """Copy a checkpoint to the package's ``weights/`` with the settings of every stage that made it (following
    ``--init`` back), folders reduced to their names: what a user reads with ``n2n-raw info``."""
    from n2n_raw.checkpoint import resolve
    from n2n_raw.checkpoint import WEIGHTS
    src = resolve(ckpt, "last")
    meta = json.loads(src.read_text())
    stages, at = [], meta
    while True:
        args = dict(at["pretrain"])
        stages.insert(0, {**args, "out": Path(args["out"]).name, "init": args.get("init") and Path(args["init"]).name,
                          "val_psnr_levels": at["metrics"]["val_psnr_levels"], "step": at["step"]})
        if not args.get("init"):
            break
        at = json.loads(resolve(args["init"], "last").read_text())
    meta["pretrain"] = {"script": "benchmarks/pretrain_raw.py", "stages": stages}
    WEIGHTS.parent.mkdir(exist_ok=True)
    shutil.copyfile(src.with_suffix(".safetensors"), WEIGHTS.with_suffix(".safetensors"))
    WEIGHTS.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"shipped {src} as {WEIGHTS}: {len(stages)} stage(s), {sum(st['steps'] for st in stages)} steps")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=64, help="packed crop side (the mosaic's is twice it)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/pretrain"))
    ap.add_argument("--val-every", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--blur-prob", type=float, default=0.0, help="share of crops blurred first (see draw_batch)")
    ap.add_argument("--init", type=Path, default=None, help="continue from this checkpoint's weights (a new "
                    "cosine cycle from --lr; the optimiser starts afresh)")
    ap.add_argument("--ship", type=Path, default=None, help="only copy this run's (or checkpoint's) last "
                    "checkpoint into n2n_raw/weights, see ship()")
    args = ap.parse_args()
    if args.ship is not None:
        return ship(args.ship)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"commit {git_rev(ROOT)}, {device_name(torch.device('cpu'))}, torch {torch.__version__}", flush=True)
    images, held = content(args.seed)
    print(f"{len(images)} training images, {len(held)} held out", flush=True)
    model = GatUNet(UNet(4, 4, residual=True))
    if args.init is not None:
        model.load_state_dict(load_model(args.init, which="last")[0].state_dict())
    opt = torch.optim.Adam(model.net.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    log = open(args.out / "metrics.csv", "a")
    t0, acc = time.perf_counter(), 0.0
    for step in range(args.steps):
        lr = 1e-5 + 0.5 * (args.lr - 1e-5) * (1 + math.cos(math.pi * step / args.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        clean, noisy, a, b = (torch.from_numpy(t) for t in draw_batch(rng, images, args.batch, args.patch,
                                                                      args.blur_prob))
        model.train()
        loss = loss_fn(model, clean, noisy, a, b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc += float(loss.detach())
        done = step + 1
        if done % 100 == 0:
            print(f"step {done}: {time.perf_counter() - t0:.0f} s", flush=True)
        if done % args.val_every == 0 or done == args.steps:
            model.eval()
            val = validate(model, held)
            row = {"step": done, "loss": acc / args.val_every, "lr": lr, "val_psnr": val,
                   "seconds": round(time.perf_counter() - t0, 1)}
            print(json.dumps(row), flush=True)
            log.write(json.dumps(row) + "\n")
            log.flush()
            acc = 0.0
            model.set_profile([1e-3] * 4, [1e-5] * 4)
            save_checkpoint(args.out, done, model, None,
                            {"mode": "raw", "target": "supervised", "cfa_mode": "rggb", "noise": "poisson-gaussian",
                             "metrics": {"val_psnr_levels": val},
                             "pretrain": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}})


if __name__ == "__main__":
    main()
