"""A step's batch: which items (the paper's epochs) and their crops, cut on the host or where the set lives.

Sampling follows the paper's epochs: each pass over the data is a fresh permutation, one crop per item, last
partial batch dropped. Which items and which crops a step uses depend only on (seed, step, sample index),
so a resumed run, or a DDP rank taking its slice of the global batch, sees exactly the same data.

- :func:`make_batch`: host crops from a source (:mod:`n2n_raw.training.sources`), the reference on CPU.
- :class:`Batches`: a step's (noisy, target, masks), drawn from generators seeded by (seed, step).
- :class:`DeviceCropper`: the whole set in one tensor on the device (or pinned host memory), crops gathered
  there with a device generator.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from n2n_raw.accel import data_storage
from n2n_raw.config import NOISY_TARGETS, R2R_TARGETS, TrainConfig
from n2n_raw.method import bayer
from n2n_raw.method.noise import RawShotReadNoise, make_noise
from n2n_raw.method.subsample import draw_masks
from n2n_raw.training.sources import Source, item_profiles


def sample_indices(n_items: int, step: int, batch: int, seed: int, steps_per_epoch: int | None) -> np.ndarray:
    """Item indices of the global batch of ``step``.

    With ``steps_per_epoch`` (natural epochs) epoch e is permutation e, its last partial batch dropped.
    Without it (``--steps`` runs) samples run through successive permutations continuously.
    """
    if steps_per_epoch is not None:
        e, k = divmod(step, steps_per_epoch)
        positions = [(e, k * batch + b) for b in range(batch)]
    else:
        positions = [divmod(step * batch + b, n_items) for b in range(batch)]
    perms: dict[int, np.ndarray] = {}
    out = np.empty(batch, np.int64)
    for b, (e, pos) in enumerate(positions):
        if e not in perms:
            perms[e] = np.random.default_rng([seed, e, 1]).permutation(n_items)
        out[b] = perms[e][pos]
    return out


def make_batch(source: Source, step: int, batch: int, seed: int, steps_per_epoch: int | None,
               rank_slice: slice = slice(None), with_gt: bool = False):
    """Crops of the global batch of ``step`` (or this rank's slice of it).

    Returns float32 (B, C, P, P) in [0, 1] (sRGB: clean; raw: noisy, packed C=4 with side P/2); raw with
    ``with_gt``: (noisy, clean), each (B, 4, P/2, P/2), the clean crops cut at the noisy crops' windows.
    """
    idx = sample_indices(len(source), step, batch, seed, steps_per_epoch)
    crops = []
    for b in range(batch)[rank_slice]:
        rng = np.random.default_rng([seed, step, b, 2])  # per sample: independent of the rank layout
        crops.append(source.crop(int(idx[b]), rng, with_gt=True) if with_gt else source.crop(int(idx[b]), rng))
    arr = np.stack(crops)
    t = torch.from_numpy(arr)
    if with_gt:
        return t[:, 0], t[:, 1]
    return t.float().div_(255.0) if arr.dtype == np.uint8 else t


def _pin(t: torch.Tensor) -> torch.Tensor:
    """Page-locked copy for asynchronous host→GPU transfers (plain memory on a machine without CUDA)."""
    return t.pin_memory() if torch.cuda.is_available() else t.contiguous()


def flat_nbytes(source: Source) -> int:
    """Bytes the whole training set takes in a :class:`DeviceCropper` (sRGB uint8, raw float32)."""
    per_pixel = 3 if source.mode == "srgb" else 4  # uint8 RGB / float32 mosaic
    return sum(per_pixel * it.shape[0] * it.shape[1] for it in source.items)


class DeviceCropper:
    """The whole training set in one flat tensor; crops gathered where it lives (no per-item host work).

    sRGB items are kept as uint8 (the paper's 44,328 ImageNet images are ≈ 21 GB), raw mosaics as float32.
    The set lives on ``device``, or with ``pinned`` in pinned host memory (too big for the device): crops are
    then gathered on the host and copied asynchronously. Offsets are drawn with ``generator`` (on the
    device, or the CPU when pinned), seeded by (seed, step), so a step is reproducible; the numbers differ
    from the host path (:func:`make_batch`), which stays the reference on CPU. Every shape is fixed (an index
    ``gather``), so the step can be compiled.
    """

    def __init__(self, source: Source, device: torch.device | str, pinned: bool = False):
        self.target = torch.device(device)
        self.device = torch.device("cpu") if pinned else self.target  # where the set lives and crops are cut
        self.pinned = pinned
        self.mode, self.patch = source.mode, source.patch
        if self.mode == "srgb":
            arrays = [np.ascontiguousarray(it.crop(0, 0, *it.shape)) for it in source.items]
            shapes = [a.shape[:2] for a in arrays]
            phase = [(0, 0)] * len(arrays)
            self.step_px, self.channels = 1, 3
        else:
            arrays = [np.ascontiguousarray(it.crop(0, 0, *it.shape), dtype=np.float32) for it in source.items]
            shapes = [a.shape for a in arrays]
            phase = [bayer.cfa_offset(it.cfa) if source.cfa_mode == "rggb" else (0, 0) for it in source.items]
            self.step_px, self.channels = 2, 1  # even offsets keep the CFA phase
        sizes = [a.size for a in arrays]
        self.flat = torch.from_numpy(np.concatenate([a.reshape(-1) for a in arrays]))
        self.flat = _pin(self.flat) if pinned else self.flat.to(self.device)
        self.base = torch.tensor(np.concatenate([[0], np.cumsum(sizes)[:-1]]), dtype=torch.long, device=self.device)
        self.h = torch.tensor([s[0] for s in shapes], dtype=torch.long, device=self.device)
        self.w = torch.tensor([s[1] for s in shapes], dtype=torch.long, device=self.device)
        self.py = torch.tensor([p[0] for p in phase], dtype=torch.long, device=self.device)
        self.px = torch.tensor([p[1] for p in phase], dtype=torch.long, device=self.device)
        p = self.patch
        self.rows = torch.arange(p, device=self.device)

    def crops(self, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random crops of items ``idx`` (B,) → float32 (B, C, P, P) in [0, 1] (raw: packed (B, 4, P/2, P/2)),
        on the target device. ``generator`` lives where the set does."""
        if self.pinned:  # cut on the host (uint8 for sRGB: 4× less to copy), then one asynchronous copy
            crops = _pin(self._cut(idx.cpu(), generator)).to(self.target, non_blocking=True)
        else:
            crops = self._cut(idx, generator)
        return crops.float().div_(255.0) if self.mode == "srgb" else crops

    def _cut(self, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        p, s = self.patch, self.step_px
        h, w, py, px = self.h[idx], self.w[idx], self.py[idx], self.px[idx]
        ny = (h - py - p) // s + 1  # number of admissible offsets per item
        nx = (w - px - p) // s + 1
        u = torch.rand((2, idx.shape[0]), generator=generator, device=self.device)
        y = py + s * (u[0] * ny).long().clamp_max(ny - 1)
        x = px + s * (u[1] * nx).long().clamp_max(nx - 1)
        r = (y[:, None] + self.rows[None]) * w[:, None]            # (B, P) row starts
        cols = x[:, None] + self.rows[None]                          # (B, P)
        pix = r[:, :, None] + cols[:, None, :]                       # (B, P, P) pixel index within the item
        if self.mode == "srgb":
            idx3 = self.base[idx, None, None, None] + pix[..., None] * 3 + torch.arange(3, device=self.device)
            return self.flat[idx3].permute(0, 3, 1, 2)
        mos = self.flat[self.base[idx, None, None] + pix]            # (B, P, P)
        return torch.nn.functional.pixel_unshuffle(mos[:, None], 2)


def device_indices(n_items: int, step: int, batch: int, seed: int, steps_per_epoch: int | None,
                   device: torch.device) -> torch.Tensor:
    """:func:`sample_indices` as a tensor on the device (permutations are tiny; made on the host)."""
    return torch.from_numpy(sample_indices(n_items, step, batch, seed, steps_per_epoch)).to(device, non_blocking=True)


# ------------------------------------------------------------------------------------------- a step's inputs

def step_seed(seed: int, step: int) -> int:
    """A 63-bit seed for the device generator of ``step`` (masks and noise)."""
    return int(np.random.SeedSequence([seed, step, 3]).generate_state(1, np.uint64)[0] >> 1)


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "Dist":
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))


class Batches:
    """The inputs of step ``s``: (noisy, target, masks), all drawn from generators seeded by (seed, s).

    ``target`` is what the loss pairs with ``noisy``: the clean crops (``supervised``), the same crops under an
    independent noise draw (``noise2noise``, ``noise2noise-sub``), R2R's recorruption draw (``r2r``), or None
    (``n2n``: the target comes from ``noisy`` itself, through ``masks``); ``r2r-lin``: (draw, a, b), the
    recorruption draw and each crop's noise profile, (B, 4, 1, 1) each.

    Crops come from the set on the device (cut there), from pinned host memory, or are cut on the host per
    step (``storage``); sRGB crops are clean and get their noise here. Under DDP every rank draws the global
    batch's crops and masks and keeps its ``part``, so ranks see exactly what one process would.
    """

    def __init__(self, cfg: TrainConfig, source, device: torch.device, dist: Dist, steps_per_epoch: int | None):
        self.cfg, self.source, self.device, self.steps_per_epoch = cfg, source, device, steps_per_epoch
        self.global_batch = cfg.batch_size * dist.world
        self.part = slice(dist.rank * cfg.batch_size, (dist.rank + 1) * cfg.batch_size)
        self.target = cfg.target
        self.noise = make_noise(cfg.noise).to(device) if cfg.mode == "srgb" else None
        # Raw with redrawn noise: clean crops, and each item's (a, b) for the noise drawn on them every step.
        self.redraw = RawShotReadNoise() if cfg.redraw_noise else None
        self.levels = source.noise_levels().to(device) if cfg.redraw_noise else None
        self.storage = data_storage(cfg.data_on_device, device, flat_nbytes(source))
        if cfg.mode == "raw" and (cfg.paired or self.redraw is not None):
            self.storage = "host"  # the device cropper holds noisy mosaics only; clean crops come with the host path
        self.cropper = (DeviceCropper(source, device, pinned=self.storage == "pinned")
                        if self.storage != "host" else None)
        # r2r-lin: each item's own noise profile, (items, 2, 4), for its crops' recorruption
        self.profiles = item_profiles(source.items, cfg.cfa_mode).to(device) if cfg.target == "r2r-lin" else None
        self.gen = torch.Generator(device=device)
        self.crop_gen = torch.Generator() if self.storage == "pinned" else self.gen

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        cfg, source, seed = self.cfg, self.source, step_seed(self.cfg.seed, step)
        self.gen.manual_seed(seed)
        clean = None
        if self.cropper is not None:
            self.crop_gen.manual_seed(seed)
            idx = device_indices(len(source), step, self.global_batch, cfg.seed, self.steps_per_epoch,
                                 self.cropper.device)
            batch = self.cropper.crops(idx, self.crop_gen)[self.part]
        elif cfg.mode == "raw" and (cfg.paired or self.redraw is not None):
            # Noisy crops and the clean crops at the same windows.
            batch, clean = (t.to(self.device, non_blocking=True) for t in
                            make_batch(source, step, self.global_batch, cfg.seed, self.steps_per_epoch, self.part,
                                       with_gt=True))
        else:
            batch = make_batch(source, step, self.global_batch, cfg.seed, self.steps_per_epoch,
                               self.part).to(self.device, non_blocking=True)
        if self.noise is not None:  # sRGB crops are clean; the noise is drawn here
            clean = batch
        noisy = self._draw(clean, step) if self.noise is not None or self.redraw is not None else batch
        # Masks are drawn for every target, so a supervised run draws the same random stream as N2N.
        masks = draw_masks(self.global_batch, noisy.shape[-2], noisy.shape[-1], self.gen)[:, self.part]
        if self.target in NOISY_TARGETS:  # the same clean crops under an independent draw
            return noisy, self._draw(clean, step), masks
        if self.target in R2R_TARGETS:  # the recorruption draw, unit variance (the loss scales it)
            e = torch.randn(noisy.shape, generator=self.gen, device=self.device)
            if self.profiles is None:
                return noisy, e, masks
            idx = sample_indices(len(source), step, self.global_batch, cfg.seed, self.steps_per_epoch)[self.part]
            ab = self.profiles[torch.from_numpy(idx).to(self.device)][..., None, None]  # (B, 2, 4, 1, 1)
            return noisy, (e, ab[:, 0], ab[:, 1]), masks
        return noisy, clean if cfg.paired else None, masks

    def _draw(self, clean: torch.Tensor, step: int) -> torch.Tensor:
        """A fresh noise draw on clean crops (B, C, h, w): sRGB's ``--noise``, or raw ``--redraw-noise`` at
        each sample's item level; drawn for the global batch, so ranks keep their slice of one draw."""
        part = (self.part, self.global_batch)
        if self.redraw is None:
            return self.noise(clean, self.gen, part)
        idx = sample_indices(len(self.source), step, self.global_batch, self.cfg.seed, self.steps_per_epoch)
        a, b = self.levels[torch.from_numpy(idx[self.part]).to(self.device)].unbind(1)
        return self.redraw(clean, a, b, self.gen, part)
