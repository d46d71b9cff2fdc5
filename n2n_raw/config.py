"""Training configuration: one frozen dataclass, the paper's defaults, a JSON round trip.

Sources of the defaults (docs/training-options.md, "Options and their sources"):
- sRGB: Adam lr 3e-4, increase ratio (Λ's γ) 2.0, 100 epochs, batch 4, 256×256 crops (paper + reference).
- raw: lr 1e-4 and γ = 1 as secondary summaries of the paper report (the raw code was never released);
  patch 256 raw pixels → 4×128×128 packed, as in the published raw pipelines.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from n2n_raw.cfa import CFA_MODES, check_cfa
from n2n_raw.errors import InputError, check_choice

MODES = ("srgb", "raw")
TARGETS = ("n2n", "supervised", "noise2noise", "noise2noise-sub", "r2r", "r2r-lin")
R2R_TARGETS = ("r2r", "r2r-lin")  # Recorrupted-to-Recorrupted: the batch carries a recorruption draw
NOISY_TARGETS = ("noise2noise", "noise2noise-sub")  # the target: a second, independent noise draw
PAIRED_TARGETS = ("supervised",) + NOISY_TARGETS    # trained on clean crops (raw: GT frames) and their pairs
#: The paper's synthetic sRGB noises (:func:`n2n_raw.method.noise.make_noise`).
NOISES = ("gauss25", "gauss5_50", "poisson30", "poisson5_50")
#: U-Net weight initialisations (:class:`n2n_raw.method.unet.UNet`).
INITS = ("paper", "standard", "kaiming")
#: --compile and --cuda-graphs (:mod:`n2n_raw.accel`).
SWITCHES = ("auto", "on", "off")
#: --data-on-device (:func:`n2n_raw.accel.pick_storage`).
STORAGES = ("auto", "on", "pinned", "off")
PRECISIONS = ("auto", "bf16", "fp32")
LR_RULES = ("sqrt", "linear", "none")
PAPER_BATCH = 4
PAPER_DEFAULTS = {"srgb": {"lr": 3e-4, "increase_ratio": 2.0}, "raw": {"lr": 1e-4, "increase_ratio": 1.0}}

#: Settings of a fit run: fine-tune the shipped model (trained supervised on synthetic noise,
#: :mod:`n2n_raw.method.gat_unet`) on the photos with R2R in linear units (``r2r-lin``: each photo's own profile,
#: the recorruption matched to each pixel's noise), then denoise each photo as the mean of 4 Bayer-preserving
#: views at full and half scale, fused per photo as an unbiased risk estimate picks (``multiscale``: on real
#: low-light content 52.16 → 53.52 dB, the burst 75.62 → 76.15; :mod:`n2n_raw.inference.multiscale`).
#: Measured with benchmarks/peers.py (benchmarks/RESULTS.md), against the GAT-domain ``r2r`` (the earlier
#: default): real burst 75.62 / 75.55 dB, real/sidd 49.60 / 49.53, real/lowlight 52.20 / 50.77, synthetic SIDD
#: world 47.47 / 45.76 (the shipped model alone: 52.22 and 47.02 on the last two). ``r2r``'s fixed point,
#: E[GAT(y)], is about a/4 low after the algebraic inverse, which cost it 1.55 dB in the dark against the shipped
#: model, and its one median profile mismatched the world's photos of several ISOs. Neighbor2Neighbor fine-tuning lost
#: 0.6 dB even at lr 1e-5; 4 views gained 0.3-0.6 dB. The paper's method alone (:data:`SCRATCH_DEFAULTS`,
#: ``--start-from scratch``, ``ensemble=1``: the earlier defaults) is 2.8-6.8 dB under BM3D+GAT there.
FIT_DEFAULTS = {"steps": 300, "lr": 3e-4, "batch_size": 4, "patch_size": 128, "start_from": "pretrained",
                "target": "r2r-lin", "ensemble": 4, "multiscale": True}
#: What changes when a fit starts from scratch (the paper's method alone): its loss, and a short run's larger LR
#: (on the real low-light burst lr 1e-3 beat 3e-4 by 0.9 dB at 300 steps from scratch; see RESULTS).
SCRATCH_DEFAULTS = {"lr": 1e-3, "target": "n2n"}


def _tristate(v):
    return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v


def option(default, help: str, *, flag: bool = False, path: bool = False, cli_default=dataclasses.MISSING):
    """A field that is also a ``n2n-raw train`` option: the CLI builds the option from the field's name, type,
    default and this ``help`` (one source for both, see ``n2n_raw.cli.config_options``).

    ``flag``: a bool given as ``--name`` alone. ``path``: the CLI takes a path (checked to exist) and stores it
    as a string. ``cli_default``: the CLI's default where it differs (``mode``: required unless --resume).
    Fields made with plain ``field`` or a bare default are not on the CLI.
    """
    meta = {"help": help, "flag": flag, "path": path}
    if cli_default is not dataclasses.MISSING:
        meta["cli_default"] = cli_default
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class TrainConfig:
    mode: str = option("srgb", "srgb or raw (with --resume: the run's own).", cli_default=None)
    data: str | None = option(
        None, "Store from `prepare`, or a folder of images (srgb) / SIDD MAT or DNG files (raw). Default: built-in "
        "synthetic data.", path=True)
    photos: tuple[str, ...] = ()  # raw: camera raw files to train on, instead of data (`n2n-raw fit`)
    noise: str = option("gauss25", "srgb: gauss25, gauss5_50, poisson30, poisson5_50.")
    target: str = option(
        "n2n", "n2n (self-supervised, the default) or supervised: noisy → clean MSE with the same U-Net, data, "
        "schedule and seed, the ceiling N2N is measured against. Needs clean data: srgb has it by construction "
        "(noise is added per step); raw needs GT frames (`prepare sidd --with-gt`, or the built-in data). "
        "noise2noise (Lehtinen et al. 2018): noisy → the same clean crop under an independent noise draw, which "
        "separates the cost of a noisy target from that of N2N's sub-sampling; raw needs --redraw-noise. "
        "noise2noise-sub (an ablation): Noise2Noise on N2N's half-size sub-images, g1(noisy) → g1 of the "
        "independent draw (the same pixels, where N2N's target is a neighbour); raw needs --redraw-noise. "
        "r2r (Recorrupted-to-Recorrupted, Pang et al. 2021; raw with a --start-from model that denoises in the "
        "variance-stabilised domain): self-supervised like n2n, on full-resolution crops: the unit-variance noise "
        "of that domain is known, so a fresh draw e makes the input z + αe and the target z − e/α, whose noises "
        "are independent (α 1, both scaled by 1/sqrt(1 + α²) so the input's noise stays unit). "
        "r2r-lin: R2R in linear units, e scaled per pixel by the noise std at the model's own estimate, the MSE "
        "weighted by the noise variance (the shipped model's loss): unbiased where the GAT's mean is not.")
    epochs: int = option(100, "Nominal epochs E (Λ ramp and LR halvings at 0.2E..0.8E).")
    steps: int | None = option(
        None, "Total optimiser steps, split into E nominal epochs (fewer steps than E: E = steps). Default: an "
        "epoch is one pass over the data.")
    batch_size: int = option(4, "Per-process batch (paper: 4).")
    patch_size: int = option(256, "Crop side in input pixels (raw: mosaic pixels, packed to half); multiple of "
                                  "64 (srgb) / 128 (raw).")
    lr: float | None = option(None, "Adam LR. Default: paper's 3e-4 (srgb), 1e-4 (raw, from secondary summaries "
                                    "of the paper).")
    lr_rule: str = option("sqrt", "LR for a global batch B ≠ 4 (DDP or --batch-size): lr·sqrt(B/4) (sqrt), "
                                  "lr·B/4 (linear) or lr (none).")
    increase_ratio: float | None = option(None, "γ of Λ = epoch/E·γ. Default 2 (srgb, reference code), 1 (raw, "
                                                "as reported).")
    lambda1: float = option(1.0, "Weight of the reconstruction term.")
    lambda2: float = option(1.0, "Weight of the regulariser.")
    seed: int = option(0, "Seed of everything random (a CPU run is reproducible).")
    init: str = option(
        "kaiming", "kaiming (He init, the paper's without its ×0.1: fastest to denoise), standard (PyTorch's "
        "default) or paper (Kaiming ×0.1 as the reference; use it to reproduce the paper's tables).")
    residual: bool = option(False, "Output skip f(y) = y + net(y) (not in the paper).", flag=True)
    start_from: str | None = option(
        None, "raw: start from trained weights instead of --init: a raw run folder or checkpoint (its newest), or "
        "`pretrained`, the model shipped with n2n-raw (supervised on synthetic Poisson–Gaussian noise, denoising "
        "in the variance-stabilised domain of the data's noise profile, estimated from the training frames).")
    cfa_mode: str = option("rggb", "raw: rggb (unify to R,G1,G2,B; Liu et al. 2019) or positional (pack by 2×2 "
                                   "position, as published pipelines did).")
    cfa: str | None = option(None, "raw: override the CFA of every training input (not of the validation "
                                   "blocks: see --val-cfa).")
    augment: bool = option(False, "raw: Bayer-preserving flips/transposes (not in the paper).", flag=True)
    redraw_noise: bool = option(
        False, "raw: train on the clean frames with synthetic shot + read noise at each frame's ISO (the built-in "
        "data's model), redrawn every step as the sRGB mode does. Needs clean frames and ISOs (the built-in data; "
        "`prepare sidd --with-gt`). Measures what N2N's fixed noisy targets cost; not a real camera's noise.",
        flag=True)
    val: tuple[str, ...] = option((), "srgb validation folders (paper protocol), repeatable.", path=True)
    val_repeat: int | None = option(None, "Override the paper's repeats per folder.")
    val_noisy: str | None = option(None, "raw: ValidationNoisyBlocksRaw.mat.", path=True)
    val_gt: str | None = option(None, "raw: ValidationGtBlocksRaw.mat.", path=True)
    val_cfa: str | None = option(None, "raw: override the CFA of the validation blocks (default: SIDD's 40-scene "
                                       "table).")
    val_every: int = option(1, "Validate every N epochs (0: never).")
    device: str = option("auto", "auto, cpu or cuda.")
    precision: str = option("auto", "auto (bf16 on CUDA, fp32 on CPU), bf16 or fp32.")
    compile: str = option("auto", "torch.compile the loss step and its backward as one graph: auto (on CUDA), "
                                  "on, off.")
    cuda_graphs: str = option("auto", "Replay the compiled step as CUDA graphs: auto (one CUDA GPU, batch <= 16), "
                                      "on, off.")
    data_on_device: str = option(
        "auto", "Where the training set lives: on (device memory, crops cut there), pinned (pinned host memory), "
        "off (host crops per step), auto (CUDA: on if it fits in half the free memory, else pinned if it fits in "
        "half the available host memory, else off; CPU: off).")
    log_every: int = option(50, "Steps between metrics rows.")
    ckpt_every: int = option(0, "Also checkpoint every N steps (0: epoch ends only).")
    keep_checkpoints: int = option(3, "Checkpoints kept beside the best one (0: all).")
    tensorboard: bool = option(False, "Also log to RUN_DIR/tensorboard (pip install 'n2n-raw[tensorboard]').",
                               flag=True)
    pictures: bool = True                # curves.png and comparison.png in the run folder at the end
    default_data_size: int = 64          # images (sRGB) in the built-in default set
    extra: dict = field(default_factory=dict)

    def resolved(self) -> "TrainConfig":
        """Fill mode-dependent defaults and validate; raises InputError naming the option."""
        compile_ = _tristate(self.compile)  # runs saved while --compile was a flag hold a bool
        check_choice(self.mode, MODES, "--mode", "mode")
        d = PAPER_DEFAULTS[self.mode]
        for value, choices, option, what in (
                (self.target, TARGETS, "--target", "target"), (self.noise, NOISES, "--noise", "noise"),
                (self.init, INITS, "--init", "init"), (self.cfa_mode, CFA_MODES, "--cfa-mode", "mode"),
                (self.precision, PRECISIONS, "--precision", "value"),
                (self.data_on_device, STORAGES, "--data-on-device", "value"), (compile_, SWITCHES, "--compile", "value"),
                (self.cuda_graphs, SWITCHES, "--cuda-graphs", "value"), (self.lr_rule, LR_RULES, "--lr-rule", "rule")):
            check_choice(value, choices, option, what)
        checks = [
            (self.epochs >= 1, f"--epochs: must be >= 1, got {self.epochs}"),
            (self.steps is None or self.steps >= 1, f"--steps: must be >= 1, got {self.steps}"),
            (self.batch_size >= 1, f"--batch-size: must be >= 1, got {self.batch_size}"),
            (self.lr is None or self.lr > 0, f"--lr: must be > 0, got {self.lr}"),
            (self.seed >= 0, f"--seed: must be >= 0, got {self.seed}"),
        ]
        mult = 64 if self.mode == "srgb" else 128
        checks.append((self.patch_size >= mult and self.patch_size % mult == 0,
                       f"--patch-size: must be a positive multiple of {mult} for {self.mode} "
                       f"(the half-size sub-image must divide by the U-Net's 32), got {self.patch_size}"))
        for ok, msg in checks:
            if not ok:
                raise InputError(msg)
        if self.photos and self.mode != "raw":
            raise InputError("photos: camera raw files train a raw model (--mode raw)")
        if self.redraw_noise and self.mode != "raw":
            raise InputError("--redraw-noise: raw only (the sRGB mode always draws its noise per step)")
        if self.target in NOISY_TARGETS and self.mode == "raw" and not self.redraw_noise:
            raise InputError(f"--target {self.target}: raw needs --redraw-noise (a second noise draw of the clean "
                             "frame is the target)")
        if self.start_from is not None and self.mode != "raw":
            raise InputError("--start-from: raw only")
        if self.target in R2R_TARGETS and (self.mode != "raw" or self.start_from is None):
            raise InputError(f"--target {self.target}: raw, starting from a variance-stabilised model "
                             "(--start-from pretrained)")
        if self.photos and self.data is not None:
            raise InputError("photos and --data: give one source of training data")
        for value, option in ((self.cfa, "--cfa"), (self.val_cfa, "--val-cfa")):
            if value is not None:
                check_cfa(value, option)
        return dataclasses.replace(
            self,
            epochs=self.short_run_epochs(),
            compile=compile_,
            log_every=max(1, self.log_every),
            lr=self.lr if self.lr is not None else d["lr"],
            increase_ratio=self.increase_ratio if self.increase_ratio is not None else d["increase_ratio"],
            val=tuple(self.val),
            photos=tuple(self.photos),
        )

    def short_run_epochs(self) -> int:
        """The nominal epochs a run uses: ``epochs``, or ``steps`` when fewer steps than epochs are asked for.

        Every nominal epoch needs a step; a short run (``steps`` < ``epochs``) gets one step per epoch, so the
        Λ ramp and the LR halvings keep their relative place. With ``steps`` >= ``epochs`` nothing changes."""
        return self.steps if self.steps is not None and self.steps < self.epochs else self.epochs

    def scaled_lr(self, global_batch: int) -> float:
        """The base LR for a global batch (the paper's lr is for batch 4). Adam's update size does not grow
        with the batch, so the square-root rule is the default; "linear" follows Goyal et al. for SGD."""
        factor = {"sqrt": (global_batch / PAPER_BATCH) ** 0.5, "linear": global_batch / PAPER_BATCH, "none": 1.0}
        return self.lr * factor[self.lr_rule]

    @property
    def channels(self) -> int:
        return 3 if self.mode == "srgb" else 4

    @property
    def paired(self) -> bool:
        """Whether the target trains on clean crops and their pairs (noisy → clean, or noisy → an independent
        noisy draw: plain MSE); raw needs GT frames."""
        return self.target in PAIRED_TARGETS

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for k in ("val", "photos"):
            if k in kw:
                kw[k] = tuple(kw[k])
        return cls(**kw)

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))
