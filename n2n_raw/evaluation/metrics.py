"""Image quality metrics, computed the way the published numbers were computed.

Everything here is plain numpy/scipy in float64 (no scikit-image, no OpenCV):

- :func:`psnr` — PSNR for any data range; :func:`psnr_uint8` — the sRGB protocol's PSNR over all values of
  two uint8 images (peak 255).
- :func:`ssim_matlab` — SSIM exactly as Wang et al.'s ``ssim_index.m`` (and the Neighbor2Neighbor
  reference's ``calculate_ssim``) compute it: an 11×11 Gaussian window with σ = 1.5 normalised to sum 1,
  'valid' filtering (the 5-pixel border is not scored), C1 = (0.01·L)², C2 = (0.03·L)², mean of the map;
  colour images are scored per channel and the three means averaged.
- :func:`~n2n_raw.io.images.quantize_uint8` (in io: PNG writing uses it too) — the sRGB protocol's rounding of a [0, 1] prediction to uint8.
- :func:`srgb_image_metrics` — one evaluation of the sRGB protocol (quantise, PSNR, SSIM).
- :func:`raw_block_metrics` / :func:`raw_block_scores` — the SIDD raw convention: prediction clamped to
  [0, 1], PSNR with data range 1 per block, MATLAB-style SSIM on the blocks ×255 (float, not quantised),
  means over blocks.
- :data:`MEGAPIXEL` — the pixel count behind every "s/MP" and "MP" the package prints.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from n2n_raw.io.images import quantize_uint8

__all__ = [
    "SSIM_WINDOW", "SSIM_SIGMA", "gaussian_window_1d", "psnr", "psnr_uint8", "ssim_matlab", 
    "srgb_image_metrics", "raw_block_scores", "raw_block_metrics", "MEGAPIXEL",
]

#: One megapixel, as the SIDD benchmark kit counts it for ``TimeMPRaw`` (seconds per megapixel = total
#: seconds · 1024·1024 / (40·32·256·256)): 2^20 pixels. Used for every MP the package reports, so a
#: submission's time and ``evaluate``'s or ``denoise``'s seconds per megapixel compare directly.
MEGAPIXEL = 1024 * 1024

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03


def gaussian_window_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """The normalised 1-D Gaussian whose outer product with itself is MATLAB's ``fspecial('gaussian')``.

    Returns float64 (size,), summing to 1 (the 2-D window ``np.outer(g, g)`` then sums to 1 too).
    """
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        raise ValueError("empty arrays")
    return a, b


def psnr(a, b, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB: ``10·log10(data_range² / mean((a − b)²))``.

    Args:
        a, b: arrays of the same shape, any real dtype (converted to float64).
        data_range: the peak value L (e.g. 1.0 for [0, 1] data, 255 for uint8).
    Returns:
        float; ``inf`` when a and b are identical.
    """
    a, b = _pair(a, b)
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(float(data_range) ** 2 / mse)


def psnr_uint8(a_u8: np.ndarray, b_u8: np.ndarray) -> float:
    """PSNR over all values of two uint8 images (any shape, e.g. (H, W, 3)), peak 255. ``inf`` if equal."""
    for x in (a_u8, b_u8):
        if np.asarray(x).dtype != np.uint8:
            raise ValueError(f"psnr_uint8 expects uint8 arrays, got {np.asarray(x).dtype}")
    return psnr(a_u8, b_u8, 255.0)


def _valid_filter(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Correlate the last two axes of float64 ``x`` with the separable window ``outer(g, g)``, 'valid' region.

    (C, H, W) → (C, H − k + 1, W − k + 1), k = len(g).
    """
    r = len(g) // 2
    # correlate1d centres the kernel on each sample (origin 0); the border mode only affects outputs within
    # r pixels of the edge, which the crop below removes, so the result is exactly the 'valid' correlation.
    y = ndimage.correlate1d(x, g, axis=1, mode="constant")[:, r:x.shape[1] - r]
    return ndimage.correlate1d(y, g, axis=2, mode="constant")[:, :, r:x.shape[2] - r]


def _ssim_channels(a: np.ndarray, b: np.ndarray, data_range: float) -> np.ndarray:
    """Mean SSIM of each channel of float64 (C, H, W) arrays → float64 (C,)."""
    g = gaussian_window_1d()
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    mu_a = _valid_filter(a, g)
    mu_b = _valid_filter(b, g)
    aa = _valid_filter(a * a, g) - mu_a * mu_a
    bb = _valid_filter(b * b, g) - mu_b * mu_b
    ab = _valid_filter(a * b, g) - mu_a * mu_b
    ssim_map = ((2.0 * mu_a * mu_b + c1) * (2.0 * ab + c2)) / (
        (mu_a * mu_a + mu_b * mu_b + c1) * (aa + bb + c2))
    return ssim_map.mean(axis=(1, 2))


def ssim_matlab(a, b, data_range: float = 255.0) -> float:
    """MATLAB-style SSIM (Wang et al. 2004 ``ssim_index.m``; the Neighbor2Neighbor reference's SSIM).

    Args:
        a, b: same shape, (H, W) or (H, W, C) (C = 3 for RGB; every channel is scored separately), any real
            dtype, values on the scale of ``data_range`` (uint8 values for the sRGB protocol; raw blocks ×255).
            H and W must be at least 11.
        data_range: L in C1 = (0.01·L)² and C2 = (0.03·L)²; 255 by default.
    Returns:
        float, the mean of the SSIM map over the valid region (H − 10) × (W − 10), averaged over channels.
        1.0 for identical inputs.
    """
    a, b = _pair(a, b)
    if a.ndim == 2:
        a, b = a[None], b[None]
    elif a.ndim == 3:
        a, b = np.moveaxis(a, -1, 0), np.moveaxis(b, -1, 0)  # channels first: contiguous rows filter faster
    else:
        raise ValueError(f"ssim_matlab expects (H, W) or (H, W, C) arrays, got shape {a.shape}")
    if a.shape[1] < SSIM_WINDOW or a.shape[2] < SSIM_WINDOW:
        raise ValueError(f"ssim_matlab needs images of at least {SSIM_WINDOW}×{SSIM_WINDOW}, got {a.shape[1:]}")
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return float(np.mean(_ssim_channels(a, b, float(data_range))))


def srgb_image_metrics(pred01: np.ndarray, clean_u8: np.ndarray) -> tuple[float, float]:
    """One evaluation of the sRGB validation protocol.

    Args:
        pred01: float (H, W, 3) prediction in [0, 1] (clamped here).
        clean_u8: uint8 (H, W, 3) clean image.
    Returns:
        (PSNR in dB over all uint8 values, MATLAB-style SSIM on uint8 values averaged over the 3 channels),
        both computed on ``quantize_uint8(pred01)``.
    """
    pred8 = quantize_uint8(pred01)
    return psnr_uint8(pred8, clean_u8), ssim_matlab(pred8, clean_u8, 255.0)


def raw_block_scores(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    """Per-block scores of the SIDD raw convention.

    Args:
        pred: (N, h, w) or (h, w) denoised blocks (any real dtype, e.g. float32); clamped to [0, 1] here.
        gt: same shape, the clean blocks in [0, 1] (used as given).
    Returns:
        (psnr, ssim): two float64 arrays of shape (N,): PSNR with data range 1 per block (``inf`` for an exact
        block); MATLAB-style SSIM on the blocks scaled ×255 (float, not quantised) with L = 255.
        Math is float64, done a few blocks at a time, so memory stays bounded for all 1280 SIDD blocks.
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"shapes differ: {pred.shape} vs {gt.shape}")
    if pred.ndim == 2:
        pred, gt = pred[None], gt[None]
    if pred.ndim != 3 or pred.shape[0] == 0:
        raise ValueError(f"raw blocks are (N, h, w) or (h, w), got shape {pred.shape}")
    if pred.shape[1] < SSIM_WINDOW or pred.shape[2] < SSIM_WINDOW:
        raise ValueError(f"raw blocks must be at least {SSIM_WINDOW}×{SSIM_WINDOW}, got {pred.shape[1:]}")
    n = pred.shape[0]
    ps = np.empty(n, dtype=np.float64)
    ss = np.empty(n, dtype=np.float64)
    step = 32
    for i in range(0, n, step):
        p = np.clip(np.asarray(pred[i:i + step], dtype=np.float64), 0.0, 1.0)
        g = np.asarray(gt[i:i + step], dtype=np.float64)
        mse = np.mean((p - g) ** 2, axis=(1, 2))
        with np.errstate(divide="ignore"):
            ps[i:i + step] = 10.0 * np.log10(1.0 / mse)  # mse == 0 gives inf
        ss[i:i + step] = _ssim_channels(p * 255.0, g * 255.0, 255.0)  # blocks play the channels' part
    return ps, ss


def raw_block_metrics(pred, gt) -> tuple[float, float]:
    """The SIDD raw convention's mean scores: ``(mean PSNR, mean SSIM)`` over blocks.

    Args as :func:`raw_block_scores` ((N, h, w) or (h, w) float arrays, gt in [0, 1]).
    Returns:
        (float, float). A block identical to its ground truth has PSNR ``inf``, which makes the mean ``inf``.
    """
    ps, ss = raw_block_scores(pred, gt)
    return float(ps.mean()), float(ss.mean())
