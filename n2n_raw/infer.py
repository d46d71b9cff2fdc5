"""One inference path for evaluate, denoise and submit-sidd: padding, batching, tiling, raw packing.

Tensors are (N, C, H, W) float32 in [0, 1] (unclipped noisy input allowed); outputs have the input's size.
The U-Net needs sides that are multiples of 32: inputs are reflect-padded at the bottom/right and cropped
back. Large inputs are cut into overlapping windows whose origins lie on the 32-pixel grid of the whole
image, so pooling cells line up with an untiled pass and only the far context is lost.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from . import bayer
from .accel import autocast

MULT = 32


def pad_reflect(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Pad (N, C, H, W) at the bottom/right to (h, w) by reflection (repeated if the pad exceeds the side)."""
    while x.shape[-2] < h or x.shape[-1] < w:
        ph = min(h - x.shape[-2], x.shape[-2] - 1)
        pw = min(w - x.shape[-1], x.shape[-1] - 1)
        if ph <= 0 and pw <= 0:  # 1-pixel side: nothing to reflect
            x = F.pad(x, (0, w - x.shape[-1], 0, h - x.shape[-2]), mode="replicate")
            break
        x = F.pad(x, (0, max(pw, 0), 0, max(ph, 0)), mode="reflect")
    return x


@torch.no_grad()
def forward_padded(model: torch.nn.Module, x: torch.Tensor, precision: str = "auto") -> torch.Tensor:
    """Model output for (N, C, H, W) of any size; fp32 result of the input's size."""
    h, w = x.shape[-2:]
    xp = pad_reflect(x, math.ceil(h / MULT) * MULT, math.ceil(w / MULT) * MULT)
    with autocast(x.device, precision):
        out = model(xp)
    return out[..., :h, :w].float()


@torch.no_grad()
def run_batched(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 16, device: torch.device | str = "cpu",
                precision: str = "auto") -> torch.Tensor:
    """Denoise a stack (N, C, H, W) in batches on ``device``; returns (N, C, H, W) float32 on the CPU."""
    device = torch.device(device)
    outs = [forward_padded(model, x[i:i + batch_size].to(device), precision).cpu()
            for i in range(0, x.shape[0], batch_size)]
    return torch.cat(outs)


#: Context kept around each tile's core (processing pixels). The U-Net's receptive field reaches just under
#: 128 pixels: with 128 a tiled pass matches an untiled one to float rounding (≈3e-6 measured), with 96 it
#: is off by up to 0.06.
OVERLAP = 128


@torch.no_grad()
def denoise_tiled(model: torch.nn.Module, x: torch.Tensor, tile: int = 512, overlap: int = OVERLAP,
                  device: torch.device | str = "cpu", precision: str = "auto") -> torch.Tensor:
    """Denoise one image (C, H, W) of any size, in overlapping windows when larger than ``tile``.

    Each window is a core plus ``overlap`` pixels of context on every side (clipped at the image border);
    cores tile the image on the 32-grid of the whole image, so pooling cells line up with an untiled pass and
    only the context beyond ``overlap`` is lost (none at the default, see :data:`OVERLAP`). The core is
    ``tile - 2·overlap`` but at least 64, so a small ``tile`` never drops context.
    Returns (C, H, W) float32 on the CPU.
    """
    device = torch.device(device)
    c, h, w = x.shape
    if h <= tile + MULT and w <= tile + MULT:  # a little over (e.g. a CFA pad) is cheaper than tiling
        return forward_padded(model, x[None].to(device), precision)[0].cpu()
    overlap = math.ceil(overlap / MULT) * MULT
    core = max(2 * MULT, (tile - 2 * overlap) // MULT * MULT)
    out = torch.empty((c, h, w), dtype=torch.float32)
    for y0 in range(0, h, core):
        for x0 in range(0, w, core):
            y1, x1 = min(y0 + core, h), min(x0 + core, w)
            wy0, wx0 = max(0, y0 - overlap), max(0, x0 - overlap)
            wy1, wx1 = min(h, y1 + overlap), min(w, x1 + overlap)
            win = forward_padded(model, x[None, :, wy0:wy1, wx0:wx1].to(device), precision)[0].cpu()
            out[:, y0:y1, x0:x1] = win[:, y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0]
    return out


def denoise_mosaic(model: torch.nn.Module, mosaic: np.ndarray, cfa: str, cfa_mode: str, tile: int = 1024,
                   overlap: int = 2 * OVERLAP, device="cpu", precision: str = "auto") -> np.ndarray:
    """Denoise a Bayer mosaic (H, W) float32 in [0, 1] with a raw model; returns (H, W) float32.

    ``tile`` and ``overlap`` are in mosaic pixels; tiling runs on the packed image, so every window origin
    is even in raw space and the CFA phase is kept.
    """
    packed, meta = bayer.to_packed(torch.from_numpy(np.ascontiguousarray(mosaic, dtype=np.float32)), cfa, cfa_mode)
    out = denoise_tiled(model, packed, tile // 2, overlap // 2, device, precision)
    return bayer.from_packed(out, cfa, cfa_mode, meta).numpy()


def denoise_blocks(model: torch.nn.Module, blocks: np.ndarray, cfas: list[str], cfa_mode: str, batch_size: int = 32,
                   device="cpu", precision: str = "auto", progress=None) -> np.ndarray:
    """Denoise SIDD blocks (N, B, h, w) float32, image i with CFA ``cfas[i]``; returns (N, B, h, w) float32.

    Blocks that pack to the same shape are batched together, whatever their image.
    """
    n, nb, h, w = blocks.shape
    out = np.empty_like(blocks, dtype=np.float32)
    groups: dict[tuple, list] = {}
    for i in range(n):
        packed, meta = bayer.to_packed(torch.from_numpy(np.ascontiguousarray(blocks[i], dtype=np.float32)),
                                       cfas[i], cfa_mode)
        groups.setdefault(tuple(packed.shape[1:]), []).append((i, packed, meta))
    done = 0
    for entries in groups.values():
        stack = torch.cat([p for _, p, _ in entries])  # (n_i·B, 4, h', w')
        res = run_batched(model, stack, batch_size, device, precision)
        for k, (i, _, meta) in enumerate(entries):
            out[i] = bayer.from_packed(res[k * nb:(k + 1) * nb], cfas[i], cfa_mode, meta).numpy()
            done += 1
            if progress:
                progress(done, n)
    return out
