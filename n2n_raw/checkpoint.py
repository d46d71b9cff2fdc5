"""Checkpoints without pickle: tensors in safetensors, everything else in a JSON sidecar.

A checkpoint is the pair ``ckpt-SSSSSSSS.safetensors`` + ``ckpt-SSSSSSSS.json`` (S = optimiser steps done).
Both are written to temporary names and renamed, the JSON last, so a checkpoint whose JSON exists is complete
(a run killed at any moment resumes from the newest complete one). Loading never unpickles: safetensors holds
raw tensors only, and a ``.pt`` file is read with ``torch.load(weights_only=True)``, which refuses code.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from n2n_raw.errors import InputError, check_choice
from n2n_raw.io.atomic import atomic_path
from n2n_raw.method.gat_unet import GatUNet
from n2n_raw.method.unet import UNet
from n2n_raw.version import __version__

FORMAT = "n2n-raw-checkpoint"
ARCH = "n2n-unet48"
_NAME = re.compile(r"^ckpt-(\d{8,})\.json$")
#: The raw model that ships with the package (:class:`n2n_raw.method.gat_unet.GatUNet`; made by
#: ``benchmarks/pretrain_raw.py``): a normal checkpoint, JSON + safetensors.
WEIGHTS = Path(__file__).resolve().parent / "weights" / "raw-gat-unet.json"


def save_checkpoint(run_dir: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    meta: dict, keep: int = 3) -> Path:
    """Write checkpoint ``step`` into ``run_dir``; keep the newest ``keep`` ones (0 keeps all) and the best.

    The best is the checkpoint with the highest ``meta["metrics"]["val_psnr"]``: it is never pruned, so the
    best of all those ever written is always on disk (see :func:`best_checkpoint`). Returns the JSON path."""
    run_dir = Path(run_dir)
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    optim_groups = None
    if optimizer is not None:
        sd = optimizer.state_dict()
        for pid, st in sd["state"].items():
            for k, v in st.items():
                t = v if torch.is_tensor(v) else torch.tensor(v)
                tensors[f"optim.{pid}.{k}"] = t.detach().contiguous().cpu()
        optim_groups = sd["param_groups"]
    stem = run_dir / f"ckpt-{step:08d}"
    with atomic_path(stem.with_suffix(".safetensors"), force=True) as tmp:  # a rerun of a step replaces it
        save_file(tensors, str(tmp))
    full = {"format": FORMAT, "version": 1, "arch": ARCH, "step": step,
            "model": model_spec(model),
            "optim_param_groups": optim_groups,
            "versions": {"n2n_raw": __version__, "torch": torch.__version__}, **meta}
    with atomic_path(stem.with_suffix(".json"), force=True) as tmp:  # written last: the checkpoint exists now
        tmp.write_text(json.dumps(full, indent=2))
    if keep > 0:
        best = best_checkpoint(run_dir)
        for old in list_checkpoints(run_dir)[:-keep]:
            if old == best:
                continue
            old.with_suffix(".safetensors").unlink(missing_ok=True)
            old.unlink(missing_ok=True)
    return stem.with_suffix(".json")


WHICH = ("best", "last")


def val_psnr_of(json_path: Path) -> float | None:
    """The validation PSNR a checkpoint was saved with, or None (not validated, unreadable)."""
    try:
        v = (json.loads(Path(json_path).read_text()).get("metrics") or {}).get("val_psnr")
        return float(v) if v is not None else None
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def best_checkpoint(run_dir: Path) -> Path | None:
    """The complete checkpoint with the highest validation PSNR (the newer one on a tie), or None."""
    scored = [(v, i, p) for i, p in enumerate(list_checkpoints(run_dir)) if (v := val_psnr_of(p)) is not None]
    return max(scored)[2] if scored else None


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints (their JSON paths) in ``run_dir``, oldest first."""
    found = [p for p in Path(run_dir).glob("ckpt-*.json") if _NAME.match(p.name)
             and p.with_suffix(".safetensors").is_file()]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def resolve(path: str | os.PathLike, which: str = "last") -> Path:
    """A checkpoint path (JSON, safetensors or .pt) or a run folder → the JSON path.

    For a run folder ``which`` picks the checkpoint: "last" (the newest) or "best" (:func:`best_checkpoint`,
    the newest when none was validated); a checkpoint file is taken as it is."""
    p = Path(path)
    check_choice(which, WHICH, "--which")
    if p.is_dir():
        ckpts = list_checkpoints(p)
        if not ckpts:
            raise InputError(f"{p}: no checkpoint in this run folder")
        return (best_checkpoint(p) if which == "best" else None) or ckpts[-1]
    if not p.exists():
        raise InputError(f"{p}: no such checkpoint")
    meta = p.with_suffix(".json")
    if not meta.is_file():
        raise InputError(f"{p}: no JSON sidecar {meta.name} beside it (not an n2n-raw checkpoint)")
    return meta


def describe_choice(path: str | os.PathLike, which: str, meta: dict) -> str:
    """How the checkpoint was chosen, for reports and submissions: e.g. "best of runs/x (step 800, 38.61 dB)"."""
    psnr = (meta.get("metrics") or {}).get("val_psnr")
    at = f"step {meta.get('step')}" + (f", validation {float(psnr):.2f} dB" if psnr is not None else ", not validated")
    if not Path(path).is_dir():
        return f"file {Path(path).name} ({at})"
    return f"{which} of {Path(path).name} ({at})"


def load_checkpoint(path: str | os.PathLike, which: str = "last") -> tuple[dict, dict[str, torch.Tensor]]:
    """Read (meta, tensors) of a checkpoint (or a run folder's ``which``) without unpickling anything."""
    meta_path = resolve(path, which)
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"{meta_path}: unreadable checkpoint metadata (not JSON)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{meta_path}: not an n2n-raw checkpoint")
    if meta.get("arch") != ARCH:
        raise InputError(f"{meta_path}: incompatible architecture {meta.get('arch')!r} (expected {ARCH})")
    given = Path(path)
    tpath = given if given.is_file() and given.suffix in (".pt", ".pth") else meta_path.with_suffix(".safetensors")
    if tpath.suffix in (".pt", ".pth"):
        try:
            tensors = torch.load(tpath, map_location="cpu", weights_only=True)
        except Exception as e:  # weights_only refuses any pickled code: never fall back to full unpickling
            raise InputError(f"{tpath}: refused to load (not a tensors-only file: {type(e).__name__})") from None
        if not isinstance(tensors, dict) or not all(torch.is_tensor(v) for v in tensors.values()):
            raise InputError(f"{tpath}: refused to load (expected a flat dict of tensors)")
    else:
        try:
            tensors = load_file(str(tpath))
        except (SafetensorError, OSError, ValueError) as e:
            raise InputError(f"{tpath}: unreadable checkpoint ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return meta, tensors


def model_spec(model: torch.nn.Module) -> dict:
    """What :func:`build_model` needs to rebuild ``model`` (a :class:`UNet`, or one wrapped by :class:`GatUNet`)."""
    spec = {"in_ch": model.in_ch, "out_ch": model.out_ch, "init": model.init, "residual": model.residual}
    if isinstance(model, GatUNet):
        spec["vst"] = {"kind": "gat", "scale": model.scale}
    return spec


def build_model(meta: dict, tensors: dict[str, torch.Tensor], where: str = "checkpoint") -> torch.nn.Module:
    """The model of a checkpoint with its weights loaded (strict): a U-Net, or a :class:`GatUNet` around one."""
    try:
        m = meta["model"]
        model = UNet(int(m["in_ch"]), int(m["out_ch"]), init=m.get("init", "kaiming"),
                     residual=bool(m.get("residual", False)))
        if m.get("vst") is not None:
            model = GatUNet(model, scale=float(m["vst"]["scale"]))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise InputError(f"{where}: the checkpoint's 'model' entry is missing or invalid") from None
    sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError:
        raise InputError(f"{where}: weights do not fit the n2n-raw U-Net ({m['in_ch']}→{m['out_ch']})") from None
    return model


def load_model(path: str | os.PathLike, expect_mode: str | None = None,
               which: str = "best") -> tuple[torch.nn.Module, dict]:
    """Load a model for inference: (model in eval mode on CPU, meta). Checks the mode when asked.

    ``which`` picks a run folder's checkpoint (see :func:`resolve`); ``meta["chosen"]`` says which was taken."""
    meta, tensors = load_checkpoint(path, which)
    meta["chosen"] = describe_choice(path, which, meta)
    mode = meta.get("mode")
    if expect_mode is not None and mode != expect_mode:
        raise InputError(f"{path}: this is a {mode} checkpoint, not {expect_mode}")
    model = build_model(meta, tensors, where=str(path))
    return model.eval(), meta


def restore_optimizer(optimizer: torch.optim.Optimizer, meta: dict, tensors: dict[str, torch.Tensor]) -> None:
    """Put a saved Adam state back (exact: resumed runs match uninterrupted ones bit for bit on CPU)."""
    groups = meta.get("optim_param_groups")
    if groups is None:
        return
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    # The implementation (fused on CUDA, foreach on CPU) belongs to this run's device, not the saved one's.
    impl = ("fused", "foreach", "capturable", "differentiable")
    groups = [{**g, **{k: now[k] for k in impl if k in now}} for g, now in zip(groups, optimizer.param_groups)]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def starting_model(spec: str) -> torch.nn.Module:
    """The model a run starts from (``--start-from``): ``"pretrained"`` (the shipped :class:`GatUNet`) or a raw
    run folder / checkpoint (its newest checkpoint). Raises InputError for what cannot start a raw run."""
    model, meta = load_model(WEIGHTS if spec == "pretrained" else spec, which="last")
    if meta.get("mode") != "raw" or model.in_ch != 4:
        raise InputError(f"--start-from {spec}: a raw checkpoint is needed, this one is {meta.get('mode')}")
    return model.train()


def half_scale_model(meta: dict) -> torch.nn.Module | None:
    """The model that two-scale inference (:mod:`n2n_raw.inference.multiscale`) runs at half scale for a
    checkpoint with metadata ``meta``: the shipped model for a fine-tune of it, else None (the checkpoint's own).

    Fine-tuning adapts a model to its photos at their own scale; at half scale their content and noise are not
    what it was fine-tuned on, and the shipped model, trained on every scale and noise level, does better there
    (peer benchmark, low light: 53.52 against 52.95 dB; benchmarks/RESULTS.md)."""
    if (meta.get("config") or {}).get("start_from") != "pretrained":
        return None
    model, _ = load_model(WEIGHTS, which="last")
    return model
