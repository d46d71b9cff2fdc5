"""One inference path for evaluate, denoise and submit-sidd: padding, batching, tiling, raw packing.

Tensors are (N, C, H, W) float32 in [0, 1] (unclipped noisy input allowed); outputs have the input's size.
The U-Net needs sides that are multiples of 32: inputs are reflect-padded at the bottom/right and cropped
back. An image is denoised in one pass when the memory at hand allows (:func:`plan_tiles`); only when it
does not is it cut into overlapping windows whose origins lie on the 32-pixel grid of the whole image, so
pooling cells line up with an untiled pass and only the far context is lost. Inference runs in fp32 unless
bf16 is asked for (:func:`n2n_raw.accel.inference_precision`).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from n2n_raw.accel import autocast, host_available_bytes, inference_precision
from n2n_raw.inference.onnx_engine import ort_forward, pass_engine
from n2n_raw.method import bayer

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
def forward_padded(model: torch.nn.Module, x: torch.Tensor, precision: str = "fp32",
                   engine: str = "torch") -> torch.Tensor:
    """Model output for (N, C, H, W) of any size; fp32 result of the input's size.

    ``precision``: fp32 (default; ``auto`` too) or bf16 autocast, see :func:`n2n_raw.accel.inference_precision`.
    ``engine``: ``torch``, ``onnxruntime`` (CPU, fp32: :func:`n2n_raw.inference.onnx_engine.ort_forward`), or ``auto``
    (:func:`n2n_raw.inference.onnx_engine.pass_engine` picks by size).
    """
    h, w = x.shape[-2:]
    xp = pad_reflect(x, math.ceil(h / MULT) * MULT, math.ceil(w / MULT) * MULT)
    if engine != "torch":
        if pass_engine(engine, xp) == "onnxruntime":
            return ort_forward(model, xp)[..., :h, :w]
    # The input in the weights' layout (channels-last, :func:`n2n_raw.accel.place_model`): an NCHW input costs
    # layout conversions in the forward pass (benchmarks/denoise_speed.py --cli; numbers in RESULTS).
    xp = xp.contiguous(memory_format=torch.channels_last)
    with autocast(x.device, inference_precision(precision)):
        out = model(xp)
    return out[..., :h, :w].float()


@torch.no_grad()
def run_batched(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 16, device: torch.device | str = "cpu",
                precision: str = "fp32") -> torch.Tensor:
    """Denoise a stack (N, C, H, W) in batches on ``device``; returns (N, C, H, W) float32 on the CPU."""
    device = torch.device(device)
    outs = [forward_padded(model, x[i:i + batch_size].to(device), precision).cpu()
            for i in range(0, x.shape[0], batch_size)]
    return torch.cat(outs)


#: Context kept around each tile's core (processing pixels). The U-Net's receptive field reaches just under
#: 128 pixels: with 128 a tiled pass matches an untiled one to float rounding (≈3e-6 measured), with 96 it
#: is off by up to 0.06.
OVERLAP = 128

#: Fraction of the memory at hand a forward pass may plan to use: the estimate is not exact, and on a CPU
#: other processes share the RAM.
MEMORY_SAFETY = {"cpu": 0.5, "cuda": 0.7}
#: Measured peak over the activation model below (fp32 forward, 2 CPU cores, packed raw 512² and 1024²:
#: 1,230-1,270 B/px against 1,168 modelled).
ESTIMATE_MARGIN = 1.15


def forward_bytes_per_pixel(model: torch.nn.Module, in_ch: int, out_ch: int | None = None) -> int:
    """Estimated peak memory of one no-grad U-Net forward pass, in bytes per (padded) input pixel.

    The peak sits in the full-resolution decoder level: the concatenation (2f + in_ch channels), a
    convolution's output and its activation (2f each), with f the model's width (48). Counted in fp32 for
    every precision: under bf16 autocast that concatenation is promoted to fp32 (its skip is the fp32 input)
    and on a CPU bf16 measured no smaller. Plus the pass's input, padded input and output.
    """
    f = _width(model)
    out_ch = in_ch if out_ch is None else out_ch
    return int(4 * ((6 * f + in_ch) * ESTIMATE_MARGIN + 2 * in_ch + 2 * out_ch))


def _width(model: torch.nn.Module) -> int:
    """The U-Net's feature count f (48 unless the model says otherwise; wrappers are looked through)."""
    for m in model.modules():
        if hasattr(m, "enc0") and hasattr(m.enc0, "out_channels"):
            return int(m.enc0.out_channels)
    return 48


def available_memory(device: torch.device | str) -> int:
    """Bytes free for a forward pass: free GPU memory on CUDA; on a CPU the kernel's MemAvailable, capped
    by a cgroup (container) limit when one is set."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    avail = host_available_bytes()
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 8 << 30  # nothing to ask: assume a small machine
    for limit_path, used_path in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                  ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                   "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_path) as f1, open(used_path) as f2:
                limit, used = f1.read().strip(), f2.read().strip()
        except OSError:
            continue
        if limit.isdigit() and int(limit) < 1 << 60:
            avail = min(avail, max(0, int(limit) - int(used)))
        break
    return int(avail)


@dataclass(frozen=True)
class TilePlan:
    """How one (C, H, W) image is cut for the forward pass; sizes in processing pixels.

    Untiled when the core is the whole image (``ny == nx == 1``). ``peak_bytes`` is the estimated peak of
    one pass (one window when tiled) plus the whole-image input and output; ``budget_bytes`` the memory
    at hand it was planned against (None when the tile size was forced).
    """
    h: int
    w: int
    core_h: int
    core_w: int
    overlap: int
    peak_bytes: int
    budget_bytes: int | None

    @property
    def ny(self) -> int:
        return math.ceil(self.h / self.core_h)

    @property
    def nx(self) -> int:
        return math.ceil(self.w / self.core_w)

    @property
    def tiled(self) -> bool:
        return self.ny * self.nx > 1

    def describe(self, scale: int = 1) -> str:
        """One line for a log; ``scale`` converts processing pixels to the caller's (2 for a packed mosaic)."""
        mem = f"est. peak {self.peak_bytes / 1e9:.2f} GB"
        mem += f" of {self.budget_bytes / 1e9:.1f} GB available" if self.budget_bytes is not None else ", forced tile size"
        if not self.tiled:
            return f"untiled (1 pass, {mem})"
        core = f"{self.core_h * scale}" if self.core_h == self.core_w else f"{self.core_h * scale}×{self.core_w * scale}"
        return (f"tiles {self.ny}×{self.nx} of {core} px core + {self.overlap * scale} px context "
                f"({self.ny * self.nx} passes, {mem})")


def _balanced_core(n: int, longest: int) -> int:
    """Core side on the 32-grid covering ``n`` in as few pieces of at most ``longest`` as possible, evened out
    (so the last piece is not a sliver)."""
    pieces = math.ceil(n / longest)
    return min(longest, math.ceil(math.ceil(n / pieces) / MULT) * MULT)


def plan_tiles(model: torch.nn.Module, shape: tuple[int, int, int], device: torch.device | str = "cpu",
               tile: int | None = None, overlap: int = OVERLAP, budget: int | None = None,
               out_ch: int | None = None) -> TilePlan:
    """Plan the forward passes of one image of ``shape`` (C, H, W).

    ``tile=None`` (auto): one untiled pass when its estimated peak (:func:`forward_bytes_per_pixel`) fits in
    ``budget`` bytes (default: :data:`MEMORY_SAFETY` × :func:`available_memory`), else the largest windows
    that fit, with ``overlap`` context (rounded up to the 32-grid; at least the receptive field at the
    default) and cores evened out over the image. An int ``tile`` forces windows of at most that side, as
    before: no tiling up to ``tile + 32``, else cores of ``tile - 2·overlap`` (at least 64).
    """
    device = torch.device(device)
    c, h, w = shape
    bpp = forward_bytes_per_pixel(model, c, out_ch)
    whole = 4 * (c + (c if out_ch is None else out_ch)) * h * w  # input + output of the whole image

    def peak(wh: int, ww: int) -> int:
        return bpp * (math.ceil(wh / MULT) * MULT) * (math.ceil(ww / MULT) * MULT)

    overlap = math.ceil(overlap / MULT) * MULT
    if tile is not None:
        if h <= tile + MULT and w <= tile + MULT:  # a little over (e.g. a CFA pad) is cheaper than tiling
            return TilePlan(h, w, h, w, overlap, peak(h, w), None)
        core = max(2 * MULT, (tile - 2 * overlap) // MULT * MULT)
        return TilePlan(h, w, core, core, overlap, whole + peak(min(h, core + 2 * overlap), min(w, core + 2 * overlap)), None)
    if budget is None:
        budget = int(MEMORY_SAFETY.get(device.type, 0.5) * available_memory(device))
    if whole + peak(h, w) <= budget:
        return TilePlan(h, w, h, w, overlap, whole + peak(h, w), budget)
    # Largest square window that fits (at least 2 cores of context-free pixels), then even the cores out.
    side = math.isqrt(max(0, budget - whole) // bpp) // MULT * MULT
    core = max(2 * MULT, side - 2 * overlap)
    core_h, core_w = _balanced_core(h, core), _balanced_core(w, core)
    return TilePlan(h, w, core_h, core_w, overlap,
                    whole + peak(min(h, core_h + 2 * overlap), min(w, core_w + 2 * overlap)), budget)


@torch.no_grad()
def forward_tiled(model: torch.nn.Module, x: torch.Tensor, tile: int | None = None, overlap: int = OVERLAP,
                  device: torch.device | str = "cpu", precision: str = "fp32", *, budget: int | None = None,
                  log: Callable[[TilePlan], None] | None = None, engine: str = "torch") -> torch.Tensor:
    """Denoise one image (C, H, W) of any size, in overlapping windows only when :func:`plan_tiles` says so.

    ``tile=None`` (auto) tiles only when one pass would not fit in the memory at hand (``budget`` bytes
    overrides it); an int forces windows of at most ``tile`` pixels. Each window is a core plus ``overlap``
    pixels of context on every side (clipped at the image border); cores tile the image on the 32-grid of
    the whole image, so pooling cells line up with an untiled pass and only the context beyond ``overlap`` is
    lost (none at the default, see :data:`OVERLAP`). ``log`` receives the plan. ``engine``: see
    :func:`forward_padded`. Returns (C, H, W) float32 on the CPU.
    """
    device = torch.device(device)
    c, h, w = x.shape
    plan = plan_tiles(model, (c, h, w), device, tile, overlap, budget)
    if log is not None:
        log(plan)
    if not plan.tiled:
        return forward_padded(model, x[None].to(device), precision, engine)[0].cpu()
    out = None
    for y0 in range(0, h, plan.core_h):
        for x0 in range(0, w, plan.core_w):
            y1, x1 = min(y0 + plan.core_h, h), min(x0 + plan.core_w, w)
            wy0, wx0 = max(0, y0 - plan.overlap), max(0, x0 - plan.overlap)
            wy1, wx1 = min(h, y1 + plan.overlap), min(w, x1 + plan.overlap)
            win = forward_padded(model, x[None, :, wy0:wy1, wx0:wx1].to(device), precision, engine)[0].cpu()
            if out is None:  # the model's output channels
                out = torch.empty((win.shape[0], h, w), dtype=torch.float32)
            out[:, y0:y1, x0:x1] = win[:, y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0]
    return out


def denoise_mosaic(model: torch.nn.Module, mosaic: np.ndarray, cfa: str, cfa_mode: str, tile: int | None = None,
                   overlap: int = 2 * OVERLAP, device="cpu", precision: str = "fp32", *, budget: int | None = None,
                   log: Callable[[TilePlan], None] | None = None, engine: str = "torch") -> np.ndarray:
    """Denoise a Bayer mosaic (H, W) float32 in [0, 1] with a raw model; returns (H, W) float32.

    ``tile`` (None: auto, see :func:`plan_tiles`) and ``overlap`` are in mosaic pixels; tiling runs on the
    packed image, so every window origin is even in raw space and the CFA phase is kept. ``log`` receives
    the plan, in packed pixels (``plan.describe(scale=2)`` says it in mosaic pixels).
    """
    packed, meta = bayer.to_packed(torch.from_numpy(np.ascontiguousarray(mosaic, dtype=np.float32)), cfa, cfa_mode)
    out = forward_tiled(model, packed, None if tile is None else tile // 2, overlap // 2, device, precision,
                        budget=budget, log=log, engine=engine)
    return bayer.from_packed(out, cfa, cfa_mode, meta).numpy()


#: How ``rggb`` mode unifies SIDD blocks (:func:`bayer.to_packed`'s ``unify``). Flipping a 256² BGGR/GRBG/GBRG
#: block into RGGB phase packs it to 128², the cost of an RGGB block (1.02× positional, measured); padding it
#: packs it to 129², padded to 160² for the U-Net (1.56×). The outputs differ (the pad path's 160² pass gives
#: the block's bottom/right border reflected context); the score differs by −0.03 dB for a 2,000-step model
#: and −0.14 dB for a 300-step one (benchmarks/RESULTS.md). ``pad`` was the default before.
BLOCK_UNIFY = "flip"


def denoise_blocks(model: torch.nn.Module, blocks: np.ndarray, cfas: list[str], cfa_mode: str, batch_size: int = 32,
                   device="cpu", precision: str = "fp32", progress=None, unify: str | None = None) -> np.ndarray:
    """Denoise SIDD blocks (N, B, h, w) float32, image i with CFA ``cfas[i]``; returns (N, B, h, w) float32.

    Blocks that pack to the same shape are batched together, whatever their image. ``unify`` (``rggb`` mode:
    ``pad`` or ``flip``, default :data:`BLOCK_UNIFY`) says how non-RGGB blocks reach RGGB phase.
    """
    n, nb, h, w = blocks.shape
    unify = BLOCK_UNIFY if unify is None else unify
    out = np.empty_like(blocks, dtype=np.float32)
    groups: dict[tuple, list] = {}
    for i in range(n):
        packed, meta = bayer.to_packed(torch.from_numpy(np.ascontiguousarray(blocks[i], dtype=np.float32)),
                                       cfas[i], cfa_mode, unify)
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
