"""The ``rggb`` padding tax on SIDD blocks, and what flipping (the default since the tax was measured) changes.

In ``rggb`` mode a 256×256 block of a BGGR/GRBG/GBRG phone is reflect-padded to RGGB phase (258), packs to
129×129 and is padded again to 160×160 for the U-Net (``unify="pad"``); flipping the block into RGGB phase
instead (``unify="flip"``) packs it to 128×128 like ``positional`` mode. This prints:

1. time per block of ``denoise_blocks`` for BGGR blocks: positional, rggb + pad, rggb + flip, and rggb + flip
   with reflect-padded convolutions (in turn, ``--repeats`` times, same process; median, ratio to positional);
2. with a raw model (``--checkpoint``, or a short training run on the built-in synthetic data), on synthetic
   SIDD-like validation blocks of every CFA: PSNR of the flip output against the pad output, max |diff|, and
   the score (SIDD convention, mean PSNR against the ground truth) of each over the non-RGGB blocks, with
   the paired per-block difference (mean ± standard error); then the same for flip with reflect-padded
   convolutions (an inference-time experiment, not a path of the package), and the RGGB-block control.

    python benchmarks/block_unify.py                       # CPU; trains 300 steps first (≈ 1-2 min)
    python benchmarks/block_unify.py --checkpoint runs/sidd_raw --images 40
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
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


def timing(device: torch.device, n_blocks: int, repeats: int) -> None:
    torch.manual_seed(0)
    model = place_model(UNet(4, 4).eval(), device)
    blocks = np.random.default_rng(0).random((1, n_blocks, 256, 256), dtype=np.float32)
    cases = {"positional": dict(cfa_mode="positional"), "rggb pad": dict(cfa_mode="rggb", unify="pad"),
             "rggb flip": dict(cfa_mode="rggb", unify="flip"), "flip+refl": dict(cfa_mode="rggb", unify="flip")}
    denoise_blocks(model, blocks[:, :2], ["BGGR"], "rggb", 2, device, "fp32")  # warm-up
    times: dict[str, list] = {k: [] for k in cases}
    for _ in range(repeats):
        for name, kw in cases.items():
            t0 = time.perf_counter()
            with reflect_convs(model) if name == "flip+refl" else contextlib.nullcontext():
                denoise_blocks(model, blocks, ["BGGR"], batch_size=32, device=device, precision="fp32", **kw)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name].append((time.perf_counter() - t0) / n_blocks)
    base = float(np.median(times["positional"]))
    print(f"{n_blocks} BGGR blocks 256×256, batch 32, fp32, random-init raw U-Net, {repeats} runs in turn:")
    for name, ts in times.items():
        print(f"  {name:<11} {np.median(ts) * 1e3:7.1f} ms/block ({min(ts) * 1e3:.1f}-{max(ts) * 1e3:.1f})  "
              f"{np.median(ts) / base:.2f}× positional")


@contextlib.contextmanager
def reflect_convs(model: torch.nn.Module):
    """Run ``model`` with its zero-padded convolutions reflect-padded instead (an inference-time change only:
    the weights were trained with zero padding). Every feature map then sees mirrored context at its border,
    as the pad path's 160² pass gives the bottom/right border of a 129² block."""
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.padding != (0, 0)]
    for m in convs:
        m.padding_mode = "reflect"
    try:
        yield model
    finally:
        for m in convs:
            m.padding_mode = "zeros"


def trained(tmp: Path, steps: int, device: str) -> torch.nn.Module:
    from n2n_raw.checkpoint import load_model
    from n2n_raw.config import TrainConfig
    from n2n_raw.training.loop import train
    cfg = TrainConfig(mode="raw", steps=steps, epochs=10, batch_size=4, patch_size=128, lr=3e-4, seed=0,
                      device=device, val_every=0, keep_checkpoints=1)
    train(cfg, tmp / "run", force=True, log=lambda s: None)
    return load_model(tmp / "run")[0]


def difference(device: torch.device, model: torch.nn.Module, label: str, images: int) -> None:
    from n2n_raw.sim.sidd_world import make_sidd_world
    with tempfile.TemporaryDirectory() as td:
        world = make_sidd_world(Path(td) / "world", scenes_per_phone=0, n_images=images, blocks_per_image=2,
                                seed=11)
        noisy, gt = read_blocks(world["val_noisy"]), read_blocks(world["val_gt"])
    cfas = block_cfas(noisy.shape[0])
    other = [i for i, c in enumerate(cfas) if c != "RGGB"]
    model = place_model(model, device).eval()
    pad = denoise_blocks(model, noisy, cfas, "rggb", 8, device, "fp32", unify="pad")
    flip = denoise_blocks(model, noisy, cfas, "rggb", 8, device, "fp32", unify="flip")
    rggb = [i for i in range(len(cfas)) if i not in other]
    assert np.array_equal(pad[rggb], flip[rggb])  # RGGB blocks are neither padded nor flipped

    def per_block(pred):
        return np.array([metrics.psnr(np.clip(p, 0, 1), g, 1.0) for i in other for p, g in zip(pred[i], gt[i])])

    def score(pred):
        return float(np.mean(per_block(pred)))

    def paired(a, b):  # mean and standard error of the per-block difference a − b
        d = per_block(a) - per_block(b)
        return f"{d.mean():+.3f} ± {d.std(ddof=1) / np.sqrt(d.size):.3f} dB per block"

    p, f = pad[other], flip[other]
    noisy_score = score(noisy)
    print(f"{label}: {len(other) * noisy.shape[1]} non-RGGB validation blocks "
          f"({', '.join(sorted(set(cfas[i] for i in other)))}), noisy {noisy_score:.2f} dB")
    print(f"  flip vs pad output: PSNR {metrics.psnr(f, p, 1.0):.2f} dB, max |diff| {np.abs(f - p).max():.4f}")
    print(f"  score: pad {score(pad):.3f} dB, flip {score(flip):.3f} dB (flip − pad {paired(flip, pad)})")
    with reflect_convs(model):
        flip_r = denoise_blocks(model, noisy, cfas, "rggb", 8, device, "fp32", unify="flip")
    print(f"  flip with reflect-padded convolutions: vs pad output PSNR {metrics.psnr(flip_r[other], p, 1.0):.2f} dB, "
          f"score {score(flip_r):.3f} dB (− pad {paired(flip_r, pad)})")
    # Is it the flip or the pad? RGGB blocks need neither; mirrored in both axes they are BGGR and take the
    # pad path. The same model and noise, scored against the (mirrored) ground truth.
    if rggb:
        xs, gs = noisy[rggb], gt[rggb]
        direct = denoise_blocks(model, xs, ["RGGB"] * len(rggb), "rggb", 8, device, "fp32")
        mirrored = denoise_blocks(model, np.ascontiguousarray(xs[..., ::-1, ::-1]), ["BGGR"] * len(rggb), "rggb", 8,
                                  device, "fp32", unify="pad")
        s_direct = float(np.mean([metrics.psnr(np.clip(p, 0, 1), g, 1.0) for p, g in
                                  zip(direct.reshape(-1, 256, 256), gs.reshape(-1, 256, 256))]))
        s_mirror = float(np.mean([metrics.psnr(np.clip(p, 0, 1), g, 1.0) for p, g in
                                  zip(mirrored.reshape(-1, 256, 256), gs[..., ::-1, ::-1].reshape(-1, 256, 256))]))
        with reflect_convs(model):
            direct_r = denoise_blocks(model, xs, ["RGGB"] * len(rggb), "rggb", 8, device, "fp32")
        s_direct_r = float(np.mean([metrics.psnr(np.clip(p, 0, 1), g, 1.0) for p, g in
                                    zip(direct_r.reshape(-1, 256, 256), gs.reshape(-1, 256, 256))]))
        print(f"  {len(rggb) * noisy.shape[1]} RGGB blocks: as they are (128² pass) {s_direct:.3f} dB, mirrored to "
              f"BGGR and padded (160² pass) {s_mirror:.3f} dB ({s_mirror - s_direct:+.3f} dB), 128² pass with "
              f"reflect-padded convolutions {s_direct_r:.3f} dB ({s_direct_r - s_direct:+.3f} dB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--blocks", type=int, default=32, help="blocks timed per case")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--checkpoint", type=Path, default=None, help="a raw checkpoint (default: train one)")
    ap.add_argument("--steps", type=int, default=300, help="training steps when no --checkpoint is given")
    ap.add_argument("--images", type=int, default=20, help="synthetic validation images (2 blocks each)")
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--skip-random", action="store_true", help="no random-init model in the difference part")
    args = ap.parse_args()
    device = torch.device(args.device)
    print(f"commit {git_rev(ROOT)}; device {device_name(device)}; torch {torch.__version__}")
    if not args.skip_timing:
        timing(device, args.blocks, args.repeats)
    torch.manual_seed(0)
    if not args.skip_random:
        difference(device, UNet(4, 4).eval(), "random init", args.images)
    if args.checkpoint is not None:
        from n2n_raw.checkpoint import load_model
        difference(device, load_model(args.checkpoint, "raw")[0], f"checkpoint {args.checkpoint}", args.images)
    elif args.steps > 0:
        with tempfile.TemporaryDirectory() as td:
            model = trained(Path(td), args.steps, args.device)
        difference(device, model, f"trained {args.steps} steps", args.images)


if __name__ == "__main__":
    main()
