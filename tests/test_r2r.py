"""Recorrupted-to-Recorrupted: its loss ranks denoisers as the MSE against the clean signal does; the linear-unit
variant (r2r-lin) is unbiased in the dark, where the GAT-domain one is not."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from n2n_raw.method.gat_unet import GatUNet
from n2n_raw.method.loss import R2R_ALPHA, r2r_linear_loss, r2r_loss
from n2n_raw.method.unet import UNet
from n2n_raw.method.vst import gat, gat_inverse_algebraic


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


class _Constant(nn.Module):
    """A stand-in GatUNet whose map in the stabilised domain is the constant ``d``; without gradient (the
    estimate behind r2r-lin's σ) it is ``estimate`` (linear units, in the (a, b) domain) when given."""

    def __init__(self, a: float, b: float, d: float, estimate: float | None = None):
        super().__init__()
        self.a, self.b = torch.full((1, 4, 1, 1), a), torch.full((1, 4, 1, 1), b)
        self.d, self.estimate = d, estimate

    def stabilise(self, x):
        return gat(x, self.a, self.b)

    def forward(self, x, stabilised=False):
        if self.estimate is not None and not torch.is_grad_enabled():
            out = gat(torch.full_like(x, self.estimate), self.a, self.b)
            return out if stabilised else torch.full_like(x, self.estimate)
        out = torch.full_like(x, self.d)
        return out if stabilised else gat_inverse_algebraic(out, self.a, self.b)


@pytest.mark.parametrize("x_over_a", [0.2, 5.0])
def test_r2r_lin_is_unbiased_in_the_dark_where_gat_r2r_is_not(x_over_a):
    """On a flat, dark Poisson–Gaussian frame (low-light read noise, b = 6.25·a²) the best constant under
    r2r-lin is the true x; under the GAT-domain r2r it is x − a/4 (the algebraic inverse of E[GAT(y)])."""
    a, b = 4e-3, 1e-4
    x = x_over_a * a
    g = torch.Generator().manual_seed(1)
    shape = (8, 4, 64, 64)
    y = torch.poisson(torch.full(shape, x / a), generator=g) * a + torch.randn(shape, generator=g) * b ** 0.5
    e = torch.randn(y.shape, generator=g)
    k = (1 + R2R_ALPHA ** 2) ** -0.5
    c = 1 + R2R_ALPHA ** 2
    lin_x = torch.linspace(x - a, x + a, 81)  # candidate constant outputs, linear units

    def best(loss_of):
        return float(lin_x[int(torch.argmin(torch.tensor([loss_of(float(v)) for v in lin_x])))])
    # r2r (GAT domain, k-scaled): the constant d in k·GAT units whose inverse (k-scaled back) is v
    gat_best = best(lambda v: float(r2r_loss(_Constant(a, b, k * float(gat(torch.tensor(v), a, b))), y, e)[0]))
    # r2r-lin: the constant in the (1 + α²)-profile's GAT domain whose algebraic inverse is v; the estimate
    # behind σ is held at x (no gradient flows through it: training's fixed point is a stationary point)
    lin_best = best(lambda v: float(r2r_linear_loss(_Constant(a, b, float(gat(torch.tensor(v), c * a, c * b)), x),
                                                    y, e)[0]))
    assert lin_best == pytest.approx(x, abs=0.05 * a)
    assert gat_best == pytest.approx(x - a / 4, abs=0.08 * a)
    assert float(gat_inverse_algebraic(gat(torch.tensor(x), a, b), a, b)) == pytest.approx(x, abs=1e-6)


def test_r2r_lin_trains_a_gat_unet():
    torch.manual_seed(0)
    m = GatUNet(UNet(4, 4, residual=True), [1e-3] * 4, [1e-5] * 4)
    y = torch.rand(2, 4, 32, 32) * 0.3
    loss, rec, reg = r2r_linear_loss(m, y, torch.randn(y.shape))
    loss.backward()
    assert float(reg) == 0.0 and float(rec) == float(loss.detach()) > 0
    assert all(p.grad is not None for p in m.net.parameters())


def test_r2r_lin_takes_each_crops_profile():
    """Given per-crop profiles, the loss is the sum of each crop's loss under its own profile."""
    torch.manual_seed(0)
    m = GatUNet(UNet(4, 4, residual=True), [1e-3] * 4, [1e-5] * 4)
    y = torch.rand(2, 4, 32, 32) * 0.3
    e = torch.randn(y.shape)
    a = torch.tensor([1e-3, 2e-2]).view(2, 1, 1, 1).expand(2, 4, 1, 1)
    b = torch.tensor([1e-5, 4e-4]).view(2, 1, 1, 1).expand(2, 4, 1, 1)
    with torch.no_grad():
        both = float(r2r_linear_loss(m, y, e, a, b)[0])
        each = []
        for i in range(2):
            m.set_profile(a[i].flatten(), b[i].flatten())
            each.append(float(r2r_linear_loss(m, y[i:i + 1], e[i:i + 1])[0]))
    assert both == pytest.approx(sum(each) / 2, rel=1e-5)
