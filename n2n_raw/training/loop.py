"""The training loop, top to bottom: :func:`setup` builds a :class:`Run` (run folder, data, model, schedule,
the compiled step); :func:`train_step` is one optimiser step; :func:`report` logs, validates and checkpoints
after it; :func:`finish` writes the summary and pictures. :func:`train` is those four in a loop.

Everything random in a step (which items, which crops, the synthetic noise, the sub-sampler masks) is drawn
from generators seeded by (seed, step), so a run resumed from a checkpoint continues exactly as if it had
never stopped, and DDP ranks draw the global batch's randomness identically and take their own slice.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from n2n_raw import checkpoint as ckpt
from n2n_raw.accel import autocast, compile_plan, data_storage, pick_device, place_model, training_step, use_bf16
from n2n_raw.checkpoint import starting_model
from n2n_raw.config import NOISY_TARGETS, PAIRED_TARGETS, TrainConfig
from n2n_raw.errors import InputError
from n2n_raw.evaluation.validation import make_validator
from n2n_raw.method.gat_unet import GatUNet
from n2n_raw.method.loss import gamma_for_epoch, n2n_loss, noise2noise_sub_loss, r2r_loss, supervised_loss
from n2n_raw.method.noise import RawShotReadNoise, make_noise
from n2n_raw.method.subsample import draw_masks
from n2n_raw.method.unet import UNet
from n2n_raw.progress import ProgressHook
from n2n_raw.training.batches import DeviceCropper, device_indices, flat_nbytes, make_batch, sample_indices
from n2n_raw.training.plots import write_pictures
from n2n_raw.training.runfolder import MetricsLog, check_run_dir, open_tensorboard, prepare_run_dir, resume_config
from n2n_raw.training.sources import load_source, training_profile

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


# ------------------------------------------------------------------------------------------- the run

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "Dist":
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))


class Batches:
    """The inputs of step ``s``: (noisy, clean or None, masks), all drawn from generators seeded by (seed, s).

    Crops come from the set on the device (cut there), from pinned host memory, or are cut on the host per
    step (``storage``); sRGB crops are clean and get their noise here. Under DDP every rank draws the global
    batch's crops and masks and keeps its ``part``, so ranks see exactly what one process would.
    """

    def __init__(self, cfg: TrainConfig, source, device: torch.device, dist: Dist, steps_per_epoch: int | None):
        self.cfg, self.source, self.device, self.steps_per_epoch = cfg, source, device, steps_per_epoch
        self.global_batch = cfg.batch_size * dist.world
        self.part = slice(dist.rank * cfg.batch_size, (dist.rank + 1) * cfg.batch_size)
        self.target = cfg.target
        self.supervised = cfg.target in PAIRED_TARGETS  # supervised and noise2noise train on clean crops' pairs
        self.noise = make_noise(cfg.noise).to(device) if cfg.mode == "srgb" else None
        # Raw with redrawn noise: clean crops, and each item's (a, b) for the noise drawn on them every step.
        self.redraw = RawShotReadNoise() if cfg.redraw_noise else None
        self.levels = source.noise_levels().to(device) if cfg.redraw_noise else None
        self.storage = data_storage(cfg.data_on_device, device, flat_nbytes(source))
        if cfg.mode == "raw" and (self.supervised or self.redraw is not None):
            self.storage = "host"  # the device cropper holds noisy mosaics only; clean crops come with the host path
        self.cropper = (DeviceCropper(source, device, pinned=self.storage == "pinned")
                        if self.storage != "host" else None)
        self.gen = torch.Generator(device=device)
        self.crop_gen = torch.Generator() if self.storage == "pinned" else self.gen

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        cfg, source, seed = self.cfg, self.source, step_seed(self.cfg.seed, step)
        self.gen.manual_seed(seed)
        clean = None
        if self.cropper is not None:
            self.crop_gen.manual_seed(seed)
            idx = device_indices(len(source), step, self.global_batch, cfg.seed, self.steps_per_epoch,
                                 self.cropper.device)
            batch = self.cropper.crops(idx, self.crop_gen)[self.part]
        elif cfg.mode == "raw" and (self.supervised or self.redraw is not None):
            # Noisy crops and the clean crops at the same windows.
            batch, clean = (t.to(self.device, non_blocking=True) for t in
                            make_batch(source, step, self.global_batch, cfg.seed, self.steps_per_epoch, self.part,
                                       with_gt=True))
        else:
            batch = make_batch(source, step, self.global_batch, cfg.seed, self.steps_per_epoch,
                               self.part).to(self.device, non_blocking=True)
        if self.noise is not None:  # sRGB crops are clean; the noise is drawn here
            clean = batch
        noisy = self._draw(clean, step) if self.noise is not None or self.redraw is not None else batch
        # Masks are drawn for every target, so a supervised run draws the same random stream as N2N.
        masks = draw_masks(self.global_batch, noisy.shape[-2], noisy.shape[-1], self.gen)[:, self.part]
        if self.target in NOISY_TARGETS:  # the target: the same clean crops under an independent draw
            clean = self._draw(clean, step)
        if self.target == "r2r":  # the recorruption draw, unit variance (the loss scales it)
            return noisy, torch.randn(noisy.shape, generator=self.gen, device=self.device), masks
        return noisy, clean if self.supervised else None, masks

    def _draw(self, clean: torch.Tensor, step: int) -> torch.Tensor:
        """A fresh noise draw on clean crops (B, C, h, w): sRGB's ``--noise``, or raw ``--redraw-noise`` at
        each sample's item level; drawn for the global batch, so ranks keep their slice of one draw."""
        part = (self.part, self.global_batch)
        if self.redraw is None:
            return self.noise(clean, self.gen, part)
        idx = sample_indices(len(self.source), step, self.global_batch, self.cfg.seed, self.steps_per_epoch)
        a, b = self.levels[torch.from_numpy(idx[self.part]).to(self.device)].unbind(1)
        return self.redraw(clean, a, b, self.gen, part)


@dataclass
class Run:
    """Everything the loop needs between steps, built by :func:`setup`."""
    cfg: TrainConfig
    run_dir: Path
    dist: Dist
    device: torch.device
    source: object
    model: torch.nn.Module                 # the bare model (checkpointed, validated)
    optimizer: torch.optim.Optimizer
    step_fn: Callable                      # (noisy, clean, masks, Λ) → (loss, rec, reg), forward and backward
    batches: Batches
    total: int                             # optimiser steps of the whole run
    steps_per_epoch: int | None            # None: --steps laid over the nominal epochs
    base_lr: float
    start: int                             # first step (> 0 when resumed)
    log: Callable[[str], None]
    metrics: MetricsLog | None             # rank 0 only
    tb: object = None                      # TensorBoard writer (rank 0, when asked for)
    validate: Callable | None = None       # model → (psnr, ssim), rank 0 only
    last: dict = field(default_factory=dict)  # the newest metrics row
    gamma_t: torch.Tensor | None = None    # Λ as a tensor: a new value must not recompile the step
    acc: torch.Tensor | None = None        # summed (loss, rec, reg) since the last row
    progress: ProgressHook | None = None
    t0: float = 0.0                        # clock: start, last row, validation seconds (kept out of training time)
    t_last: float = 0.0
    s_last: int = 0
    t_val: float = 0.0

    def epoch_of(self, step: int) -> int:
        return epoch_of(step, self.total, self.cfg.epochs, self.steps_per_epoch)

    def checkpoint_meta(self, epoch: int) -> dict:
        cfg = self.cfg
        return {"mode": cfg.mode, "target": cfg.target, "cfa_mode": cfg.cfa_mode, "noise": cfg.noise,
                "epoch": epoch, "total_steps": self.total, "config": json.loads(cfg.to_json()), "metrics": self.last}


def setup(cfg: TrainConfig, run_dir: str | Path, *, resume: bool = False, force: bool = False, log=print,
          validator=None, given: set[str] | None = None) -> Run:
    """Check the options, make (or reopen) the run folder and build the run; see :func:`train`."""
    run_dir, dist = Path(run_dir), Dist.from_env()
    quiet = lambda s: None  # noqa: E731  (other DDP ranks)
    if resume and (run_dir / "config.json").is_file():  # the run's own configuration wins
        cfg = resume_config(run_dir, cfg, given, log if dist.rank == 0 else quiet)
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
    supervised = cfg.target in PAIRED_TARGETS  # noisy → clean, or noisy → noisy (noise2noise): plain MSE
    for asked, option in ((supervised and cfg.mode == "raw", f"--target {cfg.target}"),
                          (cfg.redraw_noise, "--redraw-noise")):
        if asked and not source.has_gt:
            raise InputError(f"{option}: {cfg.data or 'the training data'} has no clean frames "
                             f"(a store needs `prepare sidd --with-gt`; a SIDD folder its GT_RAW files)")
    if cfg.redraw_noise:
        source.noise_levels()  # every item needs an ISO: refused here, before the run folder is touched
    global_batch = cfg.batch_size * dist.world
    steps_per_epoch, total = schedule(cfg, len(source), global_batch)
    torch.manual_seed(cfg.seed)
    model = initial_model(cfg, source, log if dist.rank == 0 else quiet)  # --start-from is checked here, too
    if dist.rank == 0:
        prepare_run_dir(run_dir, resume)
        (run_dir / "config.json").write_text(cfg.to_json())
    if dist.world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True

    # Model and optimiser, from the newest checkpoint when resuming.
    model = place_model(model, device)
    base_lr = cfg.scaled_lr(global_batch)
    optimizer = torch.optim.Adam(model.parameters(), lr=base_lr, fused=device.type == "cuda")  # one kernel set
    start, last = restore(run_dir, model, optimizer) if resume else (0, {})

    # The step: loss (bf16 autocast, fp32 reductions) and its backward, compiled as one graph on CUDA.
    net = model
    if dist.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def loss_fn(noisy, clean, masks, gamma):
        with autocast(device, cfg.precision):
            if cfg.target == "noise2noise-sub":
                return noise2noise_sub_loss(net, noisy, clean, masks)
            if cfg.target == "r2r":  # ``clean`` holds the recorruption draw
                return r2r_loss(net, noisy, clean)
            if supervised:
                return supervised_loss(net, noisy, clean)
            return n2n_loss(net, noisy, masks, gamma, cfg.lambda1, cfg.lambda2)
    step_fn = training_step(loss_fn, compiled, graphs, fullgraph=dist.world == 1,  # DDP splits at its buckets
                            strict=cfg.compile == "on", reset=lambda: optimizer.zero_grad(set_to_none=True), log=log)

    rank0 = dist.rank == 0
    run = Run(cfg=cfg, run_dir=run_dir, dist=dist, device=device, source=source, model=model, optimizer=optimizer,
              step_fn=step_fn, batches=Batches(cfg, source, device, dist, steps_per_epoch), total=total,
              steps_per_epoch=steps_per_epoch, base_lr=base_lr, start=start, last=last, log=log if rank0 else quiet,
              metrics=MetricsLog(run_dir / "metrics.csv", start) if rank0 else None,
              tb=open_tensorboard(run_dir) if cfg.tensorboard and rank0 else None,
              validate=(validator or make_validator(cfg, device)) if rank0 and cfg.val_every > 0 else None,
              gamma_t=torch.zeros((), device=device), acc=torch.zeros(3, device=device),
              progress=ProgressHook("train", "step", enabled=rank0))
    run.log(f"training {cfg.mode}{f' ({cfg.target})' if supervised else ''}"
            f"{' with noise redrawn every step' if cfg.redraw_noise else ''} on {device.type}: {len(source)} items, "
            f"{total} steps of batch {global_batch}, {cfg.epochs} epochs, lr {base_lr:g}, γ {cfg.increase_ratio:g}, "
            f"init {cfg.init}; {'bf16' if use_bf16(device, cfg.precision) else 'fp32'}, "
            f"{'compiled' + (' + CUDA graphs' if graphs else '') if compiled else 'eager'}, "
            f"data {run.batches.storage}" + (f" (resuming at step {start})" if start else ""))
    run.t0 = run.t_last = time.perf_counter()
    run.s_last = start
    return run


def initial_model(cfg: TrainConfig, source, log) -> torch.nn.Module:
    """A fresh U-Net (``--init``), or the weights of ``--start-from``; a :class:`GatUNet` gets the training
    frames' noise profile (the median of their blind estimates)."""
    if cfg.start_from is None:
        return UNet(cfg.channels, cfg.channels, init=cfg.init, residual=cfg.residual)
    model = starting_model(cfg.start_from)
    if cfg.target == "r2r" and not isinstance(model, GatUNet):
        raise InputError(f"--target r2r: {cfg.start_from} does not denoise in the variance-stabilised domain "
                         "(use --start-from pretrained or a run made from it)")
    if isinstance(model, GatUNet):
        model.set_profile(*training_profile(source.items, cfg.cfa_mode))
        log(f"starting from {cfg.start_from}; noise profile of the training frames (per packed channel): "
            f"{model.describe_profile()}")
    return model


def schedule(cfg: TrainConfig, n_items: int, global_batch: int) -> tuple[int | None, int]:
    """(steps per epoch, total steps): natural epochs (one crop per item, the last partial batch dropped),
    or ``--steps`` laid over the nominal epochs (steps per epoch None)."""
    if cfg.steps is not None:
        return None, cfg.steps
    steps_per_epoch = n_items // global_batch
    if steps_per_epoch == 0:
        raise InputError(f"{cfg.data or 'default data'}: {n_items} training images are fewer than one "
                         f"batch of {global_batch}; use --steps or a smaller --batch-size")
    return steps_per_epoch, steps_per_epoch * cfg.epochs


def restore(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, dict]:
    """Load the newest checkpoint of ``run_dir`` into model and optimiser: (its step, its metrics row);
    (0, {}) when the run has none yet."""
    found = ckpt.list_checkpoints(run_dir)
    if not found:
        return 0, {}
    meta, tensors = ckpt.load_checkpoint(found[-1])
    model.load_state_dict(ckpt.build_model(meta, tensors, str(found[-1])).state_dict())
    ckpt.restore_optimizer(optimizer, meta, tensors)
    return int(meta["step"]), dict(meta.get("metrics") or {})


def train_step(run: Run, step: int) -> tuple[int, float, float]:
    """One optimiser step (0-based ``step``) at the schedule's LR and Λ; returns (epoch, lr, Λ)."""
    cfg = run.cfg
    epoch = run.epoch_of(step)
    lr = run.base_lr * lr_factor(epoch, cfg.epochs)
    for g in run.optimizer.param_groups:
        g["lr"] = lr
    gamma = gamma_for_epoch(epoch, cfg.epochs, cfg.increase_ratio)
    noisy, clean, masks = run.batches(step)
    run.gamma_t.fill_(gamma)
    run.optimizer.zero_grad(set_to_none=True)
    loss, rec, reg = run.step_fn(noisy, clean, masks, run.gamma_t)  # forward and backward
    run.optimizer.step()
    run.acc += torch.stack([loss, rec, reg])
    return epoch, lr, gamma


def report(run: Run, done: int, epoch: int, lr: float, gamma: float) -> None:
    """After ``done`` steps: a metrics row every ``log_every`` steps and at epoch ends (validation at every
    ``val_every``-th epoch end and at the last step), and a checkpoint at epoch ends and every ``ckpt_every``."""
    cfg, dist = run.cfg, run.dist
    epoch_end = done == run.total or run.epoch_of(done) != epoch
    log_now = done % cfg.log_every == 0 or epoch_end
    if log_now and dist.world > 1:  # report the global batch's loss, not rank 0's share
        torch.distributed.all_reduce(run.acc)
        run.acc /= dist.world
    if dist.rank != 0:
        if log_now:
            run.acc.zero_()
        return
    if log_now:
        now = time.perf_counter()
        vals = (run.acc / (done - run.s_last)).tolist()
        run.last = last = {"step": done, "epoch": epoch, "lr": lr, "gamma": gamma, "loss": vals[0], "rec": vals[1],
                           "reg": vals[2], "seconds": round(now - run.t0 - run.t_val, 3),
                           "crops_per_s": round((done - run.s_last) * run.batches.global_batch
                                                / max(now - run.t_last, 1e-9), 2)}
        run.progress(done, run.total, epoch=epoch, loss=f"{vals[0]:.5f}", crops_s=last["crops_per_s"])
        run.acc.zero_()
        run.t_last, run.s_last = now, done
        if epoch_end and run.validate and (epoch % cfg.val_every == 0 or done == run.total):
            tv = time.perf_counter()
            last["val_psnr"], last["val_ssim"] = run.validate(run.model)
            run.model.train()
            run.t_val += time.perf_counter() - tv
            run.t_last += time.perf_counter() - tv
            run.progress.message(f"epoch {epoch}: validation PSNR {last['val_psnr']:.2f} dB, "
                                 f"SSIM {last['val_ssim']:.4f}")
        run.metrics.write(last)
        if run.tb is not None:
            for k in ("loss", "rec", "reg", "lr", "gamma", "crops_per_s", "val_psnr", "val_ssim"):
                if k in last:
                    run.tb.add_scalar(k, last[k], done)
    if epoch_end or (cfg.ckpt_every and done % cfg.ckpt_every == 0):
        ckpt.save_checkpoint(run.run_dir, done, run.model, run.optimizer, run.checkpoint_meta(epoch),
                             cfg.keep_checkpoints)


def finish(run: Run) -> dict:
    """Close the logs; rank 0 writes summary.json and the pictures. Returns the summary."""
    run.progress.close()
    if run.tb is not None:
        run.tb.close()
    summary = {"steps": run.total, "seconds": round(time.perf_counter() - run.t0, 2),
               **{k: run.last.get(k) for k in ("loss", "val_psnr", "val_ssim")}, "run_dir": str(run.run_dir),
               "rank": run.dist.rank}
    if run.dist.rank == 0:
        (run.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        if run.cfg.pictures:
            write_pictures(run.cfg, run.source, run.model, run.run_dir, run.device)
    if run.dist.world > 1:
        torch.distributed.barrier()
    return summary


# ------------------------------------------------------------------------------------------- the loop

def train(cfg: TrainConfig, run_dir: str | Path, *, resume: bool = False, force: bool = False,
          log=print, validator=None, given: set[str] | None = None) -> dict:
    """Train a Neighbor2Neighbor U-Net (or, with ``target="supervised"``, the same U-Net noisy → clean;
    ``"noise2noise"``: noisy → independently noisy; ``"noise2noise-sub"``: the same on N2N's sub-images);
    returns the summary (also written to RUN_DIR/summary.json).

    On ``resume`` the run's stored configuration is used; options in ``given`` (see
    :func:`n2n_raw.training.runfolder.resume_config`) that are safe to change are applied, others must equal the run's.
    ``validator`` (model → (psnr, ssim)) replaces the configured validation (benchmarks use it). The
    ``seconds`` of metrics.csv count training only, not validation.
    """
    run = setup(cfg, run_dir, resume=resume, force=force, log=log, validator=validator, given=given)
    for step in range(run.start, run.total):
        epoch, lr, gamma = train_step(run, step)
        report(run, step + 1, epoch, lr, gamma)
    return finish(run)
