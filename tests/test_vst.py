"""The generalized Anscombe transform against Monte-Carlo Poisson–Gaussian noise (numpy's own generators)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from n2n_raw.method.vst import gat, gat_inverse_algebraic, gat_inverse_unbiased

LEVELS = [(1e-4, 1e-6), (1e-3, 1e-5), (1e-2, 1e-4), (1e-3, 1e-3)]  # base ISO to read-noise-limited


def _draw(rng, x, a, b, n=200_000):
    return a * rng.poisson(x / a, n) + rng.normal(0.0, np.sqrt(b), n)


@pytest.mark.parametrize("a,b", LEVELS)
def test_gat_makes_the_noise_unit_variance(a, b):
    rng = np.random.default_rng(0)
    for x in (0.01, 0.1, 0.6):  # away from black, where the transform is variance-stabilising
        z = gat(_draw(rng, x, a, b), a, b)
        assert abs(z.std() - 1.0) < 0.05, (a, b, x, z.std())


@pytest.mark.parametrize("a,b", LEVELS)
def test_unbiased_inverse_returns_the_mean(a, b):
    """E[f(y)] mapped back gives x to 5 % of the noise σ at x (the closed form's worst case is at a fraction of
    a photon), black included."""
    rng = np.random.default_rng(1)
    for x in (0.0, 0.002, 0.05, 0.5):
        y = _draw(rng, x, a, b, 400_000)
        est = gat_inverse_unbiased(gat(y, a, b).mean(), a, b)
        sigma = np.sqrt(a * x + b)
        assert abs(est - x) < 0.05 * sigma + 1e-9, (a, b, x, est)


def test_algebraic_inverse_undoes_the_transform_and_is_monotonic():
    a, b = 2e-3, 3e-5
    y = np.linspace(-0.004, 1.0, 1001)  # all with a·y + 3/8·a² + b > 0
    assert np.allclose(gat_inverse_algebraic(gat(y, a, b), a, b), y, atol=1e-9)
    d = np.linspace(-5, 50, 500)
    assert (np.diff(gat_inverse_algebraic(d, a, b)) > 0).all()


def test_numpy_and_torch_agree_and_torch_has_gradients():
    rng = np.random.default_rng(2)
    y = rng.uniform(0.0, 1, 257).astype(np.float32)
    a = np.array([1e-3, 2e-3, 5e-4, 1e-2], np.float32)[:, None]
    b = np.array([1e-5, 0.0, 1e-6, 1e-4], np.float32)[:, None]
    yt = torch.tensor(np.broadcast_to(y, (4, 257)).copy(), requires_grad=True)
    z_t = gat(yt, torch.from_numpy(a), torch.from_numpy(b))
    assert np.allclose(z_t.detach().numpy(), gat(y, a, b), rtol=1e-5, atol=1e-4)
    for inv in (gat_inverse_algebraic, gat_inverse_unbiased):
        got = inv(z_t, torch.from_numpy(a), torch.from_numpy(b)).detach().numpy()
        assert np.allclose(got, inv(z_t.detach().numpy().astype(np.float64), a, b), rtol=1e-4, atol=1e-7)
    gat_inverse_algebraic(z_t, torch.from_numpy(a), torch.from_numpy(b)).sum().backward()
    assert torch.isfinite(yt.grad).all() and (yt.grad > 0).all()
