"""The training loop, top to bottom: :func:`setup` builds a :class:`Run` (run folder, data, model, schedule,
the compiled step); :func:`train_step` is one optimiser step; :meth:`Run.due` says what follows it (a
metrics row, validation, a checkpoint); :func:`finish` writes the summary and pictures. :func:`train` reads as
that loop.

Everything random in a step (which items, which crops, the synthetic noise, the sub-sampler masks) is drawn
from generators seeded by (seed, step), so a run resumed from a checkpoint continues exactly as if it had
never stopped, and DDP ranks draw the global batch's randomness identically and take their own slice.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from n2n_raw import checkpoint as ckpt
from n2n_raw.accel import autocast, compile_plan, pick_device, place_model, training_step, use_bf16
from n2n_raw.checkpoint import starting_model
from n2n_raw.config import R2R_TARGETS, TrainConfig
from n2n_raw.errors import InputError
from n2n_raw.evaluation.validation import make_validator
from n2n_raw.method.gat_unet import GatUNet
from n2n_raw.method.loss import (
    gamma_for_epoch,
    n2n_loss,
    noise2noise_sub_loss,
    r2r_linear_loss,
    r2r_loss,
    supervised_loss,
)
from n2n_raw.method.unet import UNet
from n2n_raw.progress import ProgressHook
from n2n_raw.training.batches import Batches, Dist
from n2n_raw.training.plots import write_pictures
from n2n_raw.training.runfolder import MetricsLog, check_run_dir, open_tensorboard, prepare_run_dir, resume_config
from n2n_raw.training.sources import Source, load_source, training_profile

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


# ------------------------------------------------------------------------------------------- the run

class Clock:
    """A run's wall time, with validation kept out of training time: ``seconds`` of metrics.csv and the rate
    since the previous metrics row."""

    def __init__(self, step: int):
        self.t0 = self.t_last = time.perf_counter()
        self.s_last = step      # the step of the previous metrics row
        self.t_val = 0.0        # seconds spent validating

    def lap(self, done: int) -> tuple[int, float, float]:
        """(steps, seconds) since the previous row and the training seconds so far; starts the next lap."""
        now = time.perf_counter()
        lap = (done - self.s_last, now - self.t_last, now - self.t0 - self.t_val)
        self.t_last, self.s_last = now, done
        return lap

    @contextlib.contextmanager
    def paused(self):
        """Time spent inside does not count as training (validation)."""
        t = time.perf_counter()
        yield
        spent = time.perf_counter() - t
        self.t_val += spent
        self.t_last += spent

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


@dataclass(frozen=True)
class Due:
    """What happens after a step: a metrics row (every ``log_every`` steps and at epoch ends), validation (at
    every ``val_every``-th epoch end and the last step, rank 0) and a checkpoint (at epoch ends and every
    ``ckpt_every`` steps)."""
    log: bool
    val: bool
    ckpt: bool


@dataclass
class Run:
    """Everything the loop needs between steps, built by :func:`setup`."""
    cfg: TrainConfig
    run_dir: Path
    dist: Dist
    device: torch.device
    source: Source
    model: torch.nn.Module                 # the bare model (checkpointed, validated)
    optimizer: torch.optim.Optimizer
    step_fn: Callable                      # (noisy, target, masks, Λ) → (loss, rec, reg), forward and backward
    batches: Batches
    total: int                             # optimiser steps of the whole run
    steps_per_epoch: int | None            # None: --steps laid over the nominal epochs
    base_lr: float
    start: int                             # first step (> 0 when resumed)
    log: Callable[[str], None]
    metrics: MetricsLog | None             # rank 0 only
    clock: Clock
    tb: object = None                      # TensorBoard writer (rank 0, when asked for)
    validate: Callable | None = None       # model → (psnr, ssim), rank 0 only
    last: dict = field(default_factory=dict)  # the newest metrics row
    gamma_t: torch.Tensor | None = None    # Λ as a tensor: a new value must not recompile the step
    acc: torch.Tensor | None = None        # summed (loss, rec, reg) since the last row
    progress: ProgressHook | None = None

    def epoch_of(self, step: int) -> int:
        return epoch_of(step, self.total, self.cfg.epochs, self.steps_per_epoch)

    def due(self, done: int, epoch: int) -> Due:
        """What is due after ``done`` steps, the last of them in ``epoch``."""
        cfg = self.cfg
        epoch_end = done == self.total or self.epoch_of(done) != epoch
        val = epoch_end and self.validate is not None and (epoch % cfg.val_every == 0 or done == self.total)
        return Due(log=done % cfg.log_every == 0 or epoch_end, val=val,
                   ckpt=epoch_end or bool(cfg.ckpt_every and done % cfg.ckpt_every == 0))

    def checkpoint_meta(self, epoch: int) -> dict:
        cfg = self.cfg
        return {"mode": cfg.mode, "target": cfg.target, "cfa_mode": cfg.cfa_mode, "noise": cfg.noise,
                "epoch": epoch, "total_steps": self.total, "config": json.loads(cfg.to_json()), "metrics": self.last}


# ------------------------------------------------------------------------------------------- setting up

def setup(cfg: TrainConfig, run_dir: str | Path, *, resume: bool = False, force: bool = False, log=print,
          validator=None, given: set[str] | None = None) -> Run:
    """Check the options, make (or reopen) the run folder and build the run; see :func:`train`.
    Everything a user gave is checked before the run folder is touched, so a mistake leaves nothing behind."""
    run_dir, dist = Path(run_dir), Dist.from_env()
    rank0 = dist.rank == 0
    say = log if rank0 else (lambda s: None)  # other DDP ranks stay quiet
    cfg = resolve(cfg, run_dir, resume, given, say)
    device = pick_device(cfg.device, dist.local_rank)
    compiled, graphs = compile_plan(device, cfg.compile, cfg.cuda_graphs, cfg.batch_size, dist.world)
    if rank0:
        check_run_dir(run_dir, resume, force)
    source = checked_source(cfg)
    global_batch = cfg.batch_size * dist.world
    steps_per_epoch, total = schedule(cfg, len(source), global_batch)
    torch.manual_seed(cfg.seed)
    model = initial_model(cfg, source, say)  # --start-from is checked here, too

    if rank0:  # the checks are done: the run folder is made
        prepare_run_dir(run_dir, resume)
        (run_dir / "config.json").write_text(cfg.to_json())
    start_processes(dist, device)
    model = place_model(model, device)
    base_lr = cfg.scaled_lr(global_batch)
    optimizer = torch.optim.Adam(model.parameters(), lr=base_lr, fused=device.type == "cuda")  # one kernel set
    start, last = restore(run_dir, model, optimizer) if resume else (0, {})
    step_fn = make_step(cfg, model, optimizer, device, dist, compiled, graphs, log)

    batches = Batches(cfg, source, device, dist, steps_per_epoch)
    validate = (validator or make_validator(cfg, device)) if rank0 and cfg.val_every > 0 else None
    say(f"training {cfg.mode}{f' ({cfg.target})' if cfg.paired else ''}"
        f"{' with noise redrawn every step' if cfg.redraw_noise else ''} on {device.type}: {len(source)} items, "
        f"{total} steps of batch {global_batch}, {cfg.epochs} epochs, lr {base_lr:g}, γ {cfg.increase_ratio:g}, "
        f"init {cfg.init}; {'bf16' if use_bf16(device, cfg.precision) else 'fp32'}, "
        f"{'compiled' + (' + CUDA graphs' if graphs else '') if compiled else 'eager'}, "
        f"data {batches.storage}" + (f" (resuming at step {start})" if start else ""))
    return Run(cfg=cfg, run_dir=run_dir, dist=dist, device=device, source=source, model=model, optimizer=optimizer,
               step_fn=step_fn, batches=batches, total=total, steps_per_epoch=steps_per_epoch, base_lr=base_lr,
               start=start, last=last, log=say, metrics=MetricsLog(run_dir / "metrics.csv", start) if rank0 else None,
               tb=open_tensorboard(run_dir) if cfg.tensorboard and rank0 else None, validate=validate,
               gamma_t=torch.zeros((), device=device), acc=torch.zeros(3, device=device),
               progress=ProgressHook("train", "step", enabled=rank0),
               clock=Clock(start))  # last: the clock starts with the first step


def resolve(cfg: TrainConfig, run_dir: Path, resume: bool, given: set[str] | None, log) -> TrainConfig:
    """The run's configuration: on ``resume`` the stored one (with the options in ``given`` that may change),
    resolved (mode defaults filled, every option checked)."""
    if resume and (run_dir / "config.json").is_file():  # the run's own configuration wins
        cfg = resume_config(run_dir, cfg, given, log)
    asked_epochs = cfg.epochs
    cfg = cfg.resolved()
    if cfg.epochs != asked_epochs:
        log(f"note: --steps {cfg.steps} is below --epochs {asked_epochs}: using {cfg.epochs} nominal epochs "
            "(one step each)")
    return cfg


def checked_source(cfg: TrainConfig) -> Source:
    """The training source, refused where the target needs what it lacks (clean frames, ISOs)."""
    source = load_source(cfg)
    for asked, option in ((cfg.paired and cfg.mode == "raw", f"--target {cfg.target}"),
                          (cfg.redraw_noise, "--redraw-noise")):
        if asked and not source.has_gt:
            raise InputError(f"{option}: {cfg.data or 'the training data'} has no clean frames "
                             f"(a store needs `prepare sidd --with-gt`; a SIDD folder its GT_RAW files)")
    if cfg.redraw_noise:
        source.noise_levels()  # every item needs an ISO
    return source


def start_processes(dist: Dist, device: torch.device) -> None:
    """The DDP process group (several ranks) and the CUDA device's settings."""
    if dist.world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True


def make_step(cfg: TrainConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
              dist: Dist, compiled: bool, graphs: bool, log) -> Callable:
    """The step: the target's loss (bf16 autocast, fp32 reductions) and its backward, compiled as one graph
    on CUDA; under DDP around the model."""
    net = model
    if dist.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def loss_fn(noisy, target, masks, gamma):
        with autocast(device, cfg.precision):
            if cfg.target == "noise2noise-sub":
                return noise2noise_sub_loss(net, noisy, target, masks)
            if cfg.target == "r2r":
                return r2r_loss(net, noisy, target)
            if cfg.target == "r2r-lin":
                return r2r_linear_loss(net, noisy, *target)
            if cfg.paired:
                return supervised_loss(net, noisy, target)
            return n2n_loss(net, noisy, masks, gamma, cfg.lambda1, cfg.lambda2)
    return training_step(loss_fn, compiled, graphs, fullgraph=dist.world == 1,  # DDP splits at its buckets
                         strict=cfg.compile == "on", reset=lambda: optimizer.zero_grad(set_to_none=True), log=log)


def initial_model(cfg: TrainConfig, source, log) -> torch.nn.Module:
    """A fresh U-Net (``--init``), or the weights of ``--start-from``; a :class:`GatUNet` gets the training
    frames' noise profile (the median of their blind estimates)."""
    if cfg.start_from is None:
        return UNet(cfg.channels, cfg.channels, init=cfg.init, residual=cfg.residual)
    model = starting_model(cfg.start_from)
    if cfg.target in R2R_TARGETS and not isinstance(model, GatUNet):
        raise InputError(f"--target {cfg.target}: {cfg.start_from} does not denoise in the variance-stabilised "
                         "domain "
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


# ------------------------------------------------------------------------------------------- each step

def train_step(run: Run, step: int) -> tuple[int, float, float]:
    """One optimiser step (0-based ``step``) at the schedule's LR and Λ; returns (epoch, lr, Λ)."""
    cfg = run.cfg
    epoch = run.epoch_of(step)
    lr = run.base_lr * lr_factor(epoch, cfg.epochs)
    for g in run.optimizer.param_groups:
        g["lr"] = lr
    gamma = gamma_for_epoch(epoch, cfg.epochs, cfg.increase_ratio)
    noisy, target, masks = run.batches(step)
    run.gamma_t.fill_(gamma)
    run.optimizer.zero_grad(set_to_none=True)
    loss, rec, reg = run.step_fn(noisy, target, masks, run.gamma_t)  # forward and backward
    run.optimizer.step()
    run.acc += torch.stack([loss, rec, reg])
    return epoch, lr, gamma


def metrics_row(run: Run, done: int, epoch: int, lr: float, gamma: float) -> dict:
    """The metrics row after ``done`` steps: the mean losses since the previous row (over all ranks), the
    training seconds and the rate; it restarts the sums."""
    if run.dist.world > 1:  # the global batch's loss, not rank 0's share
        torch.distributed.all_reduce(run.acc)
        run.acc /= run.dist.world
    steps, seconds, trained = run.clock.lap(done)
    vals = (run.acc / steps).tolist()
    run.acc.zero_()
    run.last = row = {"step": done, "epoch": epoch, "lr": lr, "gamma": gamma, "loss": vals[0], "rec": vals[1],
                      "reg": vals[2], "seconds": round(trained, 3),
                      "crops_per_s": round(steps * run.batches.global_batch / max(seconds, 1e-9), 2)}
    run.progress(done, run.total, epoch=epoch, loss=f"{vals[0]:.5f}", crops_s=row["crops_per_s"])
    return row


def validate(run: Run, row: dict, epoch: int) -> None:
    """Validation scores into ``row`` (rank 0), off the training clock."""
    with run.clock.paused():
        row["val_psnr"], row["val_ssim"] = run.validate(run.model)
        run.model.train()
    run.progress.message(f"epoch {epoch}: validation PSNR {row['val_psnr']:.2f} dB, SSIM {row['val_ssim']:.4f}")


def write_row(run: Run, row: dict) -> None:
    """metrics.csv (and TensorBoard) on rank 0."""
    if run.metrics is None:
        return
    run.metrics.write(row)
    if run.tb is not None:
        for k in ("loss", "rec", "reg", "lr", "gamma", "crops_per_s", "val_psnr", "val_ssim"):
            if k in row:
                run.tb.add_scalar(k, row[k], row["step"])


def save(run: Run, done: int, epoch: int) -> None:
    """A checkpoint on rank 0 (atomic; the oldest beyond ``keep_checkpoints`` removed)."""
    if run.dist.rank == 0:
        ckpt.save_checkpoint(run.run_dir, done, run.model, run.optimizer, run.checkpoint_meta(epoch),
                             run.cfg.keep_checkpoints)


def finish(run: Run) -> dict:
    """Close the logs; rank 0 writes summary.json and the pictures. Returns the summary."""
    run.progress.close()
    if run.tb is not None:
        run.tb.close()
    summary = {"steps": run.total, "seconds": round(run.clock.elapsed(), 2),
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
    ``"noise2noise"``: noisy → independently noisy; ``"noise2noise-sub"``: the same on N2N's sub-images;
    ``"r2r"``: Recorrupted-to-Recorrupted fine-tuning); returns the summary (also written to
    RUN_DIR/summary.json).

    On ``resume`` the run's stored configuration is used; options in ``given`` (see
    :func:`n2n_raw.training.runfolder.resume_config`) that are safe to change are applied, others must equal the
    run's. ``validator`` (model → (psnr, ssim)) replaces the configured validation (benchmarks use it). The
    ``seconds`` of metrics.csv count training only, not validation.
    """
    run = setup(cfg, run_dir, resume=resume, force=force, log=log, validator=validator, given=given)
    for step in range(run.start, run.total):
        epoch, lr, gamma = train_step(run, step)
        done = step + 1
        due = run.due(done, epoch)
        if due.log:
            row = metrics_row(run, done, epoch, lr, gamma)
            if due.val:
                validate(run, row, epoch)
            write_row(run, row)
        if due.ckpt:
            save(run, done, epoch)
    return finish(run)
