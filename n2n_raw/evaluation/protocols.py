"""The paper's evaluation protocols.

sRGB (neighbor2neighbor.md §6): numpy's legacy global generator seeded once (101), folders in the order
given, each repeat over all images in sorted order with fresh noise drawn in the image's (H, W, 3) shape;
reflect-pad bottom/right to a square of side ceil(max(H, W)/32)·32, one pass, crop, clamp, round half up to
uint8; PSNR over all RGB values (peak 255) and MATLAB-style SSIM, plain means over evaluations.

raw (SIDD convention): prediction clamped to [0, 1]; PSNR with data range 1 per block; MATLAB-style SSIM on
blocks ×255 (float); means over all blocks.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from n2n_raw.accel import autocast, inference_precision, place_model
from n2n_raw.errors import InputError
from n2n_raw.evaluation import metrics
from n2n_raw.inference import tiling
from n2n_raw.io.images import quantize_uint8, read_rgb, validation_folder_images
from n2n_raw.io.sidd import read_blocks, read_checked_blocks

PAPER_REPEATS = {"kodak": 10, "bsd300": 3, "set14": 20}


def paper_repeat(folder: str | Path) -> int:
    """The paper's repeat count for a validation folder, by its name (1 for unknown folders)."""
    return PAPER_REPEATS.get(Path(folder).name.lower(), 1)


def add_valid_noise(x: np.ndarray, noise: str) -> np.ndarray:
    """The reference's validation noise from numpy's *global* legacy generator (order of draws matters).

    x: (H, W, 3) float32 in [0, 1] → float32 noisy (H, W, 3), unclipped.
    """
    shape = x.shape
    if noise == "gauss25":
        return np.array(x + np.random.normal(size=shape) * (25.0 / 255.0), dtype=np.float32)
    if noise == "gauss5_50":
        std = np.random.uniform(5.0 / 255.0, 50.0 / 255.0, size=(1, 1, 1))
        return np.array(x + np.random.normal(size=shape) * std, dtype=np.float32)
    if noise == "poisson30":
        return np.array(np.random.poisson(30.0 * x) / 30.0, dtype=np.float32)
    if noise == "poisson5_50":
        lam = np.random.uniform(5.0, 50.0, size=(1, 1, 1))
        return np.array(np.random.poisson(lam * x) / lam, dtype=np.float32)
    raise InputError(f"--noise: unknown noise {noise!r}")


def pad_square_reflect(x: np.ndarray) -> np.ndarray:
    """(H, W, C) → reflect-padded at bottom/right to (S, S, C), S = ceil(max(H, W)/32)·32."""
    side = math.ceil(max(x.shape[:2]) / 32) * 32
    return np.pad(x, ((0, side - x.shape[0]), (0, side - x.shape[1]), (0, 0)), mode="reflect")


@torch.no_grad()
def forward_protocol(model: torch.nn.Module, noisy: np.ndarray, device, precision: str = "fp32") -> np.ndarray:
    """One protocol forward: (H, W, 3) float32 noisy → (H, W, 3) uint8 prediction (clamp, round half up)."""
    h, w = noisy.shape[:2]
    xp = torch.from_numpy(pad_square_reflect(noisy).transpose(2, 0, 1).copy())[None].to(device)
    with autocast(torch.device(device), inference_precision(precision)):
        out = model(xp)
    pred = out[0, :, :h, :w].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return quantize_uint8(pred)


def evaluate_srgb(model: torch.nn.Module, folders: list[str | Path], noise: str = "gauss25",
                  repeat: int | None = None, seed: int = 101, device="cpu", precision: str = "fp32",
                  progress=None) -> dict:
    """Run the paper's sRGB protocol; returns the JSON report (psnr, ssim, count, noisy_psnr, per_image, sets)."""
    plan = []
    for folder in folders:
        files = validation_folder_images(folder)
        plan.append((Path(folder), files, repeat if repeat is not None else paper_repeat(folder)))
    total = sum(len(f) * r for _, f, r in plan)
    model = place_model(model, torch.device(device)).eval()
    np.random.seed(seed)  # once, for all folders: later sets' noise depends on earlier ones having run
    per_image, sets, done, t0 = [], [], 0, time.perf_counter()
    for folder, files, rep in plan:
        rows = []
        for r in range(rep):
            for f in files:
                clean = read_rgb(f)
                noisy = add_valid_noise(clean.astype(np.float32) / 255.0, noise)
                pred8 = forward_protocol(model, noisy, device, precision)
                noisy8 = quantize_uint8(np.clip(noisy, 0, 1))
                rows.append({"set": folder.name, "image": f.name, "repeat": r,
                             "psnr": metrics.psnr_uint8(pred8, clean), "ssim": metrics.ssim_matlab(pred8, clean),
                             "noisy_psnr": metrics.psnr_uint8(noisy8, clean)})
                done += 1
                if progress:
                    progress(done, total)
        sets.append(_summary(rows, name=folder.name, path=str(folder), repeat=rep))
        per_image += rows
    report = _summary(per_image)
    report.update(mode="srgb", noise=noise, seed=seed, sets=sets, per_image=per_image,
                  seconds=time.perf_counter() - t0)
    return report


def evaluate_raw(model: torch.nn.Module, noisy: np.ndarray, gt: np.ndarray, cfas: list[str], cfa_mode: str,
                 batch_size: int = 32, device="cpu", precision: str = "fp32", progress=None,
                 unify: str | None = None) -> dict:
    """SIDD-convention metrics of a raw model on blocks (N, B, h, w); returns the JSON report.
    ``unify``: how ``rggb`` mode brings non-RGGB blocks to RGGB phase (default :data:`n2n_raw.inference.tiling.BLOCK_UNIFY`)."""
    unify = tiling.BLOCK_UNIFY if unify is None else unify
    if noisy.shape != gt.shape:
        raise InputError(f"noisy blocks {noisy.shape} and ground truth {gt.shape} differ in shape")
    model = place_model(model, torch.device(device)).eval()
    t0 = time.perf_counter()
    pred = tiling.denoise_blocks(model, noisy, cfas, cfa_mode, batch_size, device, precision, progress, unify)
    seconds = time.perf_counter() - t0
    rows = []
    for i in range(noisy.shape[0]):
        for j in range(noisy.shape[1]):
            p, s = metrics.raw_block_metrics(pred[i, j], gt[i, j])
            pn = metrics.psnr(np.clip(noisy[i, j], 0, 1), gt[i, j], 1.0)
            rows.append({"image": i, "block": j, "psnr": p, "ssim": s, "noisy_psnr": pn})
    report = _summary(rows)
    mp = noisy.size / metrics.MEGAPIXEL
    report.update(mode="raw", cfa_mode=cfa_mode, block_unify=unify, per_image=rows, seconds=seconds,
                  seconds_per_megapixel=seconds / mp)
    return report


def _summary(rows: list[dict], **extra) -> dict:
    return {"psnr": float(np.mean([r["psnr"] for r in rows])), "ssim": float(np.mean([r["ssim"] for r in rows])),
            "noisy_psnr": float(np.mean([r["noisy_psnr"] for r in rows])), "count": len(rows), **extra}


def read_block_pair(noisy_path: str | Path, gt_path: str | Path, positions: str | Path | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """SIDD raw block files for :func:`evaluate_raw`: noisy (checked against ``positions``, the
    BenchmarkBlocks32.mat beside it by default) and ground truth, (N, B, h, w) each. Raises InputError where a
    file is unreadable or the two shapes differ."""
    noisy, gt = read_checked_blocks(noisy_path, positions), read_blocks(gt_path)
    if noisy.shape != gt.shape:
        raise InputError(f"{gt_path}: shape {gt.shape} differs from {noisy_path} {noisy.shape}")
    return noisy, gt
