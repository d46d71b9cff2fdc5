"""The inference path: reflect padding, padded forward, batching, tiling and raw mosaics."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from n2n_raw.inference import tiling
from n2n_raw.cfa import CFAS
from n2n_raw.method.unet import UNet


class Identity(nn.Module):
    def forward(self, x):
        return x


class ChannelIndex(nn.Module):
    """Output channel k is the constant k (+0·input, so shapes follow the input)."""

    def forward(self, x):
        return x * 0 + torch.arange(x.shape[1], dtype=x.dtype).view(1, -1, 1, 1)


class Recorder(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.shapes = inner, []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return self.inner(x)


def np_reflect(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    a = x.numpy()
    return torch.from_numpy(np.pad(a, ((0, 0), (0, 0), (0, h - a.shape[-2]), (0, w - a.shape[-1])), mode="reflect"))


# ----------------------------------------------------------------------------------------------- padding

@pytest.mark.parametrize("h,w,H,W", [(37, 53, 64, 64), (37, 53, 64, 96), (32, 40, 32, 64), (5, 7, 32, 32),
                                     (3, 2, 40, 33)])
def test_pad_reflect_matches_numpy_reflect(h, w, H, W):
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(h * w))
    p = tiling.pad_reflect(x, H, W)
    assert p.shape == (2, 3, H, W)
    assert torch.equal(p[..., :h, :w], x)
    assert torch.equal(p, np_reflect(x, H, W))


def test_pad_reflect_edge_not_repeated():
    x = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 3, 5).contiguous()
    p = tiling.pad_reflect(x, 3, 8)
    assert p[0, 0, 0].tolist() == [0, 1, 2, 3, 4, 3, 2, 1]


def test_pad_reflect_one_pixel_side_replicates():
    x = torch.arange(5.0).view(1, 1, 1, 5)
    p = tiling.pad_reflect(x, 4, 8)
    assert p.shape == (1, 1, 4, 8)
    assert torch.equal(p[0, 0, 0], torch.tensor([0, 1, 2, 3, 4, 3, 2, 1.0]))
    assert torch.equal(p[0, 0], p[0, 0, :1].expand(4, 8))
    one = tiling.pad_reflect(torch.full((1, 2, 1, 1), 7.0), 32, 32)
    assert one.shape == (1, 2, 32, 32) and (one == 7).all()


def test_pad_reflect_noop_when_big_enough():
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(tiling.pad_reflect(x, 64, 64), x)


# ----------------------------------------------------------------------------------------------- forward_padded

def test_forward_padded_pointwise_model_is_exact_and_sized():
    conv = nn.Conv2d(3, 3, 1)
    x = torch.rand(2, 3, 37, 53)
    out = tiling.forward_padded(conv, x)
    assert out.shape == (2, 3, 37, 53) and out.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(out, conv(x))


def test_forward_padded_unet_odd_size():
    torch.manual_seed(0)
    m = Recorder(UNet(3, 3, "standard").eval())
    x = torch.rand(1, 3, 37, 53)
    out = tiling.forward_padded(m, x)
    assert out.shape == (1, 3, 37, 53)
    assert m.shapes == [(1, 3, 64, 64)]  # padded to the next multiples of 32, one pass
    with torch.no_grad():
        want = m.inner(np_reflect(x, 64, 64))[..., :37, :53]
    torch.testing.assert_close(out, want)
    assert not out.requires_grad


# ----------------------------------------------------------------------------------------------- run_batched

def test_run_batched_equals_per_item_forward():
    torch.manual_seed(1)
    m = Recorder(UNet(3, 3, "standard").eval())
    x = torch.rand(5, 3, 37, 21)
    out = tiling.run_batched(m, x, batch_size=2)
    assert out.shape == (5, 3, 37, 21) and out.dtype == torch.float32 and out.device.type == "cpu"
    assert [s[0] for s in m.shapes] == [2, 2, 1]
    for i in range(5):
        one = tiling.forward_padded(m.inner, x[i:i + 1])
        torch.testing.assert_close(out[i:i + 1], one, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------- tiling

def test_denoise_tiled_small_image_is_one_pass():
    torch.manual_seed(2)
    m = Recorder(UNet(3, 3, "standard").eval())
    x = torch.rand(3, 150, 37)
    out = tiling.forward_tiled(m, x, tile=128)  # within tile + 32: no tiling
    assert len(m.shapes) == 1
    torch.testing.assert_close(out, tiling.forward_padded(m.inner, x[None])[0])


def _tiled_vs_untiled(h: int, w: int, tile: int, f: int = 48, init: str = "kaiming"):
    torch.manual_seed(3)
    m = Recorder(UNet(3, 3, init, f=f).eval())
    x = torch.rand(3, h, w, generator=torch.Generator().manual_seed(4))
    ref = tiling.forward_padded(m.inner, x[None])[0]
    out = tiling.forward_tiled(m, x, tile=tile)
    assert out.shape == (3, h, w) and out.dtype == torch.float32
    return out, ref, m.shapes


def test_denoise_tiled_matches_untiled():
    """An odd-sized image over tile + 32 on both sides, tile 384, default overlap (128): windows with
    cores of 128 (4×4 windows). The He-initialised U-Net (the default) carries far context, so this needs the full overlap."""
    out, ref, shapes = _tiled_vs_untiled(421, 419, 384, f=16)
    assert len(shapes) == 16  # cores start at 0, 128, 256, 384 on both axes
    assert max(max(s[-2:]) for s in shapes) <= 384
    diff = (out - ref).abs().max().item()
    assert diff <= 1e-4, f"tiled vs untiled max |diff| = {diff:.3g}"
    assert ref.abs().max() > 1e-2  # not a trivially zero output


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("N2N_SLOW_TESTS"), reason="≈ 25 s on 2 CPU cores; set N2N_SLOW_TESTS=1")
def test_denoise_tiled_matches_untiled_300x420():
    out, ref, shapes = _tiled_vs_untiled(300, 420, 128, init="standard")
    diff = (out - ref).abs().max().item()
    assert diff <= 1e-4, f"tiled vs untiled max |diff| = {diff:.3g}"


def test_too_little_overlap_is_detectable():
    torch.manual_seed(3)
    m = UNet(3, 3, "kaiming", f=16).eval()
    x = torch.rand(3, 421, 419, generator=torch.Generator().manual_seed(4))
    ref = tiling.forward_padded(m, x[None])[0]
    assert (tiling.forward_tiled(m, x, tile=384, overlap=32) - ref).abs().max() > 1e-3


def test_denoise_tiled_covers_every_pixel_with_identity():
    x = torch.rand(2, 301, 419)
    out = tiling.forward_tiled(Identity(), x, tile=128, overlap=32)
    assert torch.equal(out, x)


# ----------------------------------------------------------------------------------------------- raw mosaics

@pytest.mark.parametrize("cfa", CFAS)
@pytest.mark.parametrize("mode", ["rggb", "positional"])
@pytest.mark.parametrize("h,w", [(45, 61), (46, 63), (301, 421)])
def test_denoise_mosaic_identity_round_trip(cfa, mode, h, w):
    mosaic = np.random.default_rng(h + w).random((h, w), dtype=np.float32)
    out = tiling.denoise_mosaic(Identity(), mosaic, cfa, mode, tile=256, overlap=64)
    assert out.shape == (h, w) and out.dtype == np.float32
    assert np.array_equal(out, mosaic)


@pytest.mark.parametrize("cfa", ["GRBG", "GBRG", "BGGR", "RGGB"])
def test_denoise_mosaic_channel_phase(cfa):
    h, w = 45, 61
    mosaic = np.zeros((h, w), np.float32)
    yy, xx = np.mgrid[:h, :w]
    # rggb mode: packed channels are (R, G1, G2, B) whatever the CFA
    out = tiling.denoise_mosaic(ChannelIndex(), mosaic, cfa, "rggb")
    colour = np.array(list(cfa)).reshape(2, 2)[yy % 2, xx % 2]
    assert (out[colour == "R"] == 0).all()
    assert (out[colour == "B"] == 3).all()
    assert np.isin(out[colour == "G"], [1, 2]).all()
    # positional mode: channel = position in the 2×2 cell
    out = tiling.denoise_mosaic(ChannelIndex(), mosaic, cfa, "positional")
    assert np.array_equal(out, (2 * (yy % 2) + (xx % 2)).astype(np.float32))


@pytest.mark.parametrize("cfa", ["GRBG", "BGGR"])
@pytest.mark.parametrize("mode", ["rggb", "positional"])
def test_denoise_mosaic_unet_shape(cfa, mode):
    torch.manual_seed(5)
    m = UNet(4, 4, "standard").eval()
    mosaic = np.random.default_rng(0).random((45, 61), dtype=np.float32)
    out = tiling.denoise_mosaic(m, mosaic, cfa, mode)
    assert out.shape == (45, 61) and out.dtype == np.float32 and np.isfinite(out).all()


# ----------------------------------------------------------------------------------------------- memory plan

def test_plan_untiled_when_memory_is_ample():
    m = UNet(4, 4, "standard")
    plan = tiling.plan_tiles(m, (4, 3000, 2000), budget=1 << 40)
    assert not plan.tiled and (plan.ny, plan.nx) == (1, 1)
    assert plan.peak_bytes == pytest.approx(tiling.forward_bytes_per_pixel(m, 4) * 3008 * 2016, rel=0.05)
    assert plan.describe(scale=2).startswith("untiled (1 pass, est. peak")


def test_plan_tiles_within_a_small_budget():
    m = UNet(4, 4, "standard")
    bpp = tiling.forward_bytes_per_pixel(m, 4)
    budget = 4 * 8 * 3000 * 2000 + bpp * 1024 * 1024  # whole-image input/output + one 1024² window
    plan = tiling.plan_tiles(m, (4, 3000, 2000), budget=budget)
    assert plan.tiled and plan.overlap == tiling.OVERLAP
    assert plan.core_h % 32 == 0 and plan.core_w % 32 == 0 and plan.core_h <= 1024 - 2 * 128
    assert plan.peak_bytes <= budget
    assert (plan.ny, plan.nx) == (4, 3)  # 768-px cores at most, evened out: 750 → 768, 667 → 672
    assert plan.describe().startswith("tiles 4×3 of 768×672 px core + 128 px context")


def test_plan_forced_tile_keeps_the_old_rule():
    m = UNet(3, 3, "standard")
    assert not tiling.plan_tiles(m, (3, 150, 37), tile=128).tiled  # within tile + 32
    plan = tiling.plan_tiles(m, (3, 421, 419), tile=384)
    assert (plan.core_h, plan.core_w, plan.ny, plan.nx) == (128, 128, 4, 4) and plan.budget_bytes is None


def test_available_memory_is_positive():
    assert tiling.available_memory("cpu") > 0


def test_auto_tiled_with_small_budget_matches_untiled():
    """An odd-sized image and a budget that fits 384² windows: 4×4 windows, equal to one pass to rounding."""
    torch.manual_seed(3)
    m = Recorder(UNet(3, 3, "kaiming", f=16).eval())
    x = torch.rand(3, 421, 419, generator=torch.Generator().manual_seed(4))
    ref = tiling.forward_padded(m.inner, x[None])[0]
    budget = 4 * 6 * 421 * 419 + tiling.forward_bytes_per_pixel(m, 3) * 384 * 384
    plans = []
    out = tiling.forward_tiled(m, x, budget=budget, log=plans.append)
    assert plans[0].tiled and (plans[0].ny, plans[0].nx) == (4, 4)
    assert len(m.shapes) == 16 and max(max(s[-2:]) for s in m.shapes) <= 384
    diff = (out - ref).abs().max().item()
    assert diff <= 1e-4, f"tiled vs untiled max |diff| = {diff:.3g}"
    m.shapes.clear()
    whole = tiling.forward_tiled(m, x, budget=1 << 40)
    assert len(m.shapes) == 1 and torch.equal(whole, ref)


def test_denoise_mosaic_auto_logs_its_plan():
    mosaic = np.random.default_rng(0).random((90, 122), dtype=np.float32)
    plans = []
    out = tiling.denoise_mosaic(Identity(), mosaic, "GRBG", "rggb", log=plans.append)
    assert np.array_equal(out, mosaic) and len(plans) == 1 and not plans[0].tiled
