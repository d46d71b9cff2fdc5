"""A raw denoiser that works in the variance-stabilised domain, and the one that ships with the package.

:class:`GatUNet` wraps the paper's U-Net between two fixed elementwise transforms held as buffers: the
generalized Anscombe transform of the photo's noise profile (:mod:`n2n_raw.method.vst`; the noise becomes unit-variance
Gaussian whatever the signal, camera or ISO) and its algebraic inverse. The U-Net therefore always sees the same
noise, and one set of weights serves every noise level: only the profile (a, b per packed plane, from the DNG's
NoiseProfile tag or estimated from the photo, :mod:`n2n_raw.method.noise_profile`) changes from photo to photo.
The interface stays the U-Net's: packed (N, 4, H, W) → (N, 4, H, W), normalised units, so tiling, training,
checkpoints and ONNX export treat it like any raw model (the profile is a buffer, exported as a constant).

The shipped weights (``n2n_raw/weights/raw-gat-unet.*``, :data:`n2n_raw.checkpoint.WEIGHTS`) were trained *supervised* on synthetic Poisson–Gaussian noise
over clean linear content made from public sRGB photographs and dead leaves (``benchmarks/pretrain_raw.py``
says exactly how); no photo of the user and no real noise was seen. ``n2n-raw fit`` starts from them and
fine-tunes self-supervised on the user's photos.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from n2n_raw.cfa import check_cfa
from n2n_raw.method.bayer import packed_colors
from n2n_raw.method.unet import UNet
from n2n_raw.method.vst import gat, gat_inverse_algebraic

#: The factor between the GAT domain (unit noise σ) and the U-Net's input: its noise σ is 1/16 there, a
#: moderate sRGB-like level, and a well-exposed photo at ISO 100–3200 spans a few units.
GAT_SCALE = 1.0 / 16.0
#: The shot-noise range the shipped model was trained on, and the most read noise against it (b ≤ 1000·a²);
#: a profile outside is brought inside (:meth:`GatUNet.set_profile`): overestimating a noise term a little costs
#: far less than feeding the U-Net a GAT domain it never saw (a dark, read-noise-limited frame whose a is ≈ 0
#: would shift every input by thousands of noise σ).
A_RANGE = (10 ** -4.5, 10 ** -1.3)
MAX_READ_RATIO = 1000.0
#: The profile a model is built with before a photo's own is set (a mid-ISO level).
DEFAULT_PROFILE = ((1e-3,) * 4, (1e-5,) * 4)


class GatUNet(nn.Module):
    """U-Net in the GAT domain of a Poisson–Gaussian profile.

    forward(x): x packed (N, 4, H, W) float, normalised (black 0, white 1; values below 0 allowed), H and W
    multiples of 32 → the denoised (N, 4, H, W), unclamped. The profile is per packed channel: var = a·x + b.

    Args:
        net: a 4→4 :class:`UNet` (residual, so that it starts near the identity in the GAT domain).
        a, b: the profile per packed channel (4 each; a > 0, b ≥ 0).
        scale: GAT-domain → U-Net input factor (:data:`GAT_SCALE`).
    """

    def __init__(self, net: UNet, a: Sequence[float] = DEFAULT_PROFILE[0], b: Sequence[float] = DEFAULT_PROFILE[1],
                 scale: float = GAT_SCALE):
        super().__init__()
        if net.in_ch != 4 or net.out_ch != 4:
            raise ValueError(f"GatUNet: needs a 4→4 U-Net, got {net.in_ch}→{net.out_ch}")
        self.net = net
        self.scale = float(scale)
        self.register_buffer("a", torch.ones(1, 4, 1, 1))
        self.register_buffer("b", torch.zeros(1, 4, 1, 1))
        self.set_profile(a, b)

    # The U-Net's description, so that checkpoints, planning and export see the usual fields.
    in_ch = property(lambda self: self.net.in_ch)
    out_ch = property(lambda self: self.net.out_ch)
    init = property(lambda self: self.net.init)
    residual = property(lambda self: self.net.residual)

    def set_profile(self, a: Sequence[float] | torch.Tensor, b: Sequence[float] | torch.Tensor) -> None:
        """Set the noise profile (4 values each, per packed channel, normalised units; a ≥ 0, b ≥ 0); a is
        brought into :data:`A_RANGE` and to at least sqrt(b / :data:`MAX_READ_RATIO`)."""
        a_t = torch.as_tensor(a, dtype=torch.float32).reshape(-1)
        b_t = torch.as_tensor(b, dtype=torch.float32).reshape(-1)
        if a_t.numel() != 4 or b_t.numel() != 4 or not bool((a_t >= 0).all()) or not bool((b_t >= 0).all()):
            raise ValueError(f"noise profile: expected 4 values of a ≥ 0 and of b ≥ 0, got {a_t.tolist()}, {b_t.tolist()}")
        a_t = clamp_profile(a_t, b_t)
        # Replaced, not copied into: pretraining gives the buffers one profile per item, (N, 4, 1, 1).
        self.a = a_t.view(1, 4, 1, 1).to(self.a.device)
        self.b = b_t.view(1, 4, 1, 1).to(self.b.device)

    @property
    def profile(self) -> tuple[list[float], list[float]]:
        return self.a.flatten().tolist(), self.b.flatten().tolist()

    def describe_profile(self) -> str:
        """The profile as one log line: "a … , b …" per packed channel."""
        a, b = self.profile
        return f"a {' '.join(f'{v:.3g}' for v in a)}, b {' '.join(f'{v:.3g}' for v in b)}"

    def forward(self, x: torch.Tensor, stabilised: bool = False) -> torch.Tensor:
        """``stabilised``: ``x`` is already in the GAT domain (unit noise) and so is the result, the U-Net's
        own mapping there (:func:`n2n_raw.method.loss.r2r_loss` trains it)."""
        if stabilised:
            return self.net(x * self.scale) / self.scale
        a, b = self.a.to(x.dtype), self.b.to(x.dtype)
        return gat_inverse_algebraic(self(gat(x, a, b), stabilised=True), a, b)

    def stabilise(self, x: torch.Tensor) -> torch.Tensor:
        """The GAT of ``x`` under this model's profile: unit-variance noise."""
        return gat(x, self.a.to(x.dtype), self.b.to(x.dtype))


def clamp_profile(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a`` as :meth:`GatUNet.set_profile` uses it: in :data:`A_RANGE` and at least sqrt(b / MAX_READ_RATIO)."""
    return torch.maximum(a.clamp(*A_RANGE), (b / MAX_READ_RATIO).sqrt())


def packed_profile(a: Sequence[float], b: Sequence[float], cfa: str | None,
                   cfa_mode: str) -> tuple[list[float], list[float]]:
    """A profile per 2×2 position (raster order, :data:`n2n_raw.cfa.PACK_ORDER`) → per packed channel.

    ``positional`` packing keeps the positions. ``rggb`` packing reorders by colour (R, G1, G2, B); its two
    greens take the mean of the mosaic's two green positions, since which green lands in G1 depends on how the
    mosaic was brought to RGGB phase (a crop, a pad or a flip), and the two share one profile on every sensor.
    """
    if cfa_mode == "positional":
        return [float(v) for v in a], [float(v) for v in b]
    letters = check_cfa(cfa)

    def by_colour(v: Sequence[float]) -> list[float]:
        mean = {c: float(sum(x for x, l in zip(v, letters) if l == c) / letters.count(c)) for c in "RGB"}
        return [mean[c] for c in packed_colors(cfa, cfa_mode)]
    return by_colour(a), by_colour(b)
