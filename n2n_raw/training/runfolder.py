"""A run folder: making it (refusing to clobber one), resuming it with its own configuration, metrics.csv
and TensorBoard logs as training writes them, and ``n2n-raw info``'s summary of a folder or a checkpoint.

A run folder holds config.json, metrics.csv, summary.json, the checkpoints (``ckpt-*``, see
:mod:`n2n_raw.checkpoint`), curves.png and comparison.png, and tensorboard/ when asked for.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

from n2n_raw import checkpoint as ckpt
from n2n_raw.config import TrainConfig
from n2n_raw.errors import InputError

METRIC_FIELDS = ["step", "epoch", "lr", "gamma", "loss", "rec", "reg", "seconds", "crops_per_s",
                 "val_psnr", "val_ssim"]
RUN_FILES = ("config.json", "metrics.csv", "summary.json", "curves.png", "comparison.png")


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


def describe(path: str | Path) -> str:
    """A human-readable summary of a run folder or a checkpoint file."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such run folder or checkpoint")
    lines: list[str] = []
    if p.is_file():
        meta, tensors = ckpt.load_checkpoint(p)
        lines.append(f"checkpoint {p}: {meta.get('mode')} model, step {meta.get('step')}/{meta.get('total_steps')}, "
                     f"epoch {meta.get('epoch')}, cfa mode {meta.get('cfa_mode')}, init {meta['model'].get('init')}, "
                     f"target {meta.get('target', 'n2n')}")
        lines.append(f"versions: {meta.get('versions')}; {sum(t.numel() for k, t in tensors.items() if k.startswith('model.')):,} parameters")
        if meta.get("metrics"):
            lines.append("last metrics: " + ", ".join(f"{k}={v}" for k, v in meta["metrics"].items()))
        return "\n".join(lines)
    cfg_path = p / "config.json"
    if not cfg_path.is_file():
        raise InputError(f"{p}: not a run folder (no config.json)")
    cfg = json.loads(cfg_path.read_text())
    lines.append(f"run {p}: mode {cfg.get('mode')}, target {cfg.get('target', 'n2n')}, data {_data(cfg)}")
    keys = (("noise",) if cfg.get("mode") == "srgb" else ("cfa_mode",)) + (
        "epochs", "steps", "batch_size", "patch_size", "lr", "increase_ratio", "init", "seed")
    lines.append("config: " + ", ".join(f"{k}={cfg.get(k)}" for k in keys))
    rows = []
    if (p / "metrics.csv").is_file():
        with open(p / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    cks = ckpt.list_checkpoints(p)
    total = None
    if cks:
        meta = json.loads(cks[-1].read_text())
        total = meta.get("total_steps")
    if rows:
        last = rows[-1]
        lines.append(f"progress: step {last['step']}" + (f"/{total}" if total else "") + f", epoch {last['epoch']}, "
                     f"loss {float(last['loss']):.6f}, {last['crops_per_s']} crops/s, {last['seconds']} s")
        vals = [r for r in rows if r.get("val_psnr")]
        if vals:
            best = max(vals, key=lambda r: float(r["val_psnr"]))
            lines.append(f"validation: last {float(vals[-1]['val_psnr']):.2f} dB (step {vals[-1]['step']}), "
                         f"best {float(best['val_psnr']):.2f} dB (step {best['step']})")
    else:
        lines.append("progress: no metrics yet")
    best_ck = ckpt.best_checkpoint(p)
    lines.append("checkpoints: " + (", ".join(c.stem + (" (best)" if c == best_ck else "") for c in cks)
                                    if cks else "none"))
    for extra in ("summary.json", "curves.png", "comparison.png"):
        if (p / extra).exists():
            lines.append(f"{extra}: {p / extra}")
    return "\n".join(lines)


def _data(cfg: dict) -> str:
    """What a run trained on: its store or folder, the photos `fit` listed, or the built-in default."""
    photos = cfg.get("photos") or []
    if photos:
        return f"{len(photos)} photo(s) ({photos[0]}{', ...' if len(photos) > 1 else ''})"
    return cfg.get("data") or "built-in default"
