"""n2n-raw: self-supervised Neighbor2Neighbor denoising for raw (SIDD, DNG) and sRGB images."""
__version__ = "0.1.0"
