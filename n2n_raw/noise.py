"""Synthetic noise models of the sRGB mode, in [0, 1] units, never clipped or quantised.

Each model is a small module called as ``model(clean, generator)``; all randomness comes from the explicit
``torch.Generator`` so a run is reproducible. Noise is per pixel and channel (the reference's current-PyTorch
defect, one constant offset per image, cannot happen here: see tests).
"""
from __future__ import annotations

import torch
from torch import nn

from .config import NOISES


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


class RawShotReadNoise(nn.Module):
    """Raw shot + read noise: y = clip(x + N(0, a·x + b), 0, 1) per pixel, with (a, b) per sample.

    The normal approximation of :func:`n2n_raw.sidd_synth.add_raw_noise` (the synthetic SIDD world's model,
    levels from :func:`~n2n_raw.sidd_synth.raw_noise_params`), drawn on the device from the explicit generator
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
