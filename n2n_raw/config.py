"""Training configuration: one frozen dataclass, the paper's defaults, a JSON round trip.

Sources of the defaults (see the README's table):
- sRGB: Adam lr 3e-4, increase ratio (Λ's γ) 2.0, 100 epochs, batch 4, 256×256 crops (paper + reference).
- raw: lr 1e-4 and γ = 1 as secondary summaries of the paper report (the raw code was never released);
  patch 256 raw pixels → 4×128×128 packed, as in the published raw pipelines.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from .accel import CHOICES, STORAGES
from .errors import InputError
from .noise import NOISES
from .unet import INITS

MODES = ("srgb", "raw")
TARGETS = ("n2n", "supervised")
CFA_MODES = ("rggb", "positional")
PRECISIONS = ("auto", "bf16", "fp32")
LR_RULES = ("sqrt", "linear", "none")
PAPER_BATCH = 4
PAPER_DEFAULTS = {"srgb": {"lr": 3e-4, "increase_ratio": 2.0}, "raw": {"lr": 1e-4, "increase_ratio": 1.0}}


def _tristate(v):
    return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v


@dataclass(frozen=True)
class TrainConfig:
    mode: str = "srgb"
    data: str | None = None              # store (.h5), folder, or None for the built-in default data
    photos: tuple[str, ...] = ()         # raw: camera raw files to train on, instead of data (`n2n-raw fit`)
    noise: str = "gauss25"               # sRGB only
    target: str = "n2n"                  # "supervised": noisy → clean MSE (needs clean data; the ceiling)
    epochs: int = 100                    # E nominal epochs (Λ ramp and LR milestones)
    steps: int | None = None             # None: an epoch is one pass over the data
    batch_size: int = 4
    patch_size: int = 256                # input pixels (raw: mosaic pixels, packed to half)
    lr: float | None = None              # None: the paper's default for the mode
    increase_ratio: float | None = None  # None: the paper's default for the mode
    lr_rule: str = "sqrt"                # LR for global batch B: lr·sqrt(B/4) ("sqrt"), lr·B/4 ("linear"), lr ("none")
    lambda1: float = 1.0
    lambda2: float = 1.0
    seed: int = 0
    init: str = "kaiming"                # "paper" = Kaiming ×0.1 (see README: time to quality)
    residual: bool = False               # output skip f(y) = y + net(y) (not in the paper)
    cfa_mode: str = "rggb"               # raw: unify to R, G1, G2, B ("rggb") or pack by position
    cfa: str | None = None               # raw: override the CFA of every input
    augment: bool = False                # raw: Bayer-preserving flips/transposes (off in the paper)
    val: tuple[str, ...] = ()            # sRGB validation folders (paper protocol)
    val_repeat: int | None = None        # None: the paper's repeat per folder name
    val_noisy: str | None = None         # raw validation block files
    val_gt: str | None = None
    val_cfa: str | None = None           # raw: override the validation blocks' CFA (default: the 40-scene table)
    val_every: int = 1                   # validate every N epochs (0: never)
    device: str = "auto"
    precision: str = "auto"              # auto: bf16 on CUDA, fp32 on CPU
    compile: str = "auto"                # torch.compile the loss step (auto: on CUDA); see accel.py
    cuda_graphs: str = "auto"            # replay the compiled step as CUDA graphs (auto: CUDA, batch <= 16)
    data_on_device: str = "auto"         # training set on the device / in pinned memory / off (auto: CUDA, fits)
    log_every: int = 50                  # steps between metrics rows
    ckpt_every: int = 0                  # extra checkpoints every N steps (0: epoch ends only)
    keep_checkpoints: int = 3
    tensorboard: bool = False            # also log scalars to RUN_DIR/tensorboard (optional extra)
    pictures: bool = True                # curves.png and comparison.png in the run folder at the end
    default_data_size: int = 64          # images (sRGB) in the built-in default set
    extra: dict = field(default_factory=dict)

    def resolved(self) -> "TrainConfig":
        """Fill mode-dependent defaults and validate; raises InputError naming the option."""
        compile_ = _tristate(self.compile)  # runs saved while --compile was a flag hold a bool
        d = PAPER_DEFAULTS.get(self.mode)
        if d is None:
            raise InputError(f"--mode: unknown mode {self.mode!r} (expected srgb or raw)")
        checks = [
            (self.target in TARGETS, f"--target: unknown target {self.target!r} (expected n2n or supervised)"),
            (self.noise in NOISES, f"--noise: unknown noise {self.noise!r} (expected one of {', '.join(NOISES)})"),
            (self.init in INITS, f"--init: unknown init {self.init!r} (expected {', '.join(INITS)})"),
            (self.cfa_mode in CFA_MODES, f"--cfa-mode: unknown mode {self.cfa_mode!r} (expected rggb or positional)"),
            (self.precision in PRECISIONS, f"--precision: unknown value {self.precision!r} (expected auto, bf16 or fp32)"),
            (self.data_on_device in STORAGES,
             f"--data-on-device: unknown value {self.data_on_device!r} (expected auto, on, pinned or off)"),
            (compile_ in CHOICES, f"--compile: unknown value {compile_!r} (expected auto, on or off)"),
            (self.cuda_graphs in CHOICES, f"--cuda-graphs: unknown value {self.cuda_graphs!r} (expected auto, on or off)"),
            (self.lr_rule in LR_RULES, f"--lr-rule: unknown rule {self.lr_rule!r} (expected sqrt, linear or none)"),
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
        if self.photos and self.data is not None:
            raise InputError("photos and --data: give one source of training data")
        from .bayer import check_cfa
        for value, option in ((self.cfa, "--cfa"), (self.val_cfa, "--val-cfa")):
            if value is not None:
                check_cfa(value, option)
        return dataclasses.replace(
            self,
            epochs=self.short_run_epochs(),
            compile=compile_,
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
