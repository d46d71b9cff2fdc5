"""The training loop, top to bottom: run folder → data → model → schedule → steps → checkpoints.

Everything random in a step (which items, which crops, the synthetic noise, the sub-sampler masks) is drawn
from generators seeded by (seed, step), so a run resumed from a checkpoint continues exactly as if it had
never stopped, and DDP ranks draw the global batch's randomness identically and take their own slice.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import checkpoint as ckpt
from .accel import autocast, compile_plan, data_storage, pick_device, place_model, training_step, use_bf16
from .config import TrainConfig
from .data import DeviceCropper, device_indices, flat_nbytes, load_source, make_batch
from .errors import InputError
from .loss import gamma_for_epoch, n2n_loss, supervised_loss
from .noise import make_noise
from .progress import ProgressHook
from .subsample import draw_masks
from .unet import UNet

METRIC_FIELDS = ["step", "epoch", "lr", "gamma", "loss", "rec", "reg", "seconds", "crops_per_s",
                 "val_psnr", "val_ssim"]
RUN_FILES = ("config.json", "metrics.csv", "summary.json", "curves.png", "comparison.png")


# ------------------------------------------------------------------------------------------- schedule

def epoch_of(step: int, total_steps: int, n_epochs: int, steps_per_epoch: int | None) -> int:
    """1-based (nominal) epoch of a 0-based step."""
    if steps_per_epoch is not None:
        return step // steps_per_epoch + 1
    return step * n_epochs // total_steps + 1


def lr_factor(epoch: int, n_epochs: int) -> float:
    """The reference's MultiStepLR(×0.5) for 1-based ``epoch``: halved from epochs int(0.2E), int(0.4E),
    int(0.6E), int(0.8E) on (E = 100: epochs 20, 40, 60, 80). Milestones that fall before epoch 1 (E < 5)
    are dropped rather than halving from the start."""
    milestones = [int(f * n_epochs) for f in (0.2, 0.4, 0.6, 0.8)]
    return 0.5 ** sum(1 for m in milestones if m >= 1 and epoch >= m)


def step_seed(seed: int, step: int) -> int:
    """A 63-bit seed for the device generator of ``step`` (masks and noise)."""
    return int(np.random.SeedSequence([seed, step, 3]).generate_state(1, np.uint64)[0] >> 1)


# ------------------------------------------------------------------------------------------- helpers

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "Dist":
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))


def check_run_dir(run_dir: Path, resume: bool, force: bool) -> None:
    """Refuse to clobber a run: an existing run needs --resume (continue) or --force (start over)."""
    if resume:
        if not (run_dir / "config.json").is_file():
            raise InputError(f"{run_dir}: nothing to resume (no config.json)")
    elif run_dir.exists() and any(run_dir.iterdir()) and not force:
        raise InputError(f"{run_dir}: run folder is not empty (use --resume to continue it or --force to start over)")


def prepare_run_dir(run_dir: Path, resume: bool) -> None:
    """Create the run folder; when starting over, remove only what a run writes (after check_run_dir)."""
    if not resume and run_dir.exists():
        for p in run_dir.iterdir():
            if p.name in RUN_FILES or p.name.startswith(("ckpt-", ".ckpt-")) or p.name == "tensorboard":
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


#: Options that may change when a run is resumed: where and how it runs, how often it reports, not what it
#: learns (data may name the same store at a new path). Everything else is the run's own and is refused.
SAFE_ON_RESUME = ("device", "data", "precision", "compile", "cuda_graphs", "data_on_device", "log_every",
                  "ckpt_every", "keep_checkpoints", "tensorboard", "val_every", "pictures")


def resume_config(run_dir: Path, asked: TrainConfig, given: set[str] | None, log) -> TrainConfig:
    """The run's stored configuration with the safe options the user gave applied (see :data:`SAFE_ON_RESUME`).

    ``given`` names the options the user set (the CLI knows); None takes every field that differs from the
    dataclass default. An option outside the safe set that differs from the run's raises InputError naming it.
    """
    stored = TrainConfig.load(run_dir / "config.json")
    if given is None:
        defaults = TrainConfig()
        given = {f.name for f in dataclasses.fields(TrainConfig) if getattr(asked, f.name) != getattr(defaults, f.name)}
    differ = sorted(n for n in given if getattr(asked, n) != getattr(stored, n))
    fixed = [n for n in differ if n not in SAFE_ON_RESUME]
    if fixed:
        what = "; ".join(f"--{n.replace('_', '-')} {getattr(asked, n)} (run: {getattr(stored, n)})" for n in fixed)
        raise InputError(f"--resume: {what}: these options define the run and cannot change when it resumes "
                         f"(leave them out, or start a new run with --force or another --out)")
    applied = {n: getattr(asked, n) for n in differ}
    applied["device"] = asked.device  # the machine it runs on now
    if any(n != "device" for n in applied):
        log("resume: applying " + ", ".join(f"--{n.replace('_', '-')} {v} (was {getattr(stored, n)})"
                                            for n, v in applied.items() if n != "device"))
    return dataclasses.replace(stored, **applied)


def open_tensorboard(run_dir: Path):
    """A TensorBoard SummaryWriter in RUN_DIR/tensorboard (needs the optional extra)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise InputError("--tensorboard: needs the optional extra: pip install 'n2n-raw[tensorboard]'") from None
    return SummaryWriter(str(run_dir / "tensorboard"))


class MetricsLog:
    """metrics.csv, appended row by row (on resume, rows past the checkpoint are dropped first)."""

    def __init__(self, path: Path, keep_until_step: int | None):
        self.path = path
        rows = []
        if keep_until_step is not None and path.exists():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_until_step]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, METRIC_FIELDS)
            w.writeheader()
            w.writerows(rows)

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, METRIC_FIELDS).writerow({k: row.get(k, "") for k in METRIC_FIELDS})


# ------------------------------------------------------------------------------------------- validation

@functools.lru_cache(maxsize=1)
def val_blocks(noisy_path: str, gt_path: str) -> tuple[np.ndarray, np.ndarray]:
    """The raw validation block files, read once per process (validation and the end-of-run picture)."""
    from .io.sidd import read_blocks, read_checked_blocks
    return read_checked_blocks(noisy_path), read_blocks(gt_path)


def make_validator(cfg: TrainConfig, device: torch.device):
    """A function model → (psnr, ssim) for the configured validation data, or None. Validation runs in fp32
    whatever the training precision: a score is never taken under bf16 rounding."""
    if cfg.mode == "srgb" and cfg.val:
        from .evaluate import evaluate_srgb
        return lambda m: _ps(evaluate_srgb(m, list(cfg.val), cfg.noise, cfg.val_repeat, 101, device, "fp32"))
    if cfg.mode == "raw" and cfg.val_noisy:
        if not cfg.val_gt:
            raise InputError("--val-gt: needed together with --val-noisy")
        from .evaluate import evaluate_raw
        from .io.sidd import block_cfas
        noisy, gt = val_blocks(cfg.val_noisy, cfg.val_gt)
        cfas = block_cfas(noisy.shape[0], cfg.val_cfa)  # the blocks' own CFAs: --cfa is for the training data
        return lambda m: _ps(evaluate_raw(m, noisy, gt, cfas, cfg.cfa_mode, 32, device, "fp32"))
    return None


def write_pictures(cfg: TrainConfig, source, model: torch.nn.Module, run_dir: Path, device: torch.device) -> None:
    """curves.png and comparison.png (noisy / denoised / clean where known) of one validation image, or of
    a training crop when no validation data are configured; raw is rendered to sRGB for viewing."""
    from . import plots
    from .infer import forward_padded
    plots.write_curves(run_dir)
    model.eval()
    if cfg.mode == "srgb":
        from .io.images import read_rgb, validation_folder_images
        if cfg.val:
            im = read_rgb(validation_folder_images(cfg.val[0])[0])
        else:
            it = source.items[0]
            im = it.crop(0, 0, min(256, it.shape[0]), min(256, it.shape[1]))
        s = min(256, im.shape[0], im.shape[1])
        clean = torch.from_numpy(np.ascontiguousarray(im[:s, :s].transpose(2, 0, 1))).float()[None] / 255
        noisy = make_noise(cfg.noise)(clean, torch.Generator().manual_seed(0))
        den = forward_padded(model, noisy.to(device), "fp32").cpu()
        to8 = lambda t: (t[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)  # noqa: E731
        panels = [("noisy", to8(noisy)), ("denoised", to8(den)), ("clean", to8(clean))]
    else:
        from .infer import denoise_mosaic
        if cfg.val_noisy and cfg.val_gt:
            from .io.sidd import block_cfas
            noisy, gt = (b[0, 0] for b in val_blocks(cfg.val_noisy, cfg.val_gt))
            cfa = block_cfas(1, cfg.val_cfa)[0]
        else:
            it = source.items[0]
            noisy, gt, cfa = it.crop(0, 0, min(512, it.shape[0]), min(512, it.shape[1])), None, it.cfa
        den = denoise_mosaic(model, noisy, cfa, cfg.cfa_mode, device=device, precision="fp32")
        panels = [("noisy", plots.raw_to_srgb(noisy, cfa)),
                  ("denoised", plots.raw_to_srgb(np.clip(den, 0, 1), cfa, ref=noisy))]
        if gt is not None:
            panels.append(("clean", plots.raw_to_srgb(gt, cfa, ref=noisy)))
    plots.write_comparison(run_dir / "comparison.png", panels)
    model.train()


def _ps(report: dict) -> tuple[float, float]:
    return report["psnr"], report["ssim"]


# ------------------------------------------------------------------------------------------- the loop

def train(cfg: TrainConfig, run_dir: str | Path, *, resume: bool = False, force: bool = False,
          log=print, validator=None, given: set[str] | None = None) -> dict:
    """Train a Neighbor2Neighbor U-Net; returns the summary (also written to RUN_DIR/summary.json).

    On ``resume`` the run's stored configuration is used; options in ``given`` (see :func:`resume_config`)
    that are safe to change are applied, others must equal the run's.

    ``validator`` (model → (psnr, ssim)) replaces the configured validation (benchmarks use it). The
    ``seconds`` of metrics.csv count training only, not validation.
    """
    run_dir, dist = Path(run_dir), Dist.from_env()
    if resume and (run_dir / "config.json").is_file():  # the run's own configuration wins
        cfg = resume_config(run_dir, cfg, given, log if dist.rank == 0 else (lambda s: None))
    asked_epochs = cfg.epochs
    cfg = cfg.resolved()
    if cfg.epochs != asked_epochs and dist.rank == 0:
        log(f"note: --steps {cfg.steps} is below --epochs {asked_epochs}: using {cfg.epochs} nominal epochs "
            "(one step each)")
    # Check everything a user gave before the run folder is touched, so a mistake leaves nothing behind.
    device = pick_device(cfg.device, dist.local_rank)
    compiled, graphs = compile_plan(device, cfg.compile, cfg.cuda_graphs, cfg.batch_size, dist.world)
    if dist.rank == 0:
        check_run_dir(run_dir, resume, force)
    source = load_source(cfg)
    supervised = cfg.target == "supervised"
    if supervised and cfg.mode == "raw" and not source.has_gt:
        raise InputError(f"--target supervised: {cfg.data or 'the training data'} has no clean frames "
                         f"(a store needs `prepare sidd --with-gt`; a SIDD folder its GT_RAW files)")
    if dist.rank == 0:
        prepare_run_dir(run_dir, resume)
        (run_dir / "config.json").write_text(cfg.to_json())
    if dist.world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True

    # Model, optimiser.
    torch.manual_seed(cfg.seed)
    model = place_model(UNet(cfg.channels, cfg.channels, init=cfg.init, residual=cfg.residual), device)
    global_batch = cfg.batch_size * dist.world
    base_lr = cfg.scaled_lr(global_batch)
    optimizer = torch.optim.Adam(model.parameters(), lr=base_lr, fused=device.type == "cuda")  # one kernel set
    noise = make_noise(cfg.noise).to(device) if cfg.mode == "srgb" else None

    # Schedule: natural epochs (one crop per item, last partial batch dropped) or --steps split into epochs.
    if cfg.steps is None:
        steps_per_epoch = len(source) // global_batch
        if steps_per_epoch == 0:
            raise InputError(f"{cfg.data or 'default data'}: {len(source)} training images are fewer than one "
                             f"batch of {global_batch}; use --steps or a smaller --batch-size")
        total = steps_per_epoch * cfg.epochs
    else:
        steps_per_epoch, total = None, cfg.steps
    part = (slice(dist.rank * cfg.batch_size, (dist.rank + 1) * cfg.batch_size), global_batch)

    start, resumed_last = 0, {}
    if resume:
        found = ckpt.list_checkpoints(run_dir)
        if found:
            meta, tensors = ckpt.load_checkpoint(found[-1])
            model.load_state_dict(ckpt.build_model(meta, tensors, str(found[-1])).state_dict())
            ckpt.restore_optimizer(optimizer, meta, tensors)
            start = int(meta["step"])
            resumed_last = dict(meta.get("metrics") or {})
    metrics = MetricsLog(run_dir / "metrics.csv", start) if dist.rank == 0 else None
    tb = open_tensorboard(run_dir) if cfg.tensorboard and dist.rank == 0 else None

    net = model
    if dist.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    validate = None
    if dist.rank == 0 and cfg.val_every > 0:
        validate = validator or make_validator(cfg, device)

    # The step: loss (bf16 autocast, fp32 reductions) and its backward, compiled as one graph on CUDA.
    # ``clean`` is None unless the target is supervised.
    def loss_fn(noisy, clean, masks, gamma):
        with autocast(device, cfg.precision):
            if supervised:
                return supervised_loss(net, noisy, clean)
            return n2n_loss(net, noisy, masks, gamma, cfg.lambda1, cfg.lambda2)
    step_fn = training_step(loss_fn, compiled, graphs, fullgraph=dist.world == 1,  # DDP splits at its buckets
                            strict=cfg.compile == "on", reset=lambda: optimizer.zero_grad(set_to_none=True), log=log)
    gamma_t = torch.zeros((), device=device)  # Λ as a tensor: a new value must not recompile the step

    # Where crops come from: the set on the device, in pinned host memory, or cut on the host per step.
    storage = data_storage(cfg.data_on_device, device, flat_nbytes(source))
    if supervised and cfg.mode == "raw":
        storage = "host"  # the device cropper holds noisy mosaics only; clean crops come with the host path
    cropper = DeviceCropper(source, device, pinned=storage == "pinned") if storage != "host" else None
    gen = torch.Generator(device=device)
    crop_gen = torch.Generator() if storage == "pinned" else gen
    progress = ProgressHook("train", "step", enabled=dist.rank == 0)
    ckpt_meta = lambda epoch, extra: {"mode": cfg.mode, "target": cfg.target, "cfa_mode": cfg.cfa_mode,  # noqa: E731
                                      "noise": cfg.noise, "epoch": epoch, "total_steps": total,
                                      "config": json.loads(cfg.to_json()), "metrics": extra}
    if dist.rank == 0:
        log(f"training {cfg.mode}{' (supervised)' if supervised else ''} on {device.type}: {len(source)} items, "
            f"{total} steps of batch {global_batch}, {cfg.epochs} epochs, lr {base_lr:g}, γ {cfg.increase_ratio:g}, init {cfg.init}; "
            f"{'bf16' if use_bf16(device, cfg.precision) else 'fp32'}, "
            f"{'compiled' + (' + CUDA graphs' if graphs else '') if compiled else 'eager'}, data {storage}"
            + (f" (resuming at step {start})" if start else ""))

    # The loop.
    t0, t_last, s_last = time.perf_counter(), time.perf_counter(), start
    t_val = 0.0  # seconds spent validating, kept out of the training time
    acc = torch.zeros(3, device=device)
    last: dict = resumed_last
    for step in range(start, total):
        epoch = epoch_of(step, total, cfg.epochs, steps_per_epoch)
        lr = base_lr * lr_factor(epoch, cfg.epochs)
        for g in optimizer.param_groups:
            g["lr"] = lr
        gamma = gamma_for_epoch(epoch, cfg.epochs, cfg.increase_ratio)

        seed = step_seed(cfg.seed, step)
        gen.manual_seed(seed)
        if cropper is not None:
            # Crops of the whole global batch, then this rank's slice: ranks draw exactly what one process would.
            crop_gen.manual_seed(seed)
            idx = device_indices(len(source), step, global_batch, cfg.seed, steps_per_epoch, cropper.device)
            batch = cropper.crops(idx, crop_gen)[part[0]]
        elif supervised and cfg.mode == "raw":  # noisy crops and the clean crops at the same windows
            batch, clean = (t.to(device, non_blocking=True) for t in
                            make_batch(source, step, global_batch, cfg.seed, steps_per_epoch, part[0], with_gt=True))
        else:
            batch = make_batch(source, step, global_batch, cfg.seed, steps_per_epoch, part[0]).to(device, non_blocking=True)
        if noise is not None:  # sRGB crops are clean; the noise is drawn here
            clean, noisy = batch, noise(batch, gen, part)
        else:
            noisy = batch
        masks = draw_masks(global_batch, noisy.shape[-2], noisy.shape[-1], gen)[:, part[0]]  # drawn for every target
        gamma_t.fill_(gamma)
        optimizer.zero_grad(set_to_none=True)
        loss, rec, reg = step_fn(noisy, clean if supervised else None, masks, gamma_t)  # forward and backward
        optimizer.step()
        acc += torch.stack([loss, rec, reg])

        done = step + 1
        epoch_end = done == total or epoch_of(done, total, cfg.epochs, steps_per_epoch) != epoch
        log_now = done % cfg.log_every == 0 or epoch_end
        if log_now and dist.world > 1:  # report the global batch's loss, not rank 0's share
            torch.distributed.all_reduce(acc)
            acc /= dist.world
        if dist.rank != 0:
            if log_now:
                acc.zero_()
            continue
        if log_now:
            now = time.perf_counter()
            vals = (acc / (done - s_last)).tolist()
            last = {"step": done, "epoch": epoch, "lr": lr, "gamma": gamma, "loss": vals[0], "rec": vals[1],
                    "reg": vals[2], "seconds": round(now - t0 - t_val, 3),
                    "crops_per_s": round((done - s_last) * global_batch / max(now - t_last, 1e-9), 2)}
            progress(done, total, epoch=epoch, loss=f"{vals[0]:.5f}", crops_s=last["crops_per_s"])
            acc.zero_()
            t_last, s_last = now, done
            if epoch_end and validate and (epoch % cfg.val_every == 0 or done == total):
                tv = time.perf_counter()
                last["val_psnr"], last["val_ssim"] = validate(model)
                model.train()
                t_val += time.perf_counter() - tv
                t_last += time.perf_counter() - tv
                progress.message(f"epoch {epoch}: validation PSNR {last['val_psnr']:.2f} dB, SSIM {last['val_ssim']:.4f}")
            metrics.write(last)
            if tb is not None:
                for k in ("loss", "rec", "reg", "lr", "gamma", "crops_per_s", "val_psnr", "val_ssim"):
                    if k in last:
                        tb.add_scalar(k, last[k], done)
        if epoch_end or (cfg.ckpt_every and done % cfg.ckpt_every == 0):
            ckpt.save_checkpoint(run_dir, done, model, optimizer, ckpt_meta(epoch, last), cfg.keep_checkpoints)
    progress.close()
    if tb is not None:
        tb.close()

    summary = {"steps": total, "seconds": round(time.perf_counter() - t0, 2), **{k: last.get(k) for k in
               ("loss", "val_psnr", "val_ssim")}, "run_dir": str(run_dir),
               "rank": dist.rank}
    if dist.rank == 0:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        if cfg.pictures:
            write_pictures(cfg, source, model, run_dir, device)
    if dist.world > 1:
        torch.distributed.barrier()
    return summary
