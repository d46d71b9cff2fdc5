"""Do raw editors render a denoised DNG like its source? darktable-cli and LibRaw, on the real camera files.

For each real file (and a copy of the Canon DNG whose Orientation says 6, a portrait), three DNGs are
rendered with the same settings by darktable-cli (a photographer's editor, default settings, no sidecars)
and by LibRaw (rawpy ``postprocess`` with the camera's white balance):

- ``source``: the file itself;
- ``identity``: the writer alone, the source's own pixels (read unclipped) written back through
  ``write_denoised_dng``; any difference here is the writer's;
- ``denoised``: ``n2n-raw denoise`` with a raw checkpoint;
- ``blurred``: each CFA plane blurred by a Gaussian (σ = 2 plane pixels), which keeps local means but
  removes the noise: a render's block means move when noise goes, because the tone curve is not linear
  (the mean of a curve of noisy values is not the curve of their mean); this column shows how much of the
  ``denoised`` difference any noise removal brings, whatever the denoiser.

Printed per file and renderer: the picture size (width × height, as displayed, so orientation shows), and
the mean absolute difference (Δ) to the source's render of 16×16 block means, in levels of 255 (block means
average the noise away, so what is left is colour and tone). The raw mosaic's own change is printed too
for ``denoised`` and ``blurred`` (raw Δ: 8×8 block means of each CFA plane, i.e. per colour over 16×16
mosaic pixels, against the unclipped source, in levels of 255 of the raw range): the low frequencies each
one moved before any rendering.

The checkpoint: ``--checkpoint RUN_OR_CKPT``; without it the script fits one on the benchmark's DNGs
themselves with ``n2n-raw fit``'s defaults (self-supervised: the photos are all it needs).

    python benchmarks/render_check.py                       # real files in ../shared/data/real_raw
    python benchmarks/render_check.py --checkpoint runs/x --real DIR --keep OUTDIR
darktable-cli is optional (Debian: ``apt-get install darktable``); without it only LibRaw renders.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import rawpy
import tifffile
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import REAL_RAW, device_name, git_rev  # noqa: E402  (benchmarks/common.py, beside this script)
from n2n_raw.io import camera_raw, dng  # noqa: E402

FILES = ["canon_550d_colorchart.dng", "canon_portrait (Orientation 6)", "pi_bggr_scene.dng",
         "pi_gbrg_no_blacklevel.dng", "burst_lowlight/image_21.dng", "kodak_dc50.kdc"]
BLOCK = 16


def block_means(img: np.ndarray, b: int = BLOCK) -> np.ndarray:
    """(H, W[, C]) → (H//b, W//b[, C]) float64 means of b×b blocks (the remainder rows/columns dropped)."""
    h, w = img.shape[0] // b * b, img.shape[1] // b * b
    x = img[:h, :w].astype(np.float64)
    return x.reshape(h // b, b, w // b, b, *x.shape[2:]).mean(axis=(1, 3))


def plane_block_means(mosaic: np.ndarray) -> np.ndarray:
    """(H, W) mosaic → (4, H//16, W//16): 8×8 block means of each 2×2-position plane (a 16×16 mosaic block),
    so that a shift of one colour against another shows (a mixed block mean would let them cancel)."""
    return np.stack([block_means(mosaic[dy::2, dx::2], BLOCK // 2) for dy in (0, 1) for dx in (0, 1)])


def with_orientation(src: Path, dst: Path, value: int) -> Path:
    """Copy ``src`` with its IFD0 Orientation patched in place (the offset read by tifffile)."""
    buf = bytearray(src.read_bytes())
    with tifffile.TiffFile(src) as t:
        tag = t.pages[0].tags["Orientation"]
        at, bo = tag.valueoffset, t.byteorder
    buf[at:at + 2] = value.to_bytes(2, "little" if bo == "<" else "big")
    dst.write_bytes(bytes(buf))
    return dst


def render_libraw(path: Path) -> np.ndarray:
    with rawpy.imread(str(path)) as raw:  # fixed exposure: auto-brightness follows the noise's highlights
        return raw.postprocess(use_camera_wb=True, output_bps=8, no_auto_bright=True)


def blur_planes(mosaic: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """(H, W) mosaic → the same with each of the four 2×2-position planes Gaussian-blurred (mean kept)."""
    from scipy.ndimage import gaussian_filter
    out = mosaic.copy()
    for dy in (0, 1):
        for dx in (0, 1):
            out[dy::2, dx::2] = gaussian_filter(mosaic[dy::2, dx::2], sigma, mode="reflect")
    return out


def render_darktable(path: Path, work: Path, xmp: Path | None = None) -> np.ndarray | None:
    """darktable-cli's render with default settings (None when darktable cannot open the file).

    ``xmp``: a sidecar whose history darktable-cli applies instead (``darktable-cli IN XMP OUT``); one holding
    a single module entry and ``auto_presets_applied="0"`` keeps darktable's defaults for everything else
    (``benchmarks/xmp/``). With a sidecar, a failed render raises with darktable's message: darktable-cli
    refuses a sidecar it cannot read, and that must not pass for a missing renderer."""
    out = work / f"{path.stem}.dt.png"
    out.unlink(missing_ok=True)
    conf = work / "dtconf"
    sidecar = [] if xmp is None else [str(xmp)]
    res = subprocess.run(["darktable-cli", str(path), *sidecar, str(out), "--core", "--configdir", str(conf),
                          "--conf", "write_sidecar_files=never"], capture_output=True, text=True, timeout=600)
    if xmp is not None and (res.returncode != 0 or not out.is_file()):
        raise RuntimeError(f"darktable-cli failed on {path} with {xmp}: {res.stderr.strip()}")
    if res.returncode != 0 or not out.is_file():
        return None
    return np.asarray(Image.open(out).convert("RGB"))


def train_checkpoint(dngs: list[Path], work: Path, steps: int | None) -> Path:
    """A raw checkpoint fitted on the benchmark's own DNGs with ``n2n-raw fit``'s library call (no clean
    image, no other data: what a user runs on their photos)."""
    from n2n_raw.checkpoint import list_checkpoints
    from n2n_raw.jobs.fit import fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the no-black-level file warns; the benchmark reports it elsewhere
        fit(dngs, work / "run", steps=steps, force=True, log=lambda s: None)
    return list_checkpoints(work / "run")[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, default=REAL_RAW,
                    help="folder of the real camera files (default: $N2N_RAW_REAL_DATA, else ../shared/data/real_raw)")
    ap.add_argument("--checkpoint", type=Path, help="raw run folder or checkpoint (default: fit one here)")
    ap.add_argument("--steps", type=int, default=None, help="steps of the fitted checkpoint (without --checkpoint; "
                    "default: fit's)")
    ap.add_argument("--keep", type=Path, help="keep the DNGs and renders in this folder")
    ap.add_argument("--no-darktable", action="store_true", help="LibRaw renders only")
    args = ap.parse_args()
    darktable = shutil.which("darktable-cli") is not None and not args.no_darktable
    print(f"# render_check: commit {git_rev(ROOT)}, {device_name(torch.device('cpu'))}, torch {torch.__version__}, "
          f"darktable-cli {'yes' if darktable else 'no'}")

    work = Path(tempfile.mkdtemp(prefix="n2n_render_")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    sources: dict[str, Path] = {}
    for name in FILES:  # copies: darktable must not touch the user's folder
        if name.startswith("canon_portrait"):
            sources[name] = with_orientation(args.real / "canon_550d_colorchart.dng", work / "canon_portrait.dng", 6)
        else:
            sources[name] = Path(shutil.copy(args.real / name, work / Path(name).name))
    t0 = time.perf_counter()
    ckpt = args.checkpoint or train_checkpoint([p for n, p in sources.items()
                                                if p.suffix == ".dng" and "portrait" not in n], work / "fit", args.steps)
    how = str(ckpt) if args.checkpoint else f"fitted here on the DNGs by n2n-raw fit ({args.steps or 'its default'} steps)"
    print(f"# checkpoint: {how} ({time.perf_counter() - t0:.0f} s)")

    from n2n_raw.checkpoint import load_model
    from n2n_raw.inference.photos import denoise_file
    model, meta = load_model(ckpt, expect_mode="raw")
    print("| file | renderer | size source | size identity | size denoised | identity Δ | denoised Δ | blurred Δ "
          "| raw Δ denoised | raw Δ blurred |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, src in sources.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = camera_raw.read_raw(src, clip=False)
            ident = dng.write_denoised_dng(src, r.mosaic, work / f"{src.stem}.identity.dng", force=True)
            (work / "den").mkdir(exist_ok=True)
            written, _ = denoise_file(model, meta, src, work / "den", force=True)
            blur = dng.write_denoised_dng(src, np.clip(blur_planes(r.mosaic), 0, 1), work / f"{src.stem}.blur.dng",
                                          force=True)
        den = written[0]
        ref_raw = plane_block_means(r.mosaic)
        raw_delta = [255 * np.abs(plane_block_means(camera_raw.read_raw(p, clip=False).mosaic) - ref_raw).mean()
                     for p in (den, blur)]
        renderers = [("LibRaw", render_libraw)]
        if darktable:
            renderers.append(("darktable", lambda p: render_darktable(p, work)))
        for label, render in renderers:
            imgs = [render(p) for p in (src, ident, den, blur)]
            if imgs[0] is None:
                print(f"| {name} | {label} | cannot open the source | | | | | | | |")
                continue
            size = lambda im: "failed" if im is None else f"{im.shape[1]}×{im.shape[0]}"  # noqa: E731
            ref = block_means(imgs[0])

            def delta(im):
                if im is None or im.shape != imgs[0].shape:
                    return "size differs"
                return f"{np.abs(block_means(im) - ref).mean():.3f}"
            print(f"| {name} | {label} | {size(imgs[0])} | {size(imgs[1])} | {size(imgs[2])} | {delta(imgs[1])} "
                  f"| {delta(imgs[2])} | {delta(imgs[3])} | {raw_delta[0]:.3f} | {raw_delta[1]:.3f} |", flush=True)
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
