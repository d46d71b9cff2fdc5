"""Run-folder pictures: loss/PSNR curves and a before/after comparison (raw rendered to sRGB), written at the
end of training by :func:`write_pictures`."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from n2n_raw.evaluation.validation import val_blocks
from n2n_raw.inference.tiling import denoise_mosaic, forward_padded
from n2n_raw.io.atomic import atomic_path
from n2n_raw.io.images import quantize_uint8, read_rgb, validation_folder_images
from n2n_raw.io.sidd import block_cfas
from n2n_raw.method.bayer import pack, unify_crop
from n2n_raw.method.noise import make_noise


def write_curves(run_dir: Path) -> Path | None:
    """curves.png from metrics.csv: training loss and validation PSNR against steps."""
    run_dir = Path(run_dir)
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    fig = Figure(figsize=(10, 3.6))  # no pyplot: no global figure state, no GUI backend
    ax = fig.subplots(1, 2)
    ax[0].plot([int(r["step"]) for r in rows], [float(r["loss"]) for r in rows])
    ax[0].set(xlabel="step", ylabel="training loss", yscale="log", title="loss")
    val = [r for r in rows if r.get("val_psnr")]
    if val:
        ax[1].plot([int(r["step"]) for r in val], [float(r["val_psnr"]) for r in val], marker="o", ms=3)
    ax[1].set(xlabel="step", ylabel="PSNR (dB)", title="validation PSNR")
    for a in ax:
        a.grid(alpha=0.3)
    fig.tight_layout()
    path = run_dir / "curves.png"
    with atomic_path(path, force=True) as tmp:  # the run's own picture, renewed at every end of training
        fig.savefig(tmp, dpi=100, format="png")
    return path


def raw_to_srgb(mosaic: np.ndarray, cfa: str, ref: np.ndarray | None = None) -> np.ndarray:
    """A quick preview of a Bayer mosaic (H, W) in [0, 1]: half-resolution RGB (G averaged), grey-world white
    balance and brightness from ``ref`` (another mosaic of the same scene, e.g. the noisy one, so panels
    compare) or from the mosaic itself, sRGB gamma → uint8 (about H/2, W/2, 3)."""

    def rgb_of(m):
        p = pack(np.ascontiguousarray(unify_crop(m, cfa))).astype(np.float64)  # R, G1, G2, B
        return np.stack([p[0], 0.5 * (p[1] + p[2]), p[3]], axis=-1)

    base = rgb_of(ref if ref is not None else mosaic)
    gains = base[..., 1].mean() / np.maximum(base.reshape(-1, 3).mean(0), 1e-6)
    scale = max(np.percentile(base * gains, 99), 1e-6)
    rgb = np.clip(rgb_of(mosaic) * gains / scale, 0, 1)
    srgb = np.where(rgb <= 0.0031308, 12.92 * rgb, 1.055 * rgb ** (1 / 2.4) - 0.055)
    return np.round(srgb * 255).astype(np.uint8)


def write_comparison(path: Path, panels: list[tuple[str, np.ndarray]]) -> Path:
    """A row of labelled uint8 (H, W, 3) images (e.g. noisy / denoised / clean) saved as one PNG."""
    fig = Figure(figsize=(4 * len(panels), 4.3))
    ax = fig.subplots(1, len(panels))
    for a, (title, img) in zip(np.atleast_1d(ax), panels):
        a.imshow(img)
        a.set_title(title)
        a.axis("off")
    fig.tight_layout()
    with atomic_path(path, force=True) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return path


def write_pictures(cfg, source, model, run_dir: Path, device) -> None:
    """curves.png and comparison.png (noisy / denoised / clean where known) of one validation image, or of
    a training crop when no validation data are configured; raw is rendered to sRGB for viewing."""
    write_curves(run_dir)
    model.eval()
    if cfg.mode == "srgb":
        if cfg.val:
            im = read_rgb(validation_folder_images(cfg.val[0])[0])
        else:
            it = source.items[0]
            im = it.crop(0, 0, min(256, it.shape[0]), min(256, it.shape[1]))
        s = min(256, im.shape[0], im.shape[1])
        clean = torch.from_numpy(np.ascontiguousarray(im[:s, :s].transpose(2, 0, 1))).float()[None] / 255
        noisy = make_noise(cfg.noise)(clean, torch.Generator().manual_seed(0))
        den = forward_padded(model, noisy.to(device), "fp32").cpu()
        to8 = lambda t: quantize_uint8(t[0].permute(1, 2, 0).numpy())  # noqa: E731
        panels = [("noisy", to8(noisy)), ("denoised", to8(den)), ("clean", to8(clean))]
    else:
        if cfg.val_noisy and cfg.val_gt:
            noisy, gt = (b[0, 0] for b in val_blocks(cfg.val_noisy, cfg.val_gt))
            cfa = block_cfas(1, cfg.val_cfa)[0]
        else:
            it = source.items[0]
            noisy, gt, cfa = it.crop(0, 0, min(512, it.shape[0]), min(512, it.shape[1])), None, it.cfa
        den = denoise_mosaic(model, noisy, cfa, cfg.cfa_mode, device=device, precision="fp32")
        panels = [("noisy", raw_to_srgb(noisy, cfa)),
                  ("denoised", raw_to_srgb(np.clip(den, 0, 1), cfa, ref=noisy))]
        if gt is not None:
            panels.append(("clean", raw_to_srgb(gt, cfa, ref=noisy)))
    write_comparison(run_dir / "comparison.png", panels)
    model.train()
