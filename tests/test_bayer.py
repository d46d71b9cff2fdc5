"""CFA patterns, packing, unification and Bayer-preserving augmentation (n2n_raw.method.bayer)."""
import itertools
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from n2n_raw.cfa import CFAS, check_cfa, check_mode
from n2n_raw.method import bayer
from n2n_raw.method import cfa_check
from n2n_raw.errors import InputError
from n2n_raw.sim.dead_leaves import dead_leaves

COLOURS = "RGB"
OPS = list(itertools.product([False, True], repeat=3))  # (hflip, vflip, transpose)


def colour_mosaic(cfa: str, h: int, w: int) -> np.ndarray:
    """int64 (h, w): each pixel holds the index in "RGB" of its colour under ``cfa``."""
    cell = np.array([[COLOURS.index(cfa[0]), COLOURS.index(cfa[1])],
                     [COLOURS.index(cfa[2]), COLOURS.index(cfa[3])]])
    return np.tile(cell, (h // 2 + 1, w // 2 + 1))[:h, :w]


def read_pattern(m) -> str:
    m = np.asarray(m)
    return "".join(COLOURS[int(v)] for v in (m[0, 0], m[0, 1], m[1, 0], m[1, 1]))


def assert_rggb_phase(m):
    m = np.asarray(m)
    assert m.shape[-2] % 2 == 0 and m.shape[-1] % 2 == 0
    assert (m[..., 0::2, 0::2] == 0).all()  # R
    assert (m[..., 0::2, 1::2] == 1).all()  # G1
    assert (m[..., 1::2, 0::2] == 1).all()  # G2
    assert (m[..., 1::2, 1::2] == 2).all()  # B


def test_check_cfa():
    assert check_cfa("grbg") == "GRBG"
    assert check_cfa(" RGGB ") == "RGGB"
    msg = r"^--cfa: unknown CFA pattern 'RGBG' \(expected one of RGGB, BGGR, GRBG, GBRG\)$"
    with pytest.raises(InputError, match=msg):
        check_cfa("RGBG")
    with pytest.raises(InputError, match="^--cfa-mode: unknown mode"):
        check_mode("bayer")
    assert check_mode("RGGB") == "rggb"


@pytest.mark.parametrize("lead", [(), (3,), (2, 3)])
def test_pack_matches_pixel_unshuffle_and_round_trips(lead):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(*lead, 6, 10, generator=g)
    p = bayer.pack(x)
    assert p.shape == (*lead, 4, 3, 5)
    ref = F.pixel_unshuffle(x.reshape(-1, 1, 6, 10), 2).reshape(*lead, 4, 3, 5)
    assert torch.equal(p, ref)
    assert torch.equal(bayer.unpack(p), x)
    # numpy gives the same numbers and type
    pn = bayer.pack(x.numpy())
    assert isinstance(pn, np.ndarray) and np.array_equal(pn, p.numpy())
    assert np.array_equal(bayer.unpack(pn), x.numpy())


def test_pack_channel_order_and_dtype():
    x = np.arange(16, dtype=np.uint16).reshape(4, 4)
    p = bayer.pack(x)
    assert p.dtype == np.uint16
    assert p[:, 0, 0].tolist() == [0, 1, 4, 5]  # (0,0), (0,1), (1,0), (1,1)
    assert np.array_equal(bayer.pack(x[::-1]), bayer.pack(np.ascontiguousarray(x[::-1])))


def test_pack_rejects_odd_and_bad_shapes():
    with pytest.raises(ValueError, match="even"):
        bayer.pack(np.zeros((5, 4)))
    with pytest.raises(ValueError):
        bayer.unpack(np.zeros((3, 2, 2)))


def test_cfa_offset():
    assert bayer.cfa_offset("RGGB") == (0, 0)
    assert bayer.cfa_offset("GRBG") == (0, 1)
    assert bayer.cfa_offset("GBRG") == (1, 0)
    assert bayer.cfa_offset("BGGR") == (1, 1)


@pytest.mark.parametrize("cfa", CFAS)
@pytest.mark.parametrize("size", [(7, 9), (11, 6), (6, 11), (8, 8), (3, 3)])
def test_unify_crop_gives_rggb(cfa, size):
    m = colour_mosaic(cfa, *size)
    c = bayer.unify_crop(m, cfa)
    assert_rggb_phase(c)
    assert size[0] - 2 <= c.shape[0] <= size[0] and size[1] - 2 <= c.shape[1] <= size[1]
    ct = bayer.unify_crop(torch.from_numpy(m)[None, None], cfa)
    assert isinstance(ct, torch.Tensor) and np.array_equal(ct[0, 0].numpy(), c)


@pytest.mark.parametrize("cfa", CFAS)
@pytest.mark.parametrize("size", [(7, 9), (11, 6), (6, 11), (8, 8), (2, 2), (3, 5)])
def test_unify_pad_is_rggb_everywhere_and_exactly_undone(cfa, size):
    m = colour_mosaic(cfa, *size)
    padded, meta = bayer.unify_pad(m, cfa)
    # reflect padding copies each new pixel from a same-coloured one: the whole padded mosaic is RGGB
    assert_rggb_phase(padded)
    assert padded.shape[0] - size[0] <= 2 and padded.shape[1] - size[1] <= 2
    rng = np.random.default_rng(1)
    x = rng.random((2, *size), dtype=np.float32)
    px, meta = bayer.unify_pad(x, cfa)
    assert np.array_equal(bayer.unify_unpad(px, meta), x)
    tx = torch.from_numpy(x)
    pt, meta_t = bayer.unify_pad(tx, cfa)
    assert meta_t == meta and torch.equal(pt, torch.from_numpy(px))
    assert torch.equal(bayer.unify_unpad(pt, meta_t), tx)


def test_unify_pad_values_are_reflections():
    x = np.arange(7 * 9, dtype=np.float32).reshape(7, 9)
    padded, meta = bayer.unify_pad(x, "BGGR")  # one row/col at top/left; bottom/right: (7+1)%2=0, (9+1)%2=0
    assert (meta.top, meta.left, meta.bottom, meta.right) == (1, 1, 0, 0)
    assert np.array_equal(padded, np.pad(x, ((1, 0), (1, 0)), mode="reflect"))


@pytest.mark.parametrize("mode", ["rggb", "positional"])
@pytest.mark.parametrize("cfa", CFAS)
@pytest.mark.parametrize("size", [(7, 9), (11, 6), (6, 11), (10, 12)])
def test_to_from_packed_round_trip(mode, cfa, size):
    rng = np.random.default_rng(2)
    x = rng.random((3, *size)).astype(np.float32)
    for arr in (x, torch.from_numpy(x)):
        packed, meta = bayer.to_packed(arr, cfa, mode)
        assert type(packed) is type(arr) and packed.shape[-3] == 4 and packed.shape[0] == 3
        back = bayer.from_packed(packed, cfa, mode, meta)
        assert np.array_equal(np.asarray(back), x)
    # channel colours: rggb is always R, G, G, B; positional follows the pattern (even sizes)
    packed, _ = bayer.to_packed(colour_mosaic(cfa, *size), cfa, mode)
    colours = bayer.packed_colors(cfa, mode)
    for k in range(4):
        assert (packed[k] == COLOURS.index(colours[k])).all()
    if mode == "rggb":
        assert colours == ("R", "G", "G", "B")


@pytest.mark.parametrize("cfa", CFAS)
@pytest.mark.parametrize("size", [(8, 8), (10, 12), (7, 9)])
def test_to_packed_flip_unify_is_rggb_without_pad_and_round_trips(cfa, size):
    """unify="flip": an even-sized mosaic is flipped into RGGB phase (no pad: (H/2, W/2)); G1 stays the
    green of the red rows; from_packed undoes it exactly. Odd sizes fall back to the pad."""
    m = colour_mosaic(cfa, *size)
    rows = np.broadcast_to(np.arange(size[0])[:, None], size)  # which original row each pixel came from
    packed, meta = bayer.to_packed(m, cfa, "rggb", unify="flip")
    even = size[0] % 2 == 0 and size[1] % 2 == 0
    if even:
        assert packed.shape == (4, size[0] // 2, size[1] // 2) and (meta.top, meta.left) == (0, 0)
        assert (meta.vflip, meta.hflip) == bayer.rggb_flips(cfa)
        red_rows = set(np.unique(np.asarray(bayer.to_packed(rows, cfa, "rggb", unify="flip")[0][0])))
        g1_rows = set(np.unique(np.asarray(bayer.to_packed(rows, cfa, "rggb", unify="flip")[0][1])))
        assert g1_rows == red_rows  # G1 = the green on the red rows, as with the pad
    else:
        assert (meta.vflip, meta.hflip) == (False, False)
    for k, c in enumerate("RGGB"):
        assert (packed[k] == COLOURS.index(c)).all()
    x = np.random.default_rng(3).random((2, *size)).astype(np.float32)
    for arr in (x, torch.from_numpy(x)):
        p, meta = bayer.to_packed(arr, cfa, "rggb", unify="flip")
        assert np.array_equal(np.asarray(bayer.from_packed(p, cfa, "rggb", meta)), x)
    with pytest.raises(ValueError, match="unify"):
        bayer.to_packed(x, cfa, "rggb", unify="mirror")


def test_to_packed_positional_needs_no_cfa_and_rggb_does():
    x = np.zeros((6, 8), np.float32)
    packed, meta = bayer.to_packed(x, None, "positional")
    assert packed.shape == (4, 3, 4) and (meta.top, meta.left) == (0, 0)
    with pytest.raises(InputError):
        bayer.to_packed(x, None, "rggb")


def brute_force_op(m: np.ndarray, hflip, vflip, transpose) -> np.ndarray:
    if transpose:
        m = m.T
    if hflip:
        m = m[:, ::-1]
    if vflip:
        m = m[::-1, :]
    return m


@pytest.mark.parametrize("cfa", CFAS)
@pytest.mark.parametrize("op", OPS)
def test_flip_cfa_against_brute_force(cfa, op):
    for size in [(4, 4), (4, 6), (5, 4), (4, 7), (5, 7)]:
        m = colour_mosaic(cfa, *size)
        expect = read_pattern(brute_force_op(m, *op))
        assert bayer.flip_cfa(cfa, *op, size=size) == expect, size
        if size[0] % 2 == 0 and size[1] % 2 == 0:
            assert bayer.flip_cfa(cfa, *op) == expect
        got, new_cfa = bayer.augment(m, cfa, *op)
        assert new_cfa == expect and np.array_equal(got, brute_force_op(m, *op))
        gt, cfa_t = bayer.augment(torch.from_numpy(m), cfa, *op)
        assert cfa_t == expect and np.array_equal(gt.numpy(), got)


def test_transpose_swaps_grbg_and_gbrg_only():
    assert bayer.flip_cfa("GRBG", transpose=True) == "GBRG"
    assert bayer.flip_cfa("GBRG", transpose=True) == "GRBG"
    assert bayer.flip_cfa("RGGB", transpose=True) == "RGGB"
    assert bayer.flip_cfa("BGGR", transpose=True) == "BGGR"


@pytest.mark.parametrize("cfa", CFAS)
def test_bayer_preserving_augmentation(cfa):
    """augment then unify_crop: an RGGB mosaic whatever the op, pattern and size parity (Liu et al.)."""
    for size, op in itertools.product([(8, 10), (9, 7), (7, 12)], OPS):
        m = colour_mosaic(cfa, *size)
        for arr in (m, torch.from_numpy(m)[None]):
            aug, new_cfa = bayer.augment(arr, cfa, *op)
            assert_rggb_phase(bayer.unify_crop(aug, new_cfa))


def synthetic_mosaic(cfa: str, h: int, w: int, seed: int = 0, gains=(0.45, 0.9, 0.6), noise=0.01):
    """A raw-like mosaic: a dead-leaves image with camera-like channel levels (G brightest) plus noise."""
    rng = np.random.default_rng(seed)
    rgb = dead_leaves(rng, h, w) * np.asarray(gains, np.float32)
    idx = colour_mosaic(cfa, h, w)
    m = np.take_along_axis(rgb, idx[..., None], axis=2)[..., 0]
    return np.clip(m + rng.normal(0, noise, m.shape), 0, 1).astype(np.float32)


@pytest.mark.parametrize("cfa", CFAS)
def test_cfa_phase_check_agrees_and_detects_green_diagonal_shift(cfa):
    m = synthetic_mosaic(cfa, 96, 130, seed=3)
    same_diagonal = [c for c in CFAS if (c[0] == "G") == (cfa[0] == "G")]
    other_diagonal = [c for c in CFAS if c not in same_diagonal]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for c in same_diagonal:  # R vs B can't be told apart: no warning either way
            assert cfa_check.cfa_phase_check(m, c) is True
    for c in other_diagonal:
        with pytest.warns(UserWarning, match=r"CFA self-check: .*fits " + " or ".join(same_diagonal)):
            assert cfa_check.cfa_phase_check(m, c) is False
    # a one-column crop shifts the phase: the check sees it
    shifted = m[:, 1:]
    with pytest.warns(UserWarning):
        assert cfa_check.cfa_phase_check(shifted, cfa) is False
    # unify_crop fixes it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cfa_check.cfa_phase_check(bayer.unify_crop(m, cfa), "RGGB")


def test_cfa_phase_check_transposed_grbg_passes_as_documented():
    m = synthetic_mosaic("GRBG", 80, 96, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cfa_check.cfa_phase_check(m.T, "GRBG")  # really GBRG: same green diagonal, undetectable


def test_cfa_phase_check_stack_torch_and_warn_flag():
    stack = np.stack([synthetic_mosaic("BGGR", 48, 64, seed=s) for s in range(3)])
    assert cfa_check.cfa_phase_check(torch.from_numpy(stack), "BGGR", warn=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cfa_check.cfa_phase_check(stack, "GBRG", warn=False) is False


def test_cfa_phase_check_inconclusive_data_pass_silently():
    rng = np.random.default_rng(5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cfa_check.cfa_phase_check(np.full((64, 64), 0.3, np.float32), "GRBG")  # flat
        assert cfa_check.cfa_phase_check(np.zeros((64, 64), np.float32), "GRBG")  # black
        assert cfa_check.cfa_phase_check(synthetic_mosaic("RGGB", 8, 8), "GRBG")  # too small
        # grey scene with equal levels in all channels: R and B look like greens, no decision
        grey = np.clip(0.4 + rng.normal(0, 0.02, (64, 64)), 0, 1)
        assert cfa_check.cfa_phase_check(grey, "GRBG")
