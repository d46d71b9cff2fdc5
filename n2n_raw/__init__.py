"""n2n-raw: self-supervised Neighbor2Neighbor denoising for raw (SIDD, DNG) and sRGB images.

``from n2n_raw import Denoiser`` is the Python API (see :mod:`n2n_raw.denoiser`).
"""
from n2n_raw.version import __version__

__all__ = ["Denoiser", "__version__"]


def __getattr__(name: str):
    # Imported on first use: `import n2n_raw` (and the CLI's --help) stays free of torch.
    if name == "Denoiser":
        from n2n_raw.denoiser import Denoiser
        return Denoiser
    raise AttributeError(f"module 'n2n_raw' has no attribute {name!r}")
