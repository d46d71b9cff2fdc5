"""Training schedule: LR steps, epoch numbering, and the epoch-wise sampling of items and crops."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from n2n_raw.training.batches import make_batch, sample_indices
from n2n_raw.training.sources import Item, RawSource, SrgbSource
from n2n_raw.errors import InputError
from n2n_raw.training.batches import step_seed
from n2n_raw.training.loop import epoch_of, lr_factor

# ----------------------------------------------------------------------------------------------- learning rate


def test_lr_factor_table_for_100_epochs():
    want = {}
    for e in range(1, 101):
        want[e] = 1.0 if e < 20 else 0.5 if e < 40 else 0.25 if e < 60 else 0.125 if e < 80 else 0.0625
    assert {e: lr_factor(e, 100) for e in range(1, 101)} == want
    assert lr_factor(19, 100) == 1.0 and lr_factor(20, 100) == 0.5
    assert lr_factor(79, 100) == 0.125 and lr_factor(80, 100) == 0.0625 and lr_factor(100, 100) == 0.0625


def _reference_lrs(n_epochs: int) -> list[float]:
    """The reference: MultiStepLR(milestones int(f·E)−1, ×0.5), read at the start of each epoch, stepped after it."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    ms = [int(n_epochs * f) - 1 for f in (0.2, 0.4, 0.6, 0.8)]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=ms, gamma=0.5)
    out = []
    for _ in range(1, n_epochs + 1):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("n_epochs", [100, 50, 37, 10, 9, 6, 5, 4, 3, 2, 1])
def test_lr_factor_matches_simulated_multisteplr(n_epochs):
    assert [lr_factor(e, n_epochs) for e in range(1, n_epochs + 1)] == _reference_lrs(n_epochs)


# ----------------------------------------------------------------------------------------------- epochs

def test_epoch_of_natural_epochs():
    spe = 11
    got = [epoch_of(s, 11 * 5, 5, spe) for s in range(55)]
    assert got == [s // 11 + 1 for s in range(55)]
    assert got[0] == 1 and got[10] == 1 and got[11] == 2 and got[-1] == 5
    # the paper: 44,328 images, batch 4 → 11,082 steps per epoch, 1,108,200 in all
    assert epoch_of(11_081, 1_108_200, 100, 11_082) == 1
    assert epoch_of(11_082, 1_108_200, 100, 11_082) == 2
    assert epoch_of(1_108_199, 1_108_200, 100, 11_082) == 100


@pytest.mark.parametrize("total,n_epochs", [(250, 100), (100, 100), (7, 3), (1000, 7), (101, 100)])
def test_epoch_of_steps_split(total, n_epochs):
    eps = [epoch_of(s, total, n_epochs, None) for s in range(total)]
    assert eps[0] == 1 and eps[-1] == n_epochs
    assert all(b - a in (0, 1) for a, b in zip(eps, eps[1:]))  # non-decreasing, no epoch skipped
    counts = np.bincount(eps, minlength=n_epochs + 1)[1:]
    assert counts.sum() == total and (counts >= total // n_epochs).all() and (counts <= -(-total // n_epochs)).all()
    assert epoch_of(total, total, n_epochs, None) == n_epochs + 1  # the step after the last ends epoch E


@settings(max_examples=60, deadline=None)
@given(n_epochs=st.integers(1, 60), extra=st.integers(0, 400))
def test_epoch_of_steps_split_property(n_epochs, extra):
    total = n_epochs + extra
    eps = [epoch_of(s, total, n_epochs, None) for s in range(total)]
    assert sorted(set(eps)) == list(range(1, n_epochs + 1))  # every nominal epoch gets steps
    assert eps == sorted(eps)


def test_step_seed_is_deterministic_and_distinct():
    assert step_seed(0, 5) == step_seed(0, 5)
    seeds = {step_seed(s, t) for s in range(3) for t in range(200)}
    assert len(seeds) == 600
    assert all(0 <= v < 2 ** 63 for v in seeds)


# ----------------------------------------------------------------------------------------------- sampling

@pytest.mark.parametrize("n_items,batch", [(10, 3), (13, 4), (8, 4), (5, 1)])
def test_natural_epochs_are_permutations(n_items, batch):
    spe = n_items // batch
    seen_epochs = []
    for e in range(4):
        idx = np.concatenate([sample_indices(n_items, e * spe + k, batch, 0, spe) for k in range(spe)])
        assert len(idx) == spe * batch
        assert len(set(idx.tolist())) == len(idx)  # distinct items within an epoch
        assert idx.min() >= 0 and idx.max() < n_items
        if spe * batch == n_items:  # nothing dropped: the epoch covers every item once
            assert sorted(idx.tolist()) == list(range(n_items))
        seen_epochs.append(idx)
    # different epochs use different orders
    assert any(not np.array_equal(seen_epochs[0], other) for other in seen_epochs[1:])


def test_natural_epochs_drop_the_last_partial_batch():
    n_items, batch, seed = 10, 4, 1
    spe = n_items // batch  # 2 steps = 8 items per epoch, 2 dropped
    first = np.concatenate([sample_indices(n_items, k, batch, seed, spe) for k in range(spe)])
    dropped = set(range(n_items)) - set(first.tolist())
    assert len(dropped) == 2
    # continuous (--steps) mode walks the same permutations without dropping: its samples 8, 9 are the
    # dropped ones, and samples 10..13 (permutation 2's start) are natural epoch 2's first batch
    cont = np.concatenate([sample_indices(n_items, s, batch, seed, None) for s in range(4)])
    assert np.array_equal(cont[:8], first)
    assert set(cont[8:10].tolist()) == dropped
    assert np.array_equal(sample_indices(n_items, spe, batch, seed, spe), cont[10:14])


def test_steps_mode_runs_through_permutations_continuously():
    n_items, batch = 10, 4
    idx = np.concatenate([sample_indices(n_items, s, batch, 2, None) for s in range(5)])  # 20 samples
    assert sorted(idx[:10].tolist()) == list(range(10))
    assert sorted(idx[10:].tolist()) == list(range(10))
    assert not np.array_equal(idx[:10], idx[10:])


def test_sample_indices_deterministic_in_seed_and_step():
    a = sample_indices(50, 7, 4, 3, 12)
    assert np.array_equal(a, sample_indices(50, 7, 4, 3, 12))
    assert not np.array_equal(a, sample_indices(50, 7, 4, 4, 12))
    assert not np.array_equal(a, sample_indices(50, 8, 4, 3, 12))
    # a step's batch does not depend on earlier calls (resume anywhere)
    sample_indices(50, 100, 4, 3, 12)
    assert np.array_equal(a, sample_indices(50, 7, 4, 3, 12))


def _srgb_source(n=6, patch=32, seed=0):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (40 + i, 50 + 2 * i, 3), dtype=np.uint8) for i in range(n)]
    return SrgbSource.from_images(images, [f"im{i}" for i in range(n)], patch), images


def _find(crop_u8: np.ndarray, image: np.ndarray) -> list[tuple[int, int]]:
    p = crop_u8.shape[1]
    hits = []
    for y in range(image.shape[0] - p + 1):
        for x in range(image.shape[1] - p + 1):
            if np.array_equal(image[y:y + p, x:x + p].transpose(2, 0, 1), crop_u8):
                hits.append((y, x))
    return hits


def test_make_batch_srgb_crops_come_from_the_sampled_items():
    src, images = _srgb_source()
    b = make_batch(src, step=3, batch=4, seed=5, steps_per_epoch=1)
    assert b.shape == (4, 3, 32, 32) and b.dtype == torch.float32
    assert 0 <= b.min() and b.max() <= 1
    idx = sample_indices(len(src), 3, 4, 5, 1)
    for k in range(4):
        crop = np.round(b[k].numpy() * 255).astype(np.uint8)
        assert _find(crop, images[idx[k]]), k
    # deterministic in (seed, step)
    assert torch.equal(b, make_batch(src, 3, 4, 5, 1))
    assert not torch.equal(b, make_batch(src, 3, 4, 6, 1))


@pytest.mark.parametrize("world", [2, 4])
def test_rank_slices_concatenate_to_the_global_batch(world):
    src, _ = _srgb_source()
    glob = 4
    per = glob // world
    for step in (0, 1, 5):
        full = make_batch(src, step, glob, 9, None)
        parts = [make_batch(src, step, glob, 9, None, slice(r * per, (r + 1) * per)) for r in range(world)]
        assert torch.equal(torch.cat(parts), full)


def test_srgb_source_refuses_small_images():
    with pytest.raises(InputError, match="smaller than --patch-size"):
        SrgbSource.from_images([np.zeros((30, 64, 3), np.uint8)], ["small"], 32)


# ----------------------------------------------------------------------------------------------- raw source

def _colour_mosaic(cfa: str, h: int, w: int) -> np.ndarray:
    """R = 1.0, G = 0.5, B = 0.0 in the layout of ``cfa``."""
    val = {"R": 1.0, "G": 0.5, "B": 0.0}
    cell = np.array([[val[cfa[0]], val[cfa[1]]], [val[cfa[2]], val[cfa[3]]]], np.float32)
    return np.tile(cell, (h // 2 + 1, w // 2 + 1))[:h, :w]


def _raw_item(cfa, h=37, w=45):
    m = _colour_mosaic(cfa, h, w)
    return Item(cfa, (h, w), cfa, lambda y, x, hh, ww, m=m: m[y:y + hh, x:x + ww])


@pytest.mark.parametrize("augment", [False, True])
def test_raw_crops_rggb_mode_start_on_red(augment):
    src = RawSource([_raw_item(c) for c in ("RGGB", "GRBG", "GBRG", "BGGR")], 16, "rggb", augment)
    for step in range(3):
        b = make_batch(src, step, 4, 0, 1).numpy()
        assert b.shape == (4, 4, 8, 8)
        assert (b[:, 0] == 1.0).all() and (b[:, 1] == 0.5).all() and (b[:, 2] == 0.5).all() and (b[:, 3] == 0).all()


def test_raw_crops_positional_mode_keep_the_phase():
    cfas = ("RGGB", "GRBG", "GBRG", "BGGR")
    src = RawSource([_raw_item(c) for c in cfas], 16, "positional", augment=True)
    val = {"R": 1.0, "G": 0.5, "B": 0.0}
    for step in range(3):
        b = make_batch(src, step, 4, 0, 1).numpy()
        idx = sample_indices(4, step, 4, 0, 1)
        for k in range(4):
            cfa = cfas[idx[k]]
            for ch in range(4):
                assert (b[k, ch] == val[cfa[ch]]).all()


# ----------------------------------------------------------------------------------------------- short runs

def test_short_run_reduces_the_nominal_epochs_only_below_them():
    from n2n_raw.config import TrainConfig
    assert TrainConfig(mode="raw", steps=2).resolved().epochs == 2       # one step per nominal epoch
    assert TrainConfig(mode="raw", steps=99).resolved().epochs == 99
    assert TrainConfig(mode="raw", steps=100).resolved().epochs == 100   # steps >= epochs: unchanged
    assert TrainConfig(mode="raw", steps=250).resolved().epochs == 100
    assert TrainConfig(mode="raw", steps=3, epochs=2).resolved().epochs == 2
    assert TrainConfig(mode="raw").resolved().epochs == 100
    with pytest.raises(InputError, match="^--steps: must be >= 1"):
        TrainConfig(mode="raw", steps=0).resolved()
    with pytest.raises(InputError, match="^photos and --data"):
        TrainConfig(mode="raw", photos=("a.dng",), data="x.h5").resolved()
    with pytest.raises(InputError, match="^photos: .* raw model"):
        TrainConfig(mode="srgb", photos=("a.dng",)).resolved()


def test_short_raw_run_trains_with_a_note(tmp_path):
    """`train --mode raw --steps 2` (default --epochs 100) runs 2 steps as 2 nominal epochs, and says so."""
    import csv
    import json

    from n2n_raw.config import TrainConfig
    from n2n_raw.training.loop import train
    lines = []
    cfg = TrainConfig(mode="raw", steps=2, patch_size=128, batch_size=2, device="cpu", log_every=1, pictures=False)
    train(cfg, tmp_path / "run", log=lines.append)
    assert any(ln.startswith("note: --steps 2 is below --epochs 100: using 2 nominal epochs") for ln in lines), lines
    assert json.loads((tmp_path / "run" / "config.json").read_text())["epochs"] == 2
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["step"]), int(r["epoch"])) for r in rows] == [(1, 1), (2, 2)]
    # the reference's schedule for E = 2: its milestones int(0.6·2) = int(0.8·2) = 1 halve twice from epoch 1
    base = cfg.resolved().scaled_lr(2)  # batch 2: the sqrt rule
    assert [float(r["lr"]) for r in rows] == [base * lr_factor(e, 2) for e in (1, 2)]
