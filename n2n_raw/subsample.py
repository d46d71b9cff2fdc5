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


def draw_masks(n: int, height: int, width: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
    """Draw one pair per 2×2 cell and sample.

    Args:
        n, height, width: batch size and *full* image size; height and width must be even.
        generator: explicit generator (on ``device``) for reproducible masks.
    Returns:
        long tensor (2, n, 1, 1, height/2, width/2): in-cell index of the g1 pixel and of the g2 pixel.
    """
    if height % 2 or width % 2:
        raise ValueError(f"the sub-sampler needs even height and width, got {height}×{width}")
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
    n, c, h, w = x.shape
    # pixel_unshuffle puts in-cell index k = 2·dy + dx at channel c·4 + k, which is our cell numbering.
    cells = F.pixel_unshuffle(x, 2).view(n, c, 4, h // 2, w // 2)
    idx = masks.expand(2, n, c, 1, h // 2, w // 2)
    g1 = torch.gather(cells, 2, idx[0]).squeeze(2)
    g2 = torch.gather(cells, 2, idx[1]).squeeze(2)
    return g1, g2
