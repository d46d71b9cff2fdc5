"""Synthetic noise models: statistics of y − x, per-sample parameter spreads, reproducibility, DDP slicing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from n2n_raw.method.noise import NOISES, GaussianNoise, PoissonNoise, make_noise

SIGMA25 = 25.0 / 255.0


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def kurtosis(z: np.ndarray) -> float:
    z = (z - z.mean()) / z.std()
    return float(np.mean(z ** 4))


def recover_lambda(y: np.ndarray) -> float:
    """λ of one Poisson sample y = k/λ from the spacing of its distinct values (consecutive k occur)."""
    u = np.unique(y.astype(np.float64))
    lam0 = 1.0 / np.min(np.diff(u))
    k = np.round(u * lam0)
    return float(k.max() / u.max())


# ----------------------------------------------------------------------------------------------- gauss25

def test_gauss25_per_pixel_noise_has_sigma_25():
    x = torch.rand(4, 3, 64, 64, generator=gen(0))
    x0 = x.clone()
    y = make_noise("gauss25")(x, gen(1))
    assert torch.equal(x, x0)  # input untouched
    n = (y - x).double().numpy()
    assert y.shape == x.shape and y.dtype == x.dtype
    assert abs(n.std() / SIGMA25 - 1) < 0.01
    assert abs(n.mean()) < 4 * SIGMA25 / np.sqrt(n.size)
    assert abs(kurtosis(n.ravel()) - 3) < 0.1


def test_gauss25_is_not_one_constant_per_image():
    """The reference's defect on current PyTorch: one offset per image. Here every image has per-pixel noise."""
    x = torch.full((4, 3, 32, 48), 0.5)
    n = (make_noise("gauss25")(x, gen(2)) - x).double().numpy()
    for b in range(4):
        per_image = n[b].std()  # across pixels and channels of one image
        assert abs(per_image / SIGMA25 - 1) < 0.04
        for c in range(3):
            assert abs(n[b, c].std() / SIGMA25 - 1) < 0.06
    # neighbouring pixels and channels are uncorrelated
    flat = n.reshape(4, 3, -1)
    assert abs(np.corrcoef(n[:, :, :, :-1].ravel(), n[:, :, :, 1:].ravel())[0, 1]) < 0.02
    assert abs(np.corrcoef(flat[:, 0].ravel(), flat[:, 1].ravel())[0, 1]) < 0.03


def test_gauss25_std_of_each_pixel_across_draws():
    x = torch.rand(1, 3, 8, 8, generator=gen(3))
    noise = make_noise("gauss25")
    g = gen(4)
    draws = torch.stack([noise(x, g) - x for _ in range(400)]).double().numpy()  # (400, 1, 3, 8, 8)
    per_pixel = draws.std(axis=0)
    assert abs(per_pixel.mean() / SIGMA25 - 1) < 0.01
    assert np.all(np.abs(per_pixel / SIGMA25 - 1) < 0.2)  # 400 draws: sd of each estimate ≈ 3.5 %


def test_gaussian_noise_is_not_clipped():
    noise = make_noise("gauss25")
    assert (noise(torch.zeros(1, 3, 16, 16), gen(5)) < 0).float().mean() > 0.4
    assert (noise(torch.ones(1, 3, 16, 16), gen(6)) > 1).float().mean() > 0.4


# ----------------------------------------------------------------------------------------------- gauss5_50

def test_gauss5_50_sigma_per_sample_uniform_5_50():
    n_samples = 400
    x = torch.rand(n_samples, 3, 24, 24, generator=gen(7))
    n = (make_noise("gauss5_50")(x, gen(8)) - x).double().numpy()
    sig = n.reshape(n_samples, -1).std(axis=1) * 255  # per-sample estimate (1728 values: ±1.7 %)
    assert 4.5 < sig.min() < 7.0
    assert 48.0 < sig.max() < 51.5
    assert abs(sig.mean() - 27.5) < 1.5
    assert abs(sig.std() - 45 / np.sqrt(12)) < 1.2
    assert stats.kstest(sig, stats.uniform(5, 45).cdf).pvalue > 1e-3


def test_gauss5_50_one_sigma_within_a_sample():
    n_samples = 400
    x = torch.full((n_samples, 3, 24, 24), 0.3)
    n = (make_noise("gauss5_50")(x, gen(9)) - x).double().numpy()
    top = n[:, :, :12].reshape(n_samples, -1).std(axis=1)
    bottom = n[:, :, 12:].reshape(n_samples, -1).std(axis=1)
    ratio = top / bottom
    assert np.median(np.abs(ratio - 1)) < 0.04
    assert np.abs(ratio - 1).max() < 0.2
    assert np.corrcoef(top, bottom)[0, 1] > 0.98
    # standardised by its own σ, each sample is plain Gaussian (kurtosis 3); per-pixel σ would give ≈ 4.9
    own = n / n.reshape(n_samples, -1).std(axis=1).reshape(-1, 1, 1, 1)
    assert abs(kurtosis(own.ravel()) - 3) < 0.1
    # while the pooled noise of all samples is a scale mixture (heavier tails)
    assert kurtosis(n.ravel()) > 4.0


# ----------------------------------------------------------------------------------------------- poisson

def test_poisson30_mean_and_variance_on_flat_image():
    for level in (0.4, 0.05, 0.9):
        x = torch.full((2, 3, 64, 64), level)
        y = make_noise("poisson30")(x, gen(10)).double().numpy()
        assert np.allclose(y * 30, np.round(y * 30), atol=1e-4)  # values k/30
        assert abs(y.mean() - level) < 4 * np.sqrt(level / 30 / y.size)
        assert abs(y.var() / (level / 30) - 1) < 0.04


def test_poisson30_variance_follows_the_signal_and_zero_stays_zero():
    x = torch.cat([torch.full((1, 3, 32, 64), 0.1), torch.full((1, 3, 32, 64), 0.8)], dim=2)
    x = torch.cat([x, torch.zeros(1, 3, 8, 64)], dim=2)
    y = make_noise("poisson30")(x, gen(11))
    assert y.dtype == x.dtype and y.shape == x.shape
    v_lo, v_hi = y[:, :, :32].var().item(), y[:, :, 32:64].var().item()
    assert abs(v_hi / v_lo - 8) < 0.8
    assert torch.equal(y[:, :, 64:], torch.zeros(1, 3, 8, 64))
    # unclipped: a bright pixel can exceed 1
    assert (make_noise("poisson30")(torch.ones(1, 3, 32, 32), gen(12)) > 1).any()


def test_poisson5_50_lambda_per_sample():
    n_samples = 400
    x = torch.full((n_samples, 3, 16, 16), 0.5)
    y = make_noise("poisson5_50")(x, gen(13)).double().numpy()
    lams = np.array([recover_lambda(y[i]) for i in range(n_samples)])
    assert 5.0 <= lams.min() < 6.5
    assert 48.5 < lams.max() <= 50.0 + 1e-3
    assert abs(lams.mean() - 27.5) < 1.5
    assert stats.kstest(lams, stats.uniform(5, 45).cdf).pvalue > 1e-3
    # within a sample: values are k/λ and the variance is x/λ
    k = y * lams.reshape(-1, 1, 1, 1)
    assert np.abs(k - np.round(k)).max() < 2e-3
    z = (y - 0.5) * np.sqrt(lams.reshape(-1, 1, 1, 1) / 0.5)
    assert abs(z.var() - 1) < 0.02
    assert abs(z.mean()) < 0.01


# ----------------------------------------------------------------------------------------------- reproducibility

@pytest.mark.parametrize("name", NOISES)
def test_reproducible_with_generator(name):
    x = torch.rand(3, 3, 16, 16, generator=gen(14))
    noise = make_noise(name)
    a = noise(x, gen(100))
    b = noise(x, gen(100))
    c = noise(x, gen(101))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    g = gen(100)
    assert not torch.equal(noise(x, g), noise(x, g))  # fresh noise every call


@pytest.mark.parametrize("name", ["gauss25", "gauss5_50"])
@pytest.mark.parametrize("world", [2, 4])
def test_ddp_part_slices_concatenate_to_the_full_batch(name, world):
    n_global = 8
    per = n_global // world
    x = torch.rand(n_global, 3, 8, 8, generator=gen(15))
    noise = make_noise(name)
    full = noise(x, gen(77))
    parts = []
    for r in range(world):
        sl = slice(r * per, (r + 1) * per)
        parts.append(noise(x[sl], gen(77), part=(sl, n_global)))
    assert torch.equal(torch.cat(parts), full)
    # without part a rank would draw different noise for its slice (the check is discriminating)
    sl = slice(per, 2 * per)
    assert not torch.equal(noise(x[sl], gen(77)), full[sl])


def test_poisson5_50_part_uses_the_global_lambdas():
    n_global, world = 6, 3
    per = n_global // world
    x = torch.full((n_global, 3, 16, 16), 0.5)
    noise = make_noise("poisson5_50")
    full = noise(x, gen(33)).double().numpy()
    lam_full = [recover_lambda(full[i]) for i in range(n_global)]
    lam_parts = []
    for r in range(world):
        sl = slice(r * per, (r + 1) * per)
        y = noise(x[sl], gen(33), part=(sl, n_global)).double().numpy()
        lam_parts += [recover_lambda(y[i]) for i in range(per)]
    np.testing.assert_allclose(lam_parts, lam_full, rtol=1e-4)
    assert len({round(v, 3) for v in lam_full}) == n_global  # distinct per sample


# ----------------------------------------------------------------------------------------------- factory

def test_make_noise_names():
    assert set(NOISES) == {"gauss25", "gauss5_50", "poisson30", "poisson5_50"}
    assert isinstance(make_noise("gauss25"), GaussianNoise) and make_noise("gauss25").sigma == 25.0
    assert make_noise("gauss5_50").sigma == (5.0, 50.0)
    assert isinstance(make_noise("poisson30"), PoissonNoise) and make_noise("poisson30").lam == 30.0
    assert make_noise("poisson5_50").lam == (5.0, 50.0)
    with pytest.raises(ValueError, match="unknown noise"):
        make_noise("gauss50")
