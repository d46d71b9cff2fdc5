"""The building blocks of the peer benchmark (benchmarks/peers.py): binned references, noise, DNGs, BM3D+GAT."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
from realdata import REAL_RAW, needs_real


@pytest.fixture(scope="module")
def peers():
    saved = list(sys.path)  # peers.py puts benchmarks/ on the path for its siblings (burst_fit, common)
    spec = importlib.util.spec_from_file_location("peers_bench", BENCH / "peers.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["peers_bench"] = mod  # dataclasses look their module up there
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path[:] = saved
    yield mod
    sys.modules.pop("peers_bench", None)


def test_bin_reference_keeps_the_cfa_phase(peers):
    rng = np.random.default_rng(0)
    levels = np.array([[0.1, 0.5], [0.3, 0.8]])
    m = np.tile(levels, (10, 13)) + 0.01 * rng.standard_normal((20, 26))  # 20×26: cut to 20×24 first
    ref = peers.bin_reference(m)
    assert ref.shape == (10, 12)
    for dy, dx in peers.POSITIONS:
        assert ref[dy::2, dx::2].mean() == pytest.approx(m[:20, :24][dy::2, dx::2].mean(), abs=1e-12)
        assert abs(ref[dy::2, dx::2].mean() - levels[dy, dx]) < 0.01
    # one block by hand: plane (0, 1) pixels (0..1, 0..1) of the plane are mosaic (0,1), (0,3), (2,1), (2,3)
    assert ref[0, 1] == pytest.approx(np.mean([m[0, 1], m[0, 3], m[2, 1], m[2, 3]]))
    assert peers.bin_reference(np.full((8, 8), 1.7)).max() == 1.0  # clipped to [0, 1]


@needs_real("canon_550d_colorchart.dng")
def test_bin_reference_of_a_real_file(peers):
    from n2n_raw.io.camera_raw import read_raw
    m = read_raw(REAL_RAW / "canon_550d_colorchart.dng", clip=False).mosaic
    ref = peers.bin_reference(m)
    h, w = (s // 4 * 4 for s in m.shape)
    means = [ref[dy::2, dx::2].mean() for dy, dx in peers.POSITIONS]
    for (dy, dx), v in zip(peers.POSITIONS, means):  # only the clip to [0, 1] moves a plane's mean
        assert v == pytest.approx(m[:h, :w][dy::2, dx::2].mean(), abs=2e-4)
    assert means[0] < 0.8 * min(means[1], means[2])  # RGGB: red darker than the greens, in the same place


def test_poisson_gaussian_has_the_profile(peers):
    rng = np.random.default_rng(1)
    for x0, a, b in ((0.05, 1e-3, 1e-5), (0.01, 4e-3, 1e-4)):
        y = peers.poisson_gaussian(rng, np.full(200_000, x0), a, b)
        assert y.mean() == pytest.approx(x0, abs=4 * np.sqrt((a * x0 + b) / y.size))
        assert y.var() == pytest.approx(a * x0 + b, rel=0.02)


def test_noisy_dng_reads_back(peers, tmp_path):
    pytest.importorskip("pidng")
    rng = np.random.default_rng(2)
    y = rng.uniform(-0.05, 1.1, (24, 32))  # below black and above white: both must survive
    back = peers.write_mosaic_dng(tmp_path / "n.dng", y, "GBRG")
    assert np.abs(back - y).max() <= 0.5 / (peers.DNG_WHITE - peers.DNG_BLACK) + 1e-6
    assert back.min() < 0 and back.max() > 1


def test_gat_round_trip_on_a_flat_patch():
    vst = pytest.importorskip("n2n_raw.method.vst")
    rng = np.random.default_rng(3)
    for x0, a, b in ((0.003, 1e-3, 1e-5), (0.2, 1e-3, 1e-5), (0.01, 4e-3, 1e-4)):
        y = rng.poisson(x0 / a, 100_000) * a + rng.normal(0, np.sqrt(b), 100_000)
        z = vst.gat(y, a, b)
        assert z.var() == pytest.approx(1.0, abs=0.12)
        # the mean the denoiser estimates, E[f(y)], inverts to the clean value
        assert vst.gat_inverse_unbiased(z.mean(), a, b) == pytest.approx(x0, abs=4 * np.sqrt((a * x0 + b) / y.size))


def test_bm3d_gat_improves_a_small_crop(peers):
    pytest.importorskip("bm3d")
    pytest.importorskip("n2n_raw.method.vst")
    yy, xx = np.mgrid[:64, :64]
    clean = 0.05 + 0.1 * (xx > 30) + 0.05 * np.sin(yy / 6.0) ** 2
    a, b = 1e-3, 1e-5
    noisy = peers.poisson_gaussian(np.random.default_rng(4), clean, a, b)
    den, used = peers.bm3d_gat(noisy, profile=((a,) * 4, (b,) * 4))
    assert used == {"a": [a] * 4, "b": [b] * 4}
    err = lambda e: np.mean((np.clip(e, 0, 1) - clean) ** 2)  # noqa: E731
    assert peers.psnr(err(den)) > peers.psnr(err(noisy)) + 5


@needs_real("kodak_dc50.kdc")
def test_build_real_writes_and_reuses_its_dngs(peers, tmp_path):
    pytest.importorskip("pidng")
    logs = []
    ds, = peers.build_real(tmp_path, files=("kodak_dc50.kdc",), levels=("lowlight",), crop=64, log=logs.append)
    p, = ds.photos
    assert ds.label == "real/lowlight" and p.path.is_file() and p.ref.shape == p.noisy.shape == (64, 64)
    assert p.ref.max() <= 0.25 + 1e-12  # ×0.25 exposure
    assert "written" in logs[-1]
    again, = peers.build_real(tmp_path, files=("kodak_dc50.kdc",), levels=("lowlight",), crop=64, log=logs.append)
    assert "cached" in logs[-1] and np.array_equal(again.photos[0].noisy, p.noisy)
