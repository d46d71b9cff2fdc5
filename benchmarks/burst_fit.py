"""`n2n-raw fit` on a real low-light burst, scored against the burst itself.

    python benchmarks/burst_fit.py [BURST_DIR]                  # fit's defaults: `fit` end to end, files scored
    python benchmarks/burst_fit.py --sweep --steps 300 --lr 1e-3 --json out.json   # one point of a settings sweep

BURST_DIR (default: ``burst_lowlight`` of the real files, see datasets/REAL_FILES.md) holds K frames of
one static scene. The denoiser is trained on all K frames by :func:`n2n_raw.jobs.fit.fit` (the ``n2n-raw fit``
command: no clean image, no noise model) and denoises each of them.

Scoring. The reference of frame k is the mean of the other K−1 frames: their noise is independent of frame
k's, so the reference is an unbiased estimate of the clean scene, but it keeps noise of its own, of variance
σ²/(K−1) per pixel. For any estimate d of frame k's clean image x (d a function of frame k):

    E[(d − r)²] = E[(d − x)²] + E[(r − x)²]        (the cross term vanishes: r's noise is independent of d)

so the MSE against the reference overstates the true MSE by the reference's noise variance. That variance is
estimated from the frames: the per-pixel unbiased variance across all K frames, s² (an estimate of σ² at that
pixel), averaged over the scored pixels and divided by K − 1. The *corrected* PSNR uses MSE − mean(s²)/(K−1);
for the noisy frame itself the corrected MSE is ≈ mean(s²), its true noise power. (The trained weights have seen the
reference frames too; a U-Net cannot store the noise of 12 M pixels, so the cross term stays ≈ 0. Anything
the same in every frame, fixed-pattern noise included, counts as scene: a denoiser is asked to keep it.)

Everything is in the normalised units of the project, (raw − black)/(white − black), PSNR with data range 1
(the SIDD convention). The scoring frames are read with rawpy directly, *without* clipping below black:
``read_raw`` clips there, which biases very dark data upwards (this burst sits ≈ 6 DN above a black of 60).
The network input is what ``fit`` reads: unclipped too.

Scored: the noisy frame; the denoised DNG that ``fit`` writes (whole frames; its 16-bit samples hold the
10-bit raw units ×64, so rounding adds ≈ 1/12·(1/64)² DN² of error); the network's float output before that rounding (a central
``--crop`` window, to save a second full inference; ``--sweep`` scores only this, writing no files; the
training always uses the whole frames); and an *oracle* Gaussian blur per
CFA plane whose σ (per plane, from a grid) is picked to minimise the error against the reference: a bound no
blind method has, since it looks at the answer.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import REAL_RAW, device_name, git_rev  # noqa: E402  (benchmarks/common.py, beside this script)
from n2n_raw.config import FIT_DEFAULTS  # noqa: E402

SIGMAS = (0.0, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0)  # oracle σ grid, CFA-plane pixels


def read_unclipped(path: Path) -> tuple[np.ndarray, float]:
    """float64 (H, W) (raw − black)/(white − black), negatives kept; and white − black (DN per unit)."""
    import rawpy
    with rawpy.imread(str(path)) as raw:
        m = raw.raw_image_visible.astype(np.float64)
        black = np.asarray(raw.black_level_per_channel, np.float64)[raw.raw_colors_visible]
        white = float(raw.white_level)
    scale = white - black.max()
    return (m - black) / (white - black), scale


def psnr(mse: float) -> float:
    return float(10 * np.log10(1.0 / mse)) if mse > 0 else float("inf")


def window(shape: tuple[int, int], crop: int | None) -> tuple[slice, slice]:
    """A central crop × crop window at even offsets (the CFA phase kept), or the whole frame."""
    if not crop:
        return slice(None), slice(None)
    h, w = shape
    y, x = (h - crop) // 4 * 2, (w - crop) // 4 * 2
    return slice(y, y + crop), slice(x, x + crop)


def oracle_blur(frames: np.ndarray, refs: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Per CFA plane Gaussian blur of each frame, σ per plane picked to minimise the MSE against ``refs``.

    frames, refs: (K, H, W). Returns the blurred frames (K, H, W) and the 4 chosen σ (plane pixels)."""
    from scipy.ndimage import gaussian_filter
    out = np.empty_like(frames)
    chosen = []
    for dy in (0, 1):
        for dx in (0, 1):
            planes, ref = frames[:, dy::2, dx::2], refs[:, dy::2, dx::2]
            best = None
            for s in SIGMAS:
                b = np.stack([gaussian_filter(p, s, mode="reflect") if s else p for p in planes])
                err = float(np.mean((b - ref) ** 2))
                if best is None or err < best[0]:
                    best = (err, s, b)
            out[:, dy::2, dx::2] = best[2]
            chosen.append(best[1])
    return out, chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("burst", nargs="?", default=str(REAL_RAW / "burst_lowlight"),
                    help="folder of the burst's raw frames (default: $N2N_RAW_REAL_DATA/burst_lowlight, else "
                         "../shared/data/real_raw/burst_lowlight)")
    ap.add_argument("--steps", type=int, default=None, help=f"training steps (fit's default {FIT_DEFAULTS['steps']})")
    ap.add_argument("--lr", type=float, default=None, help=f"(fit's default {FIT_DEFAULTS['lr']:g})")
    ap.add_argument("--batch-size", type=int, default=None, help=f"(fit's default {FIT_DEFAULTS['batch_size']})")
    ap.add_argument("--patch-size", type=int, default=None, help=f"(fit's default {FIT_DEFAULTS['patch_size']})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crop", type=int, default=512, help="side of the central window where the network's float "
                    "output is scored (the denoised DNGs are scored on whole frames too)")
    ap.add_argument("--sweep", action="store_true", help="train and score the float output on the window only; no "
                    "files written (quick settings sweeps)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--keep", type=Path, default=None, help="keep the run folder and outputs here")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    args = ap.parse_args()

    from n2n_raw.checkpoint import load_model
    from n2n_raw.jobs.fit import fit, fit_config
    from n2n_raw.inference.tiling import denoise_mosaic
    from n2n_raw.io.camera_raw import find_raws, read_raw
    from n2n_raw.training.loop import train
    files = find_raws(args.burst)
    K = len(files)
    if K < 3:
        sys.exit(f"{args.burst}: need at least 3 frames of one scene, found {K}")
    print(f"commit {git_rev(ROOT)}; device {device_name(torch.device(args.device))}; torch {torch.__version__}")

    clean_read = [read_unclipped(f) for f in files]
    scale = clean_read[0][1]
    x = np.stack([m for m, _ in clean_read])                       # (K, H, W) unclipped, normalised
    total = x.sum(0)
    refs = np.stack([(total - x[k]) / (K - 1) for k in range(K)])  # mean of the other frames
    win = window(x.shape[1:], args.crop)
    print(f"{K} frames {x.shape[1]}×{x.shape[2]} from {args.burst}; 1 unit = {scale:g} DN; mean level "
          f"{x.mean() * scale:.2f} DN above black; noise variance σ² ≈ "
          f"{x.var(0, ddof=1).mean() * scale ** 2:.3f} DN²")

    work = args.keep or Path(tempfile.mkdtemp(prefix="burst_fit_"))
    t0 = time.perf_counter()
    dng_out = None
    if args.sweep:  # train exactly as fit does (its configuration), without writing outputs
        cfg = fit_config(files, steps=args.steps, lr=args.lr, batch_size=args.batch_size, patch_size=args.patch_size,
                         seed=args.seed, device=args.device)
        summary = train(dataclass_replace(cfg, pictures=False), work / "run", force=True, log=lambda s: None)
        t_train, t_den = time.perf_counter() - t0, None
    else:  # the product: `n2n-raw fit` end to end, DNG + PNG per frame
        res = fit(files, work / "run", denoised_dir=work / "denoised", steps=args.steps, lr=args.lr,
                  batch_size=args.batch_size, patch_size=args.patch_size, seed=args.seed, force=True,
                  device=args.device, log=lambda s: None)
        summary, t_train, t_den = res["train"], res["train_seconds"], res["denoise_seconds"]
        dng_out = np.stack([read_unclipped(o[0])[0] for o in res["outputs"]])
    model, meta = load_model(work / "run")
    den = []  # the network's output on the window, clipped to [0, 1] as `denoise` does, before rounding to whole DN
    for f in files:
        r = read_raw(f)
        den.append(np.clip(denoise_mosaic(model, r.mosaic[win], r.cfa, meta["cfa_mode"], device=args.device), 0, 1))
    den = np.stack(den).astype(np.float64)
    run_cfg = json.loads((work / "run" / "config.json").read_text())
    print(f"fit: {run_cfg['steps']} steps, lr {run_cfg['lr']:g}, batch {run_cfg['batch_size']}, patch "
          f"{run_cfg['patch_size']}; train {t_train:.0f} s" + (f", denoise {K} frames {t_den:.0f} s" if t_den else ""))

    names = [f.stem for f in files]
    report = {"commit": git_rev(ROOT), "device": device_name(torch.device(args.device)), "frames": names,
              "config": {k: run_cfg[k] for k in ("steps", "lr", "batch_size", "patch_size", "seed")},
              "train_seconds": t_train, "denoise_seconds": t_den, "final_loss": summary.get("loss"), "tables": {}}
    full = (slice(None), slice(None))
    for label, w, ests in ([] if dng_out is None else [("whole frames", full, {"fit (denoised DNG)": dng_out})]) + [
            (f"central {args.crop}×{args.crop}", win, {"fit (network output)": den, **(
                {} if dng_out is None else {"fit (denoised DNG)": dng_out[:, win[0], win[1]]})})]:
        xs, rs = x[:, w[0], w[1]], refs[:, w[0], w[1]]
        # The reference's noise variance, averaged over the scored pixels (noise grows with the signal level).
        ref_var = float(xs.var(0, ddof=1).mean()) / (K - 1)
        blur, sig = oracle_blur(xs, rs)

        def scores(est):
            mse = [float(np.mean((est[k] - rs[k]) ** 2)) for k in range(K)]
            return [psnr(m) for m in mse], [psnr(m - ref_var) for m in mse]

        rows = {"noisy": scores(xs), "oracle blur": scores(blur), **{k: scores(v) for k, v in ests.items()}}
        print(f"\n{label}: PSNR (dB) against the mean of the other {K - 1} frames; reference noise σ²/{K - 1} ≈ "
              f"{ref_var * scale ** 2:.3f} DN²; oracle blur σ per CFA plane {sig}\n")
        print("| method | " + " | ".join(names) + " | mean | mean corrected |")
        print("|---" * (len(names) + 3) + "|")
        for name, (raw_p, cor_p) in rows.items():
            print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in cor_p)
                  + f" | {np.mean(raw_p):.2f} | {np.mean(cor_p):.2f} |")
        print("(per-frame columns: corrected PSNR)")
        report["tables"][label] = {"ref_noise_var": ref_var, "oracle_sigmas": sig,
                                   "psnr": {k: v[0] for k, v in rows.items()},
                                   "psnr_corrected": {k: v[1] for k, v in rows.items()}}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.keep is None:  # the run and the 8 denoised frames are only needed for the scores
        shutil.rmtree(work, ignore_errors=True)


def dataclass_replace(cfg, **kw):
    import dataclasses
    return dataclasses.replace(cfg, **kw)


if __name__ == "__main__":
    main()
