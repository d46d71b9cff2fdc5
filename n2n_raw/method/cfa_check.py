"""A statistical self-check of a mosaic's CFA phase: do the data's two greens sit where the pattern says?

Used by ``prepare`` to warn about a frame whose CFA (from metadata or an override) disagrees with its pixels,
typically after an odd crop offset. Geometry (patterns, packing) is :mod:`n2n_raw.method.bayer`.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from n2n_raw.cfa import CFAS, PACK_ORDER, check_cfa

# The smallest mosaic cfa_phase_check() decides on; smaller data are "inconclusive".
_MIN_CHECK_PIXELS = 32 * 32


def _wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of the sorted samples (1-D Wasserstein distance), equal sizes."""
    return float(np.mean(np.abs(np.sort(a) - np.sort(b))))


def cfa_phase_check(mosaic, cfa: str, warn: bool = True, *, ratio: float = 2.0) -> bool:
    """Check that the data's two greens sit on the diagonal of the 2×2 cell that ``cfa`` says.

    The two greens of a cell sample the same colour channel, so their value distributions over the frame
    are nearly identical, while R and B (on the other diagonal) differ in level and content. For each
    diagonal pair — (0,0)/(1,1) and (0,1)/(1,0) — the distance between the two phases' value distributions
    (1-D Wasserstein distance of their sorted values) is measured relative to the mean level. The pair with
    the clearly smaller distance (by ``ratio``) is the green one. Distributions, not pixel-wise differences,
    are compared so that diagonal image structure can't favour one diagonal.

    What it can detect: a green-diagonal mismatch, i.e. a mosaic shifted by one row or column (RGGB/BGGR
    data labelled GRBG/GBRG or vice versa) — the usual result of an odd crop offset.
    What it cannot: R versus B. Their relative level depends on the illuminant and the white balance, so
    RGGB vs BGGR and GRBG vs GBRG are indistinguishable here — in particular a transposed GRBG/GBRG frame
    (the SIDD orientation trap) passes. Flat, nearly black or tiny data (fewer than 32×32 pixels), or data
    where R and B happen to look alike, are inconclusive: the check then returns True without warning.

    Args:
        mosaic: (H, W) or (N, H, W) ndarray/tensor (a stack of frames with the same pattern), H, W ≥ 2.
        cfa: the assumed pattern.
        warn: emit a one-line ``warnings.warn`` when the data clearly disagree.
        ratio: how much larger the other diagonal's distance must be to call the result clear.
    Returns:
        False only when the data clearly put the greens on the other diagonal; True otherwise.
    """
    cell = check_cfa(cfa)
    x = mosaic.detach().cpu().numpy() if isinstance(mosaic, torch.Tensor) else np.asarray(mosaic)
    if x.ndim not in (2, 3):
        raise ValueError(f"cfa_phase_check needs an (H, W) or (N, H, W) mosaic, got shape {x.shape}")
    if x.ndim == 2:
        x = x[None]
    h, w = x.shape[-2] - x.shape[-2] % 2, x.shape[-1] - x.shape[-1] % 2
    if x.shape[0] * h * w < _MIN_CHECK_PIXELS:
        return True
    # Subsample whole 2x2 cells with a stride to bound the cost on full frames (≈ 250k values per phase).
    cells = x.shape[0] * (h // 2) * (w // 2)
    step = max(1, int(np.sqrt(cells / 250_000)))
    cells = x[:, :h, :w].reshape(x.shape[0], h // 2, 2, w // 2, 2)[:, ::step, :, ::step, :]
    phases = [cells[:, :, dy, :, dx].astype(np.float64).ravel() for dy, dx in PACK_ORDER]
    finite = np.all([np.isfinite(q) for q in phases], axis=0)
    phases = [q[finite] for q in phases]
    if phases[0].size < _MIN_CHECK_PIXELS // 4:
        return True
    level = float(np.mean([np.mean(np.abs(q)) for q in phases]))
    spread = float(np.mean([np.std(q) for q in phases]))
    if level <= 1e-6 or max(level, spread) <= 1e-6:
        return True
    main = _wasserstein(phases[0], phases[3]) / level   # (0,0)-(1,1)
    anti = _wasserstein(phases[1], phases[2]) / level   # (0,1)-(1,0)
    floor = 1e-3  # below 0.1 % of the level both pairs look alike: no decision
    if max(main, anti) < floor or max(main, anti) < ratio * max(min(main, anti), floor / ratio):
        return True
    data_main = main < anti
    pattern_main = cell[0] == "G"
    if data_main == pattern_main:
        return True
    if warn:
        fit = [c for c in CFAS if (c[0] == "G") == data_main]
        diag, other = ("(0,0)-(1,1)", "(0,1)-(1,0)") if data_main else ("(0,1)-(1,0)", "(0,0)-(1,1)")
        warnings.warn(
            f"CFA self-check: the data's greens look like the {diag} diagonal of the 2×2 cell "
            f"(fits {' or '.join(fit)}), but pattern {cell} puts them on {other} "
            f"(relative distribution distance {min(main, anti):.3g} vs {max(main, anti):.3g}); "
            "a one-pixel crop offset or a wrong CFA?", stacklevel=2)
    return False
