"""The noise of a raw photo: var(x) = a·x + b per 2×2 position, estimated from its pixels or given by a DNG tag.

Units are those of :func:`n2n_raw.io.camera_raw.read_raw` with ``clip=False``: a float32 (H, W) mosaic,
H and W even, (raw − black) / (white − black) per 2×2 position, black 0 and white 1, noise below black kept
negative. ``a`` is the signal-dependent (shot) term, ``b`` the signal-independent (read) term, both ≥ 0; the
four entries of each are the 2×2 positions in raster order (0,0), (0,1), (1,0), (1,1), the channel order of
:func:`n2n_raw.method.bayer.pack`.

- :func:`estimate_profile`: a blind estimate from one mosaic (see its docstring for the method).
- :func:`from_tag_values`: the profile a DNG NoiseProfile tag's values state.

Reading a photo's profile from its file is :mod:`n2n_raw.inference.profile`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from n2n_raw.errors import InputError

#: The smallest variance :meth:`NoiseProfile.variance` returns (σ = 1e-6, far below one step of a 16-bit raw),
#: so that a profile with b = 0 never gives a zero variance at or below black.
VARIANCE_FLOOR = 1e-12


@dataclass(frozen=True)
class NoiseProfile:
    """Noise variance a·x + b of a mosaic, per 2×2 position.

    Attributes:
        a: signal-dependent (shot) term at positions (0,0), (0,1), (1,0), (1,1), ≥ 0, in mosaic units (black 0,
            white 1): a pixel at x has variance a·x from shot noise. Typical: 1e-5 (base ISO, big sensor) to
            1e-2 (very high ISO, small sensor).
        b: signal-independent (read) term at the same positions, ≥ 0, in squared mosaic units.
        source: "dng-tag" (the file's NoiseProfile tag) or "estimated" (:func:`estimate_profile`).
    """

    a: tuple[float, float, float, float]
    b: tuple[float, float, float, float]
    source: str

    def variance(self, mosaic: np.ndarray) -> np.ndarray:
        """Noise variance at each pixel of ``mosaic``: a·max(x, 0) + b with the (a, b) of the pixel's 2×2
        position, at least :data:`VARIANCE_FLOOR`.

        Args:
            mosaic: (H, W) float, H and W even, black 0 and white 1 (as read with ``clip=False``); meant for
                the noisy photo itself or a clean estimate of it.
        Returns:
            float32 (H, W), squared mosaic units.
        Raises:
            ValueError: not 2-D, or odd H or W.
        """
        x = np.asarray(mosaic, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] % 2 or x.shape[1] % 2:
            raise ValueError(f"variance needs an (H, W) mosaic with even sides, got shape {x.shape}")
        h, w = x.shape
        a = np.asarray(self.a, np.float32).reshape(1, 2, 1, 2)
        b = np.asarray(self.b, np.float32).reshape(1, 2, 1, 2)
        cells = np.maximum(x, 0.0).reshape(h // 2, 2, w // 2, 2)
        return np.maximum(cells * a + b, np.float32(VARIANCE_FLOOR)).reshape(h, w)

    def std_at(self, level: float) -> tuple[float, float, float, float]:
        """Noise standard deviation at mosaic level ``level`` (0 = black, 1 = white), per position."""
        return tuple(float(np.sqrt(max(a * max(level, 0.0) + b, VARIANCE_FLOOR))) for a, b in zip(self.a, self.b))


# ------------------------------------------------------------------------------------------------ estimate

#: Side of the square blocks (in pixels of one 2×2-position plane, i.e. 16×16 mosaic pixels) whose mean level
#: and noise variance are the points of the fit.
BLOCK = 8
#: Blocks whose 3×3-widened window reaches this level are left out: near white a sensor saturates (clipped
#: pixels have no noise) and many respond non-linearly.
SATURATION = 0.95
#: A block counts as noise only while its variance v is below (1 + CUT·s)·μ, μ = a·mean + b the current line
#: and s = :data:`BLOCK_SPREAD`, and its gradient energy g below GRAD_CUT·μ (on white noise g has mean ≈ μ and
#: relative spread 0.19, so 1.6 is +3 spreads: edges and smooth texture, which raise g far more than v, drop out).
CUT = 2.0
GRAD_CUT = 1.6
#: E[v | both cuts] / μ for noise-only blocks (white Gaussian noise, measured by :func:`_calibrate` on 4.5 M
#: plane pixels; the truncated-gamma value of the v cut alone is 0.968): the fit divides by it.
TRUNCATION = 0.9634
#: Fewest usable blocks per plane (fewer: the mosaic is too small, or nearly all of it saturated).
MIN_BLOCKS = 12
#: The fitted shot term counts as determined by the photo when its standard error is at most this fraction of
#: it; otherwise the photo's levels span too narrow a range (e.g. a flat, dark scene) and the estimate falls
#: back to a = 0 with b the pooled variance (see :func:`estimate_profile`).
MAX_REL_SE_A = 0.5

# The high-pass: outer([1, -2, 1], [1, -2, 1]) on one position's plane (Immerkær 1996). It removes every
# function that is linear along rows or along columns (ramps, and edges along either axis), and has noise gain
# Σk² = 36: on white noise of variance σ² its output has variance 36·σ².
_K1 = np.array([1.0, -2.0, 1.0])
_GAIN = float(np.sum(np.outer(_K1, _K1) ** 2))


def _block_spread(block: int = BLOCK) -> float:
    """Relative standard deviation of one block's variance v (mean of r²/36 over block×block outputs) on white
    Gaussian noise, exactly: sqrt(2·Σ_ij ρ(i−j)²)/N over the pairs of outputs of a block, ρ = ρ1⊗ρ1 the
    high-pass output's correlation."""
    c = np.correlate(_K1, _K1, "full")          # 1-D autocorrelation at lags −2..2: 1, −4, 6, −4, 1
    idx = np.arange(block)
    lag = idx[:, None] - idx[None, :]           # row (or column) lag between two outputs of a block
    rho1 = np.where(np.abs(lag) <= 2, c[np.clip(lag + 2, 0, 4)], 0.0) / np.sqrt(_GAIN)
    return float(np.sqrt(2.0 * np.sum(rho1 ** 2) ** 2) / block ** 2)


#: Relative standard deviation of a noise-only block's variance (0.32 for 8×8 blocks).
BLOCK_SPREAD = _block_spread()


def _blocks(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean level m, noise variance v, gradient energy g) of the BLOCK×BLOCK blocks of one plane, leaving out
    those near saturation; float64 (n,) each.

    v = mean(r²)/36 over the high-pass output r at the block's pixels: the plane's noise variance there
    (structure linear along rows or columns does not reach r). g = (mean squared first difference along rows,
    less its block mean squared, + the same along columns)/4: also the noise variance on white noise, but
    edges, curvature and smooth texture raise it much more than v."""
    p = plane.astype(np.float64)
    d = p[:-2] - 2.0 * p[1:-1] + p[2:]
    r = d[:, :-2] - 2.0 * d[:, 1:-1] + d[:, 2:]          # aligned with p[1:-1, 1:-1]
    ny, nx = r.shape[0] // BLOCK, r.shape[1] // BLOCK
    if ny == 0 or nx == 0:
        return np.empty(0), np.empty(0), np.empty(0)
    shape = (ny, BLOCK, nx, BLOCK)
    hh, ww = ny * BLOCK, nx * BLOCK
    v = np.square(r[:hh, :ww]).reshape(shape).mean(axis=(1, 3)) / _GAIN
    core = p[1:hh + 1, 1:ww + 1]
    m = core.reshape(shape).mean(axis=(1, 3))
    g = np.zeros_like(m)
    for diff in (p[1:hh + 1, 2:ww + 2] - core, p[2:hh + 2, 1:ww + 1] - core):
        diff = diff.reshape(shape)
        g += np.square(diff).mean(axis=(1, 3)) - np.square(diff.mean(axis=(1, 3)))
    g /= 4.0
    # The high-pass at a pixel reads its 3×3 neighbourhood: a block's window is one pixel wider all round.
    from scipy.ndimage import maximum_filter
    top = maximum_filter(p, size=3, mode="nearest")[1:hh + 1, 1:ww + 1].reshape(shape).max(axis=(1, 3))
    keep = top < SATURATION
    return m[keep], v[keep], g[keep]


def _wls(m: np.ndarray, v: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
    """Weighted least squares of v = a·m + b under a ≥ 0, b ≥ 0.

    Returns (a, b, (XᵀWX)⁻¹ for a: inf where a was clamped to 0)."""
    sw, swm, swmm = w.sum(), (w * m).sum(), (w * m * m).sum()
    swv, swmv = (w * v).sum(), (w * m * v).sum()
    det = sw * swmm - swm * swm
    if det > 1e-12 * sw * swmm:
        a = (sw * swmv - swm * swv) / det
        b = (swmm * swv - swm * swmv) / det
        if a >= 0 and b >= 0:
            return float(a), float(b), float(sw / det)
    if swmm > 0 and swmv > 0 and swv - swm * swmv / swmm <= 0:  # b would be negative: b = 0
        return float(swmv / swmm), 0.0, float(1.0 / swmm)
    return 0.0, float(max(swv / sw, 0.0)), float("inf")  # a would be negative (or m is constant): a = 0


def _bin_medians(m: np.ndarray, v: np.ndarray, bins: int = 12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean level, median variance, weight 1/median²) of ``bins`` equal-count bins of the blocks by level."""
    groups = np.array_split(np.argsort(m), min(bins, max(m.size // 4, 1)))
    mm = np.array([m[g].mean() for g in groups])
    vv = np.array([np.median(v[g]) for g in groups])
    return mm, vv, 1.0 / np.maximum(vv, 1e-300) ** 2


@dataclass(frozen=True)
class _PlaneFit:
    """The fit of one position's plane, and what shows how well the photo determined it."""

    a: float
    b: float
    blocks: int          # blocks not near saturation
    kept: int            # of those, counted as noise only at the end
    level_lo: float      # 5th and 95th percentile of the kept blocks' mean levels
    level_hi: float
    identifiable: bool   # False: the levels spanned too narrow a range for a; a = 0 and b = pooled variance


def _fit_plane(plane: np.ndarray, iterations: int = 50) -> _PlaneFit:
    """Fit var = a·m + b to one plane's blocks (see :func:`estimate_profile`)."""
    return _fit_blocks(*_blocks(plane), iterations)


def _fit_blocks(m: np.ndarray, v: np.ndarray, g: np.ndarray, iterations: int = 50) -> _PlaneFit:
    """Fit var = a·m + b to blocks of (mean level, noise variance, gradient energy) (:func:`_blocks`)."""
    if m.size < MIN_BLOCKS:
        raise InputError(f"mosaic too small or too saturated to estimate its noise: {m.size} usable "
                         f"{BLOCK}×{BLOCK}-pixel blocks per 2×2 position, need {MIN_BLOCKS} (about 68×52 "
                         f"unsaturated mosaic pixels)")
    if not np.any(v > 0):  # noise-free (e.g. constant or synthetic clean) data
        return _PlaneFit(0.0, 0.0, m.size, m.size, float(m.min()), float(m.max()), False)
    v_cut = 1.0 + CUT * BLOCK_SPREAD

    def noise_only(mu):
        return (v < v_cut * mu) & (g < GRAD_CUT * mu)

    # Start above the noise (per-level medians: texture only raises them), then let the cuts pull the line
    # down onto the noise-only blocks: each step refits the blocks below the current line's cuts.
    a, b, inv_a = _wls(*_bin_medians(m, v))
    for _ in range(iterations):
        mu = np.maximum(a * m + b, 1e-300)
        kept = noise_only(mu)
        if kept.sum() < MIN_BLOCKS // 2:
            break
        a_new, b_new, inv_a = _wls(m[kept], v[kept], 1.0 / np.square(mu[kept]))
        a_new, b_new = a_new / TRUNCATION, b_new / TRUNCATION
        done = abs(a_new - a) <= 1e-5 * a_new and abs(b_new - b) <= 1e-5 * max(b_new, 1e-300)
        a, b = a_new, b_new
        if done:
            break
    kept = noise_only(np.maximum(a * m + b, 1e-300))
    # Var(v_j) ≈ s²·(TRUNCATION·μ_j)² and the weights are 1/μ_j²; a is the fitted slope / TRUNCATION, so
    # se(a) ≈ s·sqrt((XᵀWX)⁻¹_aa) (conservative: the cuts narrow the spread below s).
    se_a = BLOCK_SPREAD * np.sqrt(inv_a)
    identifiable = a > 0 and se_a <= MAX_REL_SE_A * a
    if not identifiable:  # the slope is not determined: keep what is, the variance at the photo's own levels
        b = max(b + a * float(np.median(m[kept])) if kept.any() else b, 1e-300)
        for _ in range(iterations):
            kept = noise_only(b)
            if not kept.any():
                break
            b_new = float(v[kept].mean()) / TRUNCATION
            done = abs(b_new - b) <= 1e-5 * b_new
            b = b_new
            if done:
                break
        a = 0.0
    lo, hi = np.percentile(m[kept], [5, 95]) if kept.any() else (float(m.min()), float(m.max()))
    return _PlaneFit(float(a), float(b), int(m.size), int(kept.sum()), float(lo), float(hi), bool(identifiable))


def _calibrate(seed: int = 0, size: int = 2048) -> float:
    """E[v | both cuts] / E[v] for noise-only blocks of white Gaussian noise: :data:`TRUNCATION` (the tests
    check the constant against this)."""
    rng = np.random.default_rng(seed)
    _, v, g = _blocks(0.5 + 0.01 * rng.standard_normal((size, size)))
    mu = 1e-4
    kept = (v < (1.0 + CUT * BLOCK_SPREAD) * mu) & (g < GRAD_CUT * mu)
    return float(v[kept].mean() / mu)


def _check_mosaic(mosaic) -> np.ndarray:
    x = np.asarray(mosaic)
    if x.ndim != 2 or x.shape[0] % 2 or x.shape[1] % 2:
        raise InputError(f"noise estimate needs an (H, W) mosaic with even sides, got shape {x.shape}")
    if x.dtype.kind not in "fiu":
        raise InputError(f"noise estimate needs a numeric mosaic, got dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise InputError("noise estimate: the mosaic holds NaN or Inf values")
    return x


def _estimate(mosaic, shared: bool = False) -> tuple[NoiseProfile, list[_PlaneFit]]:
    x = _check_mosaic(mosaic)
    planes = [x[dy::2, dx::2] for dy in (0, 1) for dx in (0, 1)]
    if shared:
        blocks = [_blocks(p) for p in planes]
        fits = [_fit_blocks(*(np.concatenate(parts) for parts in zip(*blocks)))] * 4
    else:
        fits = [_fit_plane(p) for p in planes]
    return NoiseProfile(a=tuple(f.a for f in fits), b=tuple(f.b for f in fits), source="estimated"), fits


def estimate_profile(mosaic: np.ndarray, shared: bool = False) -> NoiseProfile:
    """Blind estimate of a mosaic's noise profile, from the mosaic alone.

    Method, for each 2×2 position's plane (H/2 × W/2) on its own: the high-pass outer([1, −2, 1], [1, −2, 1])
    (noise gain 36; ramps and edges along rows or columns do not pass) gives each block of
    :data:`BLOCK`×:data:`BLOCK` plane pixels a noise variance v = mean(r²)/36 beside its mean level m; blocks
    reaching :data:`SATURATION` are left out. The line v = a·m + b is fitted to the blocks that hold noise
    only: starting from per-level medians, each iteration refits (weighted least squares, weights 1/μ², a ≥ 0
    and b ≥ 0) the blocks whose v is below (1 + 2·s)·μ (s = :data:`BLOCK_SPREAD`, the spread of a noise-only
    block's v) and whose gradient energy is below 1.6·μ, μ the current line, and divides by
    :data:`TRUNCATION` so that the cuts do not bias the line low. Texture and edges, which only raise a
    block's v and gradient energy, drop out.

    A flat scene (blocks at nearly one level, e.g. a dark frame) does not determine the slope: when the
    standard error of a exceeds :data:`MAX_REL_SE_A` of it, the estimate is a = 0 and b = the pooled noise
    variance at the photo's levels, which predicts the noise there and only there.

    Assumed: noise independent from pixel to pixel within a plane (true of raw data that no camera processing
    has smoothed). Counted as noise, as a single photo cannot tell them apart: fixed-pattern noise (offsets
    and gains that repeat from frame to frame) and quantisation (a twelfth of a raw step squared).

    Measured (tests/test_noise_profile.py): on smooth-but-varied synthetic 250×362 mosaics with Poisson–Gaussian
    noise (a from 1e-4 to 1e-2) a and the variance at 0.5 come within 12 % (mean error −2 %); on one frame of a
    real 1.6-Mpixel low-light burst the mean predicted variance is 0.3–2.8 % above the variance across its 8
    frames, and within 9 % of it at every level. Heavily textured content with little smooth area and weak
    noise is the hard case: there too few blocks are noise only, and the estimate runs high (or, with a
    handful of blocks, falls back as for a flat scene).

    ``shared``: one (a, b) for the four positions, fitted to all their blocks together: four times the blocks,
    so far steadier on small or dark photos (on 256×256 crops the per-position fit left some planes with a = 0
    where the true a was 1e-3), and right wherever the positions share the sensor's gain and levels in these
    normalised units, as they do on Bayer sensors (the CFA filters change the signal, not the gain).

    Args:
        mosaic: (H, W) float, H and W even, black 0 and white 1, noise below black kept (``read_raw(path,
            clip=False).mosaic``; a clipped mosaic biases the dark levels). At least about 68×52 pixels.
    Returns:
        :class:`NoiseProfile` with ``source="estimated"``. About 0.1 s for 1.6 Mpixel on one core.
    Raises:
        InputError: not an (H, W) mosaic with even sides, NaN/Inf values, or too few unsaturated blocks.
    """
    return _estimate(mosaic, shared)[0]


# ------------------------------------------------------------------------------------------------ DNG tag

def from_tag_values(values, cfa: str, plane_colors=(0, 1, 2), where: str = "NoiseProfile") -> NoiseProfile:
    """A :class:`NoiseProfile` from the values of a DNG NoiseProfile tag.

    Args:
        values: S₁, O₁, S₂, O₂, ...: one (S, O) pair for all planes, or one per CFA plane in
            ``plane_colors`` order; σ²(x) = S·x + O with x normalised as DNG's stage 2 (BlackLevel 0,
            WhiteLevel 1), the units of this module. S > 0 and O ≥ 0 (DNG 1.3+).
        cfa: the 2×2 pattern of the mosaic, e.g. "RGGB" (used only with one pair per plane).
        plane_colors: DNG CFAPlaneColor, the colour (0 R, 1 G, 2 B) of each plane; (0, 1, 2) by default.
        where: names the tag's source in error messages (e.g. the file).
    Returns:
        ``NoiseProfile(a=S, b=O, source="dng-tag")`` per 2×2 position.
    Raises:
        InputError: a count other than 2 or 2·planes, non-finite values, S ≤ 0 or O < 0, or a CFA colour that
            is not among the planes.
    """
    vals = [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]
    planes = [int(c) for c in plane_colors]
    if len(vals) not in (2, 2 * len(planes)):
        raise InputError(f"{where}: NoiseProfile holds {len(vals)} values; expected 2 or {2 * len(planes)} "
                         f"(an (S, O) pair for all planes or one per colour plane)")
    if not all(np.isfinite(vals)) or any(s <= 0 for s in vals[0::2]) or any(o < 0 for o in vals[1::2]):
        raise InputError(f"{where}: NoiseProfile values {vals} are not valid (each scale S > 0, each offset "
                         f"O ≥ 0)")
    if len(vals) == 2:
        pairs = [(vals[0], vals[1])] * 4
    else:
        pairs = []
        for colour in cfa:
            code = "RGB".index(colour)
            if code not in planes:
                raise InputError(f"{where}: CFA colour {colour} is not among the NoiseProfile's planes "
                                 f"(CFAPlaneColor {planes})")
            k = planes.index(code)
            pairs.append((vals[2 * k], vals[2 * k + 1]))
    return NoiseProfile(a=tuple(p[0] for p in pairs), b=tuple(p[1] for p in pairs), source="dng-tag")
