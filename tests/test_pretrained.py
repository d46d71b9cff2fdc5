"""The variance-stabilised raw model (GatUNet): its transforms, profiles, checkpoints, and the shipped weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from n2n_raw.cfa import CFAS
from n2n_raw.checkpoint import build_model, load_checkpoint, load_model, save_checkpoint
from n2n_raw.errors import InputError
from n2n_raw.checkpoint import WEIGHTS, starting_model
from n2n_raw.method.gat_unet import A_RANGE, MAX_READ_RATIO, GatUNet, packed_profile
from n2n_raw.method.unet import UNet
from n2n_raw.method.vst import gat


def test_forward_is_the_unet_between_the_transforms():
    torch.manual_seed(0)
    net = UNet(4, 4, residual=True)
    a, b = [1e-3, 2e-3, 2e-3, 5e-4], [1e-5, 2e-5, 2e-5, 1e-6]
    m = GatUNet(net, a, b).eval()
    x = torch.rand(2, 4, 32, 64) * 0.5
    at, bt = torch.tensor(a).view(1, 4, 1, 1), torch.tensor(b).view(1, 4, 1, 1)
    z = net(gat(x, at, bt) * m.scale) / m.scale
    want = at / 4 * z * z.abs() - 0.375 * at - bt / at
    assert torch.allclose(m(x), want, rtol=1e-5, atol=1e-7)


def test_a_zero_residual_unet_is_close_to_the_identity():
    """The residual U-Net's last layer starts at zero: GatUNet is then f⁻¹(f(x)) = x wherever f is invertible."""
    m = GatUNet(UNet(4, 4, residual=True), [1e-3] * 4, [1e-5] * 4).eval()
    x = torch.rand(1, 4, 64, 32) * 0.9 + 0.01
    assert torch.allclose(m(x), x, atol=1e-5)


def test_set_profile_keeps_a_inside_the_trained_range():
    m = GatUNet(UNet(4, 4, residual=True))
    m.set_profile([0.0, 1e-9, 1e-3, 1.0], [9e-7, 0.0, 1e-5, 1e-5])
    a, b = m.profile
    assert a[0] == pytest.approx(max(A_RANGE[0], (9e-7 / MAX_READ_RATIO) ** 0.5), rel=1e-6)  # read-limited frame
    assert a[1] == pytest.approx(A_RANGE[0], rel=1e-6)
    assert a[2] == pytest.approx(1e-3, rel=1e-6)
    assert a[3] == pytest.approx(A_RANGE[1], rel=1e-6)
    assert b == pytest.approx([9e-7, 0.0, 1e-5, 1e-5], rel=1e-6)
    with pytest.raises(ValueError):
        m.set_profile([1e-3] * 3, [1e-5] * 3)
    with pytest.raises(ValueError):
        m.set_profile([1e-3] * 4, [-1e-5] * 4)


@pytest.mark.parametrize("cfa", CFAS)
def test_packed_profile_follows_the_colours(cfa):
    """Per-position values tagged by colour land on the packed channel of that colour (rggb: R, G, G, B; the
    greens averaged); positional packing keeps the raster order."""
    code = {"R": 1.0, "G": 2.0, "B": 3.0}
    a = [code[c] + (0.5 if c == "G" and i >= 2 else 0.0) for i, c in enumerate(cfa)]  # the two greens differ
    b = [10 * v for v in a]
    pa, pb = packed_profile(a, b, cfa, "rggb")
    assert pa == pytest.approx([1.0, 2.25, 2.25, 3.0]) and pb == pytest.approx([10.0, 22.5, 22.5, 30.0])
    assert packed_profile(a, b, cfa, "positional") == (a, b)


def test_checkpoint_round_trip_keeps_the_wrapper_and_its_profile(tmp_path):
    torch.manual_seed(1)
    m = GatUNet(UNet(4, 4, residual=True), [1e-3, 2e-3, 3e-3, 4e-3], [1e-5, 2e-5, 3e-5, 4e-5])
    save_checkpoint(tmp_path, 7, m, None, {"mode": "raw", "cfa_mode": "rggb"})
    meta, tensors = load_checkpoint(tmp_path)
    back = build_model(meta, tensors)
    assert isinstance(back, GatUNet) and back.scale == m.scale
    for got, want in zip(back.profile, m.profile):
        assert got == pytest.approx(want)
    x = torch.rand(1, 4, 32, 32)
    assert torch.equal(back.eval()(x), m.eval()(x))


def test_starting_model_refuses_an_srgb_checkpoint(tmp_path):
    save_checkpoint(tmp_path, 1, UNet(3, 3), None, {"mode": "srgb"})
    with pytest.raises(InputError, match="raw checkpoint"):
        starting_model(str(tmp_path))
    with pytest.raises(InputError):
        starting_model(str(tmp_path / "missing"))


def test_the_shipped_weights_load_and_say_how_they_were_made():
    model, meta = load_model(WEIGHTS)
    assert isinstance(model, GatUNet) and meta["mode"] == "raw" and meta["cfa_mode"] == "rggb"
    assert meta["target"] == "supervised"  # trained on synthetic pairs: the README and the model card say so
    stages = meta["pretrain"]["stages"]
    assert [s["steps"] for s in stages] == [7000, 3500] and stages[1]["init"] == "ckpt-00007000.json"
    assert not any("/" in str(s["out"]) for s in stages)  # folder names only, no machine's paths
    x = torch.rand(1, 4, 64, 64) * 0.2
    assert np.isfinite(model(x).detach().numpy()).all()
