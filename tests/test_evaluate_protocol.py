"""The sRGB validation protocol (neighbor2neighbor.md §6): padding, the numpy noise stream, repeats, report."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from n2n_raw.errors import InputError
from n2n_raw.evaluation.protocols import add_valid_noise, forward_protocol, evaluate_srgb, pad_square_reflect, paper_repeat


class Identity(nn.Module):
    def forward(self, x):
        return x


class Recorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.shapes = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return x


@pytest.fixture(autouse=True)
def _keep_numpy_global_state():
    """These tests reseed numpy's legacy global generator: put its state back afterwards."""
    state = np.random.get_state()
    yield
    np.random.set_state(state)


# ----------------------------------------------------------------------------------------------- padding

@pytest.mark.parametrize("h,w,side", [(37, 53, 64), (64, 64, 64), (65, 10, 96), (321, 481, 512), (481, 321, 512),
                                      (32, 31, 32), (12, 33, 64)])
def test_pad_square_reflect_side_and_content(h, w, side):
    assert side == math.ceil(max(h, w) / 32) * 32
    x = np.random.default_rng(h * w).random((h, w, 3)).astype(np.float32)
    p = pad_square_reflect(x)
    assert p.shape == (side, side, 3) and p.dtype == x.dtype
    assert np.array_equal(p[:h, :w], x)  # the original region is preserved (bottom/right padding)
    # reflection without repeating the edge: row h + k is row h − 2 − k (while it fits)
    for k in range(min(side - h, h - 1)):
        assert np.array_equal(p[h + k, :w], x[h - 2 - k])
    for k in range(min(side - w, w - 1)):
        assert np.array_equal(p[:h, w + k], x[:, w - 2 - k])


def test_padding_round_trip_through_the_protocol_forward():
    rng = np.random.default_rng(3)
    noisy = (rng.random((37, 53, 3)) * 1.4 - 0.2).astype(np.float32)  # unclipped noisy input
    rec = Recorder()
    pred8 = forward_protocol(rec, noisy, "cpu")
    assert rec.shapes == [(1, 3, 64, 64)]  # one square pass, never tiled
    assert pred8.dtype == np.uint8 and pred8.shape == (37, 53, 3)
    want = np.clip(np.floor(np.clip(noisy, 0, 1) * np.float32(255) + np.float32(0.5)), 0, 255).astype(np.uint8)
    assert np.array_equal(pred8, want)


def test_protocol_rounds_half_up_and_clamps():
    noisy = np.full((16, 16, 3), 0.5, np.float32)
    noisy[0, 0] = [-0.3, 1.7, 2.5 / 255]
    noisy[0, 1] = [0.5 / 255, 254.5 / 255, 1.0]
    pred8 = forward_protocol(Identity(), noisy, "cpu")
    assert pred8[1, 1, 0] == 128  # 127.5 → 128
    assert pred8[0, 0].tolist() == [0, 255, 3]
    assert pred8[0, 1].tolist() == [1, 255, 255]


# ----------------------------------------------------------------------------------------------- noise stream

def _x(shape=(7, 9, 3), seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def test_gauss25_is_numpy_global_normal():
    x = _x()
    np.random.seed(101)
    y1 = add_valid_noise(x, "gauss25")
    y2 = add_valid_noise(x, "gauss25")
    np.random.seed(101)
    e1 = np.array(x + np.random.normal(size=x.shape) * (25.0 / 255.0), dtype=np.float32)
    e2 = np.array(x + np.random.normal(size=x.shape) * (25.0 / 255.0), dtype=np.float32)
    assert y1.dtype == np.float32 and y1.shape == x.shape
    assert np.array_equal(y1, e1) and np.array_equal(y2, e2)
    assert not np.array_equal(y1, y2)


def test_gauss5_50_draws_one_uniform_sigma_first():
    x = _x(seed=1)
    np.random.seed(101)
    y = add_valid_noise(x, "gauss5_50")
    after = np.random.random()
    np.random.seed(101)
    std = np.random.uniform(5.0 / 255.0, 50.0 / 255.0, size=(1, 1, 1))
    want = np.array(x + np.random.normal(size=x.shape) * std, dtype=np.float32)
    assert np.array_equal(y, want)
    assert after == np.random.random()  # exactly these draws were consumed, nothing more
    # the single σ holds for the whole image
    assert np.std(y.astype(np.float64) - x) == pytest.approx(std.item(), rel=0.3)


def test_poisson30_is_numpy_global_poisson():
    x = _x(seed=2)
    np.random.seed(101)
    y = add_valid_noise(x, "poisson30")
    np.random.seed(101)
    want = np.array(np.random.poisson(30.0 * x) / 30.0, dtype=np.float32)
    assert np.array_equal(y, want)


def test_poisson5_50_draws_one_uniform_lambda_first():
    x = _x(seed=3)
    np.random.seed(101)
    y = add_valid_noise(x, "poisson5_50")
    after = np.random.random()
    np.random.seed(101)
    lam = np.random.uniform(5.0, 50.0, size=(1, 1, 1))
    want = np.array(np.random.poisson(lam * x) / lam, dtype=np.float32)
    assert np.array_equal(y, want)
    assert after == np.random.random()


def test_validation_noise_is_not_clipped_and_unknown_is_refused():
    np.random.seed(101)
    y = add_valid_noise(np.zeros((16, 16, 3), np.float32), "gauss25")
    assert (y < 0).any()
    with pytest.raises(InputError, match="unknown noise"):
        add_valid_noise(_x(), "gauss15")


# ----------------------------------------------------------------------------------------------- repeats

@pytest.mark.parametrize("name,want", [
    ("Kodak", 10), ("kodak", 10), ("/data/validation/KODAK", 10), ("BSD300", 3), ("bsd300", 3),
    ("../shared/data/validation/BSD300", 3), ("Set14", 20), ("SET14", 20), ("set14", 20),
    ("other", 1), ("Kodak24", 1), ("Set5", 1), ("", 1),
])
def test_paper_repeat(name, want):
    assert paper_repeat(name) == want


def test_paper_repeat_accepts_path_objects(tmp_path):
    assert paper_repeat(tmp_path / "Set14") == 20


# ----------------------------------------------------------------------------------------------- evaluate_srgb

SIZES_A = {"b.png": (24, 30), "a.png": (33, 17), "c.png": (16, 16)}
SIZES_B = {"z.png": (20, 25), "y.png": (13, 40)}


def _write_folder(root, name, sizes, seed):
    folder = root / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for fname, (h, w) in sizes.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / fname)
    return folder


def _expected_rows(folders_and_repeats, noise_scale=25.0 / 255.0, seed=101):
    """The protocol for an identity model, written independently: one stream, folders in order, sorted files."""
    np.random.seed(seed)
    rows = []
    for folder, rep in folders_and_repeats:
        files = sorted(p for p in folder.iterdir() if p.suffix == ".png")
        for r in range(rep):
            for f in files:
                clean = np.asarray(Image.open(f).convert("RGB"), dtype=np.uint8)
                noisy = np.array(clean.astype(np.float32) / 255.0 + np.random.normal(size=clean.shape) * noise_scale,
                                 dtype=np.float32)
                q = np.floor(np.clip(noisy, 0, 1) * np.float32(255) + np.float32(0.5)).astype(np.float64)
                mse = np.mean((q - clean.astype(np.float64)) ** 2)
                rows.append((folder.name, f.name, r, 10 * math.log10(255.0 ** 2 / mse)))
    return rows


def test_evaluate_srgb_identity_model(tmp_path):
    a = _write_folder(tmp_path, "alpha", SIZES_A, 1)
    b = _write_folder(tmp_path, "beta", SIZES_B, 2)
    rep = evaluate_srgb(Identity(), [a, b], noise="gauss25", repeat=2)
    for key in ("psnr", "ssim", "count", "noisy_psnr", "per_image", "sets"):
        assert key in rep
    assert rep["count"] == 2 * 3 + 2 * 2 == len(rep["per_image"])
    assert [s["name"] for s in rep["sets"]] == ["alpha", "beta"]
    assert [s["count"] for s in rep["sets"]] == [6, 4]
    assert [s["repeat"] for s in rep["sets"]] == [2, 2]
    # identity model: prediction == clipped, quantised noisy input
    for row in rep["per_image"]:
        assert row["psnr"] == pytest.approx(row["noisy_psnr"], abs=1e-9)
        assert 0 < row["ssim"] < 1
    assert rep["psnr"] == pytest.approx(rep["noisy_psnr"], abs=1e-9)
    # rows in protocol order (folder, repeat, sorted name) with the independently computed PSNR
    want = _expected_rows([(a, 2), (b, 2)])
    got = [(r["set"], r["image"], r["repeat"], r["psnr"]) for r in rep["per_image"]]
    assert [g[:3] for g in got] == [w[:3] for w in want]
    np.testing.assert_allclose([g[3] for g in got], [w[3] for w in want], rtol=0, atol=1e-9)
    # summaries are plain means over evaluations
    assert rep["psnr"] == pytest.approx(np.mean([w[3] for w in want]), abs=1e-9)
    assert rep["sets"][1]["psnr"] == pytest.approx(np.mean([w[3] for w in want[6:]]), abs=1e-9)
    assert rep["ssim"] == pytest.approx(np.mean([r["ssim"] for r in rep["per_image"]]), abs=1e-12)


def test_evaluate_srgb_one_stream_folder_order_matters(tmp_path):
    a = _write_folder(tmp_path, "alpha", SIZES_A, 1)
    b = _write_folder(tmp_path, "beta", SIZES_B, 2)
    ab = evaluate_srgb(Identity(), [a, b], repeat=1)
    ba = evaluate_srgb(Identity(), [b, a], repeat=1)
    only_a = evaluate_srgb(Identity(), [a], repeat=1)
    only_b = evaluate_srgb(Identity(), [b], repeat=1)
    # the first folder sees the freshly seeded stream either way
    assert ab["sets"][0]["psnr"] == only_a["sets"][0]["psnr"]
    assert ba["sets"][0]["psnr"] == only_b["sets"][0]["psnr"]
    # the second folder's noise depends on the first having run
    assert ab["sets"][1]["psnr"] != only_b["sets"][0]["psnr"]
    assert ba["sets"][1]["psnr"] != only_a["sets"][0]["psnr"]
    # and equals the independent single-stream computation
    want = _expected_rows([(a, 1), (b, 1)])
    assert ab["sets"][1]["psnr"] == pytest.approx(np.mean([w[3] for w in want[3:]]), abs=1e-9)
    # same call twice: same numbers (seeded once per pass)
    assert evaluate_srgb(Identity(), [a, b], repeat=1)["psnr"] == ab["psnr"]


def test_evaluate_srgb_paper_repeats_and_seed(tmp_path):
    kodak = _write_folder(tmp_path, "Kodak", {"k1.png": (16, 16)}, 3)
    other = _write_folder(tmp_path, "mine", {"m1.png": (16, 16), "m2.png": (16, 20)}, 4)
    rep = evaluate_srgb(Identity(), [kodak, other])
    assert [s["repeat"] for s in rep["sets"]] == [10, 1]
    assert rep["count"] == 10 + 2
    assert sorted({r["repeat"] for r in rep["per_image"] if r["set"] == "Kodak"}) == list(range(10))
    other_seed = evaluate_srgb(Identity(), [kodak, other], seed=102)
    assert other_seed["psnr"] != rep["psnr"]


def test_evaluate_srgb_reads_bsd300_test_subfolder(tmp_path):
    bsd = tmp_path / "BSD300"
    _write_folder(bsd, "test", {"t1.png": (16, 18)}, 5)
    rep = evaluate_srgb(Identity(), [bsd], repeat=1)
    assert rep["count"] == 1 and rep["sets"][0]["name"] == "BSD300"


def test_evaluate_srgb_real_denoiser_beats_noisy_input(tmp_path):
    """A model that returns the clean image scores higher than the noisy input (the metrics are wired right)."""
    folder = _write_folder(tmp_path, "flat", {}, 6)
    Image.fromarray(np.full((24, 24, 3), 100, np.uint8)).save(folder / "flat.png")

    class Flat(nn.Module):
        def forward(self, x):
            return torch.full_like(x, 100 / 255)

    rep = evaluate_srgb(Flat(), [folder], repeat=2)
    assert rep["psnr"] == math.inf or rep["psnr"] > 60
    assert rep["noisy_psnr"] < 25
    assert rep["ssim"] == pytest.approx(1.0)


def test_validation_cfa_is_not_the_training_override(raw_world):
    """train --cfa X changes the training data's CFA only; the SIDD validation blocks keep the 40-scene
    table's CFAs unless --val-cfa says otherwise."""
    from n2n_raw.config import TrainConfig
    from n2n_raw.evaluation.protocols import evaluate_raw
    from n2n_raw.io import sidd
    from n2n_raw.evaluation.validation import make_validator
    from n2n_raw.method.unet import UNet
    torch.manual_seed(0)
    model = UNet(4, 4).eval()
    noisy, gt = sidd.read_blocks(raw_world["val_noisy"]), sidd.read_blocks(raw_world["val_gt"])
    table = sidd.block_cfas(noisy.shape[0])
    assert len(set(table)) > 1 or table[0] != "BGGR"  # the override below really changes something
    score = lambda cfas: evaluate_raw(model, noisy, gt, cfas, "rggb", 32, "cpu", "fp32")["psnr"]  # noqa: E731
    base = dict(mode="raw", val_noisy=str(raw_world["val_noisy"]), val_gt=str(raw_world["val_gt"]), device="cpu")
    v = make_validator(TrainConfig(**base, cfa="BGGR").resolved(), torch.device("cpu"))
    assert v(model)[0] == score(table)
    v = make_validator(TrainConfig(**base, cfa="BGGR", val_cfa="BGGR").resolved(), torch.device("cpu"))
    assert v(model)[0] == score(["BGGR"] * noisy.shape[0]) != score(table)
    with pytest.raises(InputError, match="--val-cfa"):
        TrainConfig(**base, val_cfa="RGBX").resolved()
