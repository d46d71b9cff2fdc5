"""The Neighbor2Neighbor loss against hand computations on tiny inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from n2n_raw.method.loss import gamma_for_epoch, n2n_loss
from n2n_raw.method.subsample import draw_masks

_POS = {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 1)}


def loop_subsample(x: np.ndarray, masks: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """g1, g2 by explicit loops over cells (independent of the library's gather)."""
    n, c, h, w = x.shape
    m = masks.numpy()
    g1 = np.empty((n, c, h // 2, w // 2), x.dtype)
    g2 = np.empty_like(g1)
    for b in range(n):
        for i in range(h // 2):
            for j in range(w // 2):
                (a1, b1), (a2, b2) = _POS[int(m[0, b, 0, 0, i, j])], _POS[int(m[1, b, 0, 0, i, j])]
                g1[b, :, i, j] = x[b, :, 2 * i + a1, 2 * j + b1]
                g2[b, :, i, j] = x[b, :, 2 * i + a2, 2 * j + b2]
    return g1, g2


def fixed_conv(k: int, seed: int, c: int = 3) -> nn.Conv2d:
    """A deterministic conv with fixed (seeded) weights, float64."""
    conv = nn.Conv2d(c, c, k, padding=k // 2).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g, dtype=torch.float64) * 0.3)
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=g, dtype=torch.float64) * 0.1)
    return conv


def hand_loss(model: nn.Module, y: torch.Tensor, masks: torch.Tensor, gamma: float, l1: float, l2: float):
    """The spec's formula, step by step, in numpy float64 (model outputs taken from the model itself).

    The library reduces in fp32, hence the 1e-5 relative tolerances below.
    """
    yn = y.numpy()
    with torch.no_grad():
        fy = model(y).numpy()
    g1, g2 = loop_subsample(yn, masks)
    fg1, fg2 = loop_subsample(fy, masks)
    with torch.no_grad():
        f_g1 = model(torch.from_numpy(g1)).numpy()
    d = f_g1 - g2
    exp_d = fg1 - fg2
    rec = np.mean(d ** 2)
    reg = np.mean((d - exp_d) ** 2)
    return l1 * rec + l2 * gamma * reg, rec, reg


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("gamma,l1,l2", [(0.0, 1.0, 1.0), (0.37, 1.0, 1.0), (1.5, 0.7, 1.3), (2.0, 0.0, 2.5)])
def test_loss_equals_hand_computation(n, k, gamma, l1, l2):
    gen = torch.Generator().manual_seed(10 * n + k)
    y = torch.rand(n, 3, 4, 4, generator=gen, dtype=torch.float64)
    masks = draw_masks(n, 4, 4, gen)
    model = fixed_conv(k, seed=k)
    loss, rec, reg = n2n_loss(model, y, masks, gamma, l1, l2)
    want, want_rec, want_reg = hand_loss(model, y, masks, gamma, l1, l2)
    assert loss.dim() == rec.dim() == reg.dim() == 0
    np.testing.assert_allclose(rec.item(), want_rec, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(reg.item(), want_reg, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(loss.item(), want, rtol=1e-5, atol=1e-9)
    assert not rec.requires_grad and not reg.requires_grad
    assert loss.requires_grad


def test_pointwise_model_closed_form():
    """For a pointwise model f, g1(f(y)) = f(g1(y)), so d − exp_d = g2(f(y)) − g2(y): check that identity."""
    gen = torch.Generator().manual_seed(4)
    y = torch.rand(2, 3, 4, 4, generator=gen, dtype=torch.float64)
    masks = draw_masks(2, 4, 4, gen)
    model = fixed_conv(1, seed=9)
    _, _, reg = n2n_loss(model, y, masks, 1.0)
    _, g2 = loop_subsample(y.numpy(), masks)
    with torch.no_grad():
        f_g2 = model(torch.from_numpy(g2)).numpy()
    np.testing.assert_allclose(reg.item(), np.mean((f_g2 - g2) ** 2), rtol=1e-5)


class Recorder(nn.Module):
    """Wraps a model; records (input shape, grad enabled) of every call."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, x):
        self.calls.append((tuple(x.shape), torch.is_grad_enabled()))
        return self.inner(x)


def test_full_image_pass_has_no_grad_and_subimage_pass_has():
    gen = torch.Generator().manual_seed(0)
    y = torch.rand(2, 3, 8, 6, generator=gen, dtype=torch.float64)
    rec = Recorder(fixed_conv(3, seed=1))
    n2n_loss(rec, y, draw_masks(2, 8, 6, gen), 1.0)
    assert sorted(rec.calls) == sorted([((2, 3, 8, 6), False), ((2, 3, 4, 3), True)])


def _torch_loss(model, y, masks, gamma, l1, l2, detach_exp: bool):
    """The formula in torch with explicit-index sub-sampling, exp_diff detached or not."""
    n, c, h, w = y.shape
    m = masks.numpy()

    def sub(t, which):
        rows = []
        for b in range(n):
            cols = []
            for i in range(h // 2):
                line = []
                for j in range(w // 2):
                    a, bb = _POS[int(m[which, b, 0, 0, i, j])]
                    line.append(t[b, :, 2 * i + a, 2 * j + bb])
                cols.append(torch.stack(line, dim=-1))
            rows.append(torch.stack(cols, dim=-2))
        return torch.stack(rows)

    fy = model(y)
    if detach_exp:
        fy = fy.detach()
    exp_d = sub(fy, 0) - sub(fy, 1)
    d = model(sub(y, 0)) - sub(y, 1)
    return l1 * torch.mean(d ** 2) + l2 * gamma * torch.mean((d - exp_d) ** 2)


def _grads(model, fn):
    model.zero_grad(set_to_none=True)
    fn().backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("k", [1, 3])
def test_gradients_treat_full_pass_as_constant(k):
    gen = torch.Generator().manual_seed(21 + k)
    y = torch.rand(2, 3, 4, 4, generator=gen, dtype=torch.float64)
    masks = draw_masks(2, 4, 4, gen)
    model = fixed_conv(k, seed=3)
    gamma, l1, l2 = 1.7, 0.8, 1.2
    got = _grads(model, lambda: n2n_loss(model, y, masks, gamma, l1, l2)[0])
    want = _grads(model, lambda: _torch_loss(model, y, masks, gamma, l1, l2, detach_exp=True))
    wrong = _grads(model, lambda: _torch_loss(model, y, masks, gamma, l1, l2, detach_exp=False))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    # the check is discriminating: letting gradient flow through f(y) changes the gradients
    rel = max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(got, wrong))
    assert rel > 1e-2


def test_input_gradient_matches_hand_formula():
    """The gradient w.r.t. y flows through g1(y) (into f) and g2(y) (target) only, not through f(y)."""
    gen = torch.Generator().manual_seed(5)
    y = torch.rand(1, 3, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    masks = draw_masks(1, 4, 4, gen)
    model = fixed_conv(3, seed=2)
    n2n_loss(model, y, masks, 1.3)[0].backward()
    g_lib, y.grad = y.grad.clone(), None
    _torch_loss(model, y, masks, 1.3, 1.0, 1.0, detach_exp=True).backward()
    torch.testing.assert_close(g_lib, y.grad, rtol=1e-5, atol=1e-7)


def test_fp32_results_under_bf16_autocast():
    gen = torch.Generator().manual_seed(8)
    y = torch.rand(1, 3, 4, 4, generator=gen)
    model = fixed_conv(3, seed=4).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, rec, reg = n2n_loss(model, y, draw_masks(1, 4, 4, gen), 0.5)
    assert loss.dtype == rec.dtype == reg.dtype == torch.float32


def test_gamma_tensor_accepted():
    gen = torch.Generator().manual_seed(9)
    y = torch.rand(1, 3, 4, 4, generator=gen, dtype=torch.float64)
    masks = draw_masks(1, 4, 4, gen)
    model = fixed_conv(3, seed=4)
    a = n2n_loss(model, y, masks, 0.6)[0]
    b = n2n_loss(model, y, masks, torch.tensor(0.6))[0]
    assert b.item() == pytest.approx(a.item(), rel=1e-6)


@pytest.mark.parametrize("epoch,n_epochs,ratio,want", [
    (1, 100, 2.0, 0.02), (50, 100, 2.0, 1.0), (100, 100, 2.0, 2.0), (1, 100, 1.0, 0.01),
    (3, 4, 1.0, 0.75), (10, 10, 2.0, 2.0), (7, 20, 0.0, 0.0),
])
def test_gamma_for_epoch(epoch, n_epochs, ratio, want):
    assert gamma_for_epoch(epoch, n_epochs, ratio) == pytest.approx(want, rel=1e-12)


def test_gamma_ramp_is_linear_in_epoch():
    vals = [gamma_for_epoch(e, 100, 2.0) for e in range(1, 101)]
    assert np.allclose(np.diff(vals), 0.02)
    assert vals[0] > 0  # epochs count from 1: Λ is never 0 during training
