"""`n2n-raw fit`: train on the user's own raw photos, then denoise them (n2n_raw/jobs/fit.py and the CLI)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from realdata import real_file
from conftest import assert_one_line_error, cli, run_cli_subprocess

pytest.importorskip("pidng")

FAST = ["--steps", "3", "--batch-size", "2", "--device", "cpu"]


def noisy_dng(path: Path, cfa: str = "RGGB", h: int = 160, w: int = 192, seed: int = 0) -> Path:
    """A small 12-bit DNG: a smooth scene (black 64) with Poisson-Gaussian noise, written with pidng."""
    from n2n_raw.io import scratch_dng
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    scene = 64 + 800 * (0.3 + 0.5 * np.sin(yy / 17.0) ** 2 * np.cos(xx / 23.0) ** 2)
    raw = rng.poisson(scene / 4) * 4 + rng.normal(0, 6, (h, w))
    path.parent.mkdir(parents=True, exist_ok=True)
    return scratch_dng.write_dng(path, np.clip(np.rint(raw), 0, 4095).astype(np.uint16), cfa, 12, black_level=64)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("photos")
    noisy_dng(d / "a.dng", "RGGB", seed=1)
    noisy_dng(d / "sub" / "b.DNG", "GRBG", seed=2)  # found recursively, any case
    return d


@pytest.fixture(scope="module")
def fitted(photos, tmp_path_factory) -> Path:
    """One fit run on the two photos (folder argument), 3 steps."""
    run = tmp_path_factory.mktemp("fit") / "run"
    r = cli("fit", photos, "--out", run, *FAST)
    assert "trained 3 steps" in r.stdout and "denoised 2 photo(s)" in r.stdout, r.stdout
    return run


def test_fit_keeps_the_run_folder_and_writes_the_outputs(fitted, photos):
    from n2n_raw.checkpoint import list_checkpoints
    from n2n_raw.io import camera_raw
    cfg = json.loads((fitted / "config.json").read_text())
    assert cfg["mode"] == "raw" and cfg["steps"] == 3 and cfg["val_every"] == 0
    assert cfg["patch_size"] == 128 and cfg["lr"] == 3e-4  # fit's defaults, not train's
    assert cfg["start_from"] == "pretrained" and cfg["target"] == "r2r-lin"
    assert sorted(Path(p).name for p in cfg["photos"]) == ["a.dng", "b.DNG"]
    assert (fitted / "metrics.csv").read_text().count("\n") == 4  # header + one row per step (3 steps)
    assert list_checkpoints(fitted)
    for stem, cfa in (("a", "RGGB"), ("b", "GRBG")):
        out = camera_raw.read_raw(fitted / "denoised" / f"{stem}.dng")
        src = camera_raw.read_raw(next(photos.rglob(f"{stem}.*")))
        assert out.cfa == cfa and out.mosaic.shape == src.mosaic.shape
        assert out.black_level == tuple(16 * v for v in src.black_level)  # 12-bit levels in 16-bit samples
        assert (fitted / "denoised" / f"{stem}.png").stat().st_size > 0
    # the run is a normal run: `denoise --checkpoint RUN` and `info RUN` use it
    r = cli("denoise", "--checkpoint", fitted, photos / "a.dng", "--out", fitted.parent / "again", "--device", "cpu")
    assert (fitted.parent / "again" / "a.dng").is_file(), r.stdout
    assert "2 photo(s)" in cli("info", fitted).stdout
    r = cli("train", "--out", fitted, "--resume", "--device", "cpu")  # reads the photos its config lists
    assert "3 steps" in r.stdout


def test_fit_refuses_to_overwrite_without_force(fitted, photos, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in fitted.rglob("*") if p.is_file()}
    r = cli("fit", photos, "--out", fitted, *FAST, expect=2)
    assert_one_line_error(r.stderr, fitted)
    # outputs in another folder that already exist: refused before any training (no run folder made)
    den = tmp_path / "den"
    den.mkdir()
    (den / "b.png").write_text("mine")
    r = cli("fit", photos, "--out", tmp_path / "run", "--denoised", den, *FAST, expect=2)
    assert_one_line_error(r.stderr, den / "b.png", "--force")
    assert not (tmp_path / "run").exists() and (den / "b.png").read_text() == "mine"
    assert {p: p.stat().st_mtime_ns for p in fitted.rglob("*") if p.is_file()} == before


def test_fit_force_starts_over(photos, tmp_path):
    run, den = tmp_path / "run", tmp_path / "den"
    den.mkdir()
    (den / "a.dng").write_text("old")
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    cli("fit", photos / "a.dng", "--out", run, "--denoised", den, "--steps", "2", "--batch-size", "1",
        "--device", "cpu", "--force")
    assert (den / "a.dng").read_bytes()[:2] in (b"II", b"MM")  # replaced by the denoised DNG
    assert (run / "notes.txt").read_text() == "mine"  # only what a run writes is removed


@pytest.mark.parametrize("case", ["missing", "not-raw", "empty-folder", "too-small", "same-name", "bad-patch",
                                  "not-a-raw-inside"])
def test_fit_bad_input_is_one_line_exit_2(case, photos, tmp_path):
    run = tmp_path / "run"
    if case == "missing":
        args, names = [tmp_path / "nope.dng"], [tmp_path / "nope.dng"]
    elif case == "not-raw":
        (tmp_path / "notes.txt").write_text("x")
        args, names = [tmp_path / "notes.txt"], [tmp_path / "notes.txt", "raw"]
    elif case == "empty-folder":
        (tmp_path / "empty").mkdir()
        args, names = [tmp_path / "empty"], [tmp_path / "empty"]
    elif case == "too-small":
        noisy_dng(tmp_path / "small.dng", h=100, w=120)
        args, names = [tmp_path / "small.dng"], ["100×120", "130×130"]
    elif case == "same-name":
        noisy_dng(tmp_path / "x" / "a.dng")
        args, names = [photos / "a.dng", tmp_path / "x" / "a.dng"], ["a.dng", "same name"]
    elif case == "bad-patch":
        args, names = [photos / "a.dng", "--patch-size", "100"], ["--patch-size"]
    else:
        (tmp_path / "fake.dng").write_bytes(b"not a dng at all" * 10)
        args, names = [photos / "a.dng", tmp_path / "fake.dng"], [tmp_path / "fake.dng"]
    r = cli("fit", *args, "--out", run, *FAST, expect=2)
    assert_one_line_error(r.stderr, *names)
    assert not run.exists()  # nothing written for a mistake


def test_fit_entry_point_exit_status(tmp_path):
    """Through the real entry point: exit status 2 and one line, for a missing photo."""
    p = run_cli_subprocess("fit", tmp_path / "nope.dng", "--out", tmp_path / "run", timeout=120)
    assert p.returncode == 2
    assert_one_line_error(p.stderr, tmp_path / "nope.dng")


def test_fit_on_a_real_camera_raw(tmp_path):
    """A real camera file that is not a DNG (Kodak DC50 .kdc, 768×512): trained on, denoised into a DNG."""
    src = real_file("kodak_dc50.kdc")
    from n2n_raw.jobs.fit import fit
    from n2n_raw.io import camera_raw
    res = fit([src], tmp_path / "run", steps=2, batch_size=1, patch_size=128, device="cpu", log=lambda s: None)
    (out_dng, out_png), = res["outputs"]
    assert out_dng.name == "kodak_dc50.dng" and out_png.name == "kodak_dc50.png"
    back, orig = camera_raw.read_raw(out_dng), camera_raw.read_raw(src)
    assert back.mosaic.shape == orig.mosaic.shape and back.cfa == orig.cfa
    assert np.isfinite(back.mosaic).all() and res["megapixels"] == pytest.approx(orig.mosaic.size / 2 ** 20)  # MP = 2^20 pixels


def test_find_photos_dedupes_and_keeps_order(photos):
    from n2n_raw.jobs.fit import find_photos
    got = find_photos([photos / "sub" / "b.DNG", photos, photos / "a.dng"])
    assert [f.name for f in got] == ["b.DNG", "a.dng"]


# ------------------------------------------------------------------------------ the pretrained start, r2r, ensemble

def _true_a() -> float:
    """noisy_dng's shot noise in normalised units: raw = 4·Poisson(scene/4), levels 64..4095."""
    return 4.0 / (4095 - 64)


def test_fit_starts_from_the_shipped_model_with_the_photos_profile(fitted):
    """The default run fine-tunes the shipped GatUNet; its profile is the photos' blind estimate (true a =
    4/4031 per normalised unit; b: the read noise's 6² DN² plus the shot noise of the 64-DN black offset,
    which noisy_dng draws too, 4·64 DN²)."""
    from n2n_raw.checkpoint import load_model
    from n2n_raw.method.gat_unet import GatUNet
    model, meta = load_model(fitted, which="last")
    assert isinstance(model, GatUNet) and meta["config"]["start_from"] == "pretrained"
    a, b = model.profile
    assert np.allclose(a, _true_a(), rtol=0.25), a
    assert np.allclose(b, (36.0 + 4 * 64) / 4031 ** 2, rtol=0.35), b


def test_fit_r2r_and_scratch(photos, tmp_path):
    from n2n_raw.checkpoint import load_model
    from n2n_raw.method.gat_unet import GatUNet
    r = cli("fit", photos / "a.dng", "--out", tmp_path / "r2r", "--target", "r2r", "--ensemble", "2", *FAST)
    assert "trained 3 steps" in r.stdout
    assert json.loads((tmp_path / "r2r" / "config.json").read_text())["target"] == "r2r"
    r = cli("fit", photos / "a.dng", "--out", tmp_path / "r2r-lin", "--target", "r2r-lin", "--ensemble", "1", *FAST)
    assert "trained 3 steps" in r.stdout
    assert json.loads((tmp_path / "r2r-lin" / "config.json").read_text())["target"] == "r2r-lin"
    cli("fit", photos / "a.dng", "--out", tmp_path / "scratch", "--start-from", "scratch", *FAST)
    model, meta = load_model(tmp_path / "scratch", which="last")
    assert not isinstance(model, GatUNet) and meta["config"]["start_from"] is None
    assert meta["config"]["target"] == "n2n" and meta["config"]["lr"] == 1e-3  # the paper's method, short-run LR


@pytest.mark.parametrize("args, names", [(["--target", "r2r", "--start-from", "scratch"], ["--target r2r"]),
                                         (["--target", "r2r-lin", "--start-from", "scratch"], ["--target r2r-lin"]),
                                         (["--ensemble", "3"], ["--ensemble"]),
                                         (["--start-from", "no/such/run"], ["no/such/run"])])
def test_fit_bad_start_target_or_ensemble_is_one_line_exit_2(args, names, photos, tmp_path):
    r = cli("fit", photos / "a.dng", "--out", tmp_path / "run", *FAST, *args, expect=2)
    assert_one_line_error(r.stderr, *names)
    assert not (tmp_path / "run").exists()


def test_denoise_without_checkpoint_uses_the_shipped_model(tmp_path):
    """`n2n-raw denoise PHOTO` with nothing else: the shipped model, given the photo's own profile, removes
    most of the noise of a photo it has never seen (measured against the noise-free scene)."""
    from n2n_raw.io import camera_raw
    src = noisy_dng(tmp_path / "p.dng", "GBRG", h=194, w=258, seed=5)
    yy, xx = np.mgrid[0:194, 0:258]
    scene = 800 * (0.3 + 0.5 * np.sin(yy / 17.0) ** 2 * np.cos(xx / 23.0) ** 2) / 4031
    r = cli("denoise", src, "--out", tmp_path / "out", "--device", "cpu", "--no-keep-tone")
    assert "raw-gat-unet" in r.stdout
    noisy = camera_raw.read_raw(src, clip=False).mosaic
    den = camera_raw.read_raw(tmp_path / "out" / "p.dng", clip=False).mosaic
    gain = 10 * np.log10(np.mean((noisy - scene) ** 2) / np.mean((den - scene) ** 2))
    assert gain > 6.0, gain
