"""How far N2N's target is from its input on clean images, against the noise, for the raw and sRGB tasks.

N2N trains f(g1(y)) towards g2(y): g2 samples *neighbouring* pixels, so even without noise the target differs
from the input by g2(x) − g1(x). This prints, for the clean training images of each task of
``convergence.py``, the mean of (g1(x) − g2(x))² over 8 draws of the sub-sampler masks, the variance of the
task's noise, and their ratio:

- raw: the clean mosaics of the first ``--raw-mosaics`` items of the built-in recipe, packed to 4 channels as
  training packs them (so neighbours are 2 mosaic pixels apart), noise = the items' own (noisy − clean);
- srgb: Kodak + BSD300 in [0, 1], noise gauss25 (variance (25/255)²).

    python benchmarks/neighbour_mismatch.py --raw-mosaics 80
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import VALIDATION, git_rev  # noqa: E402
from n2n_raw.method.bayer import to_packed  # noqa: E402
from n2n_raw.training.sources import default_raw_items  # noqa: E402
from n2n_raw.io.images import read_rgb, validation_folder_images  # noqa: E402
from n2n_raw.method.subsample import draw_masks, subsample  # noqa: E402


def mismatch(x: torch.Tensor, g: torch.Generator, draws: int = 8) -> float:
    """Mean (g1(x) − g2(x))² of x (1, C, H, W) over ``draws`` mask draws (odd sizes cropped to even)."""
    x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]
    out = []
    for _ in range(draws):
        g1, g2 = subsample(x, draw_masks(1, x.shape[-2], x.shape[-1], g))
        out.append(float(((g1 - g2) ** 2).mean()))
    return float(np.mean(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw-mosaics", type=int, default=80)
    ap.add_argument("--validation", type=Path, default=VALIDATION)
    a = ap.parse_args()
    print(f"commit {git_rev(ROOT)}")
    g = torch.Generator().manual_seed(0)

    mis, noise = [], []
    for it in default_raw_items(a.raw_mosaics):
        h, w = it.shape
        clean, noisy = it.gt(0, 0, h, w), it.crop(0, 0, h, w)
        packed = torch.from_numpy(np.ascontiguousarray(to_packed(clean, it.cfa)[0]))[None]
        mis.append(mismatch(packed, g))
        noise.append(float(((noisy - clean) ** 2).mean()))
    m, v = float(np.mean(mis)), float(np.mean(noise))
    print(f"raw ({a.raw_mosaics} mosaics, packed): mismatch {m:.3e} ({10 * np.log10(1 / m):.2f} dB), "
          f"noise variance {v:.3e}, ratio {m / v:.3f}")

    mis = []
    for sub in ("Kodak", "BSD300"):
        for f in validation_folder_images(a.validation / sub):
            im = read_rgb(f).astype(np.float32) / 255
            mis.append(mismatch(torch.from_numpy(im.transpose(2, 0, 1).copy())[None], g))
    m, v = float(np.mean(mis)), (25 / 255) ** 2
    print(f"srgb ({len(mis)} images): mismatch {m:.3e} ({10 * np.log10(1 / m):.2f} dB), noise variance "
          f"{v:.3e}, ratio {m / v:.3f}")


if __name__ == "__main__":
    main()
