"""``n2n-raw info``: a run folder's (or a checkpoint's) configuration, progress, metrics and checkpoints."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from .errors import InputError


def describe(path: str | Path) -> str:
    """A human-readable summary of a run folder or a checkpoint file."""
    from . import checkpoint as ckpt
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
