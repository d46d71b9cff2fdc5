"""Validation during training: a function model → (PSNR, SSIM) built from the run's configuration, and the
raw validation blocks, read once per process (validation and the run's end-of-training picture share them)."""
from __future__ import annotations

import functools

import numpy as np
import torch

from n2n_raw.config import TrainConfig
from n2n_raw.errors import InputError
from n2n_raw.evaluation.protocols import evaluate_raw, evaluate_srgb, read_block_pair
from n2n_raw.io.sidd import block_cfas


@functools.lru_cache(maxsize=1)
def val_blocks(noisy_path: str, gt_path: str) -> tuple[np.ndarray, np.ndarray]:
    """The raw validation block files, read once per process (validation and the end-of-run picture)."""
    return read_block_pair(noisy_path, gt_path)


def make_validator(cfg: TrainConfig, device: torch.device):
    """A function model → (psnr, ssim) for the configured validation data, or None. Validation runs in fp32
    whatever the training precision: a score is never taken under bf16 rounding."""
    if cfg.mode == "srgb" and cfg.val:
        return lambda m: _ps(evaluate_srgb(m, list(cfg.val), cfg.noise, cfg.val_repeat, 101, device, "fp32"))
    if cfg.mode == "raw" and cfg.val_noisy:
        if not cfg.val_gt:
            raise InputError("--val-gt: needed together with --val-noisy")
        noisy, gt = val_blocks(cfg.val_noisy, cfg.val_gt)
        cfas = block_cfas(noisy.shape[0], cfg.val_cfa)  # the blocks' own CFAs: --cfa is for the training data
        return lambda m: _ps(evaluate_raw(m, noisy, gt, cfas, cfg.cfa_mode, 32, device, "fp32"))
    return None


def _ps(report: dict) -> tuple[float, float]:
    return report["psnr"], report["ssim"]
