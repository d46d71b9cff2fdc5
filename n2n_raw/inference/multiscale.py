"""Two-scale inference for profiled raw models, fused as much as an unbiased risk estimate says it helps.

A network trained on pixel-scale crops averages over a limited support: on large smooth areas in strong noise
it leaves low-frequency noise that a wider average would remove (the Raspberry Pi scene of the peer benchmark at
low light: 58.8 dB denoised as it is, 63.4 dB denoised at half scale; benchmarks/RESULTS.md). Binning each CFA
plane 2×2 halves the scene and quarters the noise variance, (a, b) → (a/4, b/4), so the same network, given that
profile, sees twice as far. The half-scale result brings the low frequencies, the full-scale one the detail:

    fused_σ = fine + G_σ(up(coarse) − fine)        per CFA plane; G_σ a Gaussian of σ plane pixels

σ = None is the full scale alone, σ = 0 the half scale alone. Which σ is best depends on the photo (textured
photos want None, smooth ones 0), so it is chosen per photo, without a clean image, by Stein's unbiased risk
estimate (SURE) for noise of variance v = a·x + b:

    R(f) = (‖f(y) − y‖² − Σ v + 2 Σ_i v_i ∂f_i/∂y_i) / N,

with the divergence from one Monte-Carlo probe (Ramani, Blu and Unser 2008): Σ v ∂f/∂y ≈
(√v ⊙ n)·(f(y + ε√v ⊙ n) − f(y)) / ε, n ~ N(0, 1). Every candidate is linear in (fine, coarse), so one
probed pass of one view per scale prices all of them. v is taken at the full-scale estimate (the noise's
variance at the true x, which the noisy y overstates in the dark). The probe uses the ensemble's first view: the
ensemble's divergence is the mean of its views', which agree up to the image's own asymmetry.

Cost, in full-scale passes, for an ensemble of E views: E + 1 (probe) + (E + 1)/4 (half scale), against E.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from n2n_raw.method import bayer
from n2n_raw.method.noise_profile import NoiseProfile

#: Candidate σ of the fusion's low-pass, in full-scale CFA-plane pixels: None keeps the full scale alone, 0 takes
#: the half scale alone. On the peer benchmark's photos the best σ was each of these for some photo.
SIGMAS: tuple[float | None, ...] = (None, 3.0, 2.0, 1.0, 0.5, 0.0)
#: Probe step, in units of each pixel's noise std: small against the noise, large against float32 rounding.
PROBE_EPS = 0.02
#: Smallest mosaic side (pixels) for two scales: the half scale's packed planes keep at least 16 pixels a side.
MIN_SIDE = 64

#: ``run(mosaic, profile, views)``: the model on an (H, W) mosaic given its noise profile, as
#: (mean over ``views`` Bayer-preserving views, the first view alone); ``views`` is 1 or the ensemble's size.
Run = Callable[[np.ndarray, NoiseProfile, int], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Choice:
    """The fusion kept for one photo.

    ``sigma``: a value of :data:`SIGMAS`; ``half``: the name of the half-scale model fused (None with σ None);
    ``risks``: (half, σ) → SURE estimate of the mean squared error (mosaic units²; may come out slightly negative
    where the error is far below the noise)."""
    sigma: float | None
    half: str | None
    risks: dict

    def describe(self) -> str:
        s, key = self.sigma, (self.half, self.sigma)
        label = "full scale" if s is None else "half scale" if s == 0 else f"fused at σ {s:g}"
        if s is not None and self.half:
            label += f", the {self.half} model at half scale"
        text = f"two scales: {label} (estimated MSE {self.risks[key]:.3g}"
        if (None, None) in self.risks and s is not None:
            text += f", {self.risks[(None, None)] - self.risks[key]:.3g} under the full scale's"
        return text + ")"


def bin_planes(mosaic: np.ndarray) -> np.ndarray:
    """Half-scale mosaic in the same CFA phase: each 2×2-position plane binned 2×2 (mean).

    Args:
        mosaic: (H, W) float, H and W even. A plane of odd size is first extended by its last row/column.
    Returns:
        float32 (2·⌈H/4⌉, 2·⌈W/4⌉); noise of variance a·x + b becomes (a/4)·x + b/4.
    """
    p = bayer.pack(np.asarray(mosaic, np.float32))  # (4, H/2, W/2)
    p = np.pad(p, ((0, 0), (0, p.shape[1] % 2), (0, p.shape[2] % 2)), mode="edge")
    return bayer.unpack(p.reshape(4, p.shape[1] // 2, 2, p.shape[2] // 2, 2).mean(axis=(2, 4)))


def upsample_planes(coarse: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Back to full scale: each plane of ``coarse`` (from :func:`bin_planes`) upsampled 2× bilinearly
    (pixel centres aligned as binning placed them) and cut to the planes of a ``shape`` (H, W) mosaic.
    Returns float32 ``shape``."""
    t = torch.from_numpy(bayer.pack(np.asarray(coarse, np.float32)))[None]  # (1, 4, h, w)
    up = F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)[0]
    return bayer.unpack(up[:, :shape[0] // 2, :shape[1] // 2].numpy())


def lowpass_planes(mosaic: np.ndarray, sigma: float) -> np.ndarray:
    """Each CFA plane Gaussian-filtered (σ plane pixels, reflected at the borders); σ = 0 returns a copy.
    Returns float32 of ``mosaic``'s (H, W) (H and W even)."""
    if sigma == 0:
        return np.array(mosaic, np.float32)
    planes = bayer.pack(np.asarray(mosaic, np.float32))  # σ 0 along the plane axis: each plane filtered alone
    return bayer.unpack(gaussian_filter(planes, (0, sigma, sigma), mode="reflect"))


def fuse(fine: np.ndarray, coarse_up: np.ndarray, sigma: float | None) -> np.ndarray:
    """``fine + G_σ(coarse_up − fine)`` per CFA plane: the detail of ``fine`` over the low frequencies of
    ``coarse_up`` (same (H, W)); σ None returns ``fine``, σ 0 ``coarse_up``."""
    if sigma is None:
        return fine
    if sigma == 0:
        return coarse_up
    return fine + lowpass_planes(coarse_up - fine, sigma)


def half_profile(profile: NoiseProfile) -> NoiseProfile:
    """The noise profile of :func:`bin_planes`' output: the mean of 4 pixels has a quarter of the variance."""
    return NoiseProfile(tuple(v / 4 for v in profile.a), tuple(v / 4 for v in profile.b), profile.source)


def sure(y: np.ndarray, var: np.ndarray, estimate: np.ndarray, probe_dir: np.ndarray, probe_response: np.ndarray,
         eps: float = PROBE_EPS) -> float:
    """Stein's unbiased estimate of the mean squared error of ``estimate`` = f(y), noise of variance ``var``.

    Args:
        y, var, estimate: (H, W) float: the noisy input, its noise variance per pixel, f(y).
        probe_dir: √var ⊙ n, n ~ N(0, 1): the direction the input was moved in, by ``eps`` of it.
        probe_response: f(y + eps·probe_dir) − f(y), for the same f (or one view of it).
    Returns:
        the estimate, in mosaic units² (float).
    """
    d = estimate - y  # float32 products, float64 sums: a 24-MP photo needs no float64 copies
    fit = float(np.sum(d * d, dtype=np.float64))
    divergence = float(np.sum(probe_dir * probe_response, dtype=np.float64)) / eps
    return (fit - float(np.sum(var, dtype=np.float64)) + 2.0 * divergence) / y.size


def denoise_two_scale(run: Run, y: np.ndarray, profile: NoiseProfile, views: int,
                      generator: np.random.Generator | None = None,
                      half_runs: Sequence[tuple[str, Run]] | None = None,
                      sigmas: tuple[float | None, ...] = SIGMAS) -> tuple[np.ndarray, Choice]:
    """Denoise ``y`` at full and half scale and keep the fusion of least estimated risk (module docstring).

    Args:
        run: the model as a :data:`Run`.
        y: (H, W) float32 Bayer mosaic, H and W even (≥ :data:`MIN_SIDE`), black 0 and white 1, unclipped.
        profile: its noise profile (the half scale is given :func:`half_profile` of it).
        views: the ensemble's size.
        generator: draws the probe (default: seeded with 0, so a photo is denoised the same way every time).
        half_runs: (name, model) pairs for the half scale, each fused with every σ; default ``run`` alone,
            named "". Each adds (views + 1)/4 full-scale passes.
    Returns:
        (float32 (H, W) denoised mosaic, unclamped; the :class:`Choice`).
    """
    rng = generator if generator is not None else np.random.default_rng(0)
    y = np.asarray(y, np.float32)
    fine, fine1 = run(y, profile, views)
    var = profile.variance(fine).astype(np.float32)
    probe_dir = np.sqrt(var) * rng.standard_normal(y.shape, dtype=np.float32)
    y_probed = y + np.float32(PROBE_EPS) * probe_dir
    fine1_response = run(y_probed, profile, 1)[1] - fine1
    half = half_profile(profile)
    binned, binned_probed = bin_planes(y), bin_planes(y_probed)

    def candidates():
        """(half-scale name, σ, estimate, its probe response); every candidate is linear in (fine, coarse), so
        its probe response is the same fusion of the scales' responses."""
        yield None, None, fine, fine1_response
        for name, half_run in half_runs if half_runs is not None else (("", run),):
            coarse, coarse1 = (upsample_planes(c, y.shape) for c in half_run(binned, half, views))
            coarse1_response = upsample_planes(half_run(binned_probed, half, 1)[1], y.shape) - coarse1
            for s in sigmas:
                if s is not None:
                    yield name, s, fuse(fine, coarse, s), fuse(fine1_response, coarse1_response, s)

    risks, best, kept = {}, None, fine
    for name, s, est, response in candidates():
        risks[(name, s)] = sure(y, var, est, probe_dir, response)
        if best is None or risks[(name, s)] < risks[best]:
            best, kept = (name, s), est
    return kept.astype(np.float32, copy=False), Choice(best[1], best[0], risks)
