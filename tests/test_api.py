"""The Python facade ``n2n_raw.Denoiser``: the README's example runs as written, and the object gives what
the pieces it bundles give when composed by hand."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, cli
from n2n_raw import Denoiser
from n2n_raw.checkpoint import load_model
from n2n_raw.errors import InputError
from n2n_raw.inference.tiling import denoise_mosaic



@pytest.fixture
def small_dng(tmp_path) -> Path:
    """A small 12-bit GRBG DNG (written through pidng, a writer n2n-raw does not own)."""
    from n2n_raw.io import scratch_dng
    raw = np.random.default_rng(2).integers(64, 4000, (96, 130)).astype(np.uint16)
    return scratch_dng.write_dng(tmp_path / "src" / "small.dng", raw, "GRBG", 12, black_level=64, white_level=4000)


def _readme_block() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs(raw_run, tmp_path, monkeypatch, small_dng):
    """The README's Denoiser block, executed in a folder holding runs/raw and IMG_0001.dng."""
    shutil.copytree(raw_run, tmp_path / "runs" / "raw")
    shutil.copy(small_dng, tmp_path / "IMG_0001.dng")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(_readme_block(), "README.md", "exec"), scope)
    y, d = scope["y"], scope["d"]
    assert y.dtype == np.float32 and y.ndim == 2 and np.isfinite(y).all()
    assert sorted(p.name for p in (tmp_path / "denoised").iterdir()) == ["IMG_0001.dng", "IMG_0001.png"]
    assert scope["y2"].shape == y.shape
    assert d.mode == "raw" and d.precision == "fp32"


def test_denoise_array_equals_the_pieces(raw_run):
    """Denoiser.denoise(mosaic, cfa) = denoise_mosaic with the checkpoint's own CFA mode, on an odd-ish size."""
    from n2n_raw.accel import place_model
    model, meta = load_model(raw_run, which="best")
    model = place_model(model, "cpu")  # channels-last, as every inference path places it (float sums differ)
    m = np.random.default_rng(3).random((70, 94), dtype=np.float32)
    d = Denoiser.load(raw_run, device="cpu", engine="torch")
    expected = denoise_mosaic(model, m, "GBRG", meta["cfa_mode"], device="cpu", precision="fp32")
    np.testing.assert_array_equal(d.denoise(m, cfa="gbrg"), expected)
    if Denoiser.load(raw_run, device="cpu").engine == "auto":  # ONNX Runtime installed: it agrees
        ort = Denoiser.load(raw_run, device="cpu", engine="onnxruntime")
        np.testing.assert_allclose(ort.denoise(m, cfa="gbrg"), expected, rtol=0, atol=1e-5)


def test_denoise_file_matches_the_cli(raw_run, tmp_path):
    m = np.random.default_rng(4).random((64, 96), dtype=np.float32)
    np.save(tmp_path / "m.npy", m)
    cli("denoise", "--checkpoint", raw_run, tmp_path / "m.npy", "--cfa", "BGGR", "--out", tmp_path / "o",
        "--device", "cpu")
    d = Denoiser.load(raw_run, device="cpu")
    # the same computation in another call: oneDNN may pick another kernel, so equal to float rounding
    # (seen: 1.7e-6 on values of order 1; 1e-5 is still below one 16-bit output step, 1.5e-5)
    np.testing.assert_allclose(np.load(tmp_path / "o" / "m.npy"), d.denoise(tmp_path / "m.npy", cfa="BGGR"),
                               rtol=1e-5, atol=1e-5)


def test_wrong_inputs_fail_at_the_door(raw_run, srgb_run):
    d = Denoiser.load(raw_run, device="cpu")
    with pytest.raises(InputError, match=r"shape \(8, 8, 3\); a raw checkpoint takes an \(H, W\) Bayer mosaic"):
        d.denoise(np.zeros((8, 8, 3), np.float32), cfa="RGGB")
    with pytest.raises(InputError, match="odd-sized mosaic 9×8"):
        d.denoise(np.zeros((9, 8), np.float32), cfa="RGGB")
    with pytest.raises(InputError, match="needs its CFA"):
        d.denoise(np.zeros((8, 8), np.float32))
    s = Denoiser.load(srgb_run, device="cpu")
    rgb8 = np.random.default_rng(5).integers(0, 256, (33, 47, 3), dtype=np.uint8)
    np.testing.assert_array_equal(s.denoise(rgb8), s.denoise(rgb8.astype(np.float32) / 255))
    with pytest.raises(InputError, match=r"shape \(8, 8\); an sRGB checkpoint takes \(H, W, 3\)"):
        s.denoise(np.zeros((8, 8), np.float32))


def test_restore_tone_takes_the_low_frequencies_of_the_source():
    """A per-plane level shift of the denoised mosaic is undone; the denoised detail (finer than σ) stays;
    a flat noisy source gives back its own per-plane means to within its low-passed noise."""
    from n2n_raw.inference.photos import restore_tone
    rng = np.random.default_rng(6)
    h, w = 130, 194
    clean = np.zeros((h, w), np.float32)
    clean[0::2, 0::2], clean[0::2, 1::2], clean[1::2, 0::2], clean[1::2, 1::2] = 0.02, 0.05, 0.05, 0.03
    noisy = clean + rng.normal(0, 0.01, (h, w)).astype(np.float32)
    shifted = clean.copy()
    shifted[0::2, 1::2] += 0.004  # a short run's G1 bias
    shifted[1::2, 0::2] -= 0.003
    out = restore_tone(shifted, noisy)
    for dy in (0, 1):
        for dx in (0, 1):  # plane means: the source's; the residual noise is σ_n/(2√π·3) ≈ 1e-3 per pixel
            assert abs(out[dy::2, dx::2].mean() - noisy[dy::2, dx::2].mean()) < 1e-4
            assert np.abs(out[dy::2, dx::2] - clean[dy::2, dx::2]).mean() < 2e-3
    detail = np.zeros((h, w), np.float32)
    detail[40:42, 60:62] = 0.5  # one bright 2×2 cell that the source lacks: finer than σ, so it stays
    kept = restore_tone(detail, np.zeros((h, w), np.float32))
    assert np.all(kept[40:42, 60:62] > 0.49) and abs(float(kept.sum())) < 1e-3  # its mean is the source's (0)
    with pytest.raises(ValueError, match="even sides"):
        restore_tone(np.zeros((5, 4)), np.zeros((5, 4)))
