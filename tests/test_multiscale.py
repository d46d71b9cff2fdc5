"""Two-scale inference (n2n_raw.inference.multiscale): binning, upsampling, fusion, the risk estimate, and the
choice it makes, against independent computations and on a real photo's content."""
from __future__ import annotations

import numpy as np
import pytest
from realdata import real_file
from scipy.ndimage import uniform_filter

from n2n_raw.inference import multiscale as ms
from n2n_raw.method.noise_profile import NoiseProfile

POS = ((0, 0), (0, 1), (1, 0), (1, 1))


def test_bin_planes_by_hand_with_odd_planes():
    """10×14 mosaic: 5×7 planes, extended by their last row/column to 6×8, binned to 3×4 → a 6×8 mosaic."""
    m = np.arange(140, dtype=np.float32).reshape(10, 14)
    out = ms.bin_planes(m)
    assert out.shape == (6, 8)
    for dy, dx in POS:
        p = m[dy::2, dx::2]  # (5, 7)
        assert out[dy::2, dx::2][0, 0] == pytest.approx(np.mean([p[0, 0], p[0, 1], p[1, 0], p[1, 1]]))
        assert out[dy::2, dx::2][1, 2] == pytest.approx(np.mean([p[2, 4], p[2, 5], p[3, 4], p[3, 5]]))
        # the last block row: plane row 4 twice (edge extension); last column: plane column 6 twice
        assert out[dy::2, dx::2][2, 3] == pytest.approx(np.mean([p[4, 6]] * 4))
        assert out[dy::2, dx::2][2, 0] == pytest.approx(np.mean([p[4, 0], p[4, 1]] * 2))


def test_binning_quarters_the_noise_variance():
    rng = np.random.default_rng(0)
    y = rng.normal(0.0, 0.1, (512, 512)).astype(np.float32)
    assert ms.bin_planes(y).var() == pytest.approx(0.01 / 4, rel=0.03)
    half = ms.half_profile(NoiseProfile((4e-3,) * 4, (1e-4,) * 4, "x"))
    assert half.a == pytest.approx((1e-3,) * 4) and half.b == pytest.approx((2.5e-5,) * 4)


def test_upsampling_a_binned_ramp_gives_the_ramp_back():
    """Bilinear ×2 with centres where binning put them reproduces a plane-wise linear ramp exactly inside the
    frame (one plane pixel of border excepted); a constant everywhere."""
    h, w = 24, 40
    yy, xx = np.mgrid[0:h // 2, 0:w // 2].astype(np.float32)
    m = np.empty((h, w), np.float32)
    for k, (dy, dx) in enumerate(POS):
        m[dy::2, dx::2] = 0.1 * k + 0.01 * yy + 0.003 * xx
    up = ms.upsample_planes(ms.bin_planes(m), m.shape)
    assert up.shape == m.shape
    for dy, dx in POS:
        assert np.abs(up[dy::2, dx::2] - m[dy::2, dx::2])[1:-1, 1:-1].max() < 1e-5
    c = np.full((22, 30), 0.37, np.float32)
    assert np.abs(ms.upsample_planes(ms.bin_planes(c), c.shape) - 0.37).max() < 1e-6


def test_fuse_ends_and_a_level_from_the_coarse_image():
    rng = np.random.default_rng(1)
    fine = rng.uniform(0, 1, (32, 48)).astype(np.float32)
    coarse = rng.uniform(0, 1, (32, 48)).astype(np.float32)
    assert ms.fuse(fine, coarse, None) is fine
    assert np.array_equal(ms.fuse(fine, coarse, 0.0), coarse)
    # the fused image's plane means are the coarse image's (the low-pass keeps means): the low frequencies are its
    fused = ms.fuse(fine, coarse, 2.0)
    for dy, dx in POS:
        assert fused[dy::2, dx::2].mean() == pytest.approx(coarse[dy::2, dx::2].mean(), abs=2e-3)
    # and the detail is the fine image's: fine minus its own low-pass survives
    hp = lambda a: a - ms.lowpass_planes(a, 2.0)
    assert np.abs(hp(fused) - hp(fine)).max() < np.abs(hp(coarse) - hp(fine)).max()


def _plane_box(m: np.ndarray) -> np.ndarray:
    """A linear smoother whose Jacobian diagonal is known: 3×3 mean per CFA plane, periodic (each diagonal
    entry 1/9)."""
    out = np.empty_like(m)
    for dy, dx in POS:
        out[dy::2, dx::2] = uniform_filter(m[dy::2, dx::2], 3, mode="wrap")
    return out


def _noisy(rng, x, a, b):
    var = (a * np.maximum(x, 0) + b).astype(np.float32)
    return (x + np.sqrt(var) * rng.standard_normal(x.shape)).astype(np.float32), var


def test_sure_matches_the_exact_risk_of_a_known_linear_smoother():
    """The Monte-Carlo divergence against the exact one (Σ v/9), and SURE against the true MSE."""
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:256, 0:256]
    x = (0.2 + 0.15 * np.sin(xx / 9.0) * np.cos(yy / 13.0)).astype(np.float32)
    y, var = _noisy(rng, x, 2e-3, 1e-4)
    f = _plane_box(y)
    d = np.sqrt(var) * rng.standard_normal(y.shape).astype(np.float32)
    mc = ms.sure(y, var, f, d, _plane_box(y + ms.PROBE_EPS * d) - f)
    exact = (np.sum((f.astype(np.float64) - y) ** 2) - var.sum() + 2 * var.sum() / 9) / y.size
    true = np.mean((f.astype(np.float64) - x) ** 2)
    assert mc == pytest.approx(exact, rel=0.03)
    assert exact == pytest.approx(true, rel=0.05)


def _identity_run(m, prof, n):
    return m.copy(), m


def test_two_scales_on_a_flat_frame_take_the_half_scale():
    """Identity 'model' on a flat noisy frame: the full scale is the noise itself (risk = mean variance),
    binning removes three quarters of it, and the choice sees that without the clean frame."""
    rng = np.random.default_rng(3)
    x = np.full((128, 160), 0.05, np.float32)
    prof = NoiseProfile((4e-3,) * 4, (1e-4,) * 4, "x")
    y, _ = _noisy(rng, x, 4e-3, 1e-4)
    out, choice = ms.denoise_two_scale(_identity_run, y, prof, 1)
    assert choice.risks[(None, None)] == pytest.approx(float(prof.variance(y).mean()), rel=0.05)
    assert choice.sigma == 0.0 and choice.half == ""
    assert np.mean((out - x) ** 2) < 0.3 * np.mean((y - x) ** 2)
    true = {s: float(np.mean((ms.fuse(y, ms.upsample_planes(ms.bin_planes(y), y.shape), s) - x) ** 2))
            for s in ms.SIGMAS}
    assert min(true, key=true.get) == 0.0
    again, _ = ms.denoise_two_scale(_identity_run, y, prof, 1)
    assert np.array_equal(out, again)  # the probe is seeded: a photo comes out the same every time


def test_two_scales_on_fine_texture_keep_the_full_scale():
    """Detail at the pixel scale with little noise: the half scale would blur it away; the full scale is kept."""
    rng = np.random.default_rng(4)
    x = rng.uniform(0.1, 0.6, (128, 160)).astype(np.float32)
    prof = NoiseProfile((1e-5,) * 4, (1e-6,) * 4, "x")
    y, _ = _noisy(rng, x, 1e-5, 1e-6)
    out, choice = ms.denoise_two_scale(_identity_run, y, prof, 1)
    assert choice.sigma is None and out is not None
    assert np.array_equal(out, y)
    assert "full scale" in choice.describe()


def test_a_second_half_scale_model_is_chosen_only_where_it_is_better():
    """Two half-scale models, one that adds a bias the risk sees (no clean image needed): the other is kept;
    swapped, the choice follows."""
    rng = np.random.default_rng(7)
    x = np.full((128, 128), 0.05, np.float32)
    prof = NoiseProfile((4e-3,) * 4, (1e-4,) * 4, "x")
    y, _ = _noisy(rng, x, 4e-3, 1e-4)

    def biased(m, p, n):
        return m + np.float32(0.02), m + np.float32(0.02)

    for runs, good in (((("a", _identity_run), ("b", biased)), "a"), ((("a", biased), ("b", _identity_run)), "b")):
        _, choice = ms.denoise_two_scale(_identity_run, y, prof, 1, half_runs=runs)
        assert choice.half == good and choice.sigma == 0.0
        assert set(choice.risks) == {(None, None)} | {(n, s) for n in "ab" for s in ms.SIGMAS if s is not None}
        assert f"the {good} model at half scale" in choice.describe()


def test_the_risk_uses_one_view_for_the_divergence():
    """run() is asked for the ensemble at both scales and for one view at the probed input, nothing else."""
    calls = []

    def run(m, prof, n):
        calls.append((m.shape, n, prof.a[0]))
        return m.copy(), m

    y = np.random.default_rng(5).uniform(0, 1, (96, 128)).astype(np.float32)
    ms.denoise_two_scale(run, y, NoiseProfile((1e-3,) * 4, (1e-5,) * 4, "x"), 4)
    assert calls == [((96, 128), 4, 1e-3), ((96, 128), 1, 1e-3), ((48, 64), 4, 2.5e-4), ((48, 64), 1, 2.5e-4)]


def test_on_real_content_the_shipped_model_gains_from_two_scales():
    """The peer benchmark's recipe on a crop of a real photo (Raspberry Pi scene, CFA planes binned 2×2 as
    the reference, low-light Poisson–Gaussian noise): the two-scale result is closer to the reference than the
    full scale alone. (The risk estimate itself is only as exact as a sum over N pixels allows: its noise,
    about √(2/N)·σ², is as large as the error here; on whole photos it is far smaller.)"""
    from n2n_raw.checkpoint import WEIGHTS, load_model
    from n2n_raw.inference.photos import denoise_array
    from n2n_raw.io.camera_raw import read_raw
    r = read_raw(real_file("pi_bggr_scene.dng"), clip=False)
    m = np.asarray(r.mosaic, np.float64)[:1024, :1024]
    ref = np.empty((512, 512))
    for dy, dx in POS:
        ref[dy::2, dx::2] = m[dy::2, dx::2].reshape(256, 2, 256, 2).mean(axis=(1, 3))
    x = 0.25 * np.clip(ref[128:384, 128:384], 0, 1)
    rng = np.random.default_rng(6)
    y = (rng.poisson(x / 4e-3) * 4e-3 + rng.normal(0, 1e-2, x.shape)).astype(np.float32)
    model, meta = load_model(WEIGHTS, which="last")
    prof = NoiseProfile((4e-3,) * 4, (1e-4,) * 4, "x")
    lines = []
    one = denoise_array(model, meta, y, r.cfa, profile=prof, multiscale=False)
    two = denoise_array(model, meta, y, r.cfa, profile=prof, log=lines.append)
    mse_one, mse_two = (float(np.mean((np.clip(d, 0, 1) - x) ** 2)) for d in (one, two))
    assert mse_two < 0.8 * mse_one
    assert lines[-1].startswith("two scales:") and "full scale (" not in lines[-1]


def test_the_half_scale_model_of_a_fine_tune_is_the_shipped_one():
    import torch

    from n2n_raw.checkpoint import WEIGHTS, half_scale_model, load_model
    shipped, meta = load_model(WEIGHTS, which="last")
    assert half_scale_model(meta) is None  # the shipped model is its own
    assert half_scale_model({"config": {"start_from": None}}) is None  # from scratch: no profile, no half scale
    half = half_scale_model({"config": {"start_from": "pretrained"}})
    got, want = half.state_dict(), shipped.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_the_denoiser_takes_multiscale_off():
    """Denoiser(multiscale=False) is the single-scale path; the default differs from it on a smooth frame."""
    from n2n_raw.checkpoint import WEIGHTS
    from n2n_raw.denoiser import Denoiser
    rng = np.random.default_rng(8)
    x = np.full((128, 192), 0.03, np.float32)
    y, _ = _noisy(rng, x, 4e-3, 1e-4)
    one = Denoiser.load(WEIGHTS, device="cpu", multiscale=False).denoise(y, "RGGB")
    two = Denoiser.load(WEIGHTS, device="cpu").denoise(y, "RGGB")
    assert np.mean((two - x) ** 2) < np.mean((one - x) ** 2)


def test_small_mosaics_stay_at_one_scale():
    """Under MIN_SIDE pixels a side the half scale would be too small to see anything: one scale, exactly."""
    from n2n_raw.checkpoint import WEIGHTS, load_model
    from n2n_raw.inference.photos import denoise_array
    model, meta = load_model(WEIGHTS, which="last")
    y = np.random.default_rng(9).uniform(0, 0.2, (ms.MIN_SIDE - 2, 96)).astype(np.float32)
    lines = []
    two = denoise_array(model, meta, y, "GBRG", log=lines.append)
    one = denoise_array(model, meta, y, "GBRG", multiscale=False)
    assert np.array_equal(two, one) and not any("two scales" in line for line in lines)
