"""Peer benchmark: `n2n-raw fit` against BM3D+GAT, the noisy input and an oracle blur, on real data.

    pip install -e '.[bench]'        # BM3D (the `bm3d` package): non-commercial licence, benchmark-only extra
    python benchmarks/peers.py                                     # every set, every method, fit's defaults
    python benchmarks/peers.py --sets real --methods noisy,bm3d,oracle --crop 256
    python benchmarks/peers.py --sets burst,real --fit "defaults=" --fit "steps1200=--steps 1200" --json peers.json
    python benchmarks/peers.py --sets real --methods noisy,fit --fit "scratch20=--steps 20 --start-from scratch"
    python benchmarks/peers.py --sets sidd --sidd-images 4 --work /tmp/peers   # data cached in /tmp/peers

BM3D is used as a library here and nowhere else: its licence (Tampere University, non-commercial use only)
keeps it out of the package's dependencies; it lives in the ``bench`` extra of pyproject.toml.

Methods (``--methods``, each timed in wall seconds and scored):

- ``noisy``: the input as read.
- ``bm3d``: BM3D with the generalized Anscombe transform (GAT) on the four packed CFA planes, as the SIDD and
  Neighbor2Neighbor papers' baseline: per 2×2 position plane p, the blind noise profile (a_p, b_p) (var =
  a·x + b, from :func:`n2n_raw.method.noise_profile.estimate_profile` on the photo itself: what a user has), the GAT
  (:func:`n2n_raw.method.vst.gat`: unit noise variance), ``bm3d.bm3d(z, sigma_psd=1)`` with the package's default
  profile "np" (on the real set's 256-pixel crops, sidd / lowlight level: np 49.67 / 52.18 dB, "high" 49.19 /
  51.05, "vn" 49.31 / 52.04; "refilter" fails in bm3d 4.0.3 with a scalar σ), and the closed-form
  approximation of the exact unbiased inverse (Mäkitalo–Foi,
  :func:`n2n_raw.method.vst.gat_inverse_unbiased`). Its time is per photo, read + profile estimate + 4 planes,
  summed over the set's photos (``bm3d`` runs its own threads).
- ``fit``: the ``n2n-raw fit PHOTOS --out RUN --denoised DIR`` command as a subprocess on all the set's photos
  at once (a user's photos: train on them, denoise every one), once per ``--fit NAME=ARGS`` variant (ARGS are
  appended to the command line, e.g. ``--fit "steps100=--steps 100"``; default: one variant, ``defaults=``).
  ARGS starting with ``denoise`` run ``n2n-raw denoise PHOTOS --out DIR`` with the rest instead, no training
  (``--fit "shipped=denoise"``: the model that ships with n2n-raw, each photo with its own noise profile).
  Its time is the whole command's wall time; the denoised DNGs are read back unclipped and scored.
- ``oracle``: a Gaussian blur per CFA plane whose σ (per plane, from ``burst_fit.SIGMAS``) is picked against
  the reference: an upper bound no blind method has, since it looks at the answer. σ is picked per photo on
  ``real``/``sidd`` and jointly over the scored frames on ``burst`` (as burst_fit.py does).
- ``bm3d-true`` (only when named): BM3D+GAT given the true (a, b) (``real`` and ``sidd``), to separate the
  blind estimate's cost from BM3D's.

Data sets (``--sets``):

- ``burst``: the 8 frames of ``../shared/data/real_raw/burst_lowlight`` (real sensor noise). Scored as
  ``benchmarks/burst_fit.py`` does: frame k against the mean of the other 7, the *corrected* PSNR (the
  reference's own noise variance removed; see burst_fit's docstring), data range 1, no clipping; SSIM against
  that noisy reference (uncorrected, so only a relative score). ``--burst-frames N`` scores the first N
  frames (every method; BM3D denoises only those); fit always trains on and denoises all 8.
- ``real``: real camera content with synthetic noise of a known profile. From the shared real files
  (:data:`REAL_FILES`, read unclipped with ``read_raw``), each CFA position plane is binned 2×2 (mean of 2×2
  plane pixels, which averages the camera's own noise away) and the half-size Bayer mosaic re-assembled in the
  same CFA phase and clipped to [0, 1]: the reference. Two levels (:data:`LEVELS`): ``sidd`` (a = 1e-3,
  b = 1e-5, a SIDD-like level) and ``lowlight`` (the reference ×0.25, a = 4e-3,
  b = 1e-4). Poisson–Gaussian noise, Poisson(x/a)·a + N(0, b), from a fixed seed; each noisy mosaic is written
  as a 16-bit DNG with black 1024 and white 16383 (:data:`DNG_BLACK`, :data:`DNG_WHITE`: noise below black and
  above white survives; 1 unit = 15359 DN, so rounding adds ≈ 3.5e-10 of variance) and read back to check it.
  fit trains on one level's 4 DNGs together.
- ``sidd``: the synthetic SIDD world's (``n2n_raw.sim.sidd_world.make_sidd_world``) validation blocks, 256×256,
  ``--sidd-images`` images × ``--sidd-blocks`` blocks, each written as a DNG (the world's noisy block as
  given: Gaussian approximation of shot + read noise with the ISO's (a, b), clipped to [0, 1] like SIDD),
  in the CFA of the block's phone. The true (a, b) are recorded beside BM3D's blind estimate.

``real`` and ``sidd`` are scored in the SIDD convention: the estimate clamped to [0, 1], PSNR with data range
1 on the mosaic, MATLAB-style SSIM (``n2n_raw.evaluation.metrics.ssim_matlab``, data range 1) averaged over the 4 packed
CFA planes; means over photos. Data sets are written under ``--work`` (default a temporary folder, removed at
the end) and reused when their parameters match; ``--crop N`` cuts a central N×N window (even offsets) of each
reference mosaic and of each burst frame (then written as DNGs beside the others), for quick runs.

Prints one markdown table per set (``real`` per level) with the commit and machine; ``--json FILE`` writes
every number (per photo too).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from burst_fit import SIGMAS, oracle_blur, psnr, read_unclipped, window  # noqa: E402,F401  (beside this script)
from common import REAL_RAW, device_name, git_rev  # noqa: E402

REAL_DIR = REAL_RAW  # N2N_RAW_REAL_DATA, else ../shared/data/real_raw (datasets/REAL_FILES.md)
BURST_DIR = REAL_DIR / "burst_lowlight"
REAL_FILES = ("canon_550d_colorchart.dng", "pi_bggr_scene.dng", "kodak_dc50.kdc", "pi_gbrg_no_blacklevel.dng")
#: level → (a, b, exposure): var = a·x + b in normalised units, on the reference scaled by ``exposure``.
LEVELS = {"sidd": (1e-3, 1e-5, 1.0), "lowlight": (4e-3, 1e-4, 0.25)}
DNG_BLACK, DNG_WHITE = 1024, 16383  # written DNGs: 16-bit samples, room below black and above white
METHODS = ("noisy", "bm3d", "fit", "oracle")
EXTRA_METHODS = ("bm3d-true",)  # not run unless named: BM3D+GAT given the true profile (real and sidd only)
SETS = ("burst", "real", "sidd")
POSITIONS = ((0, 0), (0, 1), (1, 0), (1, 1))  # raster order of the 2×2 CFA positions


# ---------------------------------------------------------------------------------------------- building blocks

def pack(m: np.ndarray) -> np.ndarray:
    """(H, W) mosaic → (H/2, W/2, 4) planes in the raster order of the 2×2 positions."""
    return np.stack([m[dy::2, dx::2] for dy, dx in POSITIONS], axis=-1)


def bin_reference(mosaic: np.ndarray) -> np.ndarray:
    """Half-size Bayer mosaic in the same CFA phase: each position plane binned 2×2 (mean), clipped to [0, 1].

    ``mosaic`` (H, W) is cut to a multiple of 4 first (bottom/right), so every plane bins whole 2×2 blocks.
    Returns float64 (H/2, W/2) (rounded down to even sizes)."""
    h, w = (s // 4 * 4 for s in mosaic.shape)
    m = np.asarray(mosaic[:h, :w], np.float64)
    out = np.empty((h // 2, w // 2))
    for dy, dx in POSITIONS:
        p = m[dy::2, dx::2]  # (h/2, w/2)
        out[dy::2, dx::2] = p.reshape(h // 4, 2, w // 4, 2).mean(axis=(1, 3))
    return np.clip(out, 0.0, 1.0)


def poisson_gaussian(rng: np.random.Generator, x: np.ndarray, a: float, b: float) -> np.ndarray:
    """Poisson(x/a)·a + N(0, b): shot noise of gain a (variance a·x) plus read noise of variance b."""
    return rng.poisson(np.maximum(x, 0.0) / a) * a + rng.normal(0.0, np.sqrt(b), x.shape)


def write_mosaic_dng(path: Path, y: np.ndarray, cfa: str, black: float = DNG_BLACK, white: float = DNG_WHITE,
                     ) -> np.ndarray:
    """Write normalised mosaic ``y`` (values below 0 and above 1 kept) as a 16-bit DNG; check it reads back.

    Returns the mosaic as ``read_raw(path, clip=False)`` reads it (``y`` to within the rounding to whole DN).
    Raises AssertionError when the read-back differs by more than that (or a sample had to be clipped)."""
    from n2n_raw.io.camera_raw import read_raw
    from n2n_raw.io.scratch_dng import write_dng
    scale = white - black
    dn = np.rint(black + np.asarray(y, np.float64) * scale)
    if dn.min() < 0 or dn.max() > 65535:
        raise AssertionError(f"{path}: {int((dn < 0).sum() + (dn > 65535).sum())} samples outside 16 bits")
    write_dng(path, dn.astype(np.uint16), cfa, bits=16, black_level=black, white_level=white, force=True)
    r = read_raw(path, clip=False)
    err = float(np.abs(r.mosaic.astype(np.float64) - y).max())
    if r.cfa != cfa or r.mosaic.shape != y.shape or err > 0.5 / scale + 1e-6:
        raise AssertionError(f"{path}: read back {r.cfa} {r.mosaic.shape}, max error {err:.3g} "
                             f"(expected {cfa} {y.shape}, ≤ {0.5 / scale:.3g})")
    return r.mosaic.astype(np.float64)


def _vst():
    from n2n_raw.method import vst
    return vst.gat, vst.gat_inverse_unbiased


def _estimate_profile():
    from n2n_raw.method.noise_profile import estimate_profile
    return estimate_profile


def bm3d_gat(mosaic: np.ndarray, profile=None, bm3d_profile: str = "np") -> tuple[np.ndarray, dict]:
    """BM3D+GAT on the 4 packed CFA planes of ``mosaic`` (normalised, unclipped).

    ``profile``: (a, b) 4-tuples per 2×2 position; None estimates it blindly from ``mosaic``.
    Returns the denoised (H, W) float64 mosaic and {"a": [4], "b": [4]} (the profile used)."""
    import bm3d
    gat, gat_inverse = _vst()
    if profile is None:
        est = _estimate_profile()(mosaic)
        profile = (tuple(est.a), tuple(est.b))
    a_s, b_s = (tuple(float(v) for v in p) for p in profile)
    out = np.empty(mosaic.shape, np.float64)
    for k, (dy, dx) in enumerate(POSITIONS):
        a = max(a_s[k], 1e-9)  # a blind estimate may come out ≤ 0 on a plane read noise dominates
        z = gat(np.asarray(mosaic[dy::2, dx::2], np.float64), a, b_s[k])
        c = float(np.median(z))  # BM3D runs in float32: centred, a tiny a's large offset 2√b/a loses nothing
        d = np.asarray(bm3d.bm3d(z - c, sigma_psd=1.0, profile=bm3d_profile), np.float64).reshape(z.shape) + c
        out[dy::2, dx::2] = gat_inverse(d, a, b_s[k])
    return out, {"a": list(a_s), "b": list(b_s)}


# ---------------------------------------------------------------------------------------------- data sets

@dataclass
class Photo:
    name: str                   # file stem (unique in its set)
    path: Path                  # the DNG / raw file fit and BM3D read
    noisy: np.ndarray           # float64 (H, W) normalised, unclipped, as read from ``path``
    ref: np.ndarray | None      # float64 (H, W) reference (real/sidd); None for the burst (refs made there)
    true_profile: dict | None = None  # {"a": .., "b": ..} where known


@dataclass
class DataSet:
    label: str                  # table name: "burst", "real/sidd", "real/lowlight", "sidd"
    photos: list[Photo]
    scored: list[int]           # indices of the photos scored (burst: --burst-frames; else all)
    burst: bool = False         # scoring: burst_fit's corrected PSNR against the other frames' mean
    info: dict = field(default_factory=dict)


def _cached(folder: Path, params: dict) -> bool:
    """Whether ``folder`` holds a complete build with these parameters (its manifest.json)."""
    m = folder / "manifest.json"
    try:
        return json.loads(m.read_text()) == params
    except (OSError, ValueError):
        return False


def _seal(folder: Path, params: dict) -> None:
    (folder / "manifest.json").write_text(json.dumps(params, indent=1))


def build_real(work: Path, files=REAL_FILES, levels=tuple(LEVELS), crop: int | None = None, seed: int = 0,
               log=print, real_dir: Path = REAL_DIR) -> list[DataSet]:
    """The real-content sets, one per level (see the module docstring); DNGs under ``work/real/LEVEL``."""
    from n2n_raw.io.camera_raw import read_raw
    refs, cfas = {}, {}
    for f in files:
        with warnings.catch_warnings():  # pi_gbrg_no_blacklevel.dng: its missing black level is known
            warnings.simplefilter("ignore")
            r = read_raw(Path(real_dir) / f, clip=False)
        ref = bin_reference(r.mosaic)
        if crop:
            ref = ref[window(ref.shape, min(crop, *ref.shape) // 2 * 2)]
        refs[Path(f).stem], cfas[Path(f).stem] = ref, r.cfa
    sets = []
    for li, level in enumerate(levels):
        a, b, exposure = LEVELS[level]
        folder = work / "real" / level
        params = {"files": list(files), "a": a, "b": b, "exposure": exposure, "crop": crop, "seed": seed,
                  "black": DNG_BLACK, "white": DNG_WHITE}
        fresh = not _cached(folder, params)
        if fresh:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
        rng = np.random.default_rng([seed, li])
        photos = []
        for stem, ref in refs.items():
            x = ref * exposure
            path = folder / f"{stem}.dng"
            if fresh:
                noisy = write_mosaic_dng(path, poisson_gaussian(rng, x, a, b), cfas[stem])
            else:
                noisy = read_raw(path, clip=False).mosaic.astype(np.float64)
            photos.append(Photo(stem, path, noisy, x, {"a": [a] * 4, "b": [b] * 4}))
        if fresh:
            _seal(folder, params)
        state = "written, read back within rounding" if fresh else "cached"
        sizes = ", ".join(f"{p.name} {p.ref.shape[0]}×{p.ref.shape[1]}" for p in photos)
        log(f"real/{level}: {len(photos)} DNGs in {folder} ({state}); sizes {sizes}")
        sets.append(DataSet(f"real/{level}", photos, list(range(len(photos))),
                            info={"a": a, "b": b, "exposure": exposure}))
    return sets


def build_sidd(work: Path, n_images: int = 8, blocks: int = 2, crop: int | None = None, seed: int = 11,
               log=print) -> DataSet:
    """The synthetic SIDD world's validation blocks as DNGs under ``work/sidd``."""
    from n2n_raw.io.camera_raw import read_raw
    from n2n_raw.io.sidd import BLOCK_SCENES, PHONE_CFA, parse_scene_name, read_blocks
    from n2n_raw.method.noise import raw_noise_params
    from n2n_raw.sim.sidd_world import make_sidd_world
    folder = work / "sidd"
    params = {"n_images": n_images, "blocks": blocks, "crop": crop, "seed": seed, "black": DNG_BLACK,
              "white": DNG_WHITE}
    fresh = not _cached(folder, params)
    if fresh:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as td:
        world = make_sidd_world(Path(td) / "world", scenes_per_phone=0, n_images=n_images,
                                blocks_per_image=blocks, seed=seed)
        noisy_blocks, gt_blocks = read_blocks(world["val_noisy"]), read_blocks(world["val_gt"])
    photos = []
    for i in range(n_images):
        info = parse_scene_name(BLOCK_SCENES[i])
        cfa = PHONE_CFA[info["phone"]]
        a, b = raw_noise_params(info["iso"])
        for j in range(blocks):
            y, x = noisy_blocks[i, j].astype(np.float64), gt_blocks[i, j].astype(np.float64)
            if crop:
                win = window(x.shape, min(crop, *x.shape) // 2 * 2)
                y, x = y[win], x[win]
            name = f"{i:02d}_{BLOCK_SCENES[i][:4]}_{info['phone']}_iso{info['iso']}_b{j}"
            path = folder / f"{name}.dng"
            noisy = write_mosaic_dng(path, y, cfa) if fresh else read_raw(path, clip=False).mosaic.astype(np.float64)
            photos.append(Photo(name, path, noisy, x, {"a": [a] * 4, "b": [b] * 4}))
    if fresh:
        _seal(folder, params)
    log(f"sidd: {len(photos)} DNGs ({n_images} images × {blocks} validation blocks, {photos[0].ref.shape[0]}×"
        f"{photos[0].ref.shape[1]}) in {folder} ({'written, read back within rounding' if fresh else 'cached'})")
    return DataSet("sidd", photos, list(range(len(photos))), info={"n_images": n_images, "blocks": blocks})


def build_burst(work: Path, burst_dir: Path = BURST_DIR, frames: int | None = None, crop: int | None = None,
                log=print) -> DataSet:
    """The real burst: its frames as they are, or (``crop``) central windows re-written as DNGs (same raw DN,
    black and white) under ``work/burst``."""
    import rawpy
    from n2n_raw.io.camera_raw import find_raws
    from n2n_raw.io.scratch_dng import write_dng
    files = find_raws(burst_dir)
    if crop:
        folder = work / "burst"
        folder.mkdir(parents=True, exist_ok=True)
        cropped = []
        for f in files:
            with rawpy.imread(str(f)) as raw:
                m = np.array(raw.raw_image_visible)
                cells = raw.raw_colors_visible[:2, :2]
                cfa = "".join(raw.color_desc.decode()[c] for c in cells.ravel())
                black = [float(v) for v in np.asarray(raw.black_level_per_channel)[cells].ravel()]
                white = float(raw.white_level)
            win = window(m.shape, min(crop, *m.shape) // 2 * 2)
            out = folder / f"{f.stem}.dng"
            write_dng(out, m[win].astype(np.uint16), cfa, bits=16, black_level=black, white_level=white, force=True)
            cropped.append(out)
        files = cropped
    photos = [Photo(f.stem, f, read_unclipped(f)[0], None) for f in files]
    k = len(photos)
    if k < 3:
        raise SystemExit(f"{burst_dir}: a burst needs at least 3 frames, found {k}")
    n = k if frames is None else max(1, min(frames, k))
    log(f"burst: {k} frames {photos[0].noisy.shape[0]}×{photos[0].noisy.shape[1]} from {burst_dir}"
        + (f" (central crops in {work / 'burst'})" if crop else "") + f"; scored: the first {n}")
    return DataSet("burst", photos, list(range(n)), burst=True, info={"frames": k, "scored": n})


# ---------------------------------------------------------------------------------------------- methods

def run_fit(ds: DataSet, args: str, work: Path, keep: bool = False, log=print) -> tuple[list[np.ndarray], float]:
    """``n2n-raw fit`` on all of the set's photos at once in a fresh folder; (denoised mosaics, wall s)."""
    tmp = Path(tempfile.mkdtemp(prefix="fit_", dir=work))
    words = shlex.split(args)
    if words[:1] == ["denoise"]:  # no training: `n2n-raw denoise` (the shipped model unless --checkpoint is given)
        cmd = [sys.executable, "-m", "n2n_raw", "denoise", *[str(p.path) for p in ds.photos],
               "--out", str(tmp / "denoised"), *words[1:]]
    else:
        cmd = [sys.executable, "-m", "n2n_raw", "fit", *[str(p.path) for p in ds.photos], "--out", str(tmp / "run"),
               "--denoised", str(tmp / "denoised"), *words]
    t0 = time.perf_counter()
    with open(tmp / "fit.log", "w") as logf:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - t0
    if rc != 0:
        tail = (tmp / "fit.log").read_text()[-2000:]
        raise RuntimeError(f"n2n-raw fit exited {rc} ({shlex.join(cmd)}; its log: {tmp / 'fit.log'}):\n{tail}")
    out = [read_unclipped(tmp / "denoised" / f"{p.name}.dng")[0] for p in ds.photos]
    if keep:
        log(f"  fit run kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return out, seconds


def score(ds: DataSet, est: dict[int, np.ndarray]) -> dict:
    """Per-photo and mean scores of estimates ``est`` (photo index → mosaic) over ``ds.scored``."""
    from n2n_raw.evaluation.metrics import ssim_matlab
    names = [ds.photos[i].name for i in ds.scored]
    if ds.burst:
        x = np.stack([p.noisy for p in ds.photos])
        k = len(ds.photos)
        total = x.sum(0)
        ref_var = float(x.var(0, ddof=1).mean()) / (k - 1)
        p_raw, p_cor, ss = [], [], []
        for i in ds.scored:
            ref = (total - x[i]) / (k - 1)
            mse = float(np.mean((est[i] - ref) ** 2))
            p_raw.append(psnr(mse))
            p_cor.append(psnr(mse - ref_var))
            ss.append(ssim_matlab(pack(est[i]), pack(ref), data_range=1.0))
        return {"psnr": float(np.mean(p_cor)), "psnr_uncorrected": float(np.mean(p_raw)), "ssim": float(np.mean(ss)),
                "per_photo": {"psnr": dict(zip(names, p_cor)), "psnr_uncorrected": dict(zip(names, p_raw)),
                              "ssim": dict(zip(names, ss))}, "ref_noise_var": ref_var}
    ps, ss = [], []
    for i in ds.scored:
        d, ref = np.clip(est[i], 0.0, 1.0), ds.photos[i].ref
        ps.append(psnr(float(np.mean((d - ref) ** 2))))
        ss.append(ssim_matlab(pack(d), pack(ref), data_range=1.0))
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)),
            "per_photo": {"psnr": dict(zip(names, ps)), "ssim": dict(zip(names, ss))}}


def run_methods(ds: DataSet, methods: list[str], fits: list[tuple[str, str]], work: Path, keep: bool,
                log=print) -> dict:
    rows: dict[str, dict] = {}
    idx = ds.scored
    if "noisy" in methods:
        rows["noisy"] = {**score(ds, {i: ds.photos[i].noisy for i in idx}), "seconds": 0.0, "photos": len(idx)}
    for method in ("bm3d", "bm3d-true"):
        if method not in methods or (method == "bm3d-true" and ds.burst):
            continue
        from n2n_raw.io.camera_raw import read_raw
        est, profiles, secs = {}, {}, 0.0
        for i in idx:
            p = ds.photos[i]
            given = (p.true_profile["a"], p.true_profile["b"]) if method == "bm3d-true" else None
            t0 = time.perf_counter()
            m = read_raw(p.path, clip=False).mosaic  # what a user has: the file
            est[i], profiles[p.name] = bm3d_gat(m, given)
            dt = time.perf_counter() - t0
            secs += dt
            log(f"  {method} {p.name}: {dt:.1f} s; {'true' if given else 'blind'} profile a "
                f"{_fmt(profiles[p.name]['a'])} b {_fmt(profiles[p.name]['b'])}"
                + (f" (true a {p.true_profile['a'][0]:.3g} b {p.true_profile['b'][0]:.3g})"
                   if p.true_profile and not given else ""))
        rows[method] = {**score(ds, est), "seconds": secs, "photos": len(idx), "profiles": profiles}
    if "fit" in methods:
        for name, fargs in fits:
            label = "fit " + name
            try:
                den, secs = run_fit(ds, fargs, work, keep, log)
            except RuntimeError as e:
                log(f"  {label}: FAILED: {e}")
                rows[label] = {"error": str(e), "args": fargs}
                continue
            log(f"  {label} ({fargs or 'no options'}): {secs:.1f} s for {len(ds.photos)} photos")
            rows[label] = {**score(ds, dict(enumerate(den))), "seconds": secs, "photos": len(ds.photos),
                           "args": fargs}
    if "oracle" in methods:
        t0 = time.perf_counter()
        est, sig = {}, {}
        if ds.burst:
            xs = np.stack([ds.photos[i].noisy for i in idx])
            x = np.stack([p.noisy for p in ds.photos])
            k = len(ds.photos)
            refs = np.stack([(x.sum(0) - x[i]) / (k - 1) for i in idx])
            blur, s = oracle_blur(xs, refs)
            est = {i: blur[j] for j, i in enumerate(idx)}
            sig = {"all": s}
        else:
            for i in idx:
                p = ds.photos[i]
                blur, sig[p.name] = oracle_blur(p.noisy[None], p.ref[None])
                est[i] = blur[0]
        rows["oracle"] = {**score(ds, est), "seconds": time.perf_counter() - t0, "photos": len(idx), "sigmas": sig}
    return rows


def _fmt(v) -> str:
    return "(" + ", ".join(f"{x:.3g}" for x in v) + ")"


def table(ds: DataSet, rows: dict) -> str:
    names = [ds.photos[i].name for i in ds.scored]
    per = len(names) <= 8
    psnr_head = "corrected PSNR (dB)" if ds.burst else "PSNR (dB)"
    head = ["method", psnr_head, "SSIM", "wall s", "photos"] + (names if per else [])
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for method, r in rows.items():
        if "error" in r:
            lines.append(f"| {method} | failed | | | |" + " |" * (len(names) if per else 0))
            continue
        cells = [method, f"{r['psnr']:.2f}", f"{r['ssim']:.4f}", f"{r['seconds']:.1f}", str(r["photos"])]
        if per:
            cells += [f"{r['per_photo']['psnr'][n]:.2f}" for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- main

def _csv(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"{what}: {', '.join(bad) or 'none given'}; choose from {', '.join(allowed)}")
    return items


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", type=lambda v: _csv(v, SETS, "--sets"), default=list(SETS),
                    help=f"comma-separated, from {','.join(SETS)} (default all)")
    ap.add_argument("--methods", type=lambda v: _csv(v, METHODS + EXTRA_METHODS, "--methods"),
                    default=list(METHODS), help=f"comma-separated, from {','.join(METHODS)} (default all) and "
                    "bm3d-true (BM3D+GAT with the true noise profile, real and sidd sets: the estimate's cost)")
    ap.add_argument("--fit", action="append", metavar="NAME=ARGS", default=None,
                    help="a fit variant: its name and the options added to `n2n-raw fit` (repeatable; default "
                         "'defaults=', fit's defaults). E.g. --fit 'steps1200=--steps 1200'")
    ap.add_argument("--levels", type=lambda v: _csv(v, tuple(LEVELS), "--levels"), default=list(LEVELS),
                    help=f"noise levels of the real set (default {','.join(LEVELS)})")
    ap.add_argument("--real-files", type=lambda v: _csv(v, REAL_FILES, "--real-files"), default=list(REAL_FILES),
                    help="which shared real files make the real set (default all four)")
    ap.add_argument("--real-dir", type=Path, default=REAL_DIR, help="where the real files are (default "
                    "$N2N_RAW_REAL_DATA, else ../shared/data/real_raw beside the repository)")
    ap.add_argument("--burst", type=Path, default=None, help="the burst's folder (default REAL_DIR/burst_lowlight)")
    ap.add_argument("--burst-frames", type=int, default=None, help="score the first N frames (default all)")
    ap.add_argument("--sidd-images", type=int, default=8, help="synthetic SIDD images (default 8)")
    ap.add_argument("--sidd-blocks", type=int, default=2, help="validation blocks per image (default 2)")
    ap.add_argument("--crop", type=int, default=None,
                    help="central N×N window of each reference mosaic / burst frame / block (quick runs)")
    ap.add_argument("--seed", type=int, default=0, help="noise seed of the real set")
    ap.add_argument("--work", type=Path, default=None, help="data and fit runs here (kept; data reused when "
                    "its parameters match); default a temporary folder, removed at the end")
    ap.add_argument("--keep-fit", action="store_true", help="keep fit's run folders and denoised DNGs")
    ap.add_argument("--json", type=Path, default=None, help="write every number here")
    args = ap.parse_args(argv)
    fits = []
    for v in args.fit or ["defaults="]:
        name, _, fargs = v.partition("=")
        if not name:
            ap.error(f"--fit {v!r}: give NAME=ARGS")
        fits.append((name.strip(), fargs.strip()))
    if {"bm3d", "bm3d-true"} & set(args.methods):
        try:
            import bm3d  # noqa: F401
        except ImportError:
            sys.exit("the bm3d method needs the bm3d package: pip install -e '.[bench]' (non-commercial licence)")

    work = args.work or Path(tempfile.mkdtemp(prefix="peers_"))
    work.mkdir(parents=True, exist_ok=True)
    fit_dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    head = (f"commit {git_rev(ROOT)}; machine {platform.node()}, {device_name(torch.device('cpu'))} (BM3D), fit "
            f"(device auto) on {device_name(fit_dev)}; torch {torch.__version__}; load {os.getloadavg()[0]:.1f}")
    print(head, flush=True)
    report = {"commit": git_rev(ROOT), "machine": platform.node(), "cpu": device_name(torch.device("cpu")),
              "fit_device": device_name(fit_dev), "argv": sys.argv[1:], "methods": args.methods,
              "fit_variants": dict(fits), "sets": {}}

    def log(s):
        print(s, flush=True)

    try:
        datasets: list[DataSet] = []
        for s in args.sets:
            if s == "burst":
                datasets.append(build_burst(work, args.burst or args.real_dir / "burst_lowlight", args.burst_frames,
                                            args.crop, log))
            elif s == "real":
                datasets += build_real(work, args.real_files, args.levels, args.crop, args.seed, log, args.real_dir)
            else:
                datasets.append(build_sidd(work, args.sidd_images, args.sidd_blocks, args.crop, log=log))
        for ds in datasets:
            log(f"\n### {ds.label}")
            rows = run_methods(ds, args.methods, fits, work, args.keep_fit, log)
            note = ("corrected PSNR: frame k against the mean of the other frames, that reference's noise removed "
                    "(burst_fit.py); SSIM against that noisy reference" if ds.burst else
                    "estimate clamped to [0, 1]; PSNR data range 1 on the mosaic; SSIM mean over the 4 CFA planes")
            log(f"\n{ds.label} ({note}; wall s: all photos of the set; per-photo columns: "
                f"{'corrected ' if ds.burst else ''}PSNR)\n")
            log(table(ds, rows))
            report["sets"][ds.label] = {"photos": [p.name for p in ds.photos],
                                        "scored": [ds.photos[i].name for i in ds.scored], "info": ds.info,
                                        "methods": rows}
            if args.json:  # after every set: a long run leaves what it measured
                args.json.write_text(json.dumps(report, indent=1, default=float))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
