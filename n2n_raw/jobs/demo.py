"""``n2n-raw demo``: the whole raw pipeline on built-in synthetic SIDD-format data, in a few CPU minutes.

generate (SIDD-format world) → prepare sidd → train raw → evaluate on validation blocks → denoise a full
frame → submit-sidd (MAT and CSV, verified). Prints PSNR before (noisy) and after (denoised).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from n2n_raw.checkpoint import load_model
from n2n_raw.config import TrainConfig
from n2n_raw.errors import InputError
from n2n_raw.evaluation.protocols import evaluate_raw
from n2n_raw.inference.photos import denoise_file
from n2n_raw.io import sidd
from n2n_raw.jobs.prepare import prepare_sidd
from n2n_raw.jobs.submit import submit
from n2n_raw.sim.sidd_world import make_sidd_world
from n2n_raw.training.loop import train

# A short run on CPU: smaller crops than the paper's 256, and the sRGB learning rate 3e-4 instead of the raw
# default 1e-4 (three times the progress in 300 steps; see benchmarks/RESULTS.md). Everything else is default.
DEMO = {"frame_size": (512, 640), "scenes_per_phone": 1, "n_images": 40, "blocks_per_image": 2,
        "patch_size": 128, "batch_size": 4, "lr": 3e-4}


def run_demo(out: Path, steps: int = 300, force: bool = False, echo=print, seed: int = 0) -> dict:
    """Run the demo into ``out``; returns the raw evaluation report (also in ``out/report.json``)."""

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise InputError(f"{out}: demo folder is not empty (use --force to redo the demo there)")
    t0 = time.perf_counter()
    stage = lambda text: echo(f"[{time.perf_counter() - t0:6.1f} s] {text}")  # noqa: E731

    stage("1/6 generating a synthetic SIDD-format data set (frames v7.3, metadata v5, block files)")
    world = make_sidd_world(out / "world", scenes_per_phone=DEMO["scenes_per_phone"], frame_size=DEMO["frame_size"],
                            n_images=DEMO["n_images"], blocks_per_image=DEMO["blocks_per_image"], seed=seed,
                            force=True)
    stage("2/6 prepare sidd → train.h5")
    counts = prepare_sidd(world["medium"], out / "train.h5", force=True)
    stage(f"    {counts['frames']} frames stored")

    stage(f"3/6 train raw: {steps} steps, batch {DEMO['batch_size']}, patch {DEMO['patch_size']}, lr {DEMO['lr']:g}")
    cfg = TrainConfig(mode="raw", data=str(out / "train.h5"), steps=steps, batch_size=DEMO["batch_size"],
                      patch_size=DEMO["patch_size"], lr=DEMO["lr"], seed=seed, val_every=0,
                      val_noisy=str(world["val_noisy"]), val_gt=str(world["val_gt"]),
                      log_every=max(1, steps // 5), device="auto")
    train(cfg, out / "run", force=True, log=lambda s: echo(f"    {s}"))

    stage("4/6 evaluate on the validation blocks")
    model, meta = load_model(out / "run", expect_mode="raw")
    noisy, gt = sidd.read_blocks(world["val_noisy"]), sidd.read_blocks(world["val_gt"])
    rep = evaluate_raw(model, noisy, gt, sidd.block_cfas(noisy.shape[0]), meta["cfa_mode"])
    (out / "report.json").write_text(json.dumps({k: v for k, v in rep.items() if k != "per_image"}, indent=2))

    stage("5/6 denoise a full SIDD frame")
    frame = sorted(Path(world["data"]).glob("*/*_NOISY_RAW_010.MAT"))[0]
    written, _ = denoise_file(model, meta, frame, out / "denoised", force=True)

    stage("6/6 submit-sidd: SubmitRaw.mat and SubmitRaw.csv, read back and verified")
    for name in ("SubmitRaw.mat", "SubmitRaw.csv"):
        res = submit(out / "run", world["bench_noisy"], out / name, force=True, warn=lambda s: None)
        stage(f"    {out / name}: {res['blocks']} blocks, {res['time_mp']:.3f} s/MP")

    echo("")
    echo(f"validation blocks: noisy PSNR {rep['noisy_psnr']:.2f} dB → denoised {rep['psnr']:.2f} dB "
         f"(SSIM {rep['ssim']:.4f}, {rep['count']} blocks)")
    echo(f"denoised frame: {written[0]}; run folder: {out / 'run'}; total {time.perf_counter() - t0:.0f} s")
    return rep
