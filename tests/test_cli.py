"""The `n2n-raw` command line end to end (spec/cli.md), on tiny data, CPU only.

sRGB: prepare srgb → train --data store → evaluate → denoise (PNG, .npy) → info.
raw: prepare sidd (synthetic SIDD world) → train --mode raw with validation blocks → evaluate --mode raw →
submit-sidd (.mat, .csv; re-read independently) → denoise a SIDD .MAT frame and a .npy mosaic.
Plus the overwrite rules (refuse without --force, --force overwrites, user files survive) and one smoke test of
the real entry point ``python cli.py``.
"""
from __future__ import annotations

import base64
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from conftest import assert_one_line_error, cli, run_cli_subprocess, write_png_image
from n2n_raw.checkpoint import list_checkpoints, load_model
from n2n_raw.io import sidd
from n2n_raw.io.store import Store

CPU = ("--device", "cpu")


def read_metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


# ================================================================================================ sRGB

def test_prepare_srgb_store(srgb_store):
    st = Store(srgb_store)
    try:
        assert st.mode == "srgb" and len(st) == 4  # tiny.png (40×40) skipped by --min-size 64
        sources = sorted(st.attrs(i)["source"] for i in range(len(st)))
        assert sources == ["a.png", "b.png", "d.png", "sub/c.png"]
        for i in range(len(st)):
            a = st.read(i)
            assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3 and 64 <= min(a.shape[:2])
    finally:
        st.close()


def test_prepare_refuses_existing_output_and_force_overwrites(srgb_folder, srgb_store, tmp_path):
    out = tmp_path / "o.h5"
    shutil.copy(srgb_store, out)
    before = out.read_bytes()
    r = cli("prepare", "srgb", srgb_folder, out, "--min-size", "64", "--max-size", "128", "--workers", "1",
            expect=2)
    assert_one_line_error(r.stderr, out)
    assert out.read_bytes() == before
    cli("prepare", "srgb", srgb_folder, out, "--min-size", "80", "--max-size", "128", "--workers", "1", "--force")
    st = Store(out)
    assert len(st) == 1 and st.attrs(0)["source"] == "b.png"  # the only one with both sides >= 80
    st.close()


def test_train_srgb_run_folder(srgb_run, srgb_store):
    cfg = json.loads((srgb_run / "config.json").read_text())
    assert cfg["mode"] == "srgb" and cfg["data"] == str(srgb_store) and cfg["steps"] == 4
    assert cfg["lr"] == pytest.approx(3e-4) and cfg["increase_ratio"] == 2.0  # the paper's sRGB defaults
    rows = read_metrics(srgb_run)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    assert [c.name for c in list_checkpoints(srgb_run)] == ["ckpt-00000002.json", "ckpt-00000004.json"]
    meta = json.loads((srgb_run / "ckpt-00000004.json").read_text())
    assert meta["mode"] == "srgb" and meta["step"] == 4 and meta["total_steps"] == 4
    summary = json.loads((srgb_run / "summary.json").read_text())
    assert summary["steps"] == 4 and np.isfinite(summary["loss"])


def test_evaluate_srgb_report(srgb_run, srgb_val_folder, tmp_path):
    other = tmp_path / "Other"
    write_png_image(other / "o1.png", 66, 98, 21)
    report = tmp_path / "r.json"
    r = cli("evaluate", "--checkpoint", srgb_run, "--mode", "srgb", "--data", srgb_val_folder, "--data", other,
            "--report", report, *CPU)
    assert "PSNR" in r.stdout and str(report) in r.stdout
    rep = json.loads(report.read_text())
    for key, typ in (("psnr", float), ("ssim", float), ("count", int), ("noisy_psnr", float), ("per_image", list)):
        assert isinstance(rep[key], typ), key
    assert rep["count"] == 3 and len(rep["per_image"]) == 3
    assert [s["name"] for s in rep["sets"]] == [srgb_val_folder.name, "Other"]
    assert [s["count"] for s in rep["sets"]] == [2, 1]
    assert all(np.isfinite(v) for v in (rep["psnr"], rep["ssim"], rep["noisy_psnr"]))
    assert 0 < rep["noisy_psnr"] < 30  # σ = 25 Gaussian noise: about 20 dB
    assert rep["psnr"] == pytest.approx(np.mean([p["psnr"] for p in rep["per_image"]]))

    # An existing report is refused; --force overwrites it with the same numbers (one seeded noise stream).
    r = cli("evaluate", "--checkpoint", srgb_run, "--mode", "srgb", "--data", srgb_val_folder, "--data", other,
            "--report", report, *CPU, expect=2)
    assert_one_line_error(r.stderr, report)
    cli("evaluate", "--checkpoint", srgb_run, "--mode", "srgb", "--data", srgb_val_folder, "--data", other,
        "--report", report, "--force", *CPU)
    again = json.loads(report.read_text())
    assert (again["psnr"], again["ssim"], again["count"]) == (rep["psnr"], rep["ssim"], rep["count"])


def test_denoise_srgb_png_and_npy(srgb_ckpt, tmp_path):
    png = write_png_image(tmp_path / "in" / "photo.png", 70, 50, 31)
    x = np.random.default_rng(0).uniform(-0.2, 1.2, (40, 72, 3)).astype(np.float32)  # unclipped is allowed
    npy = tmp_path / "in" / "arr.npy"
    np.save(npy, x)
    out = tmp_path / "out"
    r = cli("denoise", "--checkpoint", srgb_ckpt, png, npy, "--out", out, *CPU)
    assert "denoised 2 file(s)" in r.stdout
    y_png = np.asarray(Image.open(out / "photo.png"))
    assert y_png.shape == (70, 50, 3) and y_png.dtype == np.uint8
    y = np.load(out / "arr.npy")
    assert y.dtype == np.float32 and y.shape == x.shape and np.isfinite(y).all()

    # Outputs exist now: refused without --force (and left as they are), rewritten with it.
    before = (out / "arr.npy").read_bytes()
    r = cli("denoise", "--checkpoint", srgb_ckpt, npy, "--out", out, *CPU, expect=2)
    assert_one_line_error(r.stderr, out / "arr.npy")
    assert (out / "arr.npy").read_bytes() == before
    cli("denoise", "--checkpoint", srgb_ckpt, npy, png, "--out", out, "--force", *CPU)
    assert np.array_equal(np.load(out / "arr.npy"), y)  # deterministic on CPU
    assert sorted(p.name for p in out.iterdir()) == ["arr.npy", "photo.png"]  # no temporary files left


def test_denoise_srgb_tiled_matches_untiled(srgb_ckpt, tmp_path):
    x = np.random.default_rng(1).uniform(0, 1, (100, 200, 3)).astype(np.float32)  # > 128: tiled
    np.save(tmp_path / "big.npy", x)
    r = cli("denoise", "--checkpoint", srgb_ckpt, tmp_path / "big.npy", "--out", tmp_path / "whole", *CPU)
    assert "big.npy: untiled (1 pass, est. peak" in r.stdout  # --tile auto: memory is ample
    r = cli("denoise", "--checkpoint", srgb_ckpt, tmp_path / "big.npy", "--out", tmp_path / "tiles", "--tile", "128",
            *CPU)
    assert "big.npy: tiles 2×4 of 64 px core + 128 px context" in r.stdout
    a, b = np.load(tmp_path / "whole" / "big.npy"), np.load(tmp_path / "tiles" / "big.npy")
    assert a.shape == b.shape == x.shape
    assert np.abs(a - b).max() <= 1e-4


def test_info_run_dir_and_checkpoint(srgb_run, srgb_ckpt):
    r = cli("info", srgb_run)
    assert f"run {srgb_run}: mode srgb" in r.stdout
    assert "progress: step 4/4" in r.stdout
    assert "checkpoints: ckpt-00000002, ckpt-00000004" in r.stdout
    r = cli("info", srgb_ckpt)
    assert "srgb model, step 4/4" in r.stdout


def test_train_refuses_existing_run_and_force_keeps_user_files(srgb_run, srgb_store, tmp_path):
    from conftest import SRGB_TRAIN
    run = tmp_path / "run"
    shutil.copytree(srgb_run, run)
    (run / "notes.txt").write_text("mine")
    old = (run / "ckpt-00000004.safetensors").read_bytes()
    r = cli("train", "--mode", "srgb", "--data", srgb_store, "--out", run, *SRGB_TRAIN, expect=2)
    assert_one_line_error(r.stderr, run, "--resume", "--force")
    assert (run / "ckpt-00000004.safetensors").read_bytes() == old

    # --force starts over (a different seed gives different weights) but leaves the user's file alone.
    seed_at = SRGB_TRAIN.index("--seed") + 1
    args = [*SRGB_TRAIN[:seed_at], "7", *SRGB_TRAIN[seed_at + 1:]]
    cli("train", "--mode", "srgb", "--data", srgb_store, "--out", run, *args, "--force")
    assert (run / "notes.txt").read_text() == "mine"
    assert (run / "ckpt-00000004.safetensors").read_bytes() != old
    assert json.loads((run / "config.json").read_text())["seed"] == 7
    assert [int(r["step"]) for r in read_metrics(run)] == [1, 2, 3, 4]


# ================================================================================================ raw

def test_prepare_sidd_store(raw_store, raw_world):
    st = Store(raw_store)
    try:
        assert st.mode == "raw" and len(st) == 10  # 5 scenes × 2 noisy frames
        for i in range(len(st)):
            a = st.attrs(i)
            phone = sidd.parse_scene_name(a["scene"])["phone"]
            assert a["cfa"] == sidd.PHONE_CFA[phone]
            m = st.read(i)
            assert m.dtype == np.float32 and m.shape in ((160, 192), (192, 160))
            assert np.array_equal(m, sidd.read_frame(raw_world["medium"] / a["source"]))
    finally:
        st.close()


def test_train_raw_run_folder(raw_run):
    cfg = json.loads((raw_run / "config.json").read_text())
    assert cfg["mode"] == "raw" and cfg["cfa_mode"] == "rggb" and cfg["patch_size"] == 128
    assert cfg["lr"] == pytest.approx(1e-4) and cfg["increase_ratio"] == 1.0
    rows = read_metrics(raw_run)
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert all(np.isfinite(float(r["val_psnr"])) for r in rows)  # validated at each epoch end
    model, meta = load_model(raw_run)
    assert meta["mode"] == "raw" and model.in_ch == 4


def test_evaluate_raw_report(raw_run, raw_world, tmp_path):
    report = tmp_path / "raw.json"
    cli("evaluate", "--checkpoint", raw_run, "--mode", "raw", "--noisy", raw_world["val_noisy"], "--gt",
        raw_world["val_gt"], "--report", report, *CPU)
    rep = json.loads(report.read_text())
    assert rep["count"] == 4 and len(rep["per_image"]) == 4  # 2 images × 2 blocks
    assert [(p["image"], p["block"]) for p in rep["per_image"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for key in ("psnr", "ssim", "noisy_psnr"):
        assert isinstance(rep[key], float) and np.isfinite(rep[key])
    # best (the default) is the step with the highest validation PSNR in metrics.csv, and the report says so
    with open(raw_run / "metrics.csv", newline="") as f:
        best = max(csv.DictReader(f), key=lambda r: float(r["val_psnr"]))
    assert rep["checkpoint_chosen"].startswith(f"best of run (step {best['step']}, validation ")
    r = cli("evaluate", "--checkpoint", raw_run, "--which", "last", "--mode", "raw", "--noisy",
            raw_world["val_noisy"], "--gt", raw_world["val_gt"], *CPU)
    assert "checkpoint: last of run (step 2," in r.stdout


def _expected_submission(ckpt, blocks_path, unify=None) -> np.ndarray:
    from n2n_raw.inference.tiling import denoise_blocks
    model, meta = load_model(ckpt)
    blocks = sidd.read_blocks(blocks_path)
    pred = denoise_blocks(model, blocks, sidd.block_cfas(blocks.shape[0]), meta["cfa_mode"], 32, "cpu", "fp32",
                          unify=unify)
    return np.clip(pred, 0, 1).astype(np.float32)


def test_unify_option_picks_the_block_path_and_is_reported(raw_ckpt, raw_world, tmp_path):
    """--unify pad|flip on evaluate and submit-sidd: the outputs are those of denoise_blocks(unify=...), the
    choice is in the report / OptionalData, and the CLI's default is the library's."""
    import typer.main

    from n2n_raw.cli import app
    from n2n_raw.inference.tiling import BLOCK_UNIFY
    commands = typer.main.get_command(app).commands
    for name in ("evaluate", "submit-sidd"):
        assert {p.name: p for p in commands[name].params}["unify"].default == BLOCK_UNIFY == "flip"
    cfas = sidd.block_cfas(2)
    assert any(c != "RGGB" for c in cfas), cfas  # the test world has blocks that need unifying
    outs = {}
    for unify in ("pad", "flip"):
        mat = tmp_path / f"{unify}.mat"
        res = cli("submit-sidd", "--checkpoint", raw_ckpt, "--blocks", raw_world["bench_noisy"], "--out", mat,
                  "--unify", unify, *CPU)
        assert "verified" in res.stdout
        m = scipy.io.loadmat(mat)
        assert str(m["OptionalData"][0, 0]["BlockUnify"].item()) == unify
        got = np.stack([np.stack(list(row)) for row in m["DenoisedBlocksRaw"]])
        np.testing.assert_allclose(got, _expected_submission(raw_ckpt, raw_world["bench_noisy"], unify),
                                   atol=1e-5, rtol=0)
        outs[unify] = got
        report = tmp_path / f"{unify}.json"
        cli("evaluate", "--checkpoint", raw_ckpt, "--mode", "raw", "--noisy", raw_world["val_noisy"], "--gt",
            raw_world["val_gt"], "--unify", unify, "--report", report, *CPU)
        assert json.loads(report.read_text())["block_unify"] == unify
    rggb = [i for i, c in enumerate(cfas) if c == "RGGB"]
    other = [i for i, c in enumerate(cfas) if c != "RGGB"]
    assert np.array_equal(outs["pad"][rggb], outs["flip"][rggb])  # RGGB blocks take neither path
    assert not np.allclose(outs["pad"][other], outs["flip"][other], atol=1e-4)
    r = cli("submit-sidd", "--checkpoint", raw_ckpt, "--blocks", raw_world["bench_noisy"], "--out",
            tmp_path / "x.mat", "--unify", "mirror", *CPU, expect=2)
    assert_one_line_error(r.stderr, "--unify: unknown value 'mirror' (expected pad or flip)")
    assert not (tmp_path / "x.mat").exists()


def test_submit_sidd_mat_and_csv(raw_ckpt, raw_world, tmp_path):
    mat, csv_path = tmp_path / "SubmitRaw.mat", tmp_path / "SubmitRaw.csv"
    r = cli("submit-sidd", "--checkpoint", raw_ckpt, "--blocks", raw_world["bench_noisy"], "--out", mat,
            "--method-name", "N2N test", "--authors", "A. B.", *CPU)
    assert "verified" in r.stdout
    cli("submit-sidd", "--checkpoint", raw_ckpt, "--blocks", raw_world["bench_noisy"], "--out", csv_path,
        "--format", "csv", *CPU)
    expected = _expected_submission(raw_ckpt, raw_world["bench_noisy"])
    n, b, h, w = expected.shape
    assert (n, b, h, w) == (2, 2, 64, 64)

    # .mat, read with scipy: DenoisedBlocksRaw N×B cell of single h×w, TimeMPRaw, OptionalData.
    m = scipy.io.loadmat(mat)
    cell = m["DenoisedBlocksRaw"]
    assert cell.dtype == object and cell.shape == (n, b)
    got = np.empty_like(expected)
    for i in range(n):
        for j in range(b):
            assert cell[i, j].dtype == np.float32 and cell[i, j].shape == (h, w)
            got[i, j] = cell[i, j]
    assert np.isfinite(got).all() and got.min() >= 0 and got.max() <= 1
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)  # values, hence order too
    assert np.isfinite(m["TimeMPRaw"]).all() and float(m["TimeMPRaw"].item()) > 0
    opt = m["OptionalData"][0, 0]
    assert set(sidd.OPTIONAL_FIELDS) <= set(opt.dtype.names)
    assert str(opt["MethodName"].item()) == "N2N test" and str(opt["Authors"].item()) == "A. B."
    assert str(opt["Checkpoint"].item()) == f"file {raw_ckpt.name} (step 2, validation " \
        f"{json.loads(raw_ckpt.read_text())['metrics']['val_psnr']:.2f} dB)"
    assert str(opt["BlockUnify"].item()) == "flip"

    # .csv, decoded independently: header ID,BLOCK; row k = block (k // B, k % B) as base64 float32 LE.
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["ID", "BLOCK"] and len(rows) == 1 + n * b
    for k, (sid, data) in enumerate(rows[1:]):
        assert int(sid) == k
        block = np.frombuffer(base64.b64decode(data, validate=True), dtype="<f4").reshape(h, w)
        assert np.array_equal(block, got[k // b, k % b])

    # An existing submission is refused; --force overwrites it.
    before = csv_path.read_bytes()
    r = cli("submit-sidd", "--checkpoint", raw_ckpt, "--blocks", raw_world["bench_noisy"], "--out", csv_path,
            *CPU, expect=2)
    assert_one_line_error(r.stderr, csv_path)
    assert csv_path.read_bytes() == before
    cli("submit-sidd", "--checkpoint", raw_ckpt, "--blocks", raw_world["bench_noisy"], "--out", csv_path,
        "--force", *CPU)
    assert csv_path.read_bytes() == before  # same model, same blocks: same bytes


def test_denoise_raw_mat_frame_and_npy_mosaic(raw_ckpt, raw_world, tmp_path):
    from n2n_raw.inference.tiling import denoise_mosaic
    frame = sorted(Path(raw_world["data"]).glob("*_S6_*/*_NOISY_RAW_010.MAT"))[0]  # GRBG, CFA in SubIFDs
    mosaic = sidd.read_frame(frame)
    npy = tmp_path / "mosaic.npy"
    np.save(npy, mosaic[:, :-64])  # any even size
    out = tmp_path / "out"
    cli("denoise", "--checkpoint", raw_ckpt, frame, "--out", out, *CPU)
    cli("denoise", "--checkpoint", raw_ckpt, npy, "--out", out, "--cfa", "GRBG", *CPU)
    y_frame = np.load(out / f"{frame.stem}.npy")
    y_npy = np.load(out / "mosaic.npy")
    assert y_frame.dtype == np.float32 and y_frame.shape == mosaic.shape
    assert y_npy.dtype == np.float32 and y_npy.shape == (mosaic.shape[0], mosaic.shape[1] - 64)

    model, meta = load_model(raw_ckpt)
    want = denoise_mosaic(model, mosaic, "GRBG", meta["cfa_mode"], 1024, 192, "cpu", "fp32")
    np.testing.assert_allclose(y_frame, want, atol=1e-5, rtol=0)  # the metadata's CFA was used

    # --cfa overrides the metadata: another CFA gives another result; existing output needs --force.
    r = cli("denoise", "--checkpoint", raw_ckpt, frame, "--out", out, "--cfa", "RGGB", *CPU, expect=2)
    assert_one_line_error(r.stderr, out / f"{frame.stem}.npy")
    cli("denoise", "--checkpoint", raw_ckpt, frame, "--out", out, "--cfa", "RGGB", "--force", *CPU)
    assert not np.allclose(np.load(out / f"{frame.stem}.npy"), y_frame)


def test_raw_info(raw_run):
    r = cli("info", raw_run)
    assert "mode raw" in r.stdout and "validation: last" in r.stdout


# ================================================================================================ entry point

def test_python_cli_py_smoke(srgb_run):
    """The real console entry point (``python cli.py``): help, and a command that loads a checkpoint."""
    p = run_cli_subprocess("--help")
    assert p.returncode == 0, p.stderr
    for command in ("prepare", "train", "evaluate", "denoise", "submit-sidd", "demo", "info"):
        assert command in p.stdout
    p = run_cli_subprocess("info", srgb_run)
    assert p.returncode == 0, p.stderr
    assert "checkpoints: ckpt-00000002, ckpt-00000004" in p.stdout and "Traceback" not in p.stderr


def test_submit_sidd_checks_block_positions(raw_ckpt, raw_world, tmp_path):
    """A BenchmarkBlocks32.mat beside the blocks (or given) with an odd 0-based start: exit 2, nothing written."""
    import shutil
    blocks = Path(shutil.copy(raw_world["bench_noisy"], tmp_path / "BenchmarkNoisyBlocksRaw.mat"))
    pos = sidd.read_block_positions(raw_world["positions"])
    pos[1, 0] += 1
    scipy.io.savemat(tmp_path / "BenchmarkBlocks32.mat", {"BenchmarkBlocks32": pos.astype(np.uint16)})
    out = tmp_path / "SubmitRaw.mat"
    r = cli("submit-sidd", "--checkpoint", raw_ckpt, "--blocks", blocks, "--out", out, *CPU, expect=2)
    assert "block 2 starts at 0-based row" in assert_one_line_error(r.stderr, "BenchmarkBlocks32.mat")
    assert not out.exists()
    cli("submit-sidd", "--checkpoint", raw_ckpt, "--blocks", blocks, "--out", out, "--positions",
        raw_world["positions"], *CPU)  # the world's own positions are even
