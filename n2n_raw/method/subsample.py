"""The neighbour sub-sampler of Neighbor2Neighbor, for any channel count.

The image is cut into non-overlapping 2×2 cells (in-cell index 0 = top-left, 1 = top-right,
2 = bottom-left, 3 = bottom-right). For every cell of every sample one ordered pair of 4-adjacent pixels is
drawn uniformly from the 8 below; g1 takes the first pixel, g2 the second. The same choice serves all
channels. Masks are index tensors used with ``gather``: no data-dependent shapes, so a train step that uses
them compiles to one graph.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: The 8 ordered pairs of horizontally or vertically adjacent in-cell positions.
PAIRS = ((0, 1), (0, 2), (1, 3), (2, 3), (1, 0), (2, 0), (3, 1), (3, 2))
_PAIRS_T = torch.tensor(PAIRS, dtype=torch.long)  # (8, 2)


def check_batch(x: torch.Tensor, name: str, multiple: int = 2) -> None:
    """Refuse, at the door and in one line, what is not an (N, C, H, W) tensor with H and W multiples of
    ``multiple`` (2 for the sub-sampler's cells; 64 where the half-size sub-image feeds the U-Net)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor (N, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name}: expected shape (N, C, H, W), got {tuple(x.shape)}")
    if x.shape[-2] % multiple or x.shape[-1] % multiple:
        raise ValueError(f"{name}: expected (N, C, H, W) with H and W multiples of {multiple}, "
                         f"got {tuple(x.shape)}")


def draw_masks(n: int, height: int, width: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
    """Draw one pair per 2×2 cell and sample.

    Args:
        n, height, width: batch size and *full* image size; height and width must be even.
        generator: explicit generator (on ``device``) for reproducible masks.
    Returns:
        long tensor (2, n, 1, 1, height/2, width/2): in-cell index of the g1 pixel and of the g2 pixel.
    """
    if n < 1 or height < 2 or width < 2 or height % 2 or width % 2:
        raise ValueError(f"draw_masks: expected n >= 1 and even height, width >= 2, got n={n}, {height}×{width}")
    device = generator.device if generator is not None else device
    choice = torch.randint(0, 8, (n, height // 2, width // 2), generator=generator, device=device)
    pairs = _PAIRS_T.to(choice.device)[choice]  # (n, h2, w2, 2)
    return pairs.permute(3, 0, 1, 2).unsqueeze(2).unsqueeze(2)


def subsample(x: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply masks from :func:`draw_masks`.

    Args:
        x: (N, C, H, W), any dtype, H and W even.
        masks: (2, N, 1, 1, H/2, W/2) long.
    Returns:
        g1, g2: (N, C, H/2, W/2) each.
    """
    check_batch(x, "subsample x")
    n, c, h, w = x.shape
    if not isinstance(masks, torch.Tensor) or masks.dtype != torch.long or \
            tuple(masks.shape) != (2, n, 1, 1, h // 2, w // 2):
        got = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(f"subsample masks: expected long (2, {n}, 1, 1, {h // 2}, {w // 2}) from draw_masks for "
                         f"x of shape {tuple(x.shape)}, got {got}"
                         + (f" {masks.dtype}" if isinstance(masks, torch.Tensor) else ""))
    # pixel_unshuffle puts in-cell index k = 2·dy + dx at channel c·4 + k, which is our cell numbering.
    cells = F.pixel_unshuffle(x, 2).view(n, c, 4, h // 2, w // 2)
    idx = masks.expand(2, n, c, 1, h // 2, w // 2)
    g1 = torch.gather(cells, 2, idx[0]).squeeze(2)
    g2 = torch.gather(cells, 2, idx[1]).squeeze(2)
    return g1, g2
