"""The synthetic SIDD world (n2n_raw.sim.sidd_world) and `prepare sidd` on it (n2n_raw.jobs.prepare.prepare_sidd)."""
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from n2n_raw.errors import InputError
from n2n_raw.io import sidd
from n2n_raw.io.store import Store
from n2n_raw.jobs.prepare import prepare_sidd
from n2n_raw.method.noise import add_raw_noise, raw_noise_params
from n2n_raw.sim import sidd_world as ss

ISOS = (100, 200, 400, 800, 1600, 3200, 6400, 10000)


def green_sites(cfa):
    return {divmod(k, 2) for k, c in enumerate(cfa) if c == "G"}


def site_means(m):
    """Mean of each 2×2 site over the last two axes of ``m``."""
    return {(dy, dx): float(m[..., dy::2, dx::2].mean()) for dy in (0, 1) for dx in (0, 1)}


def assert_green_phase(m, cfa):
    means = site_means(m)
    g = green_sites(cfa)
    assert min(means[k] for k in g) > max(v for k, v in means.items() if k not in g), (cfa, means)


# ------------------------------------------------------------------------------------------------ model

def test_noise_params_monotone_and_plausible():
    ab = [raw_noise_params(i) for i in ISOS]
    assert all(a1 < a2 and b1 < b2 for (a1, b1), (a2, b2) in zip(ab, ab[1:]))
    a, b = raw_noise_params(100)
    assert 1e-4 < a < 1e-3 and 1e-6 < b < 1e-5
    # Noisy PSNR at a typical raw level spans roughly 23..44 dB from ISO 100 to 10000 (at raw level 0.1:
    # about 43.6 and 23.4 dB, computed from the documented parameters).
    psnr = [10 * np.log10(1 / (a * 0.1 + b)) for a, b in ab]
    assert 42 < psnr[0] < 45 and 22 < psnr[-1] < 25
    with pytest.raises(ValueError):
        raw_noise_params(0)


@pytest.mark.parametrize("x,iso", [(0.05, 100), (0.2, 800), (0.1, 3200), (0.3, 10000)])
def test_noise_variance_matches_model(x, iso):
    a, b = raw_noise_params(iso)
    clean = np.full((401, 399), x, np.float32)
    noisy = add_raw_noise(np.random.default_rng(iso), clean, a, b)
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    d = noisy.astype(np.float64) - clean
    assert abs(d.mean()) < 4 * np.sqrt((a * x + b) / d.size)
    assert d.var() == pytest.approx(a * x + b, rel=0.03)


def test_noise_is_clipped_like_sidd():
    clean = np.array([[0.0, 0.001, 0.999, 1.0]] * 500, np.float32)
    noisy = add_raw_noise(np.random.default_rng(0), clean, *raw_noise_params(10000))
    assert noisy.min() == 0.0 and noisy.max() == 1.0
    assert (noisy[:, 0] == 0).mean() > 0.3  # about half of the black pixels were pushed below 0


@pytest.mark.parametrize("cfa", sidd.CFAS)
def test_clean_mosaic_levels_and_phase(cfa):
    m = ss.clean_mosaic(np.random.default_rng(5), 131, 193, cfa)  # odd sizes are fine for the generator
    assert m.dtype == np.float32 and m.shape == (131, 193)
    assert m.min() >= 0 and m.max() <= 1
    assert 0.02 < m.mean() < 0.35  # raw-like: dark, linear
    assert_green_phase(m, cfa)
    # On a grey scene every green site is brighter than every R and B site (sensor gains).
    grey = np.repeat(np.random.default_rng(1).random((9, 7, 1), dtype=np.float32), 3, axis=2)
    g = ss.clean_mosaic(np.random.default_rng(2), 9, 7, cfa, rgb=grey)
    gmask = np.zeros((9, 7), bool)
    for dy, dx in green_sites(cfa):
        gmask[dy::2, dx::2] = True
    rb = ss.mosaic(np.repeat(grey[..., :1], 3, axis=2), cfa)  # same scene value at every site
    ratio = g / np.maximum(ss.srgb_to_linear(rb), 1e-6)
    assert ratio[gmask].min() > ratio[~gmask].max()


def test_mosaic_samples_the_right_channel():
    rgb = np.zeros((4, 6, 3), np.float32)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 1, 2, 3
    m = ss.mosaic(rgb, "GRBG")
    assert m[0, 0] == 2 and m[0, 1] == 1 and m[1, 0] == 3 and m[1, 1] == 2
    assert np.array_equal(m[2:4, 2:4], m[0:2, 0:2])


# ------------------------------------------------------------------------------------------------ world

N_IMAGES, BLOCKS, BS = 10, 4, 48


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    return ss.make_sidd_world(out, frame_size=(64, 96), n_images=N_IMAGES, blocks_per_image=BLOCKS,
                              block_size=BS, seed=3)


def test_world_layout(world):
    scenes = world["scenes"]
    assert len(scenes) == 5
    phones = [sidd.parse_scene_name(s)["phone"] for s in scenes]
    assert sorted(phones) == sorted(ss.PHONES)
    held_out = {s[:4] for s in sidd.BLOCK_SCENES}
    sets = sidd.find_frames(world["medium"])
    assert len(sets) == 10
    sources = []
    for fs in sets:
        info = sidd.parse_scene_name(fs.scene)
        assert fs.scene[:4] not in held_out
        assert fs.noisy.name == f"{fs.scene[:4]}_NOISY_RAW_{fs.index}.MAT" and fs.gt and fs.meta
        noisy, gt = sidd.read_frame(fs.noisy), sidd.read_frame(fs.gt)
        assert noisy.shape == gt.shape == ((96, 64) if info["phone"] == "IP" else (64, 96))
        meta = sidd.read_metadata(fs.meta)
        assert meta.cfa == sidd.PHONE_CFA[info["phone"]] and meta.phone == info["phone"]
        assert meta.iso == info["iso"] and (meta.height, meta.width) == noisy.shape
        sources.append(meta.cfa_source)
        assert_green_phase(gt, meta.cfa)
        # Noise around the GT has about the model's variance (clipping aside).
        a, b = raw_noise_params(info["iso"])
        resid = (noisy - gt)[(gt > 0.02) & (gt < 0.9)]
        expected = float(np.mean(a * gt[(gt > 0.02) & (gt < 0.9)] + b))
        assert np.var(resid) == pytest.approx(expected, rel=0.2)
    assert "SubIFDs" in sources and sources.count("UnknownTags") >= 8
    rows = world["nlf"].read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == scenes and all(len(r.split(",")) == 7 for r in rows)


def test_world_blocks_keep_cfa_phase(world):
    vn, vg = sidd.read_blocks(world["val_noisy"]), sidd.read_blocks(world["val_gt"])
    bn = sidd.read_blocks(world["bench_noisy"])
    assert vn.shape == vg.shape == bn.shape == (N_IMAGES, BLOCKS, BS, BS)
    pos = sidd.read_block_positions(world["positions"])
    assert pos.shape == (BLOCKS, 4) and np.all(pos[:, :2] % 2 == 1) and np.all(pos[:, 2:] == BS)
    cfas = sidd.block_cfas(N_IMAGES)
    for cfa in set(cfas):
        # An odd cut offset would move the greens to the other diagonal for every image of the phone.
        idx = [i for i, c in enumerate(cfas) if c == cfa]
        assert_green_phase(vg[idx], cfa)
        assert_green_phase(vn[idx], cfa)
        assert_green_phase(bn[idx], cfa)
    tested = 0
    for i in range(N_IMAGES):
        a, b = raw_noise_params(sidd.parse_scene_name(sidd.BLOCK_SCENES[i])["iso"])
        sd = np.sqrt(a * vg[i] + b)
        keep = (vg[i] > 4 * sd) & (vg[i] < 1 - 4 * sd)  # 4σ from 0 and 1: the clip does not shrink the variance
        if keep.sum() < 200:  # a dark image of this small world: too few unclipped pixels to test
            continue
        tested += 1
        assert np.var((vn[i] - vg[i])[keep]) == pytest.approx(float(np.mean(a * vg[i][keep] + b)), rel=0.2)
    assert tested >= 3  # of this seed's 10 images, 4 are bright enough
    assert scipy.io.whosmat(world["val_noisy"]) == [("ValidationNoisyBlocksRaw", (N_IMAGES, BLOCKS, BS, BS),
                                                     "single")]


def test_world_is_reproducible_and_refuses_overwrite(world, tmp_path):
    with pytest.raises(InputError):
        ss.make_sidd_world(world["root"], frame_size=(64, 96), n_images=N_IMAGES, blocks_per_image=BLOCKS,
                           block_size=BS, seed=3)
    again = ss.make_sidd_world(tmp_path, frame_size=(64, 96), n_images=N_IMAGES, blocks_per_image=BLOCKS,
                               block_size=BS, seed=3)
    assert again["scenes"] == world["scenes"]
    assert np.array_equal(sidd.read_blocks(again["val_noisy"]), sidd.read_blocks(world["val_noisy"]))
    with pytest.raises(ValueError):
        ss.make_sidd_world(tmp_path / "odd", frame_size=(63, 96))


# ------------------------------------------------------------------------------------------------ prepare

@pytest.mark.parametrize("workers", [1, 3])
def test_prepare_sidd_store_matches_files(world, tmp_path, workers):
    out = tmp_path / "sidd.h5"
    calls = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the CFA phase check (where present) must not complain
        counts = prepare_sidd(world["medium"], out, with_gt=True, workers=workers,
                                   progress=lambda d, t: calls.append((d, t)))
    assert counts["frames"] == 10 and counts["skipped"] == 0 and counts["seconds"] >= 0
    assert calls == [(k, 10) for k in range(1, 11)]
    sets = sidd.find_frames(world["medium"])
    store = Store(out)
    try:
        assert store.mode == "raw" and len(store) == 10 and store.has_gt
        for i, fs in enumerate(sets):
            attrs = store.attrs(i)
            info = sidd.parse_scene_name(fs.scene)
            assert np.array_equal(store.read(i), sidd.read_frame(fs.noisy))
            assert np.array_equal(store.read_gt(i), sidd.read_frame(fs.gt))
            assert attrs["cfa"] == sidd.PHONE_CFA[info["phone"]]
            assert attrs["phone"] == info["phone"] and attrs["iso"] == info["iso"]
            assert attrs["scene"] == fs.scene
            assert attrs["source"] == f"Data/{fs.scene}/{fs.noisy.name}"
        assert store.sources == [store.attrs(i)["source"] for i in range(10)]
    finally:
        store.close()
    with pytest.raises(InputError, match="already exists"):
        prepare_sidd(world["medium"], out)


def test_prepare_sidd_skips_missing_gt_and_falls_back_to_scene_phone(world, tmp_path):
    root = tmp_path / "mini"
    sets = sidd.find_frames(world["medium"])
    s6 = next(s for s in sets if "_S6_" in s.scene)
    shutil.copytree(s6.noisy.parent, root / "Data" / s6.scene)
    folder = root / "Data" / s6.scene
    next(folder.glob("*_GT_RAW_011.MAT")).unlink()
    for m in folder.glob("*_METADATA_RAW_*.MAT"):
        m.unlink()  # no metadata: the CFA comes from the phone in the folder name
    counts = prepare_sidd(root, tmp_path / "gt.h5", with_gt=True, workers=2)
    assert (counts["frames"], counts["skipped"]) == (1, 1)
    counts = prepare_sidd(root, tmp_path / "all.h5")
    assert (counts["frames"], counts["skipped"]) == (2, 0)
    store = Store(tmp_path / "all.h5")
    try:
        assert not store.has_gt
        assert [store.attrs(i)["cfa"] for i in range(2)] == ["GRBG", "GRBG"]
        assert store.attrs(0)["cfa_source"] == "phone table" and store.attrs(0)["iso"] > 0
    finally:
        store.close()


def test_prepare_sidd_bad_frame_leaves_no_store(world, tmp_path):
    root = tmp_path / "broken"
    sets = sidd.find_frames(world["medium"])
    shutil.copytree(sets[0].noisy.parent, root / sets[0].scene)  # no Data folder: scenes under the root
    bad = root / sets[0].scene / sets[0].noisy.name
    bad.write_bytes(bad.read_bytes()[:1500])
    out = tmp_path / "out.h5"
    with pytest.raises(InputError) as info:
        prepare_sidd(root, out, workers=2)
    assert str(info.value).startswith(str(bad))
    assert not out.exists() and list(tmp_path.glob(".out.h5*")) == []


def test_training_and_prepare_read_a_folder_alike(tmp_path):
    """One function (sidd.frame_cfa) tells a frame's CFA to both `prepare sidd` and `train --data FOLDER`:
    with a METADATA file removed, both fall back to the scene name's phone and agree frame by frame."""
    from n2n_raw.config import TrainConfig
    from n2n_raw.training.sources import load_source
    w = ss.make_sidd_world(tmp_path / "w", frame_size=(132, 132), n_images=2, blocks_per_image=1, block_size=32,
                           seed=5)
    data = tmp_path / "data"
    shutil.copytree(w["data"], data)
    gone = sorted(data.glob("*/*_METADATA_RAW_010.MAT"))[1]
    gone.unlink()
    prepare_sidd(data, tmp_path / "s.h5")
    st = Store(tmp_path / "s.h5")
    stored = {Path(st.attrs(i)["source"]).name: st.attrs(i)["cfa"] for i in range(len(st))}
    assert "phone table" in {st.attrs(i)["cfa_source"] for i in range(len(st))}
    src = load_source(TrainConfig(mode="raw", data=str(data), patch_size=128, device="cpu").resolved())
    trained = {Path(it.name).name: it.cfa for it in src.items}
    assert trained == stored and len(trained) == 10  # 5 scenes × 2 captures
