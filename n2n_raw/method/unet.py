"""The paper's U-Net: the Laine et al. (2019) baseline with 48 features (1,259,475 parameters for 3→3).

Input (N, in_ch, H, W) with H and W multiples of 32 (five 2× max-pools); output (N, out_ch, H, W),
unclamped. LeakyReLU(0.2) after every conv but the last; learned 2×2 stride-2 transposed convs (with bias)
and no activation after them; no residual connection.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from n2n_raw.config import INITS


def _conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)


class UNet(nn.Module):
    """Neighbor2Neighbor U-Net.

    Args:
        in_ch, out_ch: channel counts (3 for sRGB, 4 for packed raw).
        init: "paper" = Kaiming-normal (fan-in, a=0) × 0.1 with zero biases, as the reference does;
            "standard" = PyTorch's default layer init; "kaiming" (default) = the paper's init without the
            ×0.1 (He et al.: keeps the activation scale through the layers), by far the fastest to denoise
            on short runs (see docs/training-options.md, "Time to quality").
        residual: add the input to the output (an "output skip"; not in the paper, off by default). The
            last layer then starts at zero, so the network starts as the identity (noisy in, noisy out)
            instead of near zero, and every step can only move it from there.
    """

    def __init__(self, in_ch: int = 3, out_ch: int = 3, init: str = "kaiming", f: int = 48,
                 residual: bool = False):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if residual and in_ch != out_ch:
            raise ValueError("residual needs in_ch == out_ch")
        self.in_ch, self.out_ch, self.init, self.residual = in_ch, out_ch, init, residual
        self.enc0 = _conv(in_ch, f)
        self.enc = nn.ModuleList([_conv(f, f) for _ in range(6)])  # enc1..enc6
        self.up = nn.ModuleList([nn.ConvTranspose2d(f, f, 2, stride=2)]
                                + [nn.ConvTranspose2d(2 * f, 2 * f, 2, stride=2) for _ in range(4)])
        # Decoder levels from deepest (scale 1/16) to full resolution: skip channels f, f, f, f, in_ch.
        skips = [f, f, f, f, in_ch]
        ups = [f, 2 * f, 2 * f, 2 * f, 2 * f]
        self.dec_a = nn.ModuleList([_conv(u + s, 2 * f) for u, s in zip(ups, skips)])
        self.dec_b = nn.ModuleList([_conv(2 * f, 2 * f) for _ in range(5)])
        self.head = nn.ModuleList([_conv(2 * f, 2 * f, 1), _conv(2 * f, 2 * f, 1), _conv(2 * f, out_ch, 1)])
        if init in ("paper", "kaiming"):
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                    nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
                    if init == "paper":
                        with torch.no_grad():
                            m.weight.mul_(0.1)
                    nn.init.zeros_(m.bias)
        if residual:
            nn.init.zeros_(self.head[2].weight)
            nn.init.zeros_(self.head[2].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_ch or x.shape[-2] % 32 or x.shape[-1] % 32:
            raise ValueError(f"UNet: expected (N, {self.in_ch}, H, W) with H and W multiples of 32 (five 2× "
                             f"poolings; n2n_raw.inference.tiling pads any size), got {tuple(x.shape)}")
        act = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
        skips = [x]
        h = act(self.enc[0](act(self.enc0(x))))
        for i in range(1, 5):  # pools 1..4 feed the skips, then enc2..enc5
            h = F.max_pool2d(h, 2)
            skips.append(h)
            h = act(self.enc[i](h))
        h = act(self.enc[5](F.max_pool2d(h, 2)))  # pool 5, enc6
        for lvl in range(5):
            h = torch.cat([self.up[lvl](h), skips[-1 - lvl]], dim=1)
            h = act(self.dec_b[lvl](act(self.dec_a[lvl](h))))
        h = act(self.head[0](h))
        h = act(self.head[1](h))
        out = self.head[2](h)
        return out + x if self.residual else out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
