"""Shared fixtures of the CLI / robustness tests: tiny sRGB and raw data, stores and trained runs.

Everything heavy is session-scoped and built once through the command line itself (``prepare`` → ``train``),
so the pipeline tests check what the fixtures made instead of training again. All runs are tiny (a few
optimiser steps on 64×64 sRGB / 128×128 raw crops) and CPU-only.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
ERROR_PREFIX = "n2n-raw: error:"

# Tiny-run options shared by the tests (CPU, a handful of steps).
SRGB_TRAIN = ["--steps", "4", "--epochs", "2", "--patch-size", "64", "--batch-size", "2", "--seed", "1",
              "--log-every", "1", "--device", "cpu"]
RAW_TRAIN = ["--steps", "2", "--epochs", "2", "--patch-size", "128", "--batch-size", "2", "--seed", "1",
             "--log-every", "1", "--device", "cpu"]


# ------------------------------------------------------------------------------------------------ helpers

def cli(*args, expect: int | None = 0):
    """Invoke the ``n2n-raw`` Typer app in-process; returns click's Result (stdout and stderr separate)."""
    import torch
    from typer.testing import CliRunner

    from n2n_raw.cli import app
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steady on a shared 2-core machine (see subprocess_env); restored below
    try:
        result = CliRunner().invoke(app, [str(a) for a in args])
    finally:
        torch.set_num_threads(threads)
    if expect is not None and result.exit_code != expect:
        exc = result.exception
        tb = ""
        if exc is not None and result.exc_info is not None and not isinstance(exc, SystemExit):
            import traceback
            tb = "".join(traceback.format_exception(*result.exc_info))
        raise AssertionError(f"n2n-raw {' '.join(map(str, args))}: exit {result.exit_code}, expected {expect}\n"
                             f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}\n{tb}")
    return result


def subprocess_env() -> dict:
    """Environment of a ``python cli.py`` child: this checkout importable, and one intra-op thread.

    One thread: on a shared 2-core machine, OpenMP threads of a busy-waiting torch child slow it down by 10×
    or more when the cores are also used by this pytest process or anything else; one thread is steady."""
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1"}


def run_cli_subprocess(*args, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """``python cli.py ARGS`` from the repository root (the real entry point: ``n2n_raw.cli.main``)."""
    return subprocess.run([sys.executable, str(REPO / "cli.py"), *map(str, args)], cwd=REPO, env=subprocess_env(),
                          capture_output=True, text=True, timeout=timeout, **kw)


# A plain (non-terminal) progress line of n2n_raw.progress.ProgressHook: "desc: done/total unit (rate/s, ETA s)".
PROGRESS_LINE = re.compile(r"^[\w ]+: \d+/\d+ \w+ \([\d.]+/s, ETA [\d.inf]+ s\)")


def assert_one_line_error(stderr: str, *names: str) -> str:
    """stderr is exactly one line ``n2n-raw: error: ...`` naming each of ``names``; no traceback.

    Progress lines of work done before the problem showed up (e.g. a folder scanned before finding that none
    of its images is readable) are the contract's "plain log lines" and are allowed before the error."""
    text = stderr.strip("\n")
    assert "Traceback" not in stderr, stderr
    assert text, "nothing on stderr"
    lines = [ln for ln in text.splitlines() if not PROGRESS_LINE.match(ln)]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    assert lines[0].startswith(ERROR_PREFIX), stderr
    for n in names:
        assert str(n) in lines[0], f"{n!r} not named in: {lines[0]}"
    return lines[0]


def write_png_image(path: Path, h: int, w: int, seed: int = 0) -> Path:
    from n2n_raw.sim.dead_leaves import dead_leaves
    rng = np.random.default_rng(seed)
    a = (np.clip(dead_leaves(rng, h, w), 0, 1) * 255).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
    return path


# ------------------------------------------------------------------------------------------------ sRGB

@pytest.fixture(scope="session")
def srgb_folder(tmp_path_factory) -> Path:
    """Four small PNGs (64..96 px sides; one is 64×128 and one 40×40 that the size filter skips)."""
    d = tmp_path_factory.mktemp("srgb_imgs")
    write_png_image(d / "a.png", 64, 64, 1)
    write_png_image(d / "b.png", 96, 80, 2)
    write_png_image(d / "sub" / "c.png", 72, 96, 3)   # found recursively by prepare
    write_png_image(d / "d.png", 80, 64, 4)
    write_png_image(d / "tiny.png", 40, 40, 5)        # skipped by --min-size 64
    return d


@pytest.fixture(scope="session")
def srgb_val_folder(tmp_path_factory) -> Path:
    """A flat validation folder (evaluate reads it non-recursively): two images of odd sizes."""
    d = tmp_path_factory.mktemp("srgb_val")
    write_png_image(d / "v1.png", 70, 50, 11)
    write_png_image(d / "v2.png", 64, 64, 12)
    return d


@pytest.fixture(scope="session")
def srgb_store(srgb_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("srgb_store") / "train.h5"
    r = cli("prepare", "srgb", srgb_folder, out, "--min-size", "64", "--max-size", "128", "--workers", "1")
    assert "kept 4" in r.stdout and "skipped by size 1" in r.stdout, r.stdout
    return out


@pytest.fixture(scope="session")
def srgb_run(srgb_store, tmp_path_factory) -> Path:
    """A trained sRGB run folder (4 steps, 2 nominal epochs) made by ``n2n-raw train --data store``."""
    run = tmp_path_factory.mktemp("srgb_run") / "run"
    cli("train", "--mode", "srgb", "--data", srgb_store, "--out", run, *SRGB_TRAIN)
    return run


@pytest.fixture(scope="session")
def srgb_ckpt(srgb_run) -> Path:
    """The newest checkpoint's JSON file of :func:`srgb_run`."""
    from n2n_raw.checkpoint import list_checkpoints
    return list_checkpoints(srgb_run)[-1]


# ------------------------------------------------------------------------------------------------ raw

@pytest.fixture(scope="session")
def raw_world(tmp_path_factory) -> dict:
    """A small synthetic SIDD world: 5 scenes × 2 frames of 160×192, 2 images × 2 blocks of 64×64."""
    from n2n_raw.sim.sidd_world import make_sidd_world
    return make_sidd_world(tmp_path_factory.mktemp("sidd") / "world", frame_size=(160, 192), n_images=2,
                           blocks_per_image=2, block_size=64, seed=5)


@pytest.fixture(scope="session")
def raw_store(raw_world, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("raw_store") / "sidd.h5"
    r = cli("prepare", "sidd", raw_world["medium"], out, "--workers", "1")
    assert "10 frames" in r.stdout, r.stdout
    return out


@pytest.fixture(scope="session")
def raw_run(raw_store, raw_world, tmp_path_factory) -> Path:
    """A trained raw run (2 steps) with validation on the world's validation blocks."""
    run = tmp_path_factory.mktemp("raw_run") / "run"
    cli("train", "--mode", "raw", "--data", raw_store, "--out", run, "--val-noisy", raw_world["val_noisy"],
        "--val-gt", raw_world["val_gt"], *RAW_TRAIN)
    return run


@pytest.fixture(scope="session")
def raw_ckpt(raw_run) -> Path:
    from n2n_raw.checkpoint import list_checkpoints
    return list_checkpoints(raw_run)[-1]
