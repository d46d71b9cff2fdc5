"""Synthetic noise models: the sRGB mode's (in [0, 1] units, never clipped or quantised) and the raw shot + read
noise of the built-in data (clipped to [0, 1] as SIDD's normalised raw is).

Each model is a small module called as ``model(clean, generator)``; all randomness comes from the explicit
``torch.Generator`` so a run is reproducible. Noise is per pixel and channel (the reference's current-PyTorch
defect, one constant offset per image, cannot happen here: see tests).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from n2n_raw.config import NOISES


class GaussianNoise(nn.Module):
    """y = x + N(0, σ²) per pixel; σ fixed, or drawn per sample from U[σ_lo, σ_hi] (pixel units /255).

    Data-parallel training: with ``part=(sl, n_global)`` the draws are made for the global batch of
    ``n_global`` samples and ``sl`` selects this rank's samples, so ranks together add exactly the noise one
    process would add to the whole batch.
    """

    def __init__(self, sigma: float | tuple[float, float]):
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None,
                part: tuple[slice, int] | None = None) -> torch.Tensor:
        """x: (N, C, H, W) float in [0, 1] → noisy (N, C, H, W), unclipped."""
        sl, n = part if part is not None else (slice(None), x.shape[0])
        if isinstance(self.sigma, tuple):
            lo, hi = self.sigma
            u = torch.rand((n,) + (1,) * (x.dim() - 1), generator=generator, device=x.device)[sl]
            std = (lo + (hi - lo) * u) / 255.0
        else:
            std = self.sigma / 255.0
        z = torch.randn((n,) + tuple(x.shape[1:]), generator=generator, device=x.device, dtype=x.dtype)[sl]
        return x + z * std


class PoissonNoise(nn.Module):
    """y = Poisson(λ·x)/λ; λ fixed, or drawn per sample from U[λ_lo, λ_hi]."""

    def __init__(self, lam: float | tuple[float, float]):
        super().__init__()
        self.lam = lam

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None,
                part: tuple[slice, int] | None = None) -> torch.Tensor:
        """x: (N, C, H, W) float in [0, 1] → noisy (N, C, H, W), values k/λ for integers k ≥ 0.

        With ``part`` the per-sample λ are drawn for the global batch and sliced (see GaussianNoise); the
        Poisson draws themselves depend on each rank's own samples.
        """
        sl, n = part if part is not None else (slice(None), x.shape[0])
        if isinstance(self.lam, tuple):
            lo, hi = self.lam
            u = torch.rand((n,) + (1,) * (x.dim() - 1), generator=generator, device=x.device)[sl]
            lam = lo + (hi - lo) * u
        else:
            lam = torch.tensor(float(self.lam), device=x.device)
        rate = (x.float() * lam).clamp_min(0)
        return (torch.poisson(rate, generator=generator) / lam).to(x.dtype)


#: The raw noise model of the built-in data (the synthetic SIDD world, ``--redraw-noise``): SIDD-like shot and
#: read noise that grow with ISO.
_A100, _A_EXP = 4.0e-4, 0.85   # shot-noise gain: a = _A100 · (iso/100)^_A_EXP
_B100, _B_EXP = 4.0e-6, 1.40   # read-noise variance: b = _B100 · (iso/100)^_B_EXP


def raw_noise_params(iso: float) -> tuple[float, float]:
    """Shot + read noise for an ISO: variance of a pixel with clean value x (normalised raw) = a·x + b.

    SIDD-like levels, chosen so that noisy PSNR spans roughly 23–44 dB (ISO 100: a = 4e-4, b = 4e-6;
    ISO 3200: a ≈ 7.5e-3, b ≈ 5.1e-4; ISO 10000: a ≈ 2.0e-2, b ≈ 2.5e-3). Both grow monotonically with ISO.
    """
    iso = float(iso)
    if not iso > 0:
        raise ValueError(f"ISO must be positive, got {iso}")
    g = iso / 100.0
    return _A100 * g ** _A_EXP, _B100 * g ** _B_EXP


def add_raw_noise(rng: np.random.Generator, clean: np.ndarray, a: float, b: float) -> np.ndarray:
    """Noisy raw: clean + N(0, a·clean + b) per pixel (normal approximation of shot + read noise), clipped
    to [0, 1] as SIDD's normalised raw is. ``clean``: float array in [0, 1]; returns float32 of its shape."""
    clean = np.asarray(clean, dtype=np.float32)
    std = np.sqrt(np.maximum(a * clean + b, 0.0)).astype(np.float32)
    noisy = clean + std * rng.standard_normal(clean.shape, dtype=np.float32)
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


class RawShotReadNoise(nn.Module):
    """Raw shot + read noise: y = clip(x + N(0, a·x + b), 0, 1) per pixel, with (a, b) per sample.

    The normal approximation of :func:`add_raw_noise` (the synthetic SIDD world's model,
    levels from :func:`raw_noise_params`), drawn on the device from the explicit generator
    so that raw training can redraw its noise every step (``train --redraw-noise``).
    """

    def forward(self, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, generator: torch.Generator | None = None,
                part: tuple[slice, int] | None = None) -> torch.Tensor:
        """x: (N, C, H, W) clean in [0, 1]; a, b: (N,) this rank's samples' levels → noisy (N, C, H, W) in
        [0, 1]. With ``part`` the normal draws are made for the global batch and sliced (see GaussianNoise)."""
        if a.shape != (x.shape[0],) or b.shape != (x.shape[0],):
            raise ValueError(f"a and b must be ({x.shape[0]},) for x {tuple(x.shape)}, got {tuple(a.shape)}, "
                             f"{tuple(b.shape)}")
        sl, n = part if part is not None else (slice(None), x.shape[0])
        z = torch.randn((n,) + tuple(x.shape[1:]), generator=generator, device=x.device, dtype=torch.float32)[sl]
        shape = (-1,) + (1,) * (x.dim() - 1)
        var = (a.to(x.device, torch.float32).view(shape) * x.float() + b.to(x.device, torch.float32).view(shape))
        return (x.float() + var.clamp_min(0).sqrt() * z).clamp(0, 1).to(x.dtype)


def make_noise(name: str) -> nn.Module:
    """The paper's noise model by name: gauss25, gauss5_50, poisson30, poisson5_50."""
    table = {
        "gauss25": lambda: GaussianNoise(25.0),
        "gauss5_50": lambda: GaussianNoise((5.0, 50.0)),
        "poisson30": lambda: PoissonNoise(30.0),
        "poisson5_50": lambda: PoissonNoise((5.0, 50.0)),
    }
    if name not in table:
        raise ValueError(f"unknown noise {name!r} (expected one of {', '.join(NOISES)})")
    return table[name]()
