"""The Bayer-preserving self-ensemble of raw denoising (denoise_array's ``ensemble``)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from n2n_raw.cfa import CFAS
from n2n_raw.method import bayer
from n2n_raw.inference.photos import ENSEMBLES, denoise_array
from n2n_raw.errors import InputError

META = {"mode": "raw", "cfa_mode": "rggb"}


class _PlaneMean(nn.Module):
    """Replaces every packed value by its channel's mean: the same answer for every view of a mosaic."""
    in_ch = out_ch = 4

    def forward(self, x):
        return x.mean(dim=(-2, -1), keepdim=True).expand_as(x).clone()


class _Shift(nn.Module):
    """Copies each packed value from its right neighbour: a different answer for each view."""
    in_ch = out_ch = 4

    def forward(self, x):
        return torch.roll(x, -1, dims=-1)


@pytest.mark.parametrize("cfa", CFAS)
@pytest.mark.parametrize("n", sorted(ENSEMBLES))
def test_an_invariant_model_gives_the_same_answer(cfa, n):
    """Every view is the same photo: a model that only sees colour means answers alike (to float rounding),
    and each view's result goes back to the input's geometry (a wrong inverse would scatter the planes)."""
    rng = np.random.default_rng(0)
    levels = {"R": 0.2, "G": 0.5, "B": 0.8}
    cells = np.array([levels[c] for c in cfa], np.float32).reshape(2, 2)
    x = np.tile(cells, (33, 49)) + 0.01 * rng.uniform(0, 1, (66, 98)).astype(np.float32)  # not multiples of 32
    one = denoise_array(_PlaneMean(), META, x, cfa)
    many = denoise_array(_PlaneMean(), META, x, cfa, ensemble=n)
    assert many.shape == x.shape
    assert np.allclose(many, one, atol=2e-3)


def test_the_views_are_averaged():
    """With a model that is not view-invariant, the ensemble is the mean of the views, each undone: computed
    here by hand from bayer.augment for the transpose pair."""
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (64, 96)).astype(np.float32)
    got = denoise_array(_Shift(), META, x, "GRBG", ensemble=2)
    a = denoise_array(_Shift(), META, x, "GRBG")
    xt, ct = bayer.augment(x, "GRBG", transpose=True)
    b = denoise_array(_Shift(), META, np.ascontiguousarray(xt), ct).T
    assert np.allclose(got, (a + b) / 2, atol=1e-6)
    assert not np.allclose(a, b, atol=1e-3)


def test_bad_ensemble_is_refused():
    with pytest.raises(InputError, match="--ensemble"):
        denoise_array(_PlaneMean(), META, np.zeros((64, 64), np.float32), "RGGB", ensemble=3)
