"""What bf16 inference costs: the rounding floor of bf16 autocast against fp32, in dB, on raw blocks.

A raw model (a short training run on the built-in synthetic SIDD-like data, or ``--checkpoint``; and the
untrained random-init U-Net) denoises synthetic validation blocks (SIDD convention, 256×256 mosaics, the
default ``rggb`` mode) twice, in fp32 and under bf16 autocast (CPU autocast supports bf16 too). Printed per
model and input (the noisy blocks; the clean blocks, i.e. near-clean input as at ISO 100):

- ``bf16 vs fp32``: PSNR of the bf16 output against the fp32 output (data range 1): the rounding noise
  floor bf16 adds, to compare with the 40-55 dB PSNRs being scored;
- max |bf16 - fp32|;
- the score (PSNR against the ground truth, clamped, averaged over blocks) in fp32 and in bf16.

    python benchmarks/bf16_inference.py                 # CPU: trains 200 steps (≈ 1 min) first
    python benchmarks/bf16_inference.py --device cuda --checkpoint runs/sidd_raw
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import device_name, git_rev  # noqa: E402  (benchmarks/common.py, beside this script)
from n2n_raw.evaluation import metrics  # noqa: E402
from n2n_raw.accel import place_model  # noqa: E402
from n2n_raw.inference.tiling import denoise_blocks  # noqa: E402
from n2n_raw.io.sidd import block_cfas, read_blocks  # noqa: E402
from n2n_raw.method.unet import UNet  # noqa: E402


def mean_psnr(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean over blocks of the SIDD-convention PSNR (prediction clamped to [0, 1], data range 1)."""
    p, r = pred.reshape(-1, *pred.shape[2:]), ref.reshape(-1, *ref.shape[2:])
    return float(np.mean([metrics.psnr(np.clip(a, 0, 1), b, 1.0) for a, b in zip(p, r)]))


def trained_model(tmp: Path, steps: int, device: str) -> torch.nn.Module:
    from n2n_raw.checkpoint import load_model
    from n2n_raw.config import TrainConfig
    from n2n_raw.training.loop import train
    cfg = TrainConfig(mode="raw", steps=steps, epochs=10, batch_size=4, patch_size=128, lr=3e-4, seed=0,
                      device=device, val_every=0, keep_checkpoints=1)
    train(cfg, tmp / "run", force=True, log=lambda s: None)
    return load_model(tmp / "run")[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--checkpoint", type=Path, default=None, help="a raw checkpoint (default: train one)")
    ap.add_argument("--steps", type=int, default=200, help="training steps when no --checkpoint is given")
    ap.add_argument("--images", type=int, default=10, help="synthetic validation images (2 blocks each)")
    args = ap.parse_args()
    device = torch.device(args.device)
    print(f"commit {git_rev(ROOT)}; device {device_name(device)}; torch {torch.__version__}")
    from n2n_raw.sim.sidd_world import make_sidd_world
    with tempfile.TemporaryDirectory() as td:
        world = make_sidd_world(Path(td) / "world", scenes_per_phone=0, n_images=args.images,
                                blocks_per_image=2, seed=11)
        noisy, gt = read_blocks(world["val_noisy"]), read_blocks(world["val_gt"])
        cfas = block_cfas(noisy.shape[0])
        torch.manual_seed(0)
        models = [("random init", UNet(4, 4).eval())]
        if args.checkpoint is not None:
            from n2n_raw.checkpoint import load_model
            models.append((f"checkpoint {args.checkpoint.name}", load_model(args.checkpoint, "raw")[0]))
        elif args.steps > 0:
            models.append((f"trained {args.steps} steps", trained_model(Path(td), args.steps, args.device)))
    print(f"{noisy.shape[0] * noisy.shape[1]} synthetic validation blocks 256×256; noisy input "
          f"{mean_psnr(noisy, gt):.2f} dB")
    print(f"{'model':<20} {'input':<6} {'bf16 vs fp32 dB':>15} {'max |diff|':>10} {'score fp32':>10} "
          f"{'score bf16':>10} {'Δ dB':>7}")
    for name, model in models:
        model = place_model(model, device).eval()
        for what, x in (("noisy", noisy), ("clean", gt)):
            hi = denoise_blocks(model, x, cfas, "rggb", 8, device, "fp32")
            lo = denoise_blocks(model, x, cfas, "rggb", 8, device, "bf16")
            floor = metrics.psnr(lo, hi, 1.0)
            s_hi, s_lo = mean_psnr(hi, gt), mean_psnr(lo, gt)
            print(f"{name:<20} {what:<6} {floor:15.2f} {np.abs(lo - hi).max():10.4f} {s_hi:10.2f} {s_lo:10.2f} "
                  f"{s_lo - s_hi:+7.3f}", flush=True)


if __name__ == "__main__":
    main()
