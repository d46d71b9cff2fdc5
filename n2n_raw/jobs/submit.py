"""SIDD benchmark submission: denoise every block, write SubmitRaw.mat or the Kaggle CSV, verify it."""
from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import torch

from n2n_raw.accel import inference_precision, pick_device, place_model
from n2n_raw.checkpoint import load_model
from n2n_raw.errors import InputError, check_choice
from n2n_raw.evaluation import metrics
from n2n_raw.inference.tiling import BLOCK_UNIFY, denoise_blocks
from n2n_raw.io import sidd
from n2n_raw.io.atomic import check_writable
from n2n_raw.method.bayer import UNIFY

FULL_SHAPE = (40, 32, 256, 256)


def machine_specs(device: torch.device) -> str:
    spec = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    if device.type == "cuda":
        spec = f"{torch.cuda.get_device_name(device)}; {spec}"
    return f"{spec}; PyTorch {torch.__version__}"


def submit(checkpoint, blocks_path, out, *, fmt: str | None = None, cfa: str | None = None, batch_size: int = 32,
           force: bool = False, device: str = "auto", precision: str = "fp32", progress=None,
           optional: dict | None = None, warn=print, which: str = "best", positions=None,
           unify: str | None = None) -> dict:
    """Write a verified submission; returns {"blocks", "seconds", "time_mp", "format", "path", "checkpoint"}.

    ``which`` picks a run folder's checkpoint (best or last); the choice is written into OptionalData.Checkpoint.
    ``positions`` (or a ``BenchmarkBlocks32.mat`` beside the blocks) is checked first: even block starts.
    ``unify`` (default :data:`n2n_raw.inference.tiling.BLOCK_UNIFY`): how ``rggb`` mode brings non-RGGB blocks to RGGB phase;
    written into OptionalData.BlockUnify.

    The denoised blocks are clamped to [0, 1] (the benchmark's convention), float32, in the input's order
    and orientation; the CFA handling of the checkpoint's mode is undone block by block.
    """
    out = Path(out)
    precision = inference_precision(precision)
    by_ext = {".mat": "mat", ".csv": "csv"}.get(out.suffix.lower())
    if fmt is not None:
        check_choice(fmt, ("mat", "csv"), "--format", "format")
    if by_ext is None and fmt is None:
        raise InputError(f"{out}: unknown submission extension (use .mat or .csv, or --format)")
    if fmt is not None and by_ext is not None and fmt != by_ext:
        raise InputError(f"{out}: --format {fmt} does not match the file extension {out.suffix}")
    fmt = fmt or by_ext
    unify = check_choice(BLOCK_UNIFY if unify is None else unify, UNIFY, "--unify")
    if batch_size < 1:
        raise InputError(f"--batch-size: must be >= 1, got {batch_size}")
    check_writable(out, force)
    model, meta = load_model(checkpoint, expect_mode="raw", which=which)
    blocks = sidd.read_checked_blocks(blocks_path, positions)
    if blocks.shape != FULL_SHAPE:
        warn(f"n2n-raw: note: {blocks_path}: shape {blocks.shape} is not the full benchmark {FULL_SHAPE}")
    cfas = sidd.block_cfas(blocks.shape[0], cfa)
    dev = pick_device(device)
    model = place_model(model, dev)
    if dev.type == "cuda":  # warm-up outside the timed region: cuDNN autotuning is not denoising time
        denoise_blocks(model, blocks[:1, :1], cfas[:1], meta.get("cfa_mode", "rggb"), 1, dev, precision, None, unify)
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    pred = denoise_blocks(model, blocks, cfas, meta.get("cfa_mode", "rggb"), batch_size, dev, precision, progress,
                          unify)
    seconds = time.perf_counter() - t0
    if hasattr(progress, "close"):
        progress.close()
    pred = np.clip(pred, 0.0, 1.0).astype(np.float32)
    time_mp = seconds * metrics.MEGAPIXEL / blocks.size
    if fmt == "mat":
        opt = {"MethodName": "Neighbor2Neighbor (n2n-raw)", "Authors": "", "PaperTitle": "", "Venue": "",
               **(optional or {}), "MachineSpecs": machine_specs(dev), "Checkpoint": meta["chosen"],
               "BlockUnify": unify}
        sidd.write_submission_mat(out, pred, time_mp, opt, force=force)
    else:
        sidd.write_submission_csv(out, pred, force=force)
    sidd.verify_submission(out, pred)
    return {"blocks": int(blocks.shape[0] * blocks.shape[1]), "seconds": seconds, "time_mp": time_mp,
            "format": fmt, "path": str(out), "denoised": pred, "checkpoint": meta["chosen"], "block_unify": unify}
