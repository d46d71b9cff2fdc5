"""Look for a grid in the darkest part of a denoised photo, as a photographer would see it: darktable at 200 %.

    python benchmarks/dark_crop.py SOURCE.dng LABEL=DENOISED.dng [LABEL=DENOISED.dng ...] --out crop.png
    python benchmarks/dark_crop.py ... --xmp benchmarks/xmp/match_greens.xmp   # darktable's "match greens"

Each DNG is rendered by darktable-cli (default settings, no sidecars; Debian: ``apt-get install darktable``;
LibRaw's render when darktable is missing). ``--xmp FILE`` applies one darktable sidecar to every render
instead: ``benchmarks/xmp/match_greens.xmp`` (demosaic's green equilibration, which corrects a gain between
the two greens), ``canon_black_per_row.xmp`` / ``canon_black_per_row_x4.xmp`` ("raw black/white point" with
the Canon chart's black per row parity, measured on its optical-black pixels: an offset between the greens,
which shows as a period-2 grid once the noise is gone; the ``_x4`` one for the 16-bit DNGs written from it,
whose black is 4× the source's; name one of those first, as ``LABEL=PATH``, to cut its own darkest window).
The darkest
``--size``² window of the source's render (lowest mean luminance after a box blur, away from the border) is cut
from every render, enlarged 2× by pixel repetition (200 %), brightened ×``--gain`` so that the dark tones can
be seen, and laid side by side in ``--out``.

A regular grid shows as isolated peaks in the crop's spectrum. Printed per render: the *grid ratio*, the
largest magnitude of the 2-D FFT of the crop's luminance at the periods 2, 4 and 8 pixels along rows, columns
and diagonals, over the median magnitude of the same radial band; white noise gives ≈ 2–3, a visible grid
tens or more.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import uniform_filter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render_check import render_darktable, render_libraw  # noqa: E402  (beside this script)


def darkest_window(img: np.ndarray, size: int) -> tuple[int, int]:
    """(y, x) of the top-left corner of the darkest size×size window (a 10 % margin kept off the border)."""
    lum = img.astype(np.float64).mean(axis=2)
    m = uniform_filter(lum, size)
    h, w = lum.shape
    my, mx = max(size // 2, h // 10), max(size // 2, w // 10)
    inner = m[my:h - my, mx:w - mx]
    cy, cx = np.unravel_index(np.argmin(inner), inner.shape)
    return int(cy + my - size // 2), int(cx + mx - size // 2)


def grid_ratio(crop: np.ndarray) -> float:
    """Peak FFT magnitude at the periods 2, 4, 8 (rows, columns, diagonals) over the median of its radial band."""
    lum = crop.astype(np.float64).mean(axis=2)
    lum -= lum.mean()
    f = np.abs(np.fft.fft2(lum))
    n = lum.shape[0]
    fy, fx = np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(lum.shape[1]), indexing="ij")
    radius = np.hypot(fy, fx)
    ratios = []
    for period in (2, 4, 8):
        p = 1.0 / period
        for qy, qx in ((p, 0.0), (0.0, p), (p, p)):
            iy, ix = int(round(qy * n)) % n, int(round(qx * lum.shape[1])) % lum.shape[1]
            r = np.hypot(qy, qx)
            band = np.abs(radius - r) < 0.02
            ratios.append(f[iy, ix] / max(np.median(f[band]), 1e-12))
    return float(max(ratios))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", help="PATH or LABEL=PATH: the render whose darkest window is cut from all")
    ap.add_argument("denoised", nargs="+", help="LABEL=PATH")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", type=int, default=96, help="crop side in rendered pixels (shown at 200 %%)")
    ap.add_argument("--gain", type=float, default=4.0, help="brightening of the crops (display only)")
    ap.add_argument("--xmp", type=Path, help="darktable sidecar applied to every render (e.g. "
                    "benchmarks/xmp/match_greens.xmp); needs darktable-cli")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="darkcrop_"))
    try:
        dt = shutil.which("darktable-cli") is not None
        if args.xmp is not None and not dt:  # LibRaw has no use for it: a silent default render would mislead
            sys.exit("--xmp needs darktable-cli")
        render = (lambda p: render_darktable(p, work, args.xmp)) if dt else render_libraw
        first = tuple(args.source.split("=", 1)) if "=" in args.source else ("source", args.source)
        items = [first] + [tuple(d.split("=", 1)) for d in args.denoised]
        renders = [(label, render(Path(path))) for label, path in items]
        y, x = darkest_window(renders[0][1], args.size)
        how = "darktable-cli" + (f" with {args.xmp}" if args.xmp else "") if dt else "LibRaw"
        print(f"renderer: {how}; darkest {args.size}² window at (y {y}, x {x})")
        tiles = []
        for label, img in renders:
            crop = img[y:y + args.size, x:x + args.size]
            print(f"{label}: mean level {crop.mean():.1f}/255, grid ratio {grid_ratio(crop):.1f}")
            big = np.repeat(np.repeat(crop, 2, axis=0), 2, axis=1).astype(np.float64) * args.gain
            tiles.append(np.clip(big, 0, 255).astype(np.uint8))
            tiles.append(np.full((tiles[-1].shape[0], 6, 3), 255, np.uint8))
        Image.fromarray(np.concatenate(tiles[:-1], axis=1)).save(args.out)
        print(f"wrote {args.out} ({', '.join(label for label, _ in renders)}, left to right)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
