"""The Neighbor2Neighbor loss and its Λ (gamma) ramp; the supervised loss it is measured against, and a
Noise2Noise-on-sub-images ablation.

loss = λ1·mean((f(g1(y)) − g2(y))²) + λ2·Λ·mean((f(g1(y)) − g2(y) − (g1(f(y)) − g2(f(y))))²)

where f(y) is a full-resolution pass without gradient (the method's only stop-gradient). Means run over all
elements, values in [0, 1] units; reductions are done in fp32 even under bf16 autocast.
"""
from __future__ import annotations

import torch
from torch import nn

from n2n_raw.method.subsample import check_batch, subsample
from n2n_raw.method.vst import gat, gat_inverse_algebraic


def gamma_for_epoch(epoch: int, n_epochs: int, increase_ratio: float) -> float:
    """Λ for a 1-based (nominal) epoch: epoch / n_epochs · increase_ratio, constant within an epoch."""
    return epoch / n_epochs * increase_ratio


def n2n_loss(model: nn.Module, noisy: torch.Tensor, masks: torch.Tensor, gamma: float | torch.Tensor,
             lambda1: float = 1.0, lambda2: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Neighbor2Neighbor loss for one batch.

    Args:
        model: maps (N, C, H, W) → (N, C, H, W).
        noisy: y, (N, C, H, W), H and W multiples of 64 (the half-size sub-image feeds the U-Net).
        masks: from :func:`n2n_raw.method.subsample.draw_masks` for this batch.
        gamma: Λ of the current epoch.
    Returns:
        (loss, rec, reg): scalars in fp32; loss = lambda1·rec + lambda2·gamma·reg.
    """
    check_batch(noisy, "n2n_loss noisy")  # even sides for the 2×2 cells; masks are checked by subsample
    with torch.no_grad():
        fy = model(noisy)
        fg1, fg2 = subsample(fy, masks)
        exp_diff = (fg1 - fg2).float()
    g1, g2 = subsample(noisy, masks)
    diff = model(g1).float() - g2.float()
    rec = torch.mean(diff ** 2)
    reg = torch.mean((diff - exp_diff) ** 2)
    return lambda1 * rec + lambda2 * gamma * reg, rec.detach(), reg.detach()


def supervised_loss(model: nn.Module, noisy: torch.Tensor, clean: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Supervised (noisy → clean) MSE, the ceiling N2N is compared with: mean((f(y) − x)²) over all elements.

    Args:
        model: maps (N, C, H, W) → (N, C, H, W).
        noisy: y, (N, C, H, W) in [0, 1] units, H and W multiples of 32.
        clean: x, the same crops without noise, (N, C, H, W) (Noise2Noise: with an independent noise draw).
    Returns:
        (loss, rec, reg) as :func:`n2n_loss` returns them: loss in fp32, rec = loss detached, reg = 0.
    """
    check_batch(noisy, "supervised_loss noisy", 1)
    if clean.shape != noisy.shape:
        raise ValueError(f"supervised_loss clean: expected the noisy batch's shape {tuple(noisy.shape)}, "
                         f"got {tuple(clean.shape)}")
    loss = torch.mean((model(noisy).float() - clean.float()) ** 2)
    return loss, loss.detach(), torch.zeros_like(loss)


def noise2noise_sub_loss(model: nn.Module, noisy: torch.Tensor, target: torch.Tensor, masks: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise2Noise on N2N's sub-images, an ablation: mean((f(g1(y)) − g1(y'))²), y' an independent draw.

    It differs from N2N's reconstruction term only in the target's pixel (g1's own, where N2N takes the
    neighbour g2) and from full-resolution Noise2Noise only in training on the half-size sub-images.

    Args:
        model: maps (N, C, H/2, W/2) → (N, C, H/2, W/2).
        noisy, target: y and y', (N, C, H, W), H and W multiples of 64.
        masks: from :func:`n2n_raw.method.subsample.draw_masks` for this batch (only g1's index is used).
    Returns:
        (loss, rec, reg) as :func:`supervised_loss` returns them.
    """
    check_batch(noisy, "noise2noise_sub_loss noisy", 64)
    return supervised_loss(model, subsample(noisy, masks)[0], subsample(target, masks)[0])


#: Recorruption strength of :func:`r2r_loss`. Pang et al. (2021) use 0.5; the target's noise variance is then
#: 4× α 1's (k²(1 + 1/α²): 4.0 against 1.0), and on the real-content set α 1 fine-tuned better (real/sidd +0.13
#: dB, low light +0.5 dB; benchmarks/RESULTS.md).
R2R_ALPHA = 1.0


def r2r_loss(model: nn.Module, noisy: torch.Tensor, e: torch.Tensor, alpha: float = R2R_ALPHA
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Recorrupted-to-Recorrupted (Pang et al., CVPR 2021) in a variance-stabilised model's own domain.

    z = GAT(y) has unit-variance noise n (:class:`n2n_raw.method.gat_unet.GatUNet`). With e ~ N(0, 1) drawn fresh,
    z + αe and z − e/α have noises n + αe and n − e/α, which are uncorrelated (cov = 1 − 1 = 0): the MSE
    between f(input) and the second is the MSE against the clean signal plus a constant, so the network learns
    to denoise without clean data. Both are scaled by k = 1/sqrt(1 + α²), which brings the input's noise back to
    unit variance (what the model meets on a real photo; the clean signal is then k·s, a lower contrast).

    Args:
        model: a GatUNet (or DDP around one): ``model(x, stabilised=True)`` maps its domain to itself, and
            ``stabilise`` reaches it from linear values.
        noisy: y, (N, 4, H, W), linear normalised units, H and W multiples of 32.
        e: (N, 4, H, W), standard normal.
    Returns:
        (loss, rec, reg) as :func:`supervised_loss` returns them.
    """
    check_batch(noisy, "r2r_loss noisy", 1)
    inner = getattr(model, "module", model)
    with torch.no_grad():
        z = inner.stabilise(noisy.float())
    k = (1.0 + alpha * alpha) ** -0.5
    loss = torch.mean((model(k * (z + alpha * e), stabilised=True).float() - k * (z - e / alpha)) ** 2)
    return loss, loss.detach(), torch.zeros_like(loss)


def r2r_linear_loss(model: nn.Module, noisy: torch.Tensor, e: torch.Tensor, a: torch.Tensor | None = None,
                    b: torch.Tensor | None = None, alpha: float = R2R_ALPHA
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Recorrupted-to-Recorrupted in linear units, the recorruption matched to each pixel's noise variance.

    :func:`r2r_loss` trains the U-Net towards E[GAT(y)], whose algebraic inverse is biased low by about a/4
    (a quarter of a photo-electron: the GAT's curvature), which a raw denoiser cannot afford in the dark (real
    content at low light: −0.9e-3 of white on every photo, most of R2R's loss there against the shipped model).
    Here the noise model is the profile itself: var(y | x) = a·x + b = σ², exact in linear units at any
    signal. With σ from the model's own estimate x̂ = f(y) (no gradient), the input y + ασe and the target
    y − σe/α have uncorrelated noises (cov = a·x + b − σ² ≈ 0), so E[target] = x and the model learns an
    unbiased x, as it was pretrained to. The input's profile is (1 + α²)·(a, b), which the model is given for
    it (its unit-noise domain is the same); the loss is the MSE over σ², the shipped model's own weighting.
    Each crop takes its own photo's profile (``a``, ``b``): photos of different ISOs in one run each get the
    recorruption their noise needs (with one profile for all, R2R's cov is far from 0 on most of them).

    Args:
        model: a GatUNet (or DDP around one).
        noisy: y, (N, 4, H, W), linear normalised units, H and W multiples of 32.
        e: (N, 4, H, W), standard normal.
        a, b: each crop's profile, (N, 4, 1, 1) (:func:`n2n_raw.training.sources.item_profiles`); None: the model's.
    Returns:
        (loss, rec, reg) as :func:`supervised_loss` returns them.
    """
    check_batch(noisy, "r2r_linear_loss noisy", 1)
    inner = getattr(model, "module", model)
    a = (inner.a if a is None else a).float()
    b = (inner.b if b is None else b).float()
    y = noisy.float()
    with torch.no_grad():  # the noise variance at the model's own estimate
        x_hat = gat_inverse_algebraic(model(gat(y, a, b), stabilised=True).float(), a, b)
        var = a * x_hat.clamp(min=0.0) + b
        sd = var.sqrt()
    c = 1.0 + alpha * alpha
    out = gat_inverse_algebraic(model(gat(y + alpha * sd * e, c * a, c * b), stabilised=True).float(), c * a, c * b)
    loss = torch.mean((out - (y - sd * e / alpha)) ** 2 / var)
    return loss, loss.detach(), torch.zeros_like(loss)
