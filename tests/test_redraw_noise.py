"""train --redraw-noise (raw): clean crops get fresh shot + read noise at their item's ISO every step."""
import dataclasses

import numpy as np
import pytest
import torch

from conftest import RAW_TRAIN, assert_one_line_error, cli
from n2n_raw.config import TrainConfig
from n2n_raw.training.batches import make_batch, sample_indices
from n2n_raw.training.sources import load_source
from n2n_raw.io.store import StoreWriter
from n2n_raw.method.noise import RawShotReadNoise
from n2n_raw.method.noise import add_raw_noise, raw_noise_params
from n2n_raw.training.batches import Batches, Dist

# The documented levels (sidd_synth.raw_noise_params's docstring), not recomputed from its code.
ISO100, ISO3200 = (4e-4, 4e-6), (7.5e-3, 5.1e-4)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_levels_match_the_documented_ones():
    assert np.allclose(raw_noise_params(100), ISO100, rtol=1e-6)
    assert np.allclose(raw_noise_params(3200), ISO3200, rtol=0.02)


def test_variance_is_a_x_plus_b_per_sample_and_matches_the_numpy_model():
    x = torch.full((2, 4, 65, 63), 0.5)  # odd sides; mid-grey, far from the clip at 0 and 1
    a = torch.tensor([ISO100[0], ISO3200[0]])
    b = torch.tensor([ISO100[1], ISO3200[1]])
    y = RawShotReadNoise()(x, a, b, gen(0))
    assert y.shape == x.shape and y.dtype == torch.float32
    for k, (ak, bk) in enumerate((ISO100, ISO3200)):
        want = ak * 0.5 + bk
        got = float((y[k] - x[k]).double().var())
        assert abs(got / want - 1) < 0.05, (k, got, want)  # 16,380 pixels: the estimate's std is ~1.1 %
        ref = add_raw_noise(np.random.default_rng(k), np.full((4 * 65, 63), 0.5, np.float32), ak, bk)
        assert abs(float(np.var(ref - 0.5)) / got - 1) < 0.08  # the numpy model of the built-in data agrees
        assert abs(float((y[k] - x[k]).mean())) < 4 * want ** 0.5 / 128  # zero mean


def test_variance_follows_the_signal_and_the_output_is_clipped():
    x = torch.linspace(0, 1, 9).view(1, 1, 9, 1).expand(1, 1, 9, 4000).contiguous()
    a, b = torch.tensor([ISO3200[0]]), torch.tensor([ISO3200[1]])
    y = RawShotReadNoise()(x, a, b, gen(1))
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert float(y.min()) == 0 and float(y.max()) == 1  # the ends are clipped, as SIDD's normalised raw is
    for row in (2, 4, 6):  # interior rows: too far from 0 and 1 for the clip to matter
        v = float(x[0, 0, row, 0])
        got = float((y[0, 0, row] - x[0, 0, row]).double().var())
        assert abs(got / (ISO3200[0] * v + ISO3200[1]) - 1) < 0.1, (v, got)


@pytest.mark.parametrize("world", [2, 4])
def test_ddp_part_slices_concatenate_to_the_full_batch(world):
    n = 8
    x = torch.rand(n, 4, 8, 8, generator=gen(3))
    a = torch.linspace(1e-4, 1e-2, n)
    b = torch.linspace(1e-6, 1e-3, n)
    full = RawShotReadNoise()(x, a, b, gen(9))
    per = n // world
    parts = [RawShotReadNoise()(x[s], a[s], b[s], gen(9), part=(s, n))
             for s in (slice(r * per, (r + 1) * per) for r in range(world))]
    assert torch.equal(torch.cat(parts), full)
    assert torch.equal(RawShotReadNoise()(x, a, b, gen(9)), full)  # reproducible from the generator


def test_level_shapes_are_checked():
    with pytest.raises(ValueError, match=r"\(2,\)"):
        RawShotReadNoise()(torch.rand(2, 4, 8, 8), torch.ones(3), torch.ones(2))


def test_batches_redraw_noise_on_the_clean_crops_at_each_items_iso():
    cfg = TrainConfig(mode="raw", patch_size=128, redraw_noise=True, batch_size=4, device="cpu").resolved()
    src = load_source(cfg)  # the built-in data: ISOs 100 and 400, noise drawn once when it was made
    batches = Batches(cfg, src, torch.device("cpu"), Dist(), None)
    assert batches.storage == "host"
    for step in (0, 7):
        noisy, clean, masks = batches(step)
        stored_noisy, gt = make_batch(src, step, 4, cfg.seed, None, with_gt=True)
        assert clean is None  # an N2N run: no clean target reaches the loss
        assert masks.shape[:2] == (2, 4)  # the two neighbour masks of each sample
        idx = sample_indices(len(src), step, 4, cfg.seed, None)
        assert not torch.equal(noisy, stored_noisy)  # the noise is fresh, not the mosaic's own
        zs = []
        for k in range(4):
            a, b = raw_noise_params(src.items[idx[k]].iso)
            g, r = gt[k].double(), (noisy[k] - gt[k]).double()
            std = (a * g + b).sqrt()
            inside = (g > 5 * std) & (g < 1 - 5 * std)  # where the clip at 0 and 1 cannot act (chosen by clean)
            # Normalised residual: zero mean and unit variance when the noise is a·clean + b around the clean crop.
            z = (r / std)[inside]
            assert z.numel() > 1000
            # Per sample loosely (another ISO's level is off by 2× or more), over the batch tightly.
            assert abs(float(z.var()) - 1) < 0.2, (step, k)
            zs.append(z)
        z = torch.cat(zs)
        assert abs(float(z.var()) - 1) < 0.05 and abs(float(z.mean())) < 0.02, step
        again = batches(step)[0]
        assert torch.equal(again, noisy)  # reproducible from (seed, step): resume sees the same noise
    assert not torch.equal(batches(0)[0], batches(1)[0])


def test_ranks_draw_their_slice_of_one_process_batch():
    """Under DDP each rank's noisy crops are its slice of what one process draws for the global batch."""
    cfg = TrainConfig(mode="raw", patch_size=128, redraw_noise=True, batch_size=4, device="cpu").resolved()
    src = load_source(cfg)
    one = Batches(cfg, src, torch.device("cpu"), Dist(), None)(5)[0]
    half = TrainConfig(mode="raw", patch_size=128, redraw_noise=True, batch_size=2, device="cpu").resolved()
    ranks = [Batches(half, src, torch.device("cpu"), Dist(rank=r, world=2), None)(5)[0] for r in range(2)]
    assert torch.equal(torch.cat(ranks), one)


def test_supervised_redraw_gives_the_clean_target():
    cfg = TrainConfig(mode="raw", patch_size=128, redraw_noise=True, target="supervised", batch_size=2,
                      device="cpu").resolved()
    src = load_source(cfg)
    noisy, clean, _ = Batches(cfg, src, torch.device("cpu"), Dist(), None)(3)
    assert torch.equal(clean, make_batch(src, 3, 2, cfg.seed, None, with_gt=True)[1])
    assert not torch.equal(noisy, clean)


def _store(path, iso=None, with_gt=True):
    rng = np.random.default_rng(5)
    with StoreWriter(path, "raw") as w:
        for k, cfa in enumerate(("RGGB", "GBRG")):
            m = rng.random((131 + 2 * k, 133), dtype=np.float32)
            w.add(m, gt=m * 0.5 if with_gt else None, cfa=cfa, iso=iso)


def test_a_store_items_iso_is_read(tmp_path):
    _store(tmp_path / "s.h5", iso=800)
    src = load_source(TrainConfig(mode="raw", data=str(tmp_path / "s.h5"), patch_size=128).resolved())
    assert [it.iso for it in src.items] == [800.0, 800.0]
    assert torch.allclose(src.noise_levels(), torch.tensor([raw_noise_params(800)] * 2))


def test_a_few_redraw_steps_train_and_are_recorded(tmp_path):
    from n2n_raw import checkpoint as ckpt
    r = cli("train", "--mode", "raw", "--redraw-noise", "--out", tmp_path / "run", *RAW_TRAIN)
    assert "noise redrawn every step" in r.stdout + r.stderr
    meta, _ = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "run")[-1])
    assert meta["config"]["redraw_noise"] is True


@pytest.mark.parametrize("case", ["no-iso", "no-gt", "srgb"])
def test_redraw_without_what_it_needs_is_refused(tmp_path, case):
    if case == "srgb":
        r = cli("train", "--mode", "srgb", "--redraw-noise", "--out", tmp_path / "run", expect=2)
        assert_one_line_error(r.stderr, "--redraw-noise", "raw only")
    else:
        _store(tmp_path / "s.h5", iso=None if case == "no-iso" else 400, with_gt=case != "no-gt")
        r = cli("train", "--mode", "raw", "--data", tmp_path / "s.h5", "--redraw-noise", "--out", tmp_path / "run",
                *RAW_TRAIN, expect=2)
        assert_one_line_error(r.stderr, "--redraw-noise", "ISO" if case == "no-iso" else "--with-gt")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("cfa", [None, "RGGB"])
def test_a_sidd_folder_gives_clean_frames_and_isos(raw_world, cfa):
    from n2n_raw.io import sidd
    cfg = TrainConfig(mode="raw", data=str(raw_world["medium"]), patch_size=128, redraw_noise=True, cfa=cfa).resolved()
    src = load_source(cfg)
    frames = sidd.find_frames(raw_world["medium"])
    assert len(src) == len(frames) and src.has_gt
    # The ISO each scene's name states (SIDD's naming), independent of the metadata reader.
    assert [it.iso for it in src.items] == [float(sidd.parse_scene_name(fs.scene)["iso"]) for fs in frames]
    assert all(it.cfa == (cfa or sidd.frame_cfa(fs)["cfa"]) for it, fs in zip(src.items, frames))


def test_noise2noise_target_is_the_clean_crop_under_an_independent_draw():
    cfg = TrainConfig(mode="raw", patch_size=128, redraw_noise=True, target="noise2noise", batch_size=4,
                      device="cpu").resolved()
    src = load_source(cfg)
    noisy, target, _ = Batches(cfg, src, torch.device("cpu"), Dist(), None)(2)
    n2n_noisy = Batches(dataclasses.replace(cfg, target="n2n"), src, torch.device("cpu"), Dist(), None)(2)[0]
    assert torch.equal(noisy, n2n_noisy)  # the same input as an N2N run of the same seed
    gt = make_batch(src, 2, 4, cfg.seed, None, with_gt=True)[1]
    idx = sample_indices(len(src), 2, 4, cfg.seed, None)
    levels = torch.tensor([raw_noise_params(src.items[i].iso) for i in idx], dtype=torch.float64)
    std = (levels[:, 0].view(-1, 1, 1, 1) * gt.double() + levels[:, 1].view(-1, 1, 1, 1)).sqrt()
    inside = (gt > 5 * std) & (gt < 1 - 5 * std)
    z_in, z_t = ((noisy - gt) / std)[inside], ((target - gt) / std)[inside]
    assert abs(float(z_t.var()) - 1) < 0.05 and abs(float(z_t.mean())) < 0.02  # the same noise model ...
    assert abs(float(torch.corrcoef(torch.stack([z_in, z_t]))[0, 1])) < 0.02  # ... drawn independently


@pytest.mark.parametrize("target", ["noise2noise", "noise2noise-sub"])
def test_noise2noise_on_raw_needs_redrawn_noise(tmp_path, target):
    r = cli("train", "--mode", "raw", "--target", target, "--out", tmp_path / "run", *RAW_TRAIN, expect=2)
    assert_one_line_error(r.stderr, f"--target {target}", "--redraw-noise")
    assert not (tmp_path / "run").exists()


def test_noise2noise_sub_gets_the_same_batches_as_noise2noise():
    """The sub-image ablation differs from full-resolution Noise2Noise in its loss only, not in what it sees."""
    cfg = TrainConfig(mode="raw", patch_size=128, redraw_noise=True, target="noise2noise", batch_size=2,
                      device="cpu").resolved()
    src = load_source(cfg)
    full = Batches(cfg, src, torch.device("cpu"), Dist(), None)(3)
    sub = Batches(dataclasses.replace(cfg, target="noise2noise-sub"), src, torch.device("cpu"), Dist(), None)(3)
    assert all(torch.equal(a, b) for a, b in zip(full, sub))
    assert not torch.equal(full[0], full[1])
