"""Bayer colour filter arrays: patterns, 2×2 packing, unification to RGGB, Bayer-preserving augmentation.

Conventions (binding for the whole package):

- A *mosaic* is an array of shape (..., H, W) (any leading dims) in MATLAB orientation, usually float32
  in [0, 1]; every function here also works on integer dtypes and never changes values.
- A CFA *pattern* is one of :data:`CFAS`; its four letters list the 2×2 cell row-major:
  ``"GRBG"`` means (0,0)=G, (0,1)=R, (1,0)=B, (1,1)=G.
- A *packed* array has shape (..., 4, H/2, W/2). Channel k holds the mosaic pixels at cell position
  :data:`PACK_ORDER` [k] = (0,0), (0,1), (1,0), (1,1): the order of ``torch.nn.functional.pixel_unshuffle(x, 2)``.

Two packing modes (``--cfa-mode``), see :func:`to_packed`:

- ``"positional"``: pack by 2×2 position with no CFA logic. This is what the published self-supervised raw
  pipelines did (Blind2Unblind, the Neighbor2Neighbor raw experiments); the channel colours then depend on
  each frame's CFA (GRBG gives G, R, B, G). Needed to compare with them.
- ``"rggb"``: Bayer pattern unification (Liu et al., CVPRW 2019): shift every mosaic to RGGB phase by one
  row / column before packing, so the channels are always R, G1, G2, B. Our default wherever the CFA is
  known. Training crops (:func:`unify_crop`), inference pads (:func:`unify_pad`) and undoes the pad.

Functions accept ``torch.Tensor`` or ``numpy.ndarray`` and return the same type. Only numpy and torch are
imported here (and :mod:`n2n_raw.errors`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from n2n_raw.cfa import check_cfa, check_mode
from n2n_raw.errors import InputError

# --------------------------------------------------------------------------------------------------------
# numpy / torch helpers


def _is_torch(x) -> bool:
    return isinstance(x, torch.Tensor)


def _as_array(x):
    """Return ``x`` unchanged when it is a tensor or ndarray, else ``np.asarray(x)``."""
    return x if _is_torch(x) or isinstance(x, np.ndarray) else np.asarray(x)


def _permute(x, dims):
    return x.permute(*dims) if _is_torch(x) else np.transpose(x, dims)


def _contiguous(x):
    return x.contiguous() if _is_torch(x) else np.ascontiguousarray(x)


def _take(x, index: np.ndarray, axis: int):
    """``x`` indexed by the integer array ``index`` along ``axis`` (negative axes allowed)."""
    if _is_torch(x):
        return torch.index_select(x, axis % x.ndim, torch.as_tensor(index, device=x.device))
    return np.take(x, index, axis=axis)


def _flip(x, axis: int):
    return torch.flip(x, dims=(axis,)) if _is_torch(x) else np.flip(x, axis=axis)


# --------------------------------------------------------------------------------------------------------
# packing


def pack(mosaic):
    """Pack a mosaic into its four 2×2 phases.

    Args:
        mosaic: (..., H, W) tensor or ndarray, H and W even, any dtype.
    Returns:
        (..., 4, H/2, W/2) of the same type and dtype; channel k holds the pixels at cell position
        ``PACK_ORDER[k]`` = (0,0), (0,1), (1,0), (1,1), exactly like ``pixel_unshuffle(x, 2)``.
    Raises:
        ValueError: fewer than 2 dims, or odd H or W.
    """
    x = _as_array(mosaic)
    if x.ndim < 2:
        raise ValueError(f"pack needs a (..., H, W) mosaic, got shape {tuple(x.shape)}")
    *lead, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"pack needs even H and W, got {h}×{w}")
    n = len(lead)
    y = x.reshape(*lead, h // 2, 2, w // 2, 2)
    # (..., h2, dy, w2, dx) → (..., dy, dx, h2, w2)
    y = _permute(y, (*range(n), n + 1, n + 3, n, n + 2))
    return _contiguous(y).reshape(*lead, 4, h // 2, w // 2)


def unpack(packed):
    """Exact inverse of :func:`pack`: (..., 4, h, w) → (..., 2h, 2w), same type and dtype.

    Raises:
        ValueError: fewer than 3 dims or a channel dim other than 4.
    """
    x = _as_array(packed)
    if x.ndim < 3 or x.shape[-3] != 4:
        raise ValueError(f"unpack needs a (..., 4, h, w) array, got shape {tuple(x.shape)}")
    *lead, _, h, w = x.shape
    n = len(lead)
    y = x.reshape(*lead, 2, 2, h, w)
    # (..., dy, dx, h, w) → (..., h, dy, w, dx)
    y = _permute(y, (*range(n), n + 2, n, n + 3, n + 1))
    return _contiguous(y).reshape(*lead, 2 * h, 2 * w)


def packed_colors(cfa: str | None, mode: str) -> tuple[str, str, str, str]:
    """The colour ("R", "G" or "B") of each packed channel for a CFA and packing mode.

    ``"rggb"`` mode always gives ("R", "G", "G", "B"); ``"positional"`` gives the pattern's letters in
    :data:`PACK_ORDER` (e.g. GRBG → ("G", "R", "B", "G")) and needs the CFA.
    """
    if check_mode(mode) == "rggb":
        return ("R", "G", "G", "B")
    return tuple(check_cfa(cfa))  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------------
# unification to RGGB phase


def cfa_offset(cfa: str) -> tuple[int, int]:
    """Where the R pixel sits in the 2×2 cell: (dy, dx), each 0 or 1.

    Dropping ``dy`` rows at the top and ``dx`` columns at the left puts an R pixel at (0, 0); the B pixel is
    then at (1, 1) (R and B share one diagonal) so the mosaic is in RGGB phase.
    RGGB → (0, 0), GRBG → (0, 1), GBRG → (1, 0), BGGR → (1, 1).
    """
    i = check_cfa(cfa).index("R")
    return i // 2, i % 2


def unify_crop(mosaic, cfa: str):
    """Crop a mosaic to RGGB phase and even size (training; Liu et al. 2019).

    Args:
        mosaic: (..., H, W) in pattern ``cfa``; at least 2 rows / columns remain after the offset.
        cfa: its pattern (one of :data:`CFAS`).
    Returns:
        (..., H', W') view/array of the same type: ``dy`` rows dropped at the top and ``dx`` columns at the
        left (see :func:`cfa_offset`), then the last row / column dropped where needed so H', W' are even.
        H' ≥ H − 2, W' ≥ W − 2.
    """
    x = _as_array(mosaic)
    dy, dx = cfa_offset(cfa)
    h, w = x.shape[-2] - dy, x.shape[-1] - dx
    h2, w2 = h - h % 2, w - w % 2
    if h2 < 2 or w2 < 2:
        raise ValueError(f"mosaic {tuple(x.shape[-2:])} too small to unify")
    return x[..., dy:dy + h2, dx:dx + w2]


@dataclass(frozen=True)
class PadMeta:
    """How a mosaic was padded (rows/columns added on each side) and its original size (H, W); with
    ``unify="flip"`` (:func:`to_packed`) the flips that put it in RGGB phase instead (no pad)."""

    top: int
    left: int
    bottom: int
    right: int
    height: int
    width: int
    vflip: bool = False
    hflip: bool = False


def _reflect_index(n: int, before: int, after: int) -> np.ndarray:
    """Indices into an axis of length n for a reflect pad (edge pixel not repeated), like np.pad 'reflect'.

    Reflection maps index -k → k and (n-1)+k → (n-1)-k: both keep the parity of the index. So a reflect
    pad copies every padded pixel from a pixel of the *same* Bayer colour and never changes the phase of the
    original pixels relative to one another; only the added rows/columns move the origin. ('symmetric'
    padding, which repeats the edge pixel, would flip the parity and mix colours.)
    """
    if before >= n or after >= n:
        raise ValueError(f"cannot reflect-pad an axis of length {n} by {max(before, after)}")
    idx = np.arange(-before, n + after)
    idx = np.abs(idx)
    over = idx > n - 1
    idx[over] = 2 * (n - 1) - idx[over]
    return idx


def _pad(x, meta: PadMeta):
    if meta.top or meta.bottom:
        x = _take(x, _reflect_index(meta.height, meta.top, meta.bottom), -2)
    if meta.left or meta.right:
        x = _take(x, _reflect_index(meta.width, meta.left, meta.right), -1)
    return x


def unify_pad(mosaic, cfa: str):
    """Reflect-pad a mosaic to RGGB phase and even size (inference; Liu et al. 2019).

    ``dy`` rows are added at the top and ``dx`` columns at the left (see :func:`cfa_offset`), so the original
    R pixels land on even rows and columns, then one row at the bottom / column at the right where needed
    for even size. Reflect padding copies each added pixel from a pixel of the same colour (see
    :func:`_reflect_index`), so the padded mosaic is a valid RGGB mosaic throughout.

    Args:
        mosaic: (..., H, W) tensor or ndarray in pattern ``cfa``, H, W ≥ 2.
    Returns:
        (padded, meta): padded (..., H + top + bottom, W + left + right), same type and dtype, even-sized
        and in RGGB phase; ``meta`` (:class:`PadMeta`) for :func:`unify_unpad`.
    """
    x = _as_array(mosaic)
    dy, dx = cfa_offset(cfa)
    h, w = x.shape[-2:]
    meta = PadMeta(top=dy, left=dx, bottom=(h + dy) % 2, right=(w + dx) % 2, height=h, width=w)
    return _pad(x, meta), meta


def unify_unpad(padded, meta: PadMeta):
    """Exactly undo :func:`unify_pad` (or a positional pad): (..., H_pad, W_pad) → (..., H, W) original size."""
    x = _as_array(padded)
    return x[..., meta.top:meta.top + meta.height, meta.left:meta.left + meta.width]


#: How ``rggb`` mode brings a mosaic to RGGB phase at inference (:func:`to_packed`).
UNIFY = ("pad", "flip")


def rggb_flips(cfa: str) -> tuple[bool, bool]:
    """(vflip, hflip) that put an *even-sized* mosaic of pattern ``cfa`` in RGGB phase: reversing an even
    number of rows moves the R row from odd to even (likewise columns). Each colour stays on its rows, so
    G1 is still the green of the red rows and G2 that of the blue rows."""
    dy, dx = cfa_offset(cfa)
    return bool(dy), bool(dx)


def to_packed(mosaic, cfa: str | None, mode: str = "rggb", unify: str = "pad"):
    """Mosaic → packed 4-channel array, ready for the network.

    Args:
        mosaic: (..., H, W) tensor or ndarray (any H, W ≥ 2; odd sizes are padded).
        cfa: the mosaic's pattern; required for ``"rggb"``, ignored (may be None) for ``"positional"``.
        mode: ``"rggb"``: :func:`unify_pad` then :func:`pack`, channels (R, G1, G2, B) with G1 at (0,1) and
            G2 at (1,0) of the RGGB cell. ``"positional"``: :func:`pack` by position (channels in
            :data:`PACK_ORDER`, colours per :func:`packed_colors`), as published pipelines (Blind2Unblind)
            did; an odd H or W is reflect-padded by one row / column at the bottom / right (phase kept).
        unify: ``rggb`` mode only. ``"pad"``: :func:`unify_pad` (one row / column per side for BGGR etc.,
            so a 256² block packs to 129², which the U-Net pads to 160²). ``"flip"``: an even-sized mosaic
            is flipped into RGGB phase (:func:`rggb_flips`) instead, packing to (H/2, W/2) with no pad;
            the network then sees the scene mirrored (odd sizes still use ``"pad"``).
    Returns:
        (packed, meta): packed (..., 4, ceil'(H)/2, ceil'(W)/2), same type and dtype; ``meta``
        (:class:`PadMeta`) for :func:`from_packed`.
    """
    mode = check_mode(mode)
    if unify not in UNIFY:
        raise ValueError(f"unify must be one of {UNIFY}, got {unify!r}")
    x = _as_array(mosaic)
    if mode == "rggb":
        if cfa is None:
            raise InputError("--cfa: the 'rggb' CFA mode needs the mosaic's CFA pattern")
        h, w = x.shape[-2:]
        if unify == "flip" and h % 2 == 0 and w % 2 == 0:
            vflip, hflip = rggb_flips(cfa)
            x = _flip(x, -2) if vflip else x
            x = _flip(x, -1) if hflip else x
            return pack(x), PadMeta(0, 0, 0, 0, h, w, vflip, hflip)
        padded, meta = unify_pad(x, cfa)
    else:
        h, w = x.shape[-2:]
        meta = PadMeta(top=0, left=0, bottom=h % 2, right=w % 2, height=h, width=w)
        padded = _pad(x, meta)
    return pack(padded), meta


def from_packed(packed, cfa: str | None, mode: str, meta: PadMeta):
    """Exact inverse of :func:`to_packed`: (..., 4, h, w) → (..., H, W) mosaic in the original pattern.

    ``cfa`` is accepted for symmetry (the pad or flips are fully described by ``meta``).
    """
    check_mode(mode)
    x = unify_unpad(unpack(packed), meta)
    x = _flip(x, -1) if meta.hflip else x
    return _flip(x, -2) if meta.vflip else x


# --------------------------------------------------------------------------------------------------------
# geometric augmentation


def flip_cfa(cfa: str, hflip: bool = False, vflip: bool = False, transpose: bool = False,
             size: tuple[int, int] | None = None) -> str:
    """The CFA pattern after a geometric operation on the mosaic.

    Order: ``transpose`` (swap H and W) first, then ``hflip`` (reverse columns), then ``vflip`` (reverse rows)
    (the two flips commute). A flip moves the last column (row) to the front: with an even width (height)
    that changes the pattern, with an odd one it does not.

    Args:
        cfa: pattern before the operation.
        size: the mosaic's (H, W) *before* the operation; None means even H and W (the usual case).
    Returns:
        The pattern of the transformed mosaic, one of :data:`CFAS`.
    """
    cell = check_cfa(cfa)
    grid = [[cell[0], cell[1]], [cell[2], cell[3]]]
    h_odd, w_odd = (False, False) if size is None else (size[0] % 2 == 1, size[1] % 2 == 1)
    if transpose:
        grid = [[grid[0][0], grid[1][0]], [grid[0][1], grid[1][1]]]
        h_odd, w_odd = w_odd, h_odd
    if hflip and not w_odd:
        grid = [row[::-1] for row in grid]
    if vflip and not h_odd:
        grid = grid[::-1]
    return "".join(grid[0] + grid[1])


def augment(mosaic, cfa: str, hflip: bool = False, vflip: bool = False, transpose: bool = False):
    """Apply a flip / transpose to a (..., H, W) mosaic and return the new pattern.

    Same order as :func:`flip_cfa` (transpose, then flips). Followed by :func:`unify_crop` with the returned
    pattern this is Bayer-preserving augmentation (Liu et al. 2019): the result is an RGGB mosaic again.

    Returns:
        (mosaic', cfa'): same type and dtype; (..., W, H) when transposed, else (..., H, W).
    """
    x = _as_array(mosaic)
    new_cfa = flip_cfa(cfa, hflip, vflip, transpose, size=tuple(x.shape[-2:]))
    if transpose:
        x = x.transpose(-1, -2) if _is_torch(x) else np.swapaxes(x, -1, -2)
    if hflip:
        x = _flip(x, -1)
    if vflip:
        x = _flip(x, -2)
    return x, new_cfa
