"""Metrics (PSNR, SSIM as the paper computes them) and evaluation protocols: the paper's sRGB protocol, SIDD raw
blocks, and the validation a training run calls."""
