"""Run-folder pictures and `info`."""
import csv

import numpy as np
from PIL import Image

from n2n_raw.training import plots
from n2n_raw.cfa import CFAS


def test_curves_png_from_metrics(tmp_path):
    with open(tmp_path / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["step", "epoch", "loss", "val_psnr"])
        w.writeheader()
        for s in range(1, 6):
            w.writerow({"step": s * 10, "epoch": s, "loss": 1.0 / s, "val_psnr": 20 + s if s % 2 else ""})
    path = plots.write_curves(tmp_path)
    im = Image.open(path)
    assert im.format == "PNG" and im.size[0] > 200
    assert not list(tmp_path.glob(".*partial*"))


def test_raw_preview_is_half_size_rgb_and_shares_the_reference_scaling():
    rng = np.random.default_rng(0)
    m = rng.uniform(0.05, 0.2, (34, 50)).astype(np.float32)
    for cfa in CFAS:
        a = plots.raw_to_srgb(m, cfa)
        assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
        assert abs(a.shape[0] - 17) <= 1 and abs(a.shape[1] - 25) <= 1
    # With the same reference, a darker mosaic renders darker.
    bright = plots.raw_to_srgb(m, "RGGB", ref=m)
    dark = plots.raw_to_srgb(m * 0.5, "RGGB", ref=m)
    assert dark.mean() < bright.mean()


def test_comparison_png(tmp_path):
    img = np.zeros((20, 30, 3), np.uint8)
    path = plots.write_comparison(tmp_path / "c.png", [("noisy", img), ("denoised", img + 50)])
    assert Image.open(path).format == "PNG"
