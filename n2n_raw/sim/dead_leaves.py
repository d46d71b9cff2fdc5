"""Built-in default data: procedurally generated natural-like images (no download needed).

The dead-leaves model (occluding disks with a power-law size distribution) reproduces the scale invariance,
sharp edges and flat regions of natural photographs, which is what a denoiser has to learn. Each leaf
gets a smooth shading gradient and a little texture so that the images are not piecewise constant.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def dead_leaves(rng: np.random.Generator, height: int, width: int, *, r_min: float = 4.0,
                r_max: float | None = None, max_leaves: int = 4000, blur: float = 0.8) -> np.ndarray:
    """One natural-like RGB image.

    Args:
        rng: numpy Generator (the only source of randomness).
        height, width: output size in pixels.
        r_min, r_max: leaf radius range in pixels; radii follow p(r) ∝ r^-3 (scale invariance).
        blur: σ in pixels of the Gaussian blur applied at the end (optics).
    Returns:
        float32 array (height, width, 3) with values in [0, 1].
    """
    r_max = r_max if r_max is not None else 0.4 * max(height, width)
    img = np.empty((height, width, 3), np.float32)
    img[:] = rng.uniform(0.1, 0.9, size=3)
    covered = np.zeros((height, width), bool)
    yy_full, xx_full = np.mgrid[0:height, 0:width].astype(np.float32)
    # Inverse-CDF sampling of p(r) ∝ r^-3 on [r_min, r_max].
    a, b = r_min ** -2, r_max ** -2
    for _ in range(max_leaves):
        r = (a - rng.uniform() * (a - b)) ** -0.5
        cy, cx = rng.uniform(-r, height + r), rng.uniform(-r, width + r)
        y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 1, height)
        x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 1, width)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = yy_full[y0:y1, x0:x1], xx_full[y0:y1, x0:x1]
        inside = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & ~covered[y0:y1, x0:x1]
        if not inside.any():
            continue
        # Leaves are drawn front to back: a pixel keeps the first leaf that covers it.
        # Natural colours are mostly luminance with moderate chroma.
        lum = rng.uniform(0.0, 1.0) ** 1.5
        colour = np.clip(lum + rng.normal(0.0, 0.12, size=3), 0.0, 1.0).astype(np.float32)
        grad = rng.normal(0.0, 0.25 / max(r, 1.0), size=2).astype(np.float32)
        shade = 1.0 + grad[0] * (yy - cy) + grad[1] * (xx - cx)
        leaf = colour[None, None, :] * shade[..., None]
        if rng.uniform() < 0.3:  # some leaves carry a stripe texture
            freq, phase = rng.uniform(0.05, 0.4), rng.uniform(0, 2 * np.pi)
            ang = rng.uniform(0, np.pi)
            stripes = 0.15 * np.sin(freq * (np.cos(ang) * xx + np.sin(ang) * yy) + phase)
            leaf = leaf * (1.0 + stripes[..., None])
        region = img[y0:y1, x0:x1]
        region[inside] = leaf[inside]
        covered[y0:y1, x0:x1] |= inside
        if covered.all():
            break
    # A camera's optics never render a step edge as a one-pixel jump; a slight blur gives neighbouring
    # pixels the correlation of real photographs.
    img = ndimage.gaussian_filter(img, sigma=(blur, blur, 0), mode="reflect") if blur > 0 else img
    return np.clip(img, 0.0, 1.0)


def dead_leaves_set(count: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` dead-leaves images as uint8 (H, W, 3), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return [np.round(dead_leaves(rng, height, width) * 255).astype(np.uint8) for _ in range(count)]
