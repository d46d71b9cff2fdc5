"""The paper's U-Net: parameter count, shapes, layer structure and the two initialisations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from n2n_raw.method.unet import UNet, count_parameters


def spec_parameter_count(cin: int, cout: int, f: int = 48) -> int:
    """Parameters of the spec's layer list (neighbor2neighbor.md §3), counted by hand."""
    def conv(i, o, k=3):
        return i * o * k * k + o

    def up(c):  # 2×2 transposed conv c→c with bias
        return c * c * 4 + c

    enc = conv(cin, f) + conv(f, f) + 4 * conv(f, f) + conv(f, f)
    ups = up(f) + 4 * up(2 * f)
    dec = conv(f + f, 2 * f) + 3 * conv(2 * f + f, 2 * f) + conv(2 * f + cin, 2 * f) + 5 * conv(2 * f, 2 * f)
    head = 2 * conv(2 * f, 2 * f, 1) + conv(2 * f, cout, 1)
    return enc + ups + dec + head


def test_paper_parameter_count_3_to_3():
    m = UNet(3, 3)
    assert count_parameters(m) == 1_259_475
    assert sum(p.numel() for p in m.parameters()) == 1_259_475
    assert spec_parameter_count(3, 3) == 1_259_475  # the hand count agrees with the spec's number


@pytest.mark.parametrize("cin,cout", [(4, 4), (1, 2), (3, 3)])
def test_parameter_count_other_channels(cin, cout):
    assert count_parameters(UNet(cin, cout)) == spec_parameter_count(cin, cout)


def test_layer_inventory():
    m = UNet(3, 3)
    convs = [x for x in m.modules() if type(x) is nn.Conv2d]
    ups = [x for x in m.modules() if isinstance(x, nn.ConvTranspose2d)]
    assert len(ups) == 5
    for u in ups:
        assert u.kernel_size == (2, 2) and u.stride == (2, 2) and u.bias is not None
        assert u.output_padding == (0, 0)
    k3 = [c for c in convs if c.kernel_size == (3, 3)]
    k1 = [c for c in convs if c.kernel_size == (1, 1)]
    assert len(k3) == 7 + 10 and len(k1) == 3
    assert sorted(c.out_channels for c in k1) == [3, 96, 96]
    assert all(c.padding == (1, 1) for c in k3)
    assert not any(isinstance(x, (nn.BatchNorm2d, nn.Dropout)) for x in m.modules())


@pytest.mark.parametrize("cin,cout,h,w", [(3, 3, 64, 96), (4, 4, 64, 96), (1, 2, 64, 96), (3, 3, 32, 32),
                                          (4, 4, 96, 32)])
def test_output_shapes(cin, cout, h, w):
    torch.manual_seed(0)
    m = UNet(cin, cout).eval()
    x = torch.rand(1, cin, h, w)
    with torch.no_grad():
        y = m(x)
    assert y.shape == (1, cout, h, w) and y.dtype == torch.float32
    assert torch.isfinite(y).all()


def test_batch_items_are_independent():
    torch.manual_seed(1)
    m = UNet(3, 3).eval()
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        full = m(x)
        one = m(x[1:2])
    torch.testing.assert_close(full[1:2], one, rtol=1e-5, atol=1e-6)


def test_output_is_not_clamped_and_not_residual():
    torch.manual_seed(2)
    m = UNet(3, 3).eval()
    with torch.no_grad():
        for p in m.head[2].parameters():
            p.zero_()
        m.head[2].bias.fill_(3.0)  # output = 3 everywhere if nothing is added or clamped
        y = m(torch.rand(1, 3, 32, 32))
    assert torch.allclose(y, torch.full_like(y, 3.0))


def test_residual_adds_the_input():
    torch.manual_seed(3)
    plain = UNet(3, 3).eval()
    res = UNet(3, 3, residual=True).eval()
    res.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 32, 64)
    with torch.no_grad():
        torch.testing.assert_close(res(x), plain(x) + x)
    with pytest.raises(ValueError):
        UNet(3, 4, residual=True)


def _fan_in(m: nn.Module) -> int:
    """Fan-in as kaiming_normal_(mode='fan_in') counts it: weight.shape[1]·kh·kw (also for transposed convs)."""
    w = m.weight
    return w.shape[1] * w.shape[2] * w.shape[3]


def _conv_layers(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def test_paper_init_is_kaiming_times_0_1_with_zero_biases():
    torch.manual_seed(4)
    m = UNet(3, 3, init="paper")
    layers = _conv_layers(m)
    assert len(layers) == 25
    pooled = []
    for layer in layers:
        assert torch.count_nonzero(layer.bias) == 0
        target = 0.1 * math.sqrt(2.0 / _fan_in(layer))
        w = layer.weight.detach().double()
        z = (w / target).flatten()
        pooled.append(z)
        n = w.numel()
        # standard error of a sample std ≈ 1/sqrt(2n): allow 6 of them (and at least 5 %)
        tol = max(0.05, 6 / math.sqrt(2 * n))
        assert abs(w.std().item() / target - 1) < tol, (layer, w.std().item(), target)
        assert abs(w.mean().item()) < 6 * target / math.sqrt(n)
    z = torch.cat(pooled)
    assert abs(z.std().item() - 1) < 0.01
    assert abs(z.mean().item()) < 0.01
    # normal, not uniform: kurtosis ≈ 3 (uniform would give 1.8)
    kurt = (((z - z.mean()) / z.std()) ** 4).mean().item()
    assert abs(kurt - 3) < 0.1


def test_standard_init_differs_from_paper():
    torch.manual_seed(5)
    std = UNet(3, 3, init="standard")
    torch.manual_seed(5)
    paper = UNet(3, 3, init="paper")
    assert std.init == "standard" and paper.init == "paper"
    biases = torch.cat([layer.bias.detach().flatten() for layer in _conv_layers(std)])
    assert torch.count_nonzero(biases) > 0.99 * biases.numel()
    ratios = []
    for ls, lp in zip(_conv_layers(std), _conv_layers(paper)):
        ratios.append(ls.weight.std().item() / lp.weight.std().item())
    # PyTorch's default (kaiming_uniform a=√5 → std 1/sqrt(3·fan_in)) is ≈ 4× the paper's ×0.1 init
    assert min(ratios) > 2.5


def test_default_init_is_kaiming():
    assert UNet(3, 3).init == "kaiming"


def test_kaiming_init_is_the_paper_init_without_the_tenth():
    torch.manual_seed(5)
    k = UNet(3, 3, init="kaiming")
    torch.manual_seed(5)
    p = UNet(3, 3, init="paper")
    for lk, lp in zip(_conv_layers(k), _conv_layers(p)):
        torch.testing.assert_close(lk.weight * 0.1, lp.weight)
        assert torch.count_nonzero(lk.bias) == 0


@pytest.mark.parametrize("bad", ["Paper", "he", "", None])
def test_invalid_init_raises(bad):
    with pytest.raises(ValueError, match="init"):
        UNet(3, 3, init=bad)


def test_paper_init_output_near_zero_standard_not_identity():
    """With the ×0.1 init the untrained net outputs ≈ 0 (the spec's 'no denoising in short runs')."""
    torch.manual_seed(6)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        y = UNet(3, 3, init="paper").eval()(x)
    assert y.abs().max().item() < 1e-3
    assert np.isfinite(y.numpy()).all()


def test_sizes_not_multiple_of_32_fail():
    m = UNet(3, 3).eval()
    with torch.no_grad(), pytest.raises(ValueError, match=r"multiples of 32 .*got \(1, 3, 48, 48\)"):
        m(torch.rand(1, 3, 48, 48))
