"""A synthetic SIDD-format world: raw frames, metadata, block files and positions, laid out like SIDD.

Used by the tests and by ``n2n-raw demo``: every reader, the CFA logic and the whole raw pipeline can run
without downloading SIDD. The images are dead-leaves scenes (:func:`n2n_raw.sim.dead_leaves.dead_leaves`) turned
into plausible raw mosaics: linearised (inverse sRGB gamma), darkened to raw-like levels (means ≈ 0.05–0.3),
with per-channel sensor gains (green brightest, as in unbalanced raw), mosaicked with each phone's CFA in
MATLAB orientation, and given signal-dependent Gaussian noise (variance ``a·x + b``), clipped to [0, 1]
like SIDD's normalised raw.

Layout written by :func:`make_sidd_world` (``out_dir``)::

    SIDD_Medium_Raw/Data/<scene>/<NNNN>_{NOISY,GT,METADATA}_RAW_{010,011}.MAT
    SIDD_Medium_Raw/noise_level_functions.csv, SIDD_Medium_Raw/Scene_Instances.txt
    ValidationNoisyBlocksRaw.mat, ValidationGtBlocksRaw.mat, BenchmarkNoisyBlocksRaw.mat, BenchmarkBlocks32.mat
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import ndimage

from n2n_raw.errors import InputError
from n2n_raw.io import sidd
from n2n_raw.io.atomic import atomic_path, check_writable
from n2n_raw.method.noise import add_raw_noise, raw_noise_params
from n2n_raw.sim.dead_leaves import dead_leaves

#: Phone code → (DNG Make, Model) as SIDD's metadata spell them.
PHONE_MAKE_MODEL = {"GP": ("Google", "Pixel"), "IP": ("Apple", "iPhone 7"), "S6": ("samsung", "SM-G925V"),
                    "N6": ("motorola", "Nexus 6"), "G4": ("LGE", "LG-H815")}
PHONES = ("GP", "IP", "S6", "N6", "G4")

# Noise at ISO 100 and how it grows with ISO (normalised raw units). SIDD-like, chosen so that noisy PSNR
# spans roughly 23–44 dB over ISO 100..10000 at typical raw levels (the noisier half of what phones give,
# so short CPU runs have something to remove); not fitted to SIDD's own noise profiles.
_CHROMA = 0.5  # scene colours are pulled halfway towards grey: natural scenes are mostly low-chroma
# Optics: a lens + sensor point-spread function (Gaussian, raw pixels). Without it every leaf edge is a
# one-pixel step and neighbouring raw pixels differ far more than real phone raw does (where noise, not
# content, dominates the difference of neighbours), which no denoiser trained on neighbours can undo.
_PSF_SIGMA = 1.0
_SCALE = 8  # scenes are drawn at 1/8 of the raw resolution: phone raw is sampled finer than its detail


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """Inverse sRGB transfer function, elementwise on [0, 1] (float32 in, float32 out)."""
    v = np.asarray(v, dtype=np.float32)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)


def cfa_offsets(cfa: str) -> dict[str, list[tuple[int, int]]]:
    """Positions of each colour in the 2×2 cell: ``"GRBG"`` → {"R": [(0,1)], "G": [(0,0),(1,1)], "B": [(1,0)]}."""
    cfa = sidd.check_cfa(cfa)
    out: dict[str, list[tuple[int, int]]] = {"R": [], "G": [], "B": []}
    for k, c in enumerate(cfa):
        out[c].append(divmod(k, 2))
    return out


def mosaic(rgb: np.ndarray, cfa: str) -> np.ndarray:
    """Sample an (H, W, 3) RGB image with a Bayer CFA (MATLAB orientation) → (H, W) float32."""
    rgb = np.asarray(rgb, dtype=np.float32)
    out = np.empty(rgb.shape[:2], np.float32)
    for colour, positions in cfa_offsets(cfa).items():
        ch = "RGB".index(colour)
        for dy, dx in positions:
            out[dy::2, dx::2] = rgb[dy::2, dx::2, ch]
    return out


def scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A natural-like RGB scene (height, width, 3) float32 in [0, 1] at raw resolution: a dead-leaves image
    drawn at 1/_SCALE of the size and upsampled (bilinear), so detail is coarser than the pixel grid."""
    small = dead_leaves(rng, math.ceil(height / _SCALE) + 1, math.ceil(width / _SCALE) + 1)
    big = ndimage.zoom(small, (_SCALE, _SCALE, 1), order=1, grid_mode=True, mode="nearest")[:height, :width]
    big = ndimage.gaussian_filter(big, sigma=(_PSF_SIGMA, _PSF_SIGMA, 0), mode="reflect")  # the optics' PSF
    return np.clip(big, 0.0, 1.0).astype(np.float32)


def clean_mosaic(rng: np.random.Generator, height: int, width: int, cfa: str, *,
                 rgb: np.ndarray | None = None) -> np.ndarray:
    """A clean raw-like Bayer mosaic.

    Args:
        rng: the only source of randomness (scene, exposure, channel gains).
        height, width: mosaic size (any; SIDD frames are even).
        cfa: one of ``sidd.CFAS``, MATLAB orientation (row-major 2×2 cell).
        rgb: optional (height, width, 3) sRGB image in [0, 1] to use instead of a new :func:`scene`.
    Returns:
        float32 (height, width) in [0, 1]: chroma reduced to 50 %, linear light, exposure in [0.35, 0.9],
        sensor gains R ∈ [0.40, 0.60], G = 1, B ∈ [0.35, 0.55] (so over any sizeable area the two greens
        are the brightest sites, as in unbalanced raw), sampled with ``cfa``.
    """
    cfa = sidd.check_cfa(cfa)
    if rgb is None:
        rgb = scene(rng, int(height), int(width))
    elif rgb.shape != (height, width, 3):
        raise ValueError(f"rgb must be ({height}, {width}, 3), got {rgb.shape}")
    rgb = np.asarray(rgb, dtype=np.float32)
    grey = rgb.mean(axis=-1, keepdims=True)
    lin = srgb_to_linear(np.clip(grey + _CHROMA * (rgb - grey), 0.0, 1.0))
    exposure = rng.uniform(0.35, 0.9)
    gains = np.array([rng.uniform(0.40, 0.60), 1.0, rng.uniform(0.35, 0.55)], np.float32) * exposure
    return np.clip(mosaic(lin * gains, cfa), 0.0, 1.0).astype(np.float32)


def _canvas_crop(rng: np.random.Generator, canvases: list[np.ndarray], h: int, w: int) -> np.ndarray:
    """A random (h, w, 3) view of one of the canvases, flipped / transposed at random."""
    c = canvases[rng.integers(len(canvases))]
    if rng.uniform() < 0.5:
        c = c.transpose(1, 0, 2)
    if rng.uniform() < 0.5:
        c = c[::-1]
    if rng.uniform() < 0.5:
        c = c[:, ::-1]
    y = rng.integers(0, c.shape[0] - h + 1)
    x = rng.integers(0, c.shape[1] - w + 1)
    return np.ascontiguousarray(c[y:y + h, x:x + w])


_ISOS = (100, 400, 800, 1600, 3200, 6400, 10000)
_SHUTTERS = (30, 60, 100, 250, 500, 1000, 2000)


def make_sidd_world(out_dir, *, scenes_per_phone: int = 1, frame_size: tuple[int, int] = (256, 384),
                    n_images: int = 40, blocks_per_image: int = 4, block_size: int = 256, seed: int = 0,
                    force: bool = False) -> dict:
    """Write a small SIDD-format data set under ``out_dir`` (see the module docstring for the layout).

    Medium part: ``scenes_per_phone`` scenes for each of the 5 phones, named like SIDD
    (``0001_001_GP_00100_00060_3200_L``; instance numbers skip the 40 held-out ones), two noisy captures
    (010, 011) of one clean scene each, GT = the clean mosaic; frames are ``frame_size`` (H, W), iPhone
    scenes in portrait (W, H). Metadata via :func:`sidd.write_metadata`: the CFA tag in ``UnknownTags``,
    except the first S6 scene whose metadata carry it in ``SubIFDs{1}``.
    Block part: ``n_images`` (≤ 40) images; image i has the phone / CFA / ISO of ``sidd.BLOCK_SCENES[i]``;
    float32 (n_images, blocks_per_image, block_size, block_size) blocks cut at even offsets (CFA phase kept)
    from one clean mosaic per image: benchmark blocks at the positions written to ``BenchmarkBlocks32.mat``
    (shape (blocks_per_image, 4), 1-based), validation blocks at those positions shifted by one even offset.
    Validation and benchmark noise are independent draws, and block images come from other canvases than
    the Medium scenes, so validation measures content that training never saw.

    Returns {"root", "medium", "data", "scenes", "nlf", "val_noisy", "val_gt", "bench_noisy", "positions"}
    (paths; "scenes" is the list of scene names). Refuses existing outputs unless ``force``.
    """
    h, w = (int(v) for v in frame_size)
    if h < 2 or w < 2 or h % 2 or w % 2:
        raise ValueError(f"frame_size must be even and >= 2, got {frame_size}")
    if block_size < 2 or block_size % 2:
        raise ValueError(f"block_size must be even and >= 2, got {block_size}")
    if not 1 <= n_images <= len(sidd.BLOCK_SCENES):
        raise ValueError(f"n_images must be in 1..{len(sidd.BLOCK_SCENES)}, got {n_images}")
    if blocks_per_image < 1 or scenes_per_phone < 0:
        raise ValueError("blocks_per_image must be >= 1 and scenes_per_phone >= 0")

    out = Path(out_dir)
    medium = out / "SIDD_Medium_Raw"
    data = medium / "Data"
    paths = {"root": out, "medium": medium, "data": data, "nlf": medium / "noise_level_functions.csv",
             "val_noisy": out / "ValidationNoisyBlocksRaw.mat", "val_gt": out / "ValidationGtBlocksRaw.mat",
             "bench_noisy": out / "BenchmarkNoisyBlocksRaw.mat", "positions": out / "BenchmarkBlocks32.mat"}
    if not force:
        for key in ("nlf", "val_noisy", "val_gt", "bench_noisy", "positions"):
            check_writable(paths[key], False)
        if data.exists() and any(data.iterdir()):
            raise InputError(f"{data}: already exists (use --force to overwrite)")

    rng = np.random.default_rng(seed)

    # Block geometry: a grid of blocks with an even margin, the same positions for all images (as SIDD).
    cols = math.ceil(math.sqrt(blocks_per_image))
    rows = math.ceil(blocks_per_image / cols)
    margin = 2 * max(1, block_size // 8)
    src_h, src_w = rows * block_size + 2 * margin, cols * block_size + 2 * margin
    bench_pos = np.array([[margin + (k // cols) * block_size + 1, margin + (k % cols) * block_size + 1,
                           block_size, block_size] for k in range(blocks_per_image)], np.int64)
    shift = 2 * rng.integers(-(margin // 2), margin // 2 + 1, size=2)  # even shift for validation blocks

    # A few dead-leaves canvases; every scene / image is a transformed crop of one (fast, varied enough).
    # Training scenes and block images draw from separate canvases, so validation content is never seen.
    side = max(512, h, w, src_h, src_w)
    canvases = [scene(rng, side, side) for _ in range(3)]
    block_canvases = [scene(rng, side, side) for _ in range(3)]

    # --- SIDD_Medium_Raw ---
    held_out = {int(s[:4]) for s in sidd.BLOCK_SCENES}
    instances = (i for i in range(1, 10000) if i not in held_out)
    scenes, nlf_rows = [], []
    for k in range(scenes_per_phone):
        for p_idx, phone in enumerate(PHONES):
            inst = next(instances)
            iso = _ISOS[(k * len(PHONES) + p_idx) % len(_ISOS)]
            name = (f"{inst:04d}_{k + 1:03d}_{phone}_{iso:05d}_{int(rng.choice(_SHUTTERS)):05d}_"
                    f"{int(rng.choice((3200, 4400, 5500)))}_{'LNH'[int(rng.integers(3))]}")
            scenes.append(name)
            cfa = sidd.PHONE_CFA[phone]
            fh, fw = (w, h) if phone == "IP" else (h, w)
            clean = clean_mosaic(rng, fh, fw, cfa, rgb=_canvas_crop(rng, canvases, fh, fw))
            a, b = raw_noise_params(iso)
            nlf_rows.append(f"{name}," + ",".join(f"{v:.6e}" for v in (a, b) * 3))
            make, model = PHONE_MAKE_MODEL[phone]
            folder = data / name
            for index in ("010", "011"):
                stem = f"{inst:04d}_%s_RAW_{index}.MAT"
                sidd.write_frame(folder / (stem % "NOISY"), add_raw_noise(rng, clean, a, b), force=force)
                sidd.write_frame(folder / (stem % "GT"), clean, force=force)
                sidd.write_metadata(folder / (stem % "METADATA"), make=make, model=model, cfa=cfa,
                                    width=fw, height=fh, iso=iso, force=force,
                                    cfa_in="SubIFDs" if (phone == "S6" and k == 0) else "UnknownTags")
    with atomic_path(paths["nlf"], force) as tmp:
        tmp.write_text("".join(r + "\n" for r in nlf_rows))
    with atomic_path(medium / "Scene_Instances.txt", force) as tmp:
        tmp.write_text("".join(s + "\n" for s in scenes))
    paths["scenes"] = scenes

    # --- block files ---
    shape = (n_images, blocks_per_image, block_size, block_size)
    val_gt, val_noisy, bench_noisy = (np.empty(shape, np.float32) for _ in range(3))
    for i in range(n_images):
        info = sidd.parse_scene_name(sidd.BLOCK_SCENES[i])
        src = clean_mosaic(rng, src_h, src_w, sidd.PHONE_CFA[info["phone"]],
                           rgb=_canvas_crop(rng, block_canvases, src_h, src_w))
        a, b = raw_noise_params(info["iso"])
        for j, (r, c, bh, bw) in enumerate(bench_pos):
            y, x = r - 1, c - 1
            bench_noisy[i, j] = add_raw_noise(rng, src[y:y + bh, x:x + bw], a, b)
            vy, vx = y + shift[0], x + shift[1]
            val_gt[i, j] = src[vy:vy + bh, vx:vx + bw]
            val_noisy[i, j] = add_raw_noise(rng, val_gt[i, j], a, b)
    sidd.write_blocks(paths["val_noisy"], val_noisy, force=force)
    sidd.write_blocks(paths["val_gt"], val_gt, force=force)
    sidd.write_blocks(paths["bench_noisy"], bench_noisy, force=force)
    sidd.write_block_positions(paths["positions"], bench_pos, force=force)
    return paths
