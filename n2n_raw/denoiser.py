"""The Python API in one object: a trained model bundled with how to apply it.

    from n2n_raw import Denoiser
    d = Denoiser.load("runs/raw")                 # a run folder (its best checkpoint) or a checkpoint file
    clean = d.denoise("IMG_0001.dng")             # a camera raw, SIDD .MAT, .npy, image file, or an array
    d.denoise_file("IMG_0001.dng", "denoised/")   # the CLI's outputs: a DNG carrying the source's tags + PNG

    d = Denoiser.fit(["photos/"], "runs/mine", steps=300)   # self-supervised, on the photos themselves

The mode (sRGB or raw), the CFA handling the checkpoint was trained with, the precision (fp32 unless bf16 is
asked for) and the tiling (only when one pass would not fit in memory) are carried by the object, so a caller
never passes ``meta["cfa_mode"]`` around by hand.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from n2n_raw.accel import pick_device
from n2n_raw.cfa import check_cfa
from n2n_raw.checkpoint import half_scale_model, load_model
from n2n_raw.inference import photos
from n2n_raw.jobs.export import export as export_model
from n2n_raw.jobs.fit import fit as run_fit


class Denoiser:
    """A trained Neighbor2Neighbor U-Net and how to apply it.

    Attributes:
        model: the U-Net, in eval mode on ``device``.
        meta: the checkpoint's metadata (``mode``, ``cfa_mode``, ``step``, ``metrics``, ``chosen``, ...).
        device: where it runs. precision: "fp32" or "bf16". tile: None (plan from memory) or a forced size.
        engine: "torch", "onnxruntime", or "auto" (ONNX Runtime for large passes on a CPU in fp32 when it is
            installed, else PyTorch: :func:`n2n_raw.inference.onnx_engine.resolve_engine`).
        ensemble: raw: average over 1, 2, 4 or 8 Bayer-preserving views (:data:`n2n_raw.inference.photos.ENSEMBLES`).
        multiscale: raw, a noise-profiled model: denoise at full and half scale, fused as an unbiased risk estimate
            picks per photo (:mod:`n2n_raw.inference.multiscale`).
        half_scale: the model for the half scale, if not ``model`` (:func:`n2n_raw.checkpoint.half_scale_model`).
    """

    def __init__(self, model: torch.nn.Module, meta: dict, device: str | torch.device = "auto",
                 precision: str = "fp32", tile: int | None = None, engine: str = "auto", ensemble: int = 1,
                 multiscale: bool = True, half_scale: torch.nn.Module | None = None):
        self.device = pick_device(device) if isinstance(device, str) else torch.device(device)
        self.model, self.precision, self.engine = photos.ready(model, self.device, precision, engine)
        self.meta = meta
        self.tile = tile
        self.ensemble = ensemble
        self.multiscale = multiscale
        self.half_scale = None if half_scale is None else photos.ready(half_scale, self.device, precision, engine)[0]

    @classmethod
    def load(cls, run_or_checkpoint: str | os.PathLike, which: str = "best", **kw) -> "Denoiser":
        """Load a run folder (``which``: "best" by validation PSNR, the newest if never validated, or "last")
        or a checkpoint file. ``kw``: ``device``, ``precision``, ``tile``, ``engine``, ``ensemble``, ``multiscale`` (see the class)."""
        model, meta = load_model(run_or_checkpoint, which=which)
        half = half_scale_model(meta) if kw.get("multiscale", True) else None
        return cls(model, meta, half_scale=half, **kw)

    @classmethod
    def fit(cls, photos: Sequence[str | os.PathLike], run_dir: str | os.PathLike, steps: int | None = None,
            force: bool = False, log: Callable[[str], None] = lambda s: None, **kw) -> "Denoiser":
        """Train on a user's own raw photos (files or folders; self-supervised, nothing else needed) into
        ``run_dir`` (kept: config, metrics, checkpoints) and return the trained Denoiser.
        ``steps``: None takes :func:`n2n_raw.jobs.fit.fit`'s default."""
        result = run_fit(list(photos), run_dir, denoised_dir=None, steps=steps, force=force, log=log)
        return cls(result["model"], result["meta"], half_scale=result["half_scale"], **kw)

    @property
    def mode(self) -> str:
        """"srgb" or "raw"."""
        return self.meta.get("mode", "srgb")

    def denoise(self, x: np.ndarray | str | os.PathLike, cfa: str | None = None,
                log: Callable[[str], None] | None = None) -> np.ndarray:
        """Denoise an array or a file; returns float32 of the input's shape, unclamped.

        Raw mode: ``x`` an (H, W) Bayer mosaic (black 0, white 1; needs ``cfa`` unless the checkpoint packs by
        position) or a camera raw / SIDD ``.MAT`` / ``.npy`` file (its own CFA; ``cfa`` overrides). sRGB mode:
        ``x`` (H, W, 3) float in [0, 1] (uint8 is scaled by 1/255), or an image / ``.npy`` file.
        """
        name = "input"
        if isinstance(x, (str, os.PathLike)):
            inp = photos.read_input(x, self.mode, cfa)
            x, cfa, name = inp.array, inp.cfa, str(x)
        elif isinstance(x, np.ndarray) and x.dtype == np.uint8:
            x = x.astype(np.float32) / 255.0
        elif cfa is not None:
            cfa = check_cfa(cfa)
        return photos.denoise_array(self.model, self.meta, x, cfa, tile=self.tile, device=self.device,
                             precision=self.precision, log=log, name=name, engine=self.engine,
                             ensemble=self.ensemble, multiscale=self.multiscale, coarse_model=self.half_scale)

    def export(self, path: str | os.PathLike, format: str | None = None, force: bool = False):
        """Write the model as ONNX (``format="onnx"``) or a darktable package (``"dtmodel"``: ``<id>.dtmodel``,
        task ``rawdenoise`` for raw, ``denoise`` for sRGB); None takes the format from ``path``'s suffix.
        Returns :class:`n2n_raw.jobs.export.ExportResult`. See :mod:`n2n_raw.jobs.export`."""
        return export_model(self.model, self.meta, path, format, force=force)

    def denoise_file(self, path: str | os.PathLike, out_dir: str | os.PathLike, cfa: str | None = None,
                     force: bool = False, log: Callable[[str], None] | None = None,
                     keep_tone: bool | None = None) -> tuple[list[Path], int]:
        """Denoise a file into ``out_dir`` as ``n2n-raw denoise`` does; returns (written paths, pixels).
        ``keep_tone``: camera raws keep their source's low frequencies (:func:`n2n_raw.inference.photos.restore_tone`);
        None: as :func:`n2n_raw.inference.photos.denoise_file` decides for the model."""
        return photos.denoise_file(self.model, self.meta, Path(path), Path(out_dir), tile=self.tile, cfa=cfa, force=force,
                            device=self.device, precision=self.precision, log=log, keep_tone=keep_tone,
                            engine=self.engine, ensemble=self.ensemble, multiscale=self.multiscale, coarse_model=self.half_scale)
