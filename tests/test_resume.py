"""`train --resume`: a run killed at any moment (SIGKILL) continues exactly as if it had never stopped.

train.py draws everything random from (seed, step) and saves the Adam state, so on CPU the resumed run's
final weights must equal an uninterrupted run's bit for bit, and metrics.csv must hold each step once.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO, SRGB_TRAIN, cli, subprocess_env, write_png_image
from n2n_raw.checkpoint import list_checkpoints

CPU = ("--device", "cpu")


def metrics_rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def final_tensors(run: Path) -> dict[str, torch.Tensor]:
    last = list_checkpoints(run)[-1]
    return load_file(str(last.with_suffix(".safetensors")))


def assert_same_tensors(a: dict, b: dict, prefix: str = "") -> None:
    keys = sorted(k for k in a if k.startswith(prefix))
    assert keys and keys == sorted(k for k in b if k.startswith(prefix))
    for k in keys:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), f"{k} differs"


def ckpt_step(p: Path) -> int:
    return int(p.stem.split("-")[1])


@pytest.fixture(scope="module")
def resume_folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("resume_imgs")
    for i, (h, w) in enumerate(((64, 80), (72, 64), (96, 96))):
        write_png_image(d / f"im{i}.png", h, w, 40 + i)
    return d


def test_sigkill_then_resume_is_bitwise_identical(resume_folder, tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    args = ["train", "--mode", "srgb", "--data", str(resume_folder), "--steps", "60", "--epochs", "3",
            "--patch-size", "64", "--batch-size", "2", "--ckpt-every", "5", "--log-every", "5", "--seed", "3",
            "--device", "cpu"]
    env = subprocess_env()  # the same for all three processes (one intra-op thread): same arithmetic
    cmd = [sys.executable, str(REPO / "cli.py"), *args]

    # A: start, wait for a checkpoint at step >= 10, kill -9.
    with open(tmp_path / "a.log", "wb") as log:
        proc = subprocess.Popen([*cmd, "--out", str(a)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and proc.poll() is None:
                if a.is_dir() and any(ckpt_step(p) >= 10 for p in list_checkpoints(a)):
                    break
                time.sleep(0.01)
            assert proc.poll() is None, f"the run ended before it could be killed:\n{(tmp_path / 'a.log').read_text()}"
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = max(ckpt_step(p) for p in list_checkpoints(a))
    assert 10 <= killed_at < 60, killed_at

    # Resume A to completion (the same command line plus --resume).
    p = subprocess.run([*cmd, "--out", str(a), "--resume"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    assert f"resuming at step {killed_at}" in p.stderr, p.stderr

    # B: the same run, never interrupted.
    p = subprocess.run([*cmd, "--out", str(b)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr

    assert ckpt_step(list_checkpoints(a)[-1]) == ckpt_step(list_checkpoints(b)[-1]) == 60
    ta, tb = final_tensors(a), final_tensors(b)
    assert_same_tensors(ta, tb, "model.")  # every weight, bit for bit
    assert_same_tensors(ta, tb, "optim.")  # and the Adam moments

    # metrics.csv: every logged step once, in order, with the uninterrupted run's values.
    rows_a, rows_b = metrics_rows(a), metrics_rows(b)
    steps_a = [int(r["step"]) for r in rows_a]
    assert len(steps_a) == len(set(steps_a)), f"duplicated steps in A's metrics.csv: {steps_a}"
    assert steps_a == sorted(steps_a) == [int(r["step"]) for r in rows_b] == list(range(5, 61, 5))
    keys = ("step", "epoch", "lr", "gamma", "loss", "rec", "reg")
    assert [[r[k] for k in keys] for r in rows_a] == [[r[k] for k in keys] for r in rows_b]
    assert not [q.name for q in a.iterdir() if "partial" in q.name]  # no temporary left behind


def _run_missing_last_checkpoint(srgb_run: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(srgb_run, run)
    for suffix in (".json", ".safetensors"):
        (run / f"ckpt-00000004{suffix}").unlink()
    return run


def test_resume_continues_from_last_checkpoint(srgb_run, srgb_store, tmp_path):
    """A run stopped after its step-2 checkpoint, resumed in-process, ends exactly where the original did."""
    run = _run_missing_last_checkpoint(srgb_run, tmp_path)
    r = cli("train", "--mode", "srgb", "--data", srgb_store, "--out", run, *SRGB_TRAIN, "--resume")
    assert "resuming at step 2" in r.stderr
    assert_same_tensors(final_tensors(run), final_tensors(srgb_run))
    assert [int(x["step"]) for x in metrics_rows(run)] == [1, 2, 3, 4]
    assert [x["loss"] for x in metrics_rows(run)] == [x["loss"] for x in metrics_rows(srgb_run)]


def test_resume_needs_only_the_run_folder(srgb_run, tmp_path):
    """`train --resume --out RUN`: the run's own config.json says everything else (mode, data, schedule)."""
    run = _run_missing_last_checkpoint(srgb_run, tmp_path)
    cli("train", "--resume", "--out", run, *CPU)
    assert_same_tensors(final_tensors(run), final_tensors(srgb_run))


def test_resume_of_a_finished_run_is_harmless(srgb_run, srgb_store, tmp_path):
    """Resuming a run that already reached its last step trains nothing, exits 0 and keeps its summary."""
    run = tmp_path / "run"
    shutil.copytree(srgb_run, run)
    summary = json.loads((run / "summary.json").read_text())
    before = final_tensors(run)
    cli("train", "--mode", "srgb", "--data", srgb_store, "--out", run, *SRGB_TRAIN, "--resume")
    assert_same_tensors(final_tensors(run), before)
    assert [int(x["step"]) for x in metrics_rows(run)] == [1, 2, 3, 4]
    assert json.loads((run / "summary.json").read_text())["loss"] == summary["loss"]


def test_resume_refuses_options_that_define_the_run(srgb_run, tmp_path):
    """--steps/--lr differ from the run's: one line naming both, nothing trained, the run folder untouched."""
    run = _run_missing_last_checkpoint(srgb_run, tmp_path)
    before = sorted(p.name for p in run.iterdir())
    r = cli("train", "--out", run, "--resume", "--steps", "8", "--lr", "0.001", *CPU, expect=2)
    line = r.stderr.strip()
    assert "\n" not in line and "--lr 0.001 (run: 0.0003)" in line and "--steps 8 (run: 4)" in line
    assert sorted(p.name for p in run.iterdir()) == before
    # giving the run's own values is not a change
    cli("train", "--out", run, "--resume", "--steps", "4", "--epochs", "2", *CPU)


def test_resume_applies_safe_options_and_says_so(srgb_run, tmp_path):
    """--log-every and --keep-checkpoints may change: applied, reported, and the weights still match."""
    run = _run_missing_last_checkpoint(srgb_run, tmp_path)
    r = cli("train", "--out", run, "--resume", "--log-every", "2", "--keep-checkpoints", "1", *CPU)
    assert "resume: applying --keep-checkpoints 1 (was 3), --log-every 2 (was 1)" in r.stderr
    assert json.loads((run / "config.json").read_text())["log_every"] == 2
    assert [p.name for p in list_checkpoints(run)] == ["ckpt-00000004.json"]
    assert_same_tensors(final_tensors(run), final_tensors(srgb_run))
