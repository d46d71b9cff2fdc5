"""Time to quality: PSNR against steps and wall-clock time for each training variant.

Same data, seed and schedule for every variant (the paper's loss, sub-sampler and LR/Λ schedule laid over
``--steps`` as `n2n-raw train --steps` does); only the variant's options differ.

- srgb: gauss25, batch 4, patch 64, trained on the 124 images of Kodak + BSD300 (clean; noise drawn per step),
  evaluated on held-out Set14 (256×256 centre crops, fixed noise, the paper's uint8 PSNR).
- raw: the built-in synthetic SIDD-like raw training set (batch 4, patch 128), evaluated on held-out
  synthetic validation blocks (SIDD convention).

Evaluation always runs in fp32, so variants differ by their training only. Mixed precision's quality check
(bf16 vs fp32 training from the same seed):
    python benchmarks/convergence.py --task both --steps 300 --eval-every 60 --variants kaiming-fp32,kaiming-bf16

The supervised ceiling (N2N against noisy → clean training of the same U-Net; raw uses the built-in data's
clean mosaics as the clean frames):
    python benchmarks/convergence.py --task both --steps 2000 --eval-every 200 --variants n2n,supervised
and with more (noisy, clean) raw pairs than the built-in 10 (a store of N mosaics of the same recipe):
    python benchmarks/convergence.py --task raw --steps 2000 --eval-every 500 --variants n2n,supervised --raw-mosaics 80
and with the raw noise redrawn every step (as the sRGB task's is) instead of drawn once per mosaic:
    python benchmarks/convergence.py --task raw --steps 2000 --eval-every 500 --variants n2n-redraw,supervised-redraw --raw-mosaics 80
and Noise2Noise between them (a noisy target, no sub-sampler): --variants noise2noise-redraw (raw), noise2noise (srgb);
the steps between Noise2Noise and N2N: noise2noise-sub[-redraw] (on N2N's sub-images), n2n-noreg[-redraw] (λ2 = 0),
noise2noise[-redraw]-b1 (full resolution, N2N's pixels per step).

Writes CSV + PNG under --out and prints a summary table. CPU setting (default) fits in 30 min on 2 cores:
    python benchmarks/convergence.py --task both --steps 1000 --eval-every 100
GPU setting:
    python benchmarks/convergence.py --task both --steps 50000 --eval-every 2500 --device cuda
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import VALIDATION, device_name, git_rev  # noqa: E402  (benchmarks/common.py, beside this script)
from n2n_raw.evaluation import metrics  # noqa: E402
from n2n_raw.io.images import quantize_uint8  # noqa: E402
from n2n_raw.config import TrainConfig  # noqa: E402
from n2n_raw.io.images import read_rgb, validation_folder_images  # noqa: E402
from n2n_raw.training.loop import train  # noqa: E402

VARIANTS = {
    "kaiming": {"init": "kaiming"},
    "standard": {"init": "standard"},
    "paper": {"init": "paper"},
    "standard+residual": {"init": "standard", "residual": True},
    "paper+residual": {"init": "paper", "residual": True},
    # Quality check of mixed precision: the same run trained in fp32 and in bf16 autocast (CPU or CUDA).
    "kaiming-fp32": {"init": "kaiming", "precision": "fp32"},
    "kaiming-bf16": {"init": "kaiming", "precision": "bf16"},
    # The supervised ceiling: the same U-Net, data, schedule and seed trained noisy → clean (``--target``).
    "n2n": {"init": "kaiming", "target": "n2n"},
    "supervised": {"init": "kaiming", "target": "supervised"},
    # Raw only: the same two with the stored noise replaced by a fresh draw every step (``--redraw-noise``),
    # as the sRGB task does: what N2N's fixed noisy targets cost.
    "n2n-redraw": {"init": "kaiming", "target": "n2n", "redraw_noise": True},
    "supervised-redraw": {"init": "kaiming", "target": "supervised", "redraw_noise": True},
    # Noise2Noise (noisy → independently noisy, full resolution): a noisy target without N2N's sub-sampler.
    "noise2noise": {"init": "kaiming", "target": "noise2noise"},
    "noise2noise-redraw": {"init": "kaiming", "target": "noise2noise", "redraw_noise": True},
    # Ablations between Noise2Noise and N2N: Noise2Noise on N2N's half-size sub-images (g1's own pixel as the
    # target), and N2N without its regulariser (the neighbour's pixel as the target).
    "noise2noise-sub": {"init": "kaiming", "target": "noise2noise-sub"},
    "noise2noise-sub-redraw": {"init": "kaiming", "target": "noise2noise-sub", "redraw_noise": True},
    "n2n-noreg": {"init": "kaiming", "target": "n2n", "lambda2": 0.0},
    "n2n-noreg-redraw": {"init": "kaiming", "target": "n2n", "lambda2": 0.0, "redraw_noise": True},
    # Full-resolution Noise2Noise with N2N's pixels per step (one crop, not four sub-images of a quarter of
    # the size each), at the same learning rate: what the sub-images' fewer pixels cost, apart from their scale.
    "noise2noise-b1": {"init": "kaiming", "target": "noise2noise", "batch_size": 1, "lr_rule": "none"},
    "noise2noise-redraw-b1": {"init": "kaiming", "target": "noise2noise", "redraw_noise": True, "batch_size": 1,
                              "lr_rule": "none"},
}


def srgb_task(tmp: Path, validation: Path = VALIDATION, crop: int = 256):
    """(data folder, evaluator factory, noisy PSNR) for the sRGB task."""
    train_dir = tmp / "srgb_train"
    train_dir.mkdir()
    for sub in ("Kodak", "BSD300"):
        for f in validation_folder_images(validation / sub):
            (train_dir / f"{sub}_{f.name}").symlink_to(f)
    rng = np.random.default_rng(7)
    clean, noisy = [], []
    for f in validation_folder_images(validation / "Set14"):
        im = read_rgb(f)
        y, x = max(0, (im.shape[0] - crop) // 2), max(0, (im.shape[1] - crop) // 2)
        c = im[y:y + crop, x:x + crop]
        clean.append(c)
        noisy.append((c.astype(np.float32) / 255 + rng.normal(0, 25 / 255, c.shape)).astype(np.float32))
    noisy_psnr = float(np.mean([metrics.psnr_uint8(quantize_uint8(np.clip(n, 0, 1)), c)
                                for n, c in zip(noisy, clean)]))

    def evaluator(device):
        from n2n_raw.inference.tiling import forward_padded

        def run(model):
            model.eval()
            scores = []
            for n, c in zip(noisy, clean):
                x = torch.from_numpy(n.transpose(2, 0, 1).copy())[None].to(device)
                pred = forward_padded(model, x, "fp32")[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
                scores.append(metrics.psnr_uint8(quantize_uint8(pred), c))
            return float(np.mean(scores)), 0.0
        return run
    return str(train_dir), evaluator, noisy_psnr, {"batch_size": 4, "patch_size": 64, "noise": "gauss25"}


def raw_training_store(path: Path, count: int) -> str:
    """A store of ``count`` mosaics of the built-in training set's recipe (the first 10 are the built-in set),
    each with its clean mosaic: more (noisy, clean) pairs for the supervised ceiling."""
    from n2n_raw.training.sources import default_raw_items
    from n2n_raw.io.store import StoreWriter
    with StoreWriter(path, "raw") as w:
        for it in default_raw_items(count):
            h, wd = it.shape
            w.add(it.crop(0, 0, h, wd), it.gt(0, 0, h, wd), cfa=it.cfa, iso=it.iso)
    return str(path)


def raw_task(tmp: Path, mosaics: int = 10):
    from n2n_raw.inference.tiling import denoise_blocks
    from n2n_raw.io.sidd import block_cfas, read_blocks
    from n2n_raw.sim.sidd_world import make_sidd_world
    world = make_sidd_world(tmp / "world", scenes_per_phone=0, n_images=10, blocks_per_image=2, seed=11)
    noisy, gt = read_blocks(world["val_noisy"]), read_blocks(world["val_gt"])
    cfas = block_cfas(noisy.shape[0])
    noisy_psnr = float(np.mean([metrics.psnr(np.clip(n, 0, 1), g, 1.0) for n, g in
                                zip(noisy.reshape(-1, *noisy.shape[2:]), gt.reshape(-1, *gt.shape[2:]))]))

    def evaluator(device):
        def run(model):
            model.eval()
            pred = denoise_blocks(model, noisy, cfas, "rggb", 8, device, "fp32")
            return float(np.mean([metrics.psnr(np.clip(p, 0, 1), g, 1.0) for p, g in
                                  zip(pred.reshape(-1, *pred.shape[2:]), gt.reshape(-1, *gt.shape[2:]))])), 0.0
        return run
    data = None if mosaics == 10 else raw_training_store(tmp / "raw_train.h5", mosaics)
    return data, evaluator, noisy_psnr, {"batch_size": 4, "patch_size": 128}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=("srgb", "raw", "both"), default="both")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--eval-every", type=int, default=100, help="steps; must divide --steps/--epochs evenly")
    ap.add_argument("--epochs", type=int, default=100, help="nominal epochs the schedule is laid over")
    ap.add_argument("--variants", default="kaiming,standard,paper")
    ap.add_argument("--raw-mosaics", type=int, default=10,
                    help="raw training mosaics (10: the built-in set; more: a store of the same recipe)")
    ap.add_argument("--patch-size", type=int, default=None, help="crop side instead of the task's (raw 128, srgb 64)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "convergence")
    ap.add_argument("--validation", type=Path, default=VALIDATION, help="folder holding Kodak, BSD300 and Set14")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    steps_per_epoch = args.steps // args.epochs
    if args.steps % args.epochs or args.eval_every % steps_per_epoch:
        sys.exit("--steps must be a multiple of --epochs and --eval-every a multiple of steps per epoch")
    device = torch.device(args.device)
    print(f"commit {git_rev(ROOT)}; device {device_name(device)}")
    rows = []
    tasks = ["srgb", "raw"] if args.task == "both" else [args.task]
    with tempfile.TemporaryDirectory() as td:
        for task in tasks:
            data, make_eval, noisy_psnr, opts = (srgb_task(Path(td), args.validation) if task == "srgb"
                                                 else raw_task(Path(td), args.raw_mosaics))
            if args.patch_size is not None:  # e.g. the paper's 256-pixel raw crops
                opts = {**opts, "patch_size": args.patch_size}
            print(f"[{task}] noisy input PSNR {noisy_psnr:.2f} dB")
            for name in args.variants.split(","):
                cfg = TrainConfig(mode=task, data=data, steps=args.steps, epochs=args.epochs, seed=args.seed,
                                  device=args.device, val_every=args.eval_every // steps_per_epoch,
                                  log_every=args.eval_every, keep_checkpoints=1,
                                  **{**opts, **VARIANTS[name]})  # a variant's settings override the task's
                evaluate = make_eval(device)
                t0 = time.perf_counter()
                run_dir = Path(td) / f"{task}-{name}"
                train(cfg, run_dir, force=True, log=lambda s: None, validator=evaluate)
                with open(run_dir / "metrics.csv") as f:
                    for r in csv.DictReader(f):
                        if r["val_psnr"]:
                            rows.append({"task": task, "variant": name, "step": int(r["step"]),
                                         "seconds": float(r["seconds"]), "psnr": float(r["val_psnr"]),
                                         "noisy_psnr": noisy_psnr})
                mine = [r for r in rows if r["task"] == task and r["variant"] == name]
                beat = next((r["step"] for r in mine if r["psnr"] > noisy_psnr), None)
                print(f"[{task}] {name:<18} end {mine[-1]['psnr']:.2f} dB at step {mine[-1]['step']} "
                      f"(best {max(r['psnr'] for r in mine):.2f}); beats noisy from step {beat}; "
                      f"{time.perf_counter() - t0:.0f} s", flush=True)
    csv_path = args.out / "convergence.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, ["task", "variant", "step", "seconds", "psnr", "noisy_psnr"])
        w.writeheader()
        w.writerows(rows)
    plot(rows, args.out / "convergence.png")
    print(f"wrote {csv_path} and {args.out / 'convergence.png'}")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tasks = sorted({r["task"] for r in rows}, reverse=True)
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 4 * len(tasks)), squeeze=False)
    for i, task in enumerate(tasks):
        for variant in dict.fromkeys(r["variant"] for r in rows if r["task"] == task):
            rs = [r for r in rows if r["task"] == task and r["variant"] == variant]
            for j, key in enumerate(("step", "seconds")):
                axes[i][j].plot([r[key] for r in rs], [r["psnr"] for r in rs], marker="o", ms=3, label=variant)
        noisy = next(r["noisy_psnr"] for r in rows if r["task"] == task)
        for j, key in enumerate(("training step", "training seconds")):
            ax = axes[i][j]
            ax.axhline(noisy, color="grey", ls="--", label="noisy input")
            ax.set_xlabel(key)
            ax.set_ylabel("PSNR (dB), held out")
            ax.set_title(f"{task}: PSNR vs {key}")
            ax.grid(alpha=0.3)
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
