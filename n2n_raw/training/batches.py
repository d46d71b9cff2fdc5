"""A step's batch: which items (the paper's epochs) and their crops, cut on the host or where the set lives.

Sampling follows the paper's epochs: each pass over the data is a fresh permutation, one crop per item, last
partial batch dropped. Which items and which crops a step uses depend only on (seed, step, sample index),
so a resumed run, or a DDP rank taking its slice of the global batch, sees exactly the same data.

- :func:`make_batch`: host crops from a source (:mod:`n2n_raw.training.sources`), the reference on CPU.
- :class:`DeviceCropper`: the whole set in one tensor on the device (or pinned host memory), crops gathered
  there with a device generator.
"""
from __future__ import annotations

import numpy as np
import torch

from n2n_raw.method import bayer


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


def make_batch(source, step: int, batch: int, seed: int, steps_per_epoch: int | None,
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


def flat_nbytes(source) -> int:
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

    def __init__(self, source, device: torch.device | str, pinned: bool = False):
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
