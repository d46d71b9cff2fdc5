"""The generalized Anscombe transform (GAT) for Poisson–Gaussian raw noise, and its inverses.

Noise model, in the project's normalised units (black 0, white 1): y = a·P(x/a) + N(0, b), so that
var(y | x) = a·x + b. The GAT (Murtagh, Starck & Bijaoui 1995; Mäkitalo & Foi 2013)

    f(y) = (2/a)·sqrt(max(a·y + 3/8·a² + b, 0))

makes the noise approximately Gaussian with unit variance, whatever x. Two inverses:

- :func:`gat_inverse_unbiased`: the closed-form approximation of the *exact unbiased* inverse (Mäkitalo & Foi,
  "Optimal inversion of the generalized Anscombe transformation for Poisson-Gaussian noise", IEEE TIP 2013),
  the one to use after a denoiser that estimates E[f(y)] (BM3D): the algebraic inverse of that expectation is
  biased low in the dark, where the transform is most curved.
- :func:`gat_inverse_algebraic`: f⁻¹ as a formula, for a network trained end to end through it (it learns its
  own bias correction). Monotonic and smooth everywhere (odd extension below 0), so gradients flow.

Every function takes numpy arrays or torch tensors (a, b scalars or broadcastable arrays/tensors, a > 0,
b ≥ 0) and returns the same kind.
"""
from __future__ import annotations

import math

import numpy as np

_SQRT_3_2 = math.sqrt(1.5)


def _lib(x):
    if isinstance(x, np.ndarray) or np.isscalar(x):
        return np
    import torch
    return torch


def gat(y, a, b):
    """Forward GAT of noisy values ``y`` (any shape, normalised units; values below 0 allowed) → unit-variance
    noise. Where a·y + 3/8·a² + b < 0 (far below black) the result is 0."""
    lib = _lib(y)
    u = a * y + 0.375 * a * a + b
    return (2.0 / a) * lib.sqrt(lib.clip(u, 0.0, None) if lib is np else u.clamp(min=0.0))


def gat_inverse_algebraic(d, a, b):
    """The algebraic inverse f⁻¹(d) = (a/4)·d·|d| − 3/8·a − b/a (d·|d| rather than d²: monotonic below 0)."""
    lib = _lib(d)
    return 0.25 * a * d * lib.abs(d) - 0.375 * a - b / a


def gat_inverse_unbiased(d, a, b):
    """Closed-form approximation of the exact unbiased inverse: the x whose E[f(y)] is ``d``.

    In the unit-gain variable (z = y/a, σ² = b/a²):
    I(D) = D²/4 + √(3/2)/(4D) − 11/(8D²) + 5√(3/2)/(8D³) − 1/8 − σ², clipped at 0; then x = a·I. ``d`` below
    the transform of x = 0 (where the series is not valid) maps to 0.
    """
    lib = _lib(d)
    s2 = b / (a * a)
    # Below D ≈ 0.7 the series turns back up (its D⁻³ term); every D under ≈ 1.2 already maps to 0, so clamping
    # D at 0.8 changes nothing else.
    dd = np.maximum(np.asarray(d, np.float64), 0.8) if lib is np else d.clamp(min=0.8)
    inv = 0.25 * dd ** 2 + 0.25 * _SQRT_3_2 / dd - 1.375 / dd ** 2 + 0.625 * _SQRT_3_2 / dd ** 3 - 0.125 - s2
    inv = lib.clip(inv, 0.0, None) if lib is np else inv.clamp(min=0.0)
    return a * inv
