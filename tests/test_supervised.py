"""--target supervised: noisy → clean MSE with the same U-Net, data and schedule; clean crops aligned with noisy."""
import numpy as np
import pytest
import torch

from conftest import RAW_TRAIN, assert_one_line_error, cli
from n2n_raw.config import TrainConfig
from n2n_raw.training.batches import make_batch
from n2n_raw.training.sources import load_source
from n2n_raw.io.store import StoreWriter
from n2n_raw.method.loss import noise2noise_sub_loss, supervised_loss
from n2n_raw.method.subsample import draw_masks
from n2n_raw.method.unet import UNet


def test_supervised_loss_is_the_plain_mse():
    torch.manual_seed(0)
    model = UNet(3, 3)
    noisy, clean = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    loss, rec, reg = supervised_loss(model, noisy, clean)
    with torch.no_grad():
        out = model(noisy).double().numpy()
    want = np.mean((out - clean.double().numpy()) ** 2)
    assert loss.dtype == torch.float32 and abs(loss.item() - want) < 1e-6 * max(1.0, want)
    assert rec.item() == loss.item() and reg.item() == 0 and loss.requires_grad


def test_noise2noise_sub_loss_takes_g1s_own_pixel_from_the_second_draw():
    torch.manual_seed(1)
    model = UNet(4, 4)
    noisy, target = torch.rand(3, 4, 64, 128), torch.rand(3, 4, 64, 128)
    masks = draw_masks(3, 64, 128, torch.Generator().manual_seed(5))
    loss, rec, reg = noise2noise_sub_loss(model, noisy, target, masks)
    # g1 by hand: in-cell index k = 2·dy + dx of each 2×2 cell (subsample's convention), for y and y' alike.
    k = masks[0, :, 0, 0].numpy()  # (3, 32, 64)
    n, i, j = np.indices(k.shape)
    g1 = lambda x: x.numpy().transpose(0, 2, 3, 1)[n, 2 * i + k // 2, 2 * j + k % 2].transpose(0, 3, 1, 2)
    with torch.no_grad():
        out = model(torch.from_numpy(np.ascontiguousarray(g1(noisy)))).double().numpy()
    want = np.mean((out - g1(target).astype(np.float64)) ** 2)
    assert abs(loss.item() - want) < 1e-6 * max(1.0, want) and reg.item() == 0 and loss.requires_grad
    # Not N2N's target: with y' = y it is the loss against g1 itself, not the neighbour g2.
    same = noise2noise_sub_loss(model, noisy, noisy, masks)[0].item()
    assert abs(same - np.mean((out - g1(noisy)) ** 2)) < 1e-6


def _raw_store(path, gt_of=lambda m: m, with_gt=True):
    rng = np.random.default_rng(3)
    with StoreWriter(path, "raw") as w:
        for k, cfa in enumerate(("RGGB", "GRBG", "GBRG", "BGGR")):
            m = rng.random((150 + 2 * k, 161 + k), dtype=np.float32)
            w.add(m, gt=gt_of(m) if with_gt else None, cfa=cfa)


@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.parametrize("cfa_mode", ["rggb", "positional"])
def test_clean_crops_are_cut_at_the_noisy_crops_windows(tmp_path, augment, cfa_mode):
    _raw_store(tmp_path / "same.h5")
    _raw_store(tmp_path / "shifted.h5", gt_of=lambda m: m + 1)  # the clean frame: noisy + 1 everywhere
    for name, offset in (("same.h5", 0), ("shifted.h5", 1)):
        cfg = TrainConfig(mode="raw", data=str(tmp_path / name), patch_size=128, cfa_mode=cfa_mode, augment=augment,
                          target="supervised").resolved()
        src = load_source(cfg)
        for step in range(4):
            noisy, clean = make_batch(src, step, 4, 0, None, with_gt=True)
            assert noisy.shape == clean.shape == (4, 4, 64, 64)
            assert torch.equal(clean, noisy + offset), (name, step)
            assert torch.equal(noisy, make_batch(src, step, 4, 0, None))  # the noisy crops of an n2n run


@pytest.mark.parametrize("mode,target", [("srgb", "supervised"), ("raw", "supervised"), ("srgb", "noise2noise-sub"),
                                         ("raw", "noise2noise-sub")])
def test_a_few_supervised_steps_train_and_record_the_target(tmp_path, mode, target):
    from n2n_raw import checkpoint as ckpt
    from n2n_raw.training.loop import train
    cfg = TrainConfig(mode=mode, target=target, steps=2, epochs=1, batch_size=2, device="cpu", log_every=1,
                      patch_size=64 if mode == "srgb" else 128, default_data_size=3, pictures=False,
                      redraw_noise=mode == "raw" and target != "supervised")
    summary = train(cfg, tmp_path / "run", log=lambda s: None)
    assert np.isfinite(summary["loss"]) and summary["loss"] > 0
    meta, _ = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "run")[-1])
    assert meta["target"] == target and meta["config"]["target"] == target


def test_supervised_raw_without_clean_frames_is_refused(tmp_path):
    _raw_store(tmp_path / "nogt.h5", with_gt=False)
    r = cli("train", "--mode", "raw", "--data", tmp_path / "nogt.h5", "--target", "supervised",
            "--out", tmp_path / "run", *RAW_TRAIN, expect=2)
    assert_one_line_error(r.stderr, "--target supervised", "--with-gt")
    assert not (tmp_path / "run").exists()


def test_unknown_target_is_refused(tmp_path):
    r = cli("train", "--mode", "srgb", "--target", "noise2void", "--out", tmp_path / "run", expect=2)
    assert_one_line_error(r.stderr, "--target")


def test_srgb_noise2noise_target_is_the_clean_crop_under_an_independent_draw():
    from n2n_raw.training.batches import Batches, Dist
    cfg = TrainConfig(mode="srgb", target="noise2noise", patch_size=64, batch_size=4, default_data_size=4,
                      device="cpu").resolved()
    src = load_source(cfg)
    batches = Batches(cfg, src, torch.device("cpu"), Dist(), None)
    noisy, target, _ = batches(1)
    clean = make_batch(src, 1, 4, cfg.seed, None)
    n_in, n_t = (noisy - clean).flatten().double(), (target - clean).flatten().double()
    assert abs(float(n_t.std()) * 255 / 25 - 1) < 0.02  # gauss25 (49,152 values: the std's error ~0.3 %)
    assert abs(float(torch.corrcoef(torch.stack([n_in, n_t]))[0, 1])) < 0.02  # independent of the input's
