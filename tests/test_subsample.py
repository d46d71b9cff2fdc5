"""The neighbour sub-sampler, checked by decoding images whose values encode their own (row, col)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from n2n_raw.method.unet import UNet
from n2n_raw.method.loss import n2n_loss, supervised_loss
from n2n_raw.method.subsample import PAIRS, draw_masks, subsample

# The 8 ordered pairs of the spec, written out as (dy, dx) offsets inside the 2×2 cell.
_POS = {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 1)}
SPEC_PAIRS = {(0, 1), (0, 2), (1, 3), (2, 3), (1, 0), (2, 0), (3, 1), (3, 2)}

CH_OFFSET = 1_000_000  # channel c holds code + c·CH_OFFSET


def coord_image(n: int, c: int, h: int, w: int) -> torch.Tensor:
    """(n, c, h, w) int64: value = sample·10^8 + channel·10^6 + row·w + col."""
    r = torch.arange(h).view(1, 1, h, 1)
    q = torch.arange(w).view(1, 1, 1, w)
    ch = torch.arange(c).view(1, c, 1, 1)
    s = torch.arange(n).view(n, 1, 1, 1)
    return (s * 100_000_000 + ch * CH_OFFSET + r * w + q).long()


def decode(g: torch.Tensor, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(sample, channel, row, col) arrays of every value of a sub-image."""
    v = g.numpy().astype(np.int64)
    s, rest = np.divmod(v, 100_000_000)
    ch, code = np.divmod(rest, CH_OFFSET)
    r, q = np.divmod(code, w)
    return s, ch, r, q


def in_cell_index(r: np.ndarray, q: np.ndarray) -> np.ndarray:
    return 2 * (r % 2) + (q % 2)


def test_pairs_constant_is_the_spec_set():
    assert len(PAIRS) == 8 and set(PAIRS) == SPEC_PAIRS


@pytest.mark.parametrize("n,c,h,w", [(1, 1, 2, 2), (3, 3, 6, 10), (2, 4, 14, 6), (1, 3, 18, 22)])
def test_g1_g2_are_4_adjacent_pixels_of_their_own_cell(n, c, h, w):
    gen = torch.Generator().manual_seed(1234 + h)
    x = coord_image(n, c, h, w)
    masks = draw_masks(n, h, w, gen)
    assert masks.shape == (2, n, 1, 1, h // 2, w // 2) and masks.dtype == torch.long
    g1, g2 = subsample(x, masks)
    assert g1.shape == g2.shape == (n, c, h // 2, w // 2)
    s1, c1, r1, q1 = decode(g1, w)
    s2, c2, r2, q2 = decode(g2, w)
    # Same sample and channel as the output position.
    sn = np.arange(n).reshape(n, 1, 1, 1)
    cn = np.arange(c).reshape(1, c, 1, 1)
    assert (s1 == sn).all() and (s2 == sn).all()
    assert (c1 == cn).all() and (c2 == cn).all()
    # Output pixel (i, j) comes from cell (i, j).
    ii = np.arange(h // 2).reshape(1, 1, -1, 1)
    jj = np.arange(w // 2).reshape(1, 1, 1, -1)
    for r, q in ((r1, q1), (r2, q2)):
        assert (r // 2 == ii).all() and (q // 2 == jj).all()
    # Horizontal or vertical neighbours: never the same pixel, never diagonal.
    manhattan = np.abs(r1 - r2) + np.abs(q1 - q2)
    assert (manhattan == 1).all()
    # And the pair is one of the spec's 8 ordered pairs.
    got = set(zip(in_cell_index(r1, q1).ravel().tolist(), in_cell_index(r2, q2).ravel().tolist()))
    assert got <= SPEC_PAIRS


def test_subsample_matches_an_explicit_loop():
    gen = torch.Generator().manual_seed(7)
    n, c, h, w = 2, 3, 6, 8
    x = torch.randn(n, c, h, w, generator=gen)
    masks = draw_masks(n, h, w, gen)
    g1, g2 = subsample(x, masks)
    m = masks.numpy()
    for b in range(n):
        for i in range(h // 2):
            for j in range(w // 2):
                k1, k2 = int(m[0, b, 0, 0, i, j]), int(m[1, b, 0, 0, i, j])
                (a1, b1), (a2, b2) = _POS[k1], _POS[k2]
                assert torch.equal(g1[b, :, i, j], x[b, :, 2 * i + a1, 2 * j + b1])
                assert torch.equal(g2[b, :, i, j], x[b, :, 2 * i + a2, 2 * j + b2])


def test_all_8_ordered_pairs_uniformly_frequent():
    gen = torch.Generator().manual_seed(2021)
    n, h, w = 4, 128, 128
    x = coord_image(n, 1, h, w)
    g1, g2 = subsample(x, draw_masks(n, h, w, gen))
    _, _, r1, q1 = decode(g1, w)
    _, _, r2, q2 = decode(g2, w)
    k1, k2 = in_cell_index(r1, q1).ravel(), in_cell_index(r2, q2).ravel()
    counts = {p: int(np.sum((k1 == p[0]) & (k2 == p[1]))) for p in SPEC_PAIRS}
    total = k1.size
    assert sum(counts.values()) == total  # nothing outside the 8 pairs
    obs = np.array([counts[p] for p in sorted(SPEC_PAIRS)])
    assert obs.min() > 0
    chi2, p = stats.chisquare(obs)
    assert p > 1e-4, (counts, chi2)
    # Also a plain tolerance: each pair within 6 % of total/8 (16384 cells, sd ≈ 2.6 %).
    assert np.all(np.abs(obs / (total / 8) - 1) < 0.06), counts


@pytest.mark.parametrize("c", [3, 4])
def test_one_choice_shared_by_all_channels(c):
    gen = torch.Generator().manual_seed(c)
    n, h, w = 3, 10, 14
    x = coord_image(n, c, h, w)
    g1, g2 = subsample(x, draw_masks(n, h, w, gen))
    for g in (g1, g2):
        for ch in range(1, c):
            # every channel plane picked the pixel with the same coordinates as channel 0
            assert torch.equal(g[:, ch] - ch * CH_OFFSET, g[:, 0])
    # and the choice is not trivially constant (several pairs occur)
    _, _, r1, q1 = decode(g1, w)
    assert len(np.unique(in_cell_index(r1, q1))) > 1


def test_float_images_and_dtype_preserved():
    gen = torch.Generator().manual_seed(3)
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        x = torch.rand(2, 4, 8, 6, generator=gen).to(dtype)
        g1, g2 = subsample(x, draw_masks(2, 8, 6, gen))
        assert g1.dtype == g2.dtype == dtype
        # every value of g1 is a value of the same cell of x
        cells = torch.nn.functional.pixel_unshuffle(x.float(), 2).view(2, 4, 4, 4, 3)
        assert ((cells == g1.float().unsqueeze(2)).any(dim=2)).all()
        assert ((cells == g2.float().unsqueeze(2)).any(dim=2)).all()


def test_seeded_generator_is_reproducible_and_seed_dependent():
    a = draw_masks(2, 32, 32, torch.Generator().manual_seed(5))
    b = draw_masks(2, 32, 32, torch.Generator().manual_seed(5))
    c = draw_masks(2, 32, 32, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # successive draws from one generator differ
    g = torch.Generator().manual_seed(5)
    assert not torch.equal(draw_masks(2, 32, 32, g), draw_masks(2, 32, 32, g))


def _pair_ids(masks: torch.Tensor) -> np.ndarray:
    """Index 0..7 of the drawn pair per (sample, cell)."""
    lut = {p: i for i, p in enumerate(sorted(SPEC_PAIRS))}
    m = masks.numpy()
    k1, k2 = m[0, :, 0, 0], m[1, :, 0, 0]
    out = np.vectorize(lambda a, b: lut[(int(a), int(b))])(k1, k2)
    return out


def test_samples_of_a_batch_are_independent():
    gen = torch.Generator().manual_seed(99)
    masks = draw_masks(2, 96, 96, gen)
    ids = _pair_ids(masks)  # (2, 48, 48)
    assert not np.array_equal(ids[0], ids[1])
    # joint distribution of (sample 0 choice, sample 1 choice) at the same cell ≈ uniform over 64
    joint = np.bincount((ids[0] * 8 + ids[1]).ravel(), minlength=64)
    _, p = stats.chisquare(joint)
    assert p > 1e-4
    # agreement rate ≈ 1/8, not more (as it would be with correlated draws)
    agree = float(np.mean(ids[0] == ids[1]))
    assert abs(agree - 1 / 8) < 0.03


def test_neighbouring_cells_are_independent():
    gen = torch.Generator().manual_seed(11)
    ids = _pair_ids(draw_masks(1, 128, 128, gen))[0]
    joint = np.bincount((ids[:, :-1] * 8 + ids[:, 1:]).ravel(), minlength=64)
    _, p = stats.chisquare(joint)
    assert p > 1e-4


@pytest.mark.parametrize("h,w", [(5, 6), (6, 5), (7, 7), (1, 2)])
def test_odd_size_is_refused(h, w):
    with pytest.raises(ValueError, match="even"):
        draw_masks(1, h, w, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("call, match", [
    (lambda: subsample(torch.zeros(4, 6, 8), torch.zeros(2, 4, 1, 1, 3, 4, dtype=torch.long)),
     r"subsample x: expected shape \(N, C, H, W\), got \(4, 6, 8\)"),
    (lambda: subsample(torch.zeros(1, 3, 7, 8), torch.zeros(2, 1, 1, 1, 3, 4, dtype=torch.long)),
     r"subsample x: expected \(N, C, H, W\) with H and W multiples of 2, got \(1, 3, 7, 8\)"),
    (lambda: subsample(torch.zeros(2, 3, 8, 8), draw_masks(2, 8, 6)),
     r"subsample masks: expected long \(2, 2, 1, 1, 4, 4\) from draw_masks for x of shape \(2, 3, 8, 8\)"),
    (lambda: subsample(torch.zeros(1, 3, 8, 8), draw_masks(1, 8, 8).int()), r"got \(2, 1, 1, 1, 4, 4\) torch.int32"),
    (lambda: draw_masks(2, 7, 8), r"draw_masks: expected n >= 1 and even height, width >= 2, got n=2, 7×8"),
    (lambda: n2n_loss(torch.nn.Identity(), torch.zeros(1, 4, 9, 64), draw_masks(1, 8, 64), 1.0),
     r"n2n_loss noisy: expected \(N, C, H, W\) with H and W multiples of 2, got \(1, 4, 9, 64\)"),
    (lambda: supervised_loss(torch.nn.Identity(), torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 64)),
     r"supervised_loss clean: expected the noisy batch's shape \(1, 3, 32, 32\), got \(1, 3, 32, 64\)"),
    (lambda: UNet(4, 4)(torch.zeros(1, 4, 48, 64)),
     r"UNet: expected \(N, 4, H, W\) with H and W multiples of 32 .*got \(1, 4, 48, 64\)"),
    (lambda: UNet(4, 4)(torch.zeros(1, 3, 64, 64)), r"got \(1, 3, 64, 64\)"),
])
def test_wrong_shapes_fail_at_the_door(call, match):
    """kornia-style checks: one line naming the expected shape, before anything reaches the U-Net."""
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
