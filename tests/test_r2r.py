"""Recorrupted-to-Recorrupted: its loss ranks denoisers as the MSE against the clean signal does."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from n2n_raw.method.loss import R2R_ALPHA, r2r_loss
from n2n_raw.method.gat_unet import GatUNet
from n2n_raw.method.unet import UNet


class _Gaussian(nn.Module):
    """A stand-in whose stabilised domain is the identity (the noise is already unit Gaussian) and whose map
    there is a fixed 3×3 smoothing of strength ``w``: different ``w`` are different denoisers."""

    def __init__(self, w: float):
        super().__init__()
        self.w = w

    def stabilise(self, x):
        return x

    def forward(self, x, stabilised=False):
        assert stabilised
        k = torch.full((4, 1, 3, 3), 1 / 9.0)
        smooth = nn.functional.conv2d(nn.functional.pad(x, (1, 1, 1, 1), mode="reflect"), k, groups=4)
        return (1 - self.w) * x + self.w * smooth


def test_r2r_loss_differs_from_the_clean_mse_by_a_constant():
    """E[r2r(f)] = E[‖f(k(y + αe)) − k·s‖²] + c for every f: the differences between denoisers agree."""
    g = torch.Generator().manual_seed(0)
    s = torch.nn.functional.avg_pool2d(torch.rand(64, 4, 64, 64, generator=g) * 8, 5, 1, 2)  # smooth signal
    y = s + torch.randn(s.shape, generator=g)
    e = torch.randn(s.shape, generator=g)
    k = (1 + R2R_ALPHA ** 2) ** -0.5
    r2r, true = [], []
    for w in (0.0, 0.5, 1.0):
        f = _Gaussian(w)
        r2r.append(float(r2r_loss(f, y, e)[0]))
        true.append(float(torch.mean((f(k * (y + R2R_ALPHA * e), stabilised=True) - k * s) ** 2)))
    for i in (1, 2):
        assert r2r[i] - r2r[0] == pytest.approx(true[i] - true[0], abs=0.01), (r2r, true)
    assert true[2] < true[0]  # smoothing helps here, and r2r sees it
    assert r2r[2] < r2r[0]


def test_r2r_trains_a_gat_unet_in_its_own_domain():
    torch.manual_seed(0)
    m = GatUNet(UNet(4, 4, residual=True), [1e-3] * 4, [1e-5] * 4)
    y = torch.rand(2, 4, 32, 32) * 0.3
    e = torch.randn(y.shape)
    loss, rec, reg = r2r_loss(m, y, e)
    loss.backward()
    assert float(reg) == 0.0 and float(rec) == float(loss.detach()) > 0
    assert all(p.grad is not None for p in m.net.parameters())
