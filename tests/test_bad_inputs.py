"""A user's mistakes end with exit status 2 and ONE line on stderr naming the file (or option); no traceback.

Each row of the table builds its bad input in ``tmp_path`` and gives the command line and the names the
message must contain. Everything goes through the Typer app in-process (CliRunner, stderr kept apart), except
the parser-level usage errors at the end, which go through the real entry point ``python cli.py``.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import assert_one_line_error, cli, run_cli_subprocess, write_png_image
from n2n_raw.io import sidd

CPU = ("--device", "cpu")


class Ctx:
    """What a row needs: a scratch folder and the session fixtures, fetched only when a row asks."""

    def __init__(self, tmp: Path, request):
        self.tmp, self._request = tmp, request

    def __getattr__(self, name):  # srgb_ckpt, raw_ckpt, raw_world, srgb_folder, srgb_val_folder, ...
        return self._request.getfixturevalue(name)

    # ---- file makers
    def random_bytes(self, name: str, n: int = 2000, seed: int = 0) -> Path:
        p = self.tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes())
        return p

    def png(self, name: str, h: int = 64, w: int = 64) -> Path:
        return write_png_image(self.tmp / name, h, w)

    def truncated_png(self, name: str) -> Path:
        p = self.png(name, 80, 80)
        data = p.read_bytes()
        p.write_bytes(data[: len(data) * 6 // 10])
        return p

    def frame(self, name: str, x: np.ndarray) -> Path:
        p = self.tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(p, "w", userblock_size=512) as f:
            f.create_dataset("x", data=np.ascontiguousarray(np.asarray(x).T))
        with open(p, "r+b") as fh:
            fh.write(sidd.matlab73_header())
        return p

    def good_frame(self, name: str) -> Path:
        p = self.tmp / name
        sidd.write_frame(p, np.random.default_rng(0).random((64, 64), dtype=np.float32) * 0.5)
        return p

    def truncated_frame(self, name: str) -> Path:
        p = self.tmp / name
        sidd.write_frame(p, np.random.default_rng(0).random((64, 64), dtype=np.float32), compress=False)
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
        return p

    def sidd_folder(self, frame_maker: Callable[[Path], Path]) -> Path:
        """A SIDD_Medium_Raw folder with one scene whose NOISY frame comes from ``frame_maker``."""
        root = self.tmp / "SIDD_Medium_Raw"
        scene = root / "Data" / "0001_001_S6_00100_00060_3200_L"
        scene.mkdir(parents=True)
        frame_maker(scene / "0001_NOISY_RAW_010.MAT")
        return root

    def blocks(self, name: str, a: np.ndarray, varname: str | None = None) -> Path:
        p = self.tmp / name
        sidd.write_blocks(p, a, varname=varname)
        return p

    def int_blocks(self, name: str) -> Path:
        import scipy.io
        p = self.tmp / name
        scipy.io.savemat(p, {Path(name).stem: np.ones((2, 2, 64, 64), np.uint16)})
        return p

    def npy(self, name: str, a: np.ndarray) -> Path:
        p = self.tmp / name
        np.save(p, a)
        return p

    def ckpt_copy(self, which: str = "srgb") -> Path:
        """A copy of a trained checkpoint pair in tmp; returns the JSON path."""
        src = self.srgb_ckpt if which == "srgb" else self.raw_ckpt
        d = self.tmp / f"ckpt_{which}"
        d.mkdir(exist_ok=True)
        for suffix in (".json", ".safetensors"):
            shutil.copy(src.with_suffix(suffix), d / src.with_suffix(suffix).name)
        return d / src.name

    def ckpt_edit_json(self, edit: Callable[[dict], None]) -> Path:
        p = self.ckpt_copy()
        meta = json.loads(p.read_text())
        edit(meta)
        p.write_text(json.dumps(meta))
        return p

    def ckpt_wrong_shapes(self) -> Path:
        p = self.ckpt_copy()
        st = p.with_suffix(".safetensors")
        tensors = load_file(str(st))
        k = next(k for k in tensors if k.startswith("model.") and tensors[k].ndim == 4)
        tensors[k] = torch.zeros(tuple(s + 1 for s in tensors[k].shape))
        save_file(tensors, str(st))
        return p

    def ckpt_random_safetensors(self) -> Path:
        p = self.ckpt_copy()
        p.with_suffix(".safetensors").write_bytes(np.random.default_rng(1).bytes(3000))
        return p

    def empty_dir(self, name: str) -> Path:
        d = self.tmp / name
        d.mkdir()
        return d


def ev_srgb(ckpt, *data):
    return ["evaluate", "--checkpoint", ckpt, "--mode", "srgb", *[a for d in data for a in ("--data", d)], *CPU]


def ev_raw(c: Ctx, ckpt=None, noisy=None, gt=None, *extra):
    return ["evaluate", "--checkpoint", ckpt or c.raw_ckpt, "--mode", "raw",
            "--noisy", noisy or c.raw_world["val_noisy"], "--gt", gt or c.raw_world["val_gt"], *CPU, *extra]


def dn(c: Ctx, ckpt, *inputs, extra=()):
    return ["denoise", "--checkpoint", ckpt, *inputs, "--out", c.tmp / "out", *CPU, *extra]


def tr_srgb(c: Ctx, data, *extra):
    return ["train", "--mode", "srgb", "--data", data, "--out", c.tmp / "run", "--steps", "2", "--epochs", "1",
            "--patch-size", "64", "--batch-size", "2", *CPU, *extra]


def tr_raw(c: Ctx, data, *extra):
    return ["train", "--mode", "raw", "--data", data, "--out", c.tmp / "run", "--steps", "2", "--epochs", "1",
            "--patch-size", "128", "--batch-size", "2", *CPU, *extra]


def sub(c: Ctx, blocks=None, out=None, ckpt=None, *extra):
    return ["submit-sidd", "--checkpoint", ckpt or c.raw_ckpt, "--blocks", blocks or c.raw_world["bench_noisy"],
            "--out", out or c.tmp / "SubmitRaw.mat", *CPU, *extra]


def _wrong_var(c: Ctx):
    p = c.blocks("ValidationNoisyBlocksRaw.mat", np.zeros((2, 2, 64, 64), np.float32), varname="Blocks")
    return p


def _nan_blocks(c: Ctx, value):
    a = np.full((2, 2, 64, 64), 0.2, np.float32)
    a[1, 0, 3, 4] = value
    return c.blocks("ValidationNoisyBlocksRaw.mat", a)


def _rgb_npy(value=None, dtype=np.float32):
    a = np.full((64, 64, 3), 0.5, dtype)
    if value is not None:
        a[5, 6, 1] = value
    return a


# id → builder(ctx) → (argv, names the one-line message must contain)
CASES: dict[str, Callable[[Ctx], tuple[list, list]]] = {
    # ---- prepare
    "prepare-srgb-missing-folder": lambda c: (["prepare", "srgb", c.tmp / "nope", c.tmp / "o.h5"], [c.tmp / "nope"]),
    "prepare-srgb-empty-folder": lambda c: (["prepare", "srgb", c.empty_dir("e"), c.tmp / "o.h5"], [c.tmp / "e"]),
    "prepare-srgb-only-garbage": lambda c: (
        ["prepare", "srgb", _garbage_images(c), c.tmp / "o.h5", "--workers", "1"], [c.tmp / "g"]),
    "prepare-srgb-bad-sizes": lambda c: (
        ["prepare", "srgb", c.png("i/a.png").parent, c.tmp / "o.h5", "--min-size", "100", "--max-size", "50"],
        ["--min-size"]),
    "prepare-srgb-workers-0": lambda c: (["prepare", "srgb", c.png("i/a.png").parent, c.tmp / "o.h5", "--workers",
                                          "0"], ["--workers"]),
    "prepare-sidd-missing-folder": lambda c: (["prepare", "sidd", c.tmp / "nope", c.tmp / "o.h5"], [c.tmp / "nope"]),
    "prepare-sidd-empty-folder": lambda c: (["prepare", "sidd", c.empty_dir("e"), c.tmp / "o.h5"], [c.tmp / "e"]),
    "prepare-sidd-random-bytes-frame": lambda c: (
        ["prepare", "sidd", c.sidd_folder(lambda p: c.random_bytes(p.relative_to(c.tmp))), c.tmp / "o.h5",
         "--workers", "1"], ["0001_NOISY_RAW_010.MAT"]),
    "prepare-sidd-truncated-frame": lambda c: (
        ["prepare", "sidd", c.sidd_folder(lambda p: c.truncated_frame(p.relative_to(c.tmp))), c.tmp / "o.h5",
         "--workers", "1"], ["0001_NOISY_RAW_010.MAT"]),
    "prepare-sidd-3d-frame": lambda c: (
        ["prepare", "sidd", c.sidd_folder(lambda p: c.frame(p.relative_to(c.tmp), np.zeros((2, 8, 8), np.float32))),
         c.tmp / "o.h5", "--workers", "1"], ["0001_NOISY_RAW_010.MAT"]),
    "prepare-sidd-nan-frame": lambda c: (
        ["prepare", "sidd", c.sidd_folder(lambda p: c.frame(p.relative_to(c.tmp), np.full((8, 8), np.nan, np.float32))),
         c.tmp / "o.h5", "--workers", "1"], ["0001_NOISY_RAW_010.MAT"]),
    "prepare-sidd-int-frame": lambda c: (
        ["prepare", "sidd", c.sidd_folder(lambda p: c.frame(p.relative_to(c.tmp), np.ones((8, 8), np.uint16))),
         c.tmp / "o.h5", "--workers", "1"], ["0001_NOISY_RAW_010.MAT"]),
    "prepare-sidd-odd-frame": lambda c: (
        ["prepare", "sidd", c.sidd_folder(lambda p: c.frame(p.relative_to(c.tmp), np.ones((9, 8), np.float32) / 2)),
         c.tmp / "o.h5", "--workers", "1"], ["0001_NOISY_RAW_010.MAT"]),
    "prepare-sidd-empty-frame": lambda c: (
        ["prepare", "sidd", c.sidd_folder(lambda p: c.frame(p.relative_to(c.tmp), np.ones((0, 4), np.float32))),
         c.tmp / "o.h5", "--workers", "1"], ["0001_NOISY_RAW_010.MAT"]),
    "prepare-dng-empty-folder": lambda c: (["prepare", "dng", c.empty_dir("e"), c.tmp / "o.h5"], [c.tmp / "e"]),
    "prepare-dng-random-bytes": lambda c: (["prepare", "dng", c.random_bytes("d/x.dng").parent, c.tmp / "o.h5",
                                            "--workers", "1"], [c.tmp / "d"]),
    # ---- train
    "train-data-missing": lambda c: (tr_srgb(c, c.tmp / "nope.h5"), [c.tmp / "nope.h5"]),
    "train-data-empty-folder": lambda c: (tr_srgb(c, c.empty_dir("e")), [c.tmp / "e"]),
    "train-data-random-bytes-h5": lambda c: (tr_srgb(c, c.random_bytes("s.h5")), [c.tmp / "s.h5"]),
    "train-data-truncated-h5": lambda c: (
        tr_srgb(c, _truncated_copy(c, c.srgb_store, "cut.h5")), [c.tmp / "cut.h5"]),
    "train-data-images-smaller-than-patch": lambda c: (
        tr_srgb(c, c.png("small/a.png", 48, 80).parent), ["a.png", "--patch-size"]),
    "train-data-corrupt-png": lambda c: (tr_srgb(c, c.random_bytes("bad/a.png").parent), ["a.png"]),
    "train-raw-on-srgb-store": lambda c: (tr_raw(c, c.srgb_store), [c.srgb_store]),
    "train-srgb-on-raw-store": lambda c: (tr_srgb(c, c.raw_store), [c.raw_store]),
    "train-raw-mosaic-smaller-than-patch": lambda c: (tr_raw(c, c.raw_store, "--patch-size", "256"),
                                                      ["--patch-size"]),
    "train-val-noisy-random-bytes": lambda c: (
        tr_raw(c, c.raw_store, "--val-noisy", c.random_bytes("ValidationNoisyBlocksRaw.mat"), "--val-gt",
               c.raw_world["val_gt"]), [c.tmp / "ValidationNoisyBlocksRaw.mat"]),
    "train-val-noisy-wrong-variable": lambda c: (
        tr_raw(c, c.raw_store, "--val-noisy", _wrong_var(c), "--val-gt", c.raw_world["val_gt"]),
        ["ValidationNoisyBlocksRaw.mat", "ValidationNoisyBlocksRaw"]),
    "train-val-missing": lambda c: (tr_srgb(c, c.srgb_store, "--val", c.tmp / "nope"), [c.tmp / "nope"]),
    "train-noise-foo": lambda c: (tr_srgb(c, c.srgb_store, "--noise", "foo"), ["--noise", "foo"]),
    "train-mode-foo": lambda c: (["train", "--mode", "foo", "--out", c.tmp / "run", *CPU], ["--mode", "foo"]),
    "train-cfa-XYZW": lambda c: (tr_raw(c, c.raw_store, "--cfa", "XYZW"), ["--cfa", "XYZW"]),
    "train-cfa-mode-foo": lambda c: (tr_raw(c, c.raw_store, "--cfa-mode", "foo"), ["--cfa-mode", "foo"]),
    "train-device-foo": lambda c: (tr_srgb(c, c.srgb_store, "--device", "foo"), ["--device", "foo"]),
    "train-init-foo": lambda c: (tr_srgb(c, c.srgb_store, "--init", "foo"), ["--init", "foo"]),
    "train-precision-foo": lambda c: (tr_srgb(c, c.srgb_store, "--precision", "foo"), ["--precision", "foo"]),
    "train-compile-maybe": lambda c: (tr_srgb(c, c.srgb_store, "--compile", "maybe"), ["--compile", "maybe"]),
    "train-cuda-graphs-on-cpu": lambda c: (tr_srgb(c, c.srgb_store, "--cuda-graphs", "on"), ["--cuda-graphs"]),
    "train-cuda-graphs-foo": lambda c: (tr_srgb(c, c.srgb_store, "--cuda-graphs", "foo"), ["--cuda-graphs", "foo"]),
    "train-data-on-device-gpu": lambda c: (tr_srgb(c, c.srgb_store, "--data-on-device", "gpu"),
                                           ["--data-on-device", "gpu"]),
    "train-patch-size-100": lambda c: (tr_srgb(c, c.srgb_store, "--patch-size", "100"), ["--patch-size"]),
    "train-raw-patch-size-64": lambda c: (tr_raw(c, c.raw_store, "--patch-size", "64"), ["--patch-size"]),
    "train-steps-zero": lambda c: (tr_srgb(c, c.srgb_store, "--steps", "0"), ["--steps"]),
    "train-lr-negative": lambda c: (tr_srgb(c, c.srgb_store, "--lr", "-1"), ["--lr"]),
    "train-seed-negative": lambda c: (tr_srgb(c, c.srgb_store, "--seed", "-1"), ["--seed"]),
    "train-resume-and-force": lambda c: (tr_srgb(c, c.srgb_store, "--resume", "--force"), ["--resume", "--force"]),
    "train-resume-nothing": lambda c: (tr_srgb(c, c.srgb_store, "--resume"), [c.tmp / "run"]),
    "train-out-not-empty": lambda c: (tr_srgb(c, c.srgb_store) if _user_file(c, "run/notes.txt") else None,
                                      [c.tmp / "run"]),
    "train-cuda-unavailable": lambda c: (
        pytest.skip("CUDA is available here") if torch.cuda.is_available() else
        tr_srgb(c, c.srgb_store, "--device", "cuda"), ["--device", "cuda"]),
    # ---- evaluate
    "evaluate-checkpoint-missing": lambda c: (ev_srgb(c.tmp / "nope.json", c.srgb_val_folder), [c.tmp / "nope.json"]),
    "evaluate-checkpoint-empty-run-folder": lambda c: (ev_srgb(c.empty_dir("r"), c.srgb_val_folder), [c.tmp / "r"]),
    "evaluate-raw-ckpt-as-srgb": lambda c: (ev_srgb(c.raw_ckpt, c.srgb_val_folder), [c.raw_ckpt, "raw"]),
    "evaluate-srgb-ckpt-as-raw": lambda c: (ev_raw(c, c.srgb_ckpt), [c.srgb_ckpt, "srgb"]),
    "evaluate-arch-changed": lambda c: (ev_srgb(c.ckpt_edit_json(lambda m: m.update(arch="resnet")),
                                                c.srgb_val_folder), ["ckpt-", "resnet"]),
    "evaluate-format-changed": lambda c: (ev_srgb(c.ckpt_edit_json(lambda m: m.update(format="x")),
                                                  c.srgb_val_folder), ["ckpt-"]),
    "evaluate-json-without-model": lambda c: (ev_srgb(c.ckpt_edit_json(lambda m: m.pop("model")),
                                                      c.srgb_val_folder), ["ckpt-"]),
    "evaluate-json-not-json": lambda c: (ev_srgb(_json_garbage(c), c.srgb_val_folder), ["ckpt-"]),
    "evaluate-safetensors-wrong-shapes": lambda c: (ev_srgb(c.ckpt_wrong_shapes(), c.srgb_val_folder), ["ckpt-"]),
    "evaluate-safetensors-random-bytes": lambda c: (ev_srgb(c.ckpt_random_safetensors(), c.srgb_val_folder),
                                                    ["ckpt-"]),
    "evaluate-mode-foo": lambda c: (["evaluate", "--checkpoint", c.srgb_ckpt, "--mode", "foo", *CPU], ["--mode"]),
    "evaluate-noise-foo": lambda c: (ev_srgb(c.srgb_ckpt, c.srgb_val_folder) + ["--noise", "foo"], ["--noise"]),
    "evaluate-device-foo": lambda c: (ev_srgb(c.srgb_ckpt, c.srgb_val_folder)[:-2] + ["--device", "foo"],
                                      ["--device", "foo"]),
    "evaluate-repeat-0": lambda c: (ev_srgb(c.srgb_ckpt, c.srgb_val_folder) + ["--repeat", "0"], ["--repeat"]),
    "evaluate-seed-negative": lambda c: (ev_srgb(c.srgb_ckpt, c.srgb_val_folder) + ["--seed", "-1"], ["--seed"]),
    "evaluate-raw-batch-size-0": lambda c: (ev_raw(c, None, None, None, "--batch-size", "0"), ["--batch-size"]),
    "evaluate-no-data": lambda c: (ev_srgb(c.srgb_ckpt), ["--data"]),
    "evaluate-data-missing": lambda c: (ev_srgb(c.srgb_ckpt, c.tmp / "nope"), [c.tmp / "nope"]),
    "evaluate-data-empty": lambda c: (ev_srgb(c.srgb_ckpt, c.empty_dir("e")), [c.tmp / "e"]),
    "evaluate-data-random-png": lambda c: (ev_srgb(c.srgb_ckpt, c.random_bytes("v/a.png").parent), ["a.png"]),
    "evaluate-data-random-jpg": lambda c: (ev_srgb(c.srgb_ckpt, c.random_bytes("v/a.jpg").parent), ["a.jpg"]),
    "evaluate-data-truncated-png": lambda c: (ev_srgb(c.srgb_ckpt, c.truncated_png("v/t.png").parent), ["t.png"]),
    "evaluate-raw-missing-gt": lambda c: (["evaluate", "--checkpoint", c.raw_ckpt, "--mode", "raw", "--noisy",
                                           c.raw_world["val_noisy"], *CPU], ["--gt"]),
    "evaluate-raw-noisy-missing": lambda c: (ev_raw(c, None, c.tmp / "ValidationNoisyBlocksRaw.mat"),
                                             [c.tmp / "ValidationNoisyBlocksRaw.mat"]),
    "evaluate-raw-random-bytes-mat": lambda c: (ev_raw(c, None, c.random_bytes("ValidationNoisyBlocksRaw.mat")),
                                                [c.tmp / "ValidationNoisyBlocksRaw.mat"]),
    "evaluate-raw-random-bytes-h5": lambda c: (
        ev_raw(c, None, _hdf5_garbage(c)),
        [c.tmp / "ValidationNoisyBlocksRaw.mat"]),
    "evaluate-raw-truncated-hdf5-blocks": lambda c: (ev_raw(c, None, _truncated_v73_blocks(c)),
                                                     [c.tmp / "ValidationNoisyBlocksRaw.mat"]),
    "evaluate-raw-wrong-variable": lambda c: (ev_raw(c, None, _wrong_var(c)),
                                              [c.tmp / "ValidationNoisyBlocksRaw.mat"]),
    "evaluate-raw-blocks-255x256": lambda c: (
        ev_raw(c, None, c.blocks("ValidationNoisyBlocksRaw.mat", np.zeros((2, 2, 255, 256), np.float32))),
        [c.tmp / "ValidationNoisyBlocksRaw.mat", "255"]),
    "evaluate-raw-blocks-3d": lambda c: (
        ev_raw(c, None, _v5(c, "ValidationNoisyBlocksRaw.mat", np.zeros((2, 64, 64), np.float32))),
        [c.tmp / "ValidationNoisyBlocksRaw.mat"]),
    "evaluate-raw-blocks-nan": lambda c: (ev_raw(c, None, _nan_blocks(c, np.nan)),
                                          [c.tmp / "ValidationNoisyBlocksRaw.mat", "NaN"]),
    "evaluate-raw-blocks-inf": lambda c: (ev_raw(c, None, _nan_blocks(c, np.inf)),
                                          [c.tmp / "ValidationNoisyBlocksRaw.mat", "Inf"]),
    "evaluate-raw-blocks-int": lambda c: (ev_raw(c, None, c.int_blocks("ValidationNoisyBlocksRaw.mat")),
                                          [c.tmp / "ValidationNoisyBlocksRaw.mat", "uint16"]),
    "evaluate-raw-gt-shape-differs": lambda c: (
        ev_raw(c, None, None, c.blocks("ValidationGtBlocksRaw.mat", np.zeros((2, 1, 64, 64), np.float32))),
        [c.tmp / "ValidationGtBlocksRaw.mat"]),
    "evaluate-raw-cfa-XYZW": lambda c: (ev_raw(c, None, None, None, "--cfa", "XYZW"), ["--cfa", "XYZW"]),
    "evaluate-report-exists": lambda c: (ev_srgb(c.srgb_ckpt, c.srgb_val_folder)
                                         + ["--report", c.random_bytes("r.json")], [c.tmp / "r.json"]),
    # ---- denoise
    "denoise-input-missing": lambda c: (dn(c, c.srgb_ckpt, c.tmp / "nope.png"), [c.tmp / "nope.png"]),
    "denoise-random-bytes-png": lambda c: (dn(c, c.srgb_ckpt, c.random_bytes("x.png")), [c.tmp / "x.png"]),
    "denoise-random-bytes-jpg": lambda c: (dn(c, c.srgb_ckpt, c.random_bytes("x.jpg")), [c.tmp / "x.jpg"]),
    "denoise-truncated-png": lambda c: (dn(c, c.srgb_ckpt, c.truncated_png("t.png")), [c.tmp / "t.png"]),
    "denoise-srgb-unsupported-suffix": lambda c: (dn(c, c.srgb_ckpt, c.random_bytes("x.txt")), [c.tmp / "x.txt"]),
    "denoise-npy-nan": lambda c: (dn(c, c.srgb_ckpt, c.npy("n.npy", _rgb_npy(np.nan))), [c.tmp / "n.npy", "NaN"]),
    "denoise-npy-inf": lambda c: (dn(c, c.srgb_ckpt, c.npy("n.npy", _rgb_npy(-np.inf))), [c.tmp / "n.npy", "Inf"]),
    "denoise-npy-int": lambda c: (dn(c, c.srgb_ckpt, c.npy("n.npy", _rgb_npy(dtype=np.uint8))),
                                  [c.tmp / "n.npy", "uint8"]),
    "denoise-npy-2d-for-srgb": lambda c: (dn(c, c.srgb_ckpt, c.npy("n.npy", np.zeros((64, 64), np.float32))),
                                          [c.tmp / "n.npy"]),
    "denoise-npy-random-bytes": lambda c: (dn(c, c.srgb_ckpt, c.random_bytes("n.npy")), [c.tmp / "n.npy"]),
    "denoise-npy-pickled-object": lambda c: (dn(c, c.srgb_ckpt, _pickled_npy(c)), [c.tmp / "obj.npy"]),
    "denoise-precision-fp16": lambda c: (dn(c, c.srgb_ckpt, c.png("a.png"), extra=("--precision", "fp16")),
                                         ["--precision", "fp16"]),
    "evaluate-precision-fp16": lambda c: (ev_raw(c, None, None, None, "--precision", "fp16"), ["--precision", "fp16"]),
    "submit-precision-fp16": lambda c: (sub(c, None, None, None, "--precision", "fp16"), ["--precision", "fp16"]),
    "denoise-tile-too-small": lambda c: (dn(c, c.srgb_ckpt, c.png("a.png"), extra=("--tile", "64")), ["--tile"]),
    "denoise-tile-not-a-number": lambda c: (dn(c, c.srgb_ckpt, c.png("a.png"), extra=("--tile", "big")),
                                            ["--tile", "big"]),
    "denoise-device-foo": lambda c: (dn(c, c.srgb_ckpt, c.png("a.png"))[:-2] + ["--device", "foo"],
                                     ["--device", "foo"]),
    "denoise-output-exists": lambda c: (dn(c, c.srgb_ckpt, c.png("a.png")) if _user_file(c, "out/a.png") else None,
                                        [c.tmp / "out" / "a.png"]),
    "denoise-raw-odd-npy-mosaic": lambda c: (
        dn(c, c.raw_ckpt, c.npy("m.npy", np.full((63, 64), 0.1, np.float32)), extra=("--cfa", "RGGB")),
        [c.tmp / "m.npy", "63"]),
    "denoise-raw-npy-without-cfa": lambda c: (dn(c, c.raw_ckpt, c.npy("m.npy", np.full((64, 64), 0.1, np.float32))),
                                              [c.tmp / "m.npy", "--cfa"]),
    "denoise-raw-npy-nan": lambda c: (
        dn(c, c.raw_ckpt, c.npy("m.npy", np.full((64, 64), np.nan, np.float32)), extra=("--cfa", "RGGB")),
        [c.tmp / "m.npy"]),
    "denoise-raw-npy-int": lambda c: (
        dn(c, c.raw_ckpt, c.npy("m.npy", np.ones((64, 64), np.int32)), extra=("--cfa", "RGGB")), [c.tmp / "m.npy"]),
    "denoise-raw-npy-3d": lambda c: (
        dn(c, c.raw_ckpt, c.npy("m.npy", np.ones((64, 64, 3), np.float32)), extra=("--cfa", "RGGB")),
        [c.tmp / "m.npy"]),
    "denoise-raw-cfa-XYZW": lambda c: (
        dn(c, c.raw_ckpt, c.npy("m.npy", np.full((64, 64), 0.1, np.float32)), extra=("--cfa", "XYZW")),
        ["--cfa", "XYZW"]),
    "denoise-raw-mat-random-bytes": lambda c: (
        dn(c, c.raw_ckpt, c.random_bytes("0001_NOISY_RAW_010.MAT"), extra=("--cfa", "RGGB")),
        [c.tmp / "0001_NOISY_RAW_010.MAT"]),
    "denoise-raw-mat-truncated": lambda c: (
        dn(c, c.raw_ckpt, c.truncated_frame("0001_NOISY_RAW_010.MAT"), extra=("--cfa", "RGGB")),
        [c.tmp / "0001_NOISY_RAW_010.MAT"]),
    "denoise-raw-mat-3d-frame": lambda c: (
        dn(c, c.raw_ckpt, c.frame("0001_NOISY_RAW_010.MAT", np.zeros((2, 8, 8), np.float32)), extra=("--cfa", "RGGB")),
        [c.tmp / "0001_NOISY_RAW_010.MAT", "3-D"]),
    "denoise-raw-mat-odd-frame": lambda c: (
        dn(c, c.raw_ckpt, c.frame("0001_NOISY_RAW_010.MAT", np.full((9, 8), 0.1, np.float32)),
           extra=("--cfa", "RGGB")), [c.tmp / "0001_NOISY_RAW_010.MAT"]),
    "denoise-raw-mat-no-metadata": lambda c: (dn(c, c.raw_ckpt, c.good_frame("0001_NOISY_RAW_010.MAT")),
                                              [c.tmp / "0001_NOISY_RAW_010.MAT", "--cfa"]),
    "denoise-raw-mat-random-metadata": lambda c: (
        dn(c, c.raw_ckpt, c.good_frame("0001_NOISY_RAW_010.MAT")) if _user_file(c, "0001_METADATA_RAW_010.MAT")
        else None, [c.tmp / "0001_METADATA_RAW_010.MAT"]),
    "denoise-raw-dng-random-bytes": lambda c: (dn(c, c.raw_ckpt, c.random_bytes("x.dng")), [c.tmp / "x.dng"]),
    "denoise-raw-png-unsupported": lambda c: (dn(c, c.raw_ckpt, c.png("a.png")), [c.tmp / "a.png"]),
    "denoise-checkpoint-missing": lambda c: (dn(c, c.tmp / "nope.json", c.png("a.png")), [c.tmp / "nope.json"]),
    # ---- submit-sidd
    "submit-format-xls": lambda c: (sub(c, None, None, None, "--format", "xls"), ["--format", "xls"]),
    "submit-format-mismatch": lambda c: (sub(c, None, c.tmp / "SubmitRaw.mat", None, "--format", "csv"),
                                         [c.tmp / "SubmitRaw.mat"]),
    "submit-unknown-extension": lambda c: (sub(c, None, c.tmp / "SubmitRaw.xyz"), [c.tmp / "SubmitRaw.xyz"]),
    "submit-out-exists": lambda c: (sub(c, None, c.random_bytes("SubmitRaw.csv")), [c.tmp / "SubmitRaw.csv"]),
    "submit-blocks-missing": lambda c: (sub(c, c.tmp / "BenchmarkNoisyBlocksRaw.mat"),
                                        [c.tmp / "BenchmarkNoisyBlocksRaw.mat"]),
    "submit-blocks-random-bytes": lambda c: (sub(c, c.random_bytes("BenchmarkNoisyBlocksRaw.mat")),
                                             [c.tmp / "BenchmarkNoisyBlocksRaw.mat"]),
    "submit-blocks-wrong-variable": lambda c: (
        sub(c, c.blocks("BenchmarkNoisyBlocksRaw.mat", np.zeros((2, 2, 64, 64), np.float32), varname="Blocks")),
        [c.tmp / "BenchmarkNoisyBlocksRaw.mat"]),
    "submit-blocks-255x256": lambda c: (
        sub(c, c.blocks("BenchmarkNoisyBlocksRaw.mat", np.zeros((2, 2, 255, 256), np.float32))),
        [c.tmp / "BenchmarkNoisyBlocksRaw.mat"]),
    "submit-blocks-nan": lambda c: (
        sub(c, c.blocks("BenchmarkNoisyBlocksRaw.mat", np.full((2, 2, 64, 64), np.nan, np.float32))),
        [c.tmp / "BenchmarkNoisyBlocksRaw.mat"]),
    "submit-srgb-checkpoint": lambda c: (sub(c, None, None, c.srgb_ckpt), [c.srgb_ckpt]),
    "submit-device-foo": lambda c: (sub(c)[:-2] + ["--device", "foo"], ["--device", "foo"]),
    "submit-batch-size-0": lambda c: (sub(c, None, None, None, "--batch-size", "0"), ["--batch-size"]),
    "submit-cfa-XYZW": lambda c: (sub(c, None, None, None, "--cfa", "XYZW"), ["--cfa", "XYZW"]),
    # ---- info, demo
    "info-missing": lambda c: (["info", c.tmp / "nope"], [c.tmp / "nope"]),
    "info-not-a-run-folder": lambda c: (["info", c.empty_dir("e")], [c.tmp / "e"]),
    "info-checkpoint-random-json": lambda c: (["info", _json_garbage(c)], ["ckpt-"]),
    "demo-out-not-empty": lambda c: (["demo", "--out", c.random_bytes("demo/x.bin").parent], [c.tmp / "demo"]),
}


def _garbage_images(c: Ctx) -> Path:
    """A folder whose only images are random bytes named .png / .jpg."""
    c.random_bytes("g/a.png")
    c.random_bytes("g/b.jpg", seed=1)
    return c.tmp / "g"


def _user_file(c: Ctx, name: str) -> Path:
    """A file the user made (random bytes) where a command would write or read."""
    return c.random_bytes(name, seed=7)


def _truncated_copy(c: Ctx, src: Path, name: str) -> Path:
    data = Path(src).read_bytes()
    p = c.tmp / name
    p.write_bytes(data[: len(data) // 2])
    return p


def _hdf5_garbage(c: Ctx) -> Path:
    """HDF5 signature behind a MATLAB user block, then random bytes."""
    p = c.tmp / "ValidationNoisyBlocksRaw.mat"
    p.write_bytes(sidd.matlab73_header() + b"\x89HDF\r\n\x1a\n" + np.random.default_rng(3).bytes(800))
    return p


def _truncated_v73_blocks(c: Ctx) -> Path:
    p = c.tmp / "ValidationNoisyBlocksRaw.mat"
    a = np.random.default_rng(0).random((2, 2, 64, 64), dtype=np.float32)
    with h5py.File(p, "w", userblock_size=512) as f:
        f.create_dataset("ValidationNoisyBlocksRaw", data=np.ascontiguousarray(a.T))
    with open(p, "r+b") as fh:
        fh.write(sidd.matlab73_header())
    data = p.read_bytes()
    p.write_bytes(data[: len(data) * 2 // 3])
    return p


def _v5(c: Ctx, name: str, a: np.ndarray) -> Path:
    import scipy.io
    p = c.tmp / name
    scipy.io.savemat(p, {Path(name).stem: a})
    return p


def _json_garbage(c: Ctx) -> Path:
    p = c.ckpt_copy()
    p.write_bytes(b"\x00\xffnot json{")
    return p


def _pickled_npy(c: Ctx) -> Path:
    p = c.tmp / "obj.npy"
    np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return p


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, tmp_path, request):
    argv, names = CASES[case](Ctx(tmp_path, request))
    result = cli(*argv, expect=2)
    assert_one_line_error(result.stderr, *names)


def test_failed_train_leaves_no_run_behind(tmp_path, srgb_store):
    """A train that fails on bad input must not leave a half-made run folder that blocks the corrected
    command (which would then need --force or --resume although nothing was trained)."""
    small = write_png_image(tmp_path / "small" / "a.png", 48, 48).parent
    run = tmp_path / "run"
    for bad in (["--data", small], ["--data", srgb_store, "--device", "foo"]):
        cli("train", "--mode", "srgb", *bad, "--out", run, "--steps", "2", "--epochs", "1", "--patch-size", "64",
            "--batch-size", "2", expect=2)
        cli("train", "--mode", "srgb", "--data", srgb_store, "--out", run, "--steps", "2", "--epochs", "1",
            "--patch-size", "64", "--batch-size", "2", *CPU)
        shutil.rmtree(run)


# ------------------------------------------------------------------------------------------------ malicious pickle

class _Payload:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_malicious_pickle_checkpoint_is_refused(tmp_path, srgb_ckpt, srgb_val_folder):
    """A .pt checkpoint whose pickle runs code: evaluate / denoise refuse it (exit 2) and run nothing."""
    marker = tmp_path / "PWNED"
    pt = tmp_path / "evil.pt"
    tensors = load_file(str(srgb_ckpt.with_suffix(".safetensors")))
    torch.save({**tensors, "model.evil": _Payload(marker)}, pt)
    shutil.copy(srgb_ckpt, pt.with_suffix(".json"))  # a valid sidecar from a real checkpoint

    # The payload is live: full unpickling runs it.
    torch.load(pt, weights_only=False)
    assert marker.exists()
    marker.unlink()

    r = cli("evaluate", "--checkpoint", pt, "--mode", "srgb", "--data", srgb_val_folder, *CPU, expect=2)
    assert_one_line_error(r.stderr, pt)
    assert not marker.exists()
    img = write_png_image(tmp_path / "in.png", 64, 64)
    r = cli("denoise", "--checkpoint", pt, img, "--out", tmp_path / "out", *CPU, expect=2)
    assert_one_line_error(r.stderr, pt)
    assert not marker.exists()
    r = cli("info", pt, expect=2)
    assert_one_line_error(r.stderr, pt)
    assert not marker.exists()


def test_tensors_only_pt_checkpoint_works(tmp_path, srgb_ckpt, srgb_val_folder):
    """The .pt path is not refused wholesale: a plain dict of tensors (weights_only) evaluates."""
    pt = tmp_path / "plain.pt"
    torch.save(load_file(str(srgb_ckpt.with_suffix(".safetensors"))), pt)
    shutil.copy(srgb_ckpt, pt.with_suffix(".json"))
    cli("evaluate", "--checkpoint", pt, "--mode", "srgb", "--data", srgb_val_folder, *CPU)


# ------------------------------------------------------------------------------------------------ real entry point

SUBPROCESS_CASES = {
    # parser-level usage errors (Typer/click) as the console script prints them
    "unknown-option": (["train", "--mode", "srgb", "--out", "{tmp}/R", "--no-such-option"], ["--no-such-option"]),
    "not-an-integer": (["train", "--mode", "srgb", "--out", "{tmp}/R", "--steps", "abc"], ["--steps"]),
    "missing-required": (["evaluate", "--mode", "srgb"], ["--checkpoint"]),
    "unknown-command": (["trian"], ["trian"]),
    # our own validation of option values, through the real entry point
    # (the rest of them are in the CliRunner table above; each of these starts a Python with torch: ~3 s)
    "noise-foo": (["train", "--mode", "srgb", "--out", "{tmp}/R", "--noise", "foo", "--device", "cpu"], ["--noise"]),
    "device-foo": (["train", "--mode", "srgb", "--out", "{tmp}/R", "--device", "foo"], ["--device", "foo"]),
}


@pytest.mark.parametrize("case", list(SUBPROCESS_CASES))
def test_usage_errors_through_entry_point(case, tmp_path):
    argv, names = SUBPROCESS_CASES[case]
    fill = lambda s: s.replace("{tmp}", str(tmp_path))  # noqa: E731
    p = run_cli_subprocess(*map(fill, argv))
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert_one_line_error(p.stderr, *map(fill, names))
