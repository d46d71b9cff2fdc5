"""The method's pieces, each small and pure: Bayer packing, neighbour sub-sampling, losses, noise models, the
U-Net, the variance-stabilising transform and the noise-profile estimator.

Imports nothing of the package but the foundation (:mod:`n2n_raw.errors`, :mod:`n2n_raw.cfa`,
:mod:`n2n_raw.config`): no files, no training loop, no devices.
"""
