"""Metrics against independent computations written here (hand formulas, an explicit-loop SSIM)."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from n2n_raw.io.images import quantize_uint8
from n2n_raw.evaluation.metrics import (gaussian_window_1d, psnr, psnr_uint8, raw_block_metrics,
                             raw_block_scores, srgb_image_metrics, ssim_matlab)

REPO = Path(__file__).resolve().parents[1]
from realdata import validation_dir  # tests/realdata.py: N2N_RAW_VALIDATION_DATA


# ----------------------------------------------------------------------------------------------- reference SSIM

def _window_2d() -> np.ndarray:
    """MATLAB fspecial('gaussian', 11, 1.5), written from its definition."""
    w = np.empty((11, 11))
    for i in range(11):
        for j in range(11):
            w[i, j] = math.exp(-((i - 5) ** 2 + (j - 5) ** 2) / (2 * 1.5 ** 2))
    return w / w.sum()


def _ssim_loop(a: np.ndarray, b: np.ndarray, L: float = 255.0) -> float:
    """Straightforward SSIM: every 11×11 window inside the image, weighted moments around the mean."""
    w = _window_2d()
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    vals = []
    for y in range(a.shape[0] - 10):
        for x in range(a.shape[1] - 10):
            pa, pb = a[y:y + 11, x:x + 11], b[y:y + 11, x:x + 11]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va = (w * (pa - ma) ** 2).sum()
            vb = (w * (pb - mb) ** 2).sum()
            cov = (w * (pa - ma) * (pb - mb)).sum()
            vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma * ma + mb * mb + c1) * (va + vb + c2)))
    return float(np.mean(vals))


@pytest.fixture
def pair():
    rng = np.random.default_rng(7)
    clean = rng.uniform(0, 255, size=(17, 23))
    noisy = np.clip(clean + rng.normal(0, 25, size=clean.shape), 0, 255)
    return clean, noisy


# ------------------------------------------------------------------------------------------------------- PSNR

def test_psnr_hand_formula():
    a = np.zeros((2, 2))
    b = np.array([[1.0, 0.0], [0.0, 0.0]])
    assert psnr(a, b, 1.0) == pytest.approx(10 * math.log10(4.0), abs=1e-12)  # mse = 1/4
    assert psnr(a, 0.5 * b, 2.0) == pytest.approx(10 * math.log10(4.0 / (0.25 / 4)), abs=1e-12)


def test_psnr_identical_is_inf():
    x = np.random.default_rng(0).random((5, 6))
    assert psnr(x, x, 1.0) == math.inf
    assert psnr_uint8(np.zeros((3, 3, 3), np.uint8), np.zeros((3, 3, 3), np.uint8)) == math.inf


def test_psnr_uint8_over_all_values_peak_255():
    a = np.zeros((2, 2, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 255  # mse = 255² / 12
    assert psnr_uint8(a, b) == pytest.approx(10 * math.log10(12.0), abs=1e-12)
    # no uint8 wrap-around: 0 - 255 must not become 1
    c = np.full((2, 2, 3), 10, np.uint8)
    d = np.full((2, 2, 3), 20, np.uint8)
    assert psnr_uint8(c, d) == pytest.approx(psnr_uint8(d, c)) == pytest.approx(10 * math.log10(255 ** 2 / 100))


def test_psnr_rejects_bad_input():
    with pytest.raises(ValueError):
        psnr_uint8(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError):
        psnr(np.zeros((2, 2)), np.zeros((2, 3)), 1.0)
    with pytest.raises(ValueError):
        psnr(np.zeros((2, 2)), np.zeros((2, 2)), 0.0)


# ------------------------------------------------------------------------------------------------------- SSIM

def test_window_is_matlab_fspecial():
    g = gaussian_window_1d()
    assert g.shape == (11,) and g.dtype == np.float64
    np.testing.assert_allclose(np.outer(g, g), _window_2d(), rtol=0, atol=1e-15)


def test_ssim_matches_explicit_loop_gray(pair):
    clean, noisy = pair
    ref = _ssim_loop(clean, noisy)
    assert 0.05 < ref < 0.99  # a non-trivial case
    assert ssim_matlab(clean, noisy) == pytest.approx(ref, abs=1e-10)


def test_ssim_matches_explicit_loop_rgb_per_channel_mean():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, size=(17, 23, 3)).astype(np.uint8)
    b = np.clip(a + rng.normal(0, 30, size=a.shape), 0, 255).astype(np.uint8)
    ref = np.mean([_ssim_loop(a[:, :, c], b[:, :, c]) for c in range(3)])
    assert ssim_matlab(a, b) == pytest.approx(ref, abs=1e-10)
    # uint8 input is read as float64 (no overflow of a*a in uint8)
    assert ssim_matlab(a, b) == ssim_matlab(a.astype(np.float64), b.astype(np.float64))


def test_ssim_other_data_range(pair):
    clean, noisy = pair
    assert ssim_matlab(clean / 255, noisy / 255, data_range=1.0) == pytest.approx(_ssim_loop(clean, noisy), abs=1e-10)
    assert ssim_matlab(clean, noisy, data_range=1.0) == pytest.approx(_ssim_loop(clean, noisy, L=1.0), abs=1e-10)


def test_ssim_identity_and_symmetry(pair):
    clean, noisy = pair
    assert ssim_matlab(clean, clean) == pytest.approx(1.0, abs=1e-12)
    assert ssim_matlab(clean, noisy) == pytest.approx(ssim_matlab(noisy, clean), abs=1e-14)


def test_ssim_constant_shift_closed_form():
    # Two constant images k and k + c: variances and covariance are 0, so every window scores
    # (2k(k+c) + C1) / (k² + (k+c)² + C1).
    k, c = 100.0, 10.0
    c1 = (0.01 * 255) ** 2
    expected = (2 * k * (k + c) + c1) / (k * k + (k + c) ** 2 + c1)
    got = ssim_matlab(np.full((15, 12), k), np.full((15, 12), k + c))
    assert got == pytest.approx(expected, abs=1e-12)
    assert got < 1.0


def test_ssim_corner_pixel_counts_once():
    # A corner pixel lies in exactly one valid window (no padding): the result must match the loop.
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 255, size=(31, 31))
    b = a.copy()
    b[0, 0] += 50
    assert ssim_matlab(a, b) == pytest.approx(_ssim_loop(a, b), abs=1e-10)
    assert ssim_matlab(a, b) < 1.0


def test_ssim_needs_11_pixels():
    with pytest.raises(ValueError):
        ssim_matlab(np.zeros((10, 20)), np.zeros((10, 20)))
    with pytest.raises(ValueError):
        ssim_matlab(np.zeros((12, 12)), np.zeros((12, 13)))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), sigma=st.floats(0.0, 100.0))
def test_ssim_bounded_and_symmetric(seed, sigma):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 255, size=(13, 14))
    b = a + rng.normal(0, sigma, size=a.shape)
    s = ssim_matlab(a, b)
    assert -1.0 - 1e-12 <= s <= 1.0 + 1e-12
    assert s == pytest.approx(ssim_matlab(b, a), abs=1e-12)


# ------------------------------------------------------------------------------------------- quantize / sRGB

def test_quantize_uint8_values():
    x = np.array([-0.3, 0.0, 0.5, 1.0, 1.7, 0.4 / 255, 0.6 / 255, 254.4 / 255, 254.6 / 255])
    q = quantize_uint8(x)
    assert q.dtype == np.uint8
    np.testing.assert_array_equal(q, [0, 0, 128, 255, 255, 0, 1, 254, 255])


def test_quantize_uint8_matches_reference_expression_float32():
    rng = np.random.default_rng(5)
    x = rng.uniform(-0.2, 1.2, size=(64, 64, 3)).astype(np.float32)
    x[0, 0, :] = np.array([k + 0.5 for k in range(3)], np.float32) / np.float32(255)  # ties
    # the reference: torch clamp(0, 1) then np.clip(pred * 255.0 + 0.5, 0, 255).astype(np.uint8) in float32
    ref = np.clip(np.clip(x, 0, 1) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(quantize_uint8(x), ref)


def test_quantize_uint8_refuses_nan():
    with pytest.raises(ValueError):
        quantize_uint8(np.array([0.1, np.nan]))


def test_srgb_image_metrics_is_quantise_then_score():
    rng = np.random.default_rng(9)
    clean = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
    pred = clean / 255.0 + rng.normal(0, 0.05, size=clean.shape)
    p, s = srgb_image_metrics(pred, clean)
    q = quantize_uint8(pred)
    assert p == psnr_uint8(q, clean)
    assert s == pytest.approx(np.mean([_ssim_loop(q[:, :, c], clean[:, :, c]) for c in range(3)]), abs=1e-10)


# ------------------------------------------------------------------------------------------------------ raw

def test_raw_block_metrics_convention():
    rng = np.random.default_rng(11)
    gt = rng.uniform(0, 1, size=(40, 16, 16)).astype(np.float32)  # 40 > one internal batch
    pred = gt + rng.normal(0, 0.05, size=gt.shape).astype(np.float32)
    pred[0, :4] = 1.5  # out of range: clamped before scoring
    pred[1, :4] = -0.5
    ps, ss = raw_block_scores(pred, gt)
    assert ps.shape == ss.shape == (40,)
    for i in (0, 1, 39):
        pc = np.clip(pred[i].astype(np.float64), 0, 1)
        g = gt[i].astype(np.float64)
        assert ps[i] == pytest.approx(10 * math.log10(1.0 / np.mean((pc - g) ** 2)), abs=1e-9)
        assert ss[i] == pytest.approx(_ssim_loop(pc * 255, g * 255), abs=1e-10)
    mp, ms = raw_block_metrics(pred, gt)
    assert mp == pytest.approx(ps.mean()) and ms == pytest.approx(ss.mean())


def test_raw_block_metrics_single_block_and_exact():
    rng = np.random.default_rng(12)
    gt = rng.uniform(0, 1, size=(12, 14))
    pred = gt + 0.01
    assert raw_block_metrics(pred, gt) == raw_block_metrics(pred[None], gt[None])
    p, s = raw_block_metrics(gt, gt)
    assert p == math.inf and s == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError):
        raw_block_metrics(np.zeros((2, 3, 12, 12)), np.zeros((2, 3, 12, 12)))


def test_real_image_ssim_plausible():
    folder = validation_dir("Kodak")
    from PIL import Image
    img = np.asarray(Image.open(sorted(folder.glob("*.png"))[0]).convert("RGB"))[:96, :128]
    rng = np.random.default_rng(0)
    noisy01 = img / 255.0 + rng.normal(0, 25 / 255, size=img.shape)
    p, s = srgb_image_metrics(noisy01, img)
    assert 20.0 < p < 22.0  # σ = 25 noise, clipped: about 20.6 dB
    assert 0.2 < s < 0.9


def test_no_scikit_image_or_opencv_needed():
    code = ("import sys, n2n_raw.evaluation.metrics as m, numpy as np;"
            "m.ssim_matlab(np.zeros((12, 12)), np.ones((12, 12)));"
            "bad = [k for k in sys.modules if k.split('.')[0] in ('skimage', 'cv2', 'torch')];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
