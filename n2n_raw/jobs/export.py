"""Export a trained model: a plain ONNX graph for any runtime, or a darktable ``.dtmodel`` package.

``onnx``: the model as it is, (N, C, H, W) → (N, C, H, W) float32, input ``input`` and output ``output``, batch,
height and width dynamic (H and W multiples of 32, the U-Net's five poolings; pad as :mod:`n2n_raw.inference.tiling`
does). Raw models take the packed mosaic (R, G1, G2, B for ``--cfa-mode rggb``) normalised per photosite as
(raw − black) / (white − black), no white balance. What a caller needs to know is also in the graph's
metadata (``n2n_raw.*`` keys).

``dtmodel``: a package for darktable 5.6's *neural restore* module (preferences → AI → import from file),
laid out as darktable-ai-sdk's ``docs/dtmodel-format.md`` says (a DEFLATE zip ``<id>.dtmodel`` holding one
folder ``<id>/`` with ``config.json`` and the ONNX file). What darktable reads was checked in its source
(``src/common/ai/restore.c``, ``restore_raw_bayer.c``, ``src/ai/backend_common.c``), since the SDK's example
``model.yaml`` (darktable-ai ``models/rawdenoise-nind``) spells the raw settings differently:

- raw checkpoints → task ``rawdenoise``. The loader reads ``attributes.variants.bayer.{onnx, input_kind,
  wb_norm, output_scale, bayer_orientation, edge_pad}`` (a dotted path into ``attributes``; darktable-ai's
  ``attributes.model_bayer.*`` is not what it looks up) and the tile sides from ``attributes.input_sizes``.
  Its ``bayer_v1`` path feeds [1, 4, T, T] packed from the red photosite (``force_rggb``: n2n-raw's
  ``--cfa-mode rggb``), each value (raw − black[site]) / (white − black[site]) times a white-balance factor
  (``wb_norm: none`` keeps 1: n2n-raw trains without white balance), and reads back [1, 3, 2T, 2T], taking
  plane FC(r, c) at each photosite (``output_scale: absolute``: no per-tile gain). The 4 → 4 model therefore
  gets a fixed head inside the exported graph (:class:`BayerPlanes`): each denoised value goes back to its
  photosite (pixel shuffle) in the plane of its colour, zeros elsewhere. The PyTorch model is not changed.
  ``edge_pad: mirror`` reflects tiles at the sensor's edges as n2n-raw's own inference pads a non-RGGB
  mosaic (:func:`n2n_raw.method.bayer.unify_pad`). A ``positional`` checkpoint is refused: its channels hold the
  colours of its training CFA, which darktable cannot be told.
- sRGB checkpoints → task ``denoise`` (``model.onnx``): darktable feeds [1, 3, T, T] sRGB-encoded values
  clamped to [0, 1] and reads back the same shape, which is what the sRGB model was trained on.

The model is traced as a generic module (packed (N, 4, H, W) → (N, 4, H, W) for raw): its buffers become
constants of the graph, so a model whose buffers are set per photo (a GatUNet's noise profile) is exported
with the values it holds; darktable gives the graph nothing but the tile.

``config.json`` carries the keys the SDK's validator requires (``id``, ``name``, ``description``, ``task``,
``version``, ``backend``) and a model card (``model_card``: darktable renders ``long_description``,
``scope``, ``training_data``, ``notes`` ...; the card also holds ``cameras``, ``iso``, ``photos``, ``steps``,
``training``). darktable 5.6 itself was not run on these packages: see docs/darktable.md, "Use your model in
darktable", for what was verified.
"""
from __future__ import annotations

import json
import re
import struct
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from n2n_raw.errors import InputError, check_choice
from n2n_raw.inference.onnx_engine import HEIGHT, WIDTH, cpu_copy, model_channels, ort_difference, write_onnx
from n2n_raw.io import tiff
from n2n_raw.io.atomic import atomic_path, check_writable
from n2n_raw.version import __version__

FORMATS = ("onnx", "dtmodel")
SUFFIXES = {"onnx": ".onnx", "dtmodel": ".dtmodel"}
#: Tile sides darktable may choose from, largest first (packed pixels for raw, image pixels for sRGB): it takes
#: the first whose estimated memory fits a quarter of what is available, and the next one after a failed run.
#: All are multiples of 32 (the U-Net's) and at least 4 × darktable's 32-pixel overlap.
INPUT_SIZES = (1024, 768, 512, 256)
BAYER_ONNX = "model_bayer.onnx"
RGB_ONNX = "model.onnx"
#: Neighbor2Neighbor (Huang et al., CVPR 2021).
PAPER = "https://arxiv.org/abs/2101.02824"
#: Largest ONNX Runtime vs PyTorch difference an export may show on its check input.
AGREEMENT = 1e-4
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` wrote. ``ort_max_abs``: the largest |ONNX Runtime − PyTorch| on a random check input
    (None when onnxruntime is not installed); ``model_id``/``task``: the package's (dtmodel only)."""
    path: Path
    format: str
    model_id: str | None = None
    task: str | None = None
    ort_max_abs: float | None = None

    def describe(self) -> str:
        what = f"{self.format}" + (f", id {self.model_id}, darktable task {self.task}" if self.model_id else "")
        check = ("ONNX Runtime not installed: not run" if self.ort_max_abs is None
                 else f"ONNX Runtime agrees with PyTorch to {self.ort_max_abs:.1e}")
        return f"{self.path} ({what}; {check})"


def check_format(fmt: str | None, out: str | Path | None = None) -> str:
    """The export format: ``fmt`` (onnx or dtmodel), else taken from ``out``'s suffix; the suffix must agree."""
    suffix = Path(out).suffix.lower() if out is not None else ""
    if fmt is None:
        by_suffix = {v: k for k, v in SUFFIXES.items()}
        if suffix not in by_suffix:
            raise InputError(f"--out: {out} ends in neither .onnx nor .dtmodel (or give --format)")
        return by_suffix[suffix]
    fmt = check_choice(str(fmt).strip().lower(), FORMATS, "--format", "export format")
    if out is not None and suffix != SUFFIXES[fmt]:
        raise InputError(f"--out: a {fmt} export is written to a {SUFFIXES[fmt]} file, got {Path(out).name}")
    return fmt


def check_model_id(model_id: str, what: str = "--out") -> str:
    """A darktable model id (the package's file name and its folder): letters, digits, '-' and '_'."""
    if not _ID.fullmatch(model_id or ""):
        raise InputError(f"{what}: the package's name is its darktable model id ({model_id or '(empty)'}.dtmodel); "
                         "use letters, digits, '-' and '_' only")
    return model_id


def default_model_id(run_dir: str | Path) -> str:
    """``n2n-raw-<run folder name>``, reduced to the characters a model id may hold."""
    slug = re.sub(r"[^a-z0-9]+", "-", Path(run_dir).resolve().name.lower()).strip("-")
    return f"n2n-raw-{slug}" if slug else "n2n-raw-model"


def check_available() -> None:
    """InputError unless the packages an export needs are importable (the ``onnx`` extra)."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise InputError("export needs the onnx package: pip install 'n2n-raw[onnx]'") from None


def _graph_metadata(meta: dict, channels: int, bayer: bool) -> dict[str, str]:
    md = {"n2n_raw.version": __version__, "n2n_raw.mode": str(meta.get("mode")),
          "n2n_raw.checkpoint": str(meta.get("chosen", "")), "n2n_raw.size_multiple": "32"}
    if channels == 4:
        md["n2n_raw.cfa_mode"] = str(meta.get("cfa_mode", "rggb"))
        md["n2n_raw.input"] = ("packed Bayer mosaic, channels at 2x2 positions (0,0), (0,1), (1,0), (1,1) "
                               + ("from the red photosite (R, G1, G2, B)" if meta.get("cfa_mode", "rggb") == "rggb"
                                  else "of the mosaic as it is (positional)")
                               + "; (raw - black) / (white - black) per photosite, no white balance")
        if bayer:
            md["n2n_raw.output"] = "[N, 3, 2H, 2W]: each denoised value at its photosite in the plane of its colour"
    else:
        md["n2n_raw.input"] = "sRGB image, channels R, G, B, values in [0, 1]"
    return md


# ------------------------------------------------------------------------------------------------ model card

def _camera_and_iso(path: Path) -> tuple[str | None, float]:
    """(camera name, ISO) of a raw file: Make/Model and the EXIF ISO tag of a TIFF-based raw (DNG, NEF, CR2,
    ...), else LibRaw's ISO; (None, 0) where neither says."""
    make = model = None
    iso = 0.0
    try:
        with open(path, "rb") as f:
            bo, chain = tiff.read_tiff(f.read())
        make, model = (chain[0].value(t, bo) for t in (271, 272))
        for exif in chain[0].children.get(34665, []):
            v = exif.value(34855, bo)
            v = v[0] if isinstance(v, tuple) and v else v
            iso = float(v) if isinstance(v, (int, float)) else 0.0
    except (OSError, tiff.TiffError, ValueError, IndexError, struct.error):
        pass
    if not iso:
        try:
            import rawpy
            with rawpy.imread(str(path)) as raw:
                iso = float(getattr(getattr(raw, "other", None), "iso_speed", 0) or 0)
        except Exception:  # noqa: BLE001 - a photo that no longer reads only leaves the card shorter
            pass
    make = make.strip() if isinstance(make, str) else ""
    model = model.strip() if isinstance(model, str) else ""
    name = model if make and model.lower().startswith(make.lower()) else " ".join(x for x in (make, model) if x)
    return name or None, iso


def _photo_facts(photos: list[str]) -> tuple[list[str], list[float], int]:
    """(cameras, ISO speeds, photos found) of the photos still where the run recorded them."""
    cameras: list[str] = []
    isos: list[float] = []
    found = 0
    for p in map(Path, photos[:500]):
        if not p.is_file():
            continue
        found += 1
        name, iso = _camera_and_iso(p)
        if name and name not in cameras:
            cameras.append(name)
        if iso > 0:
            isos.append(iso)
    return cameras, isos, found


def _iso_range(isos: list[float]) -> str:
    if not isos:
        return "ISO unknown"
    lo, hi = min(isos), max(isos)
    return f"ISO {lo:g}" if lo == hi else f"ISO {lo:g}-{hi:g}"


def model_card(meta: dict) -> tuple[str, dict[str, str]]:
    """(one-line description, darktable model card) of a checkpoint: what it was trained on and how."""
    cfg = meta.get("config") or {}
    target = meta.get("target") or cfg.get("target") or "n2n"
    training = {"n2n": "self-supervised (Neighbor2Neighbor)",
                "r2r": "self-supervised (Recorrupted-to-Recorrupted)",
                "r2r-lin": "self-supervised (Recorrupted-to-Recorrupted)",
                "supervised": "supervised (noisy → clean pairs)"}.get(target, f"{target} target")
    if cfg.get("start_from") == "pretrained":
        training += (" fine-tuning of n2n-raw's shipped model (trained supervised on synthetic Poisson–Gaussian "
                     "noise, no real photo)")
    steps = int(meta.get("step") or 0)
    how = (f"{training}, {steps} steps of batch {cfg.get('batch_size', '?')}, {cfg.get('patch_size', '?')}-pixel "
           f"crops, lr {cfg.get('lr', '?')}")
    card = {"scope": "raw (Bayer) denoising before demosaicing" if meta.get("mode") == "raw" else "sRGB denoising",
            "author": f"trained by its user with n2n-raw {meta.get('versions', {}).get('n2n_raw', __version__)}",
            "paper": PAPER, "training": how, "steps": str(steps)}
    photos = list(cfg.get("photos") or [])
    if meta.get("mode") == "raw" and photos:
        cameras, isos, found = _photo_facts(photos)
        camera = ", ".join(cameras) if cameras else "unknown camera"
        iso = _iso_range(isos)
        seen = "" if found == len(photos) else f" ({len(photos) - found} no longer found when exported)"
        names = ", ".join(Path(p).name for p in photos[:20]) + (", ..." if len(photos) > 20 else "")
        card.update(cameras=", ".join(cameras) or "unknown", iso=iso.removeprefix("ISO "), photos=str(len(photos)),
                    training_data=f"{len(photos)} of the user's own raw photos{seen}: {camera}, {iso}; {names}")
        desc = f"{training.capitalize()} raw denoiser fitted on {len(photos)} photo(s): {camera}, {iso}"
        fitted_on = f"the camera and ISO above ({camera}, {iso})"
    elif meta.get("mode") == "raw":
        data = cfg.get("data") or "n2n-raw's built-in synthetic SIDD-like mosaics"
        card.update(training_data=f"{data}", cameras="unknown", iso="unknown", photos="unknown")
        desc = f"{training.capitalize()} raw denoiser trained on {Path(str(data)).name}"
        fitted_on = "that data"
    else:
        data = cfg.get("data") or "n2n-raw's built-in dead-leaves images"
        noise = meta.get("noise") or cfg.get("noise")
        card.update(training_data=f"{data} with synthetic {noise} noise")
        desc = f"{training.capitalize()} sRGB denoiser trained on {Path(str(data)).name} ({noise} noise)"
        fitted_on = f"synthetic {noise} noise, which real photos' noise is not"
    card["long_description"] = (
        f"The Neighbor2Neighbor paper's U-Net (48 features), trained with n2n-raw: {how}. It learned the noise "
        f"of {fitted_on} and may do less, or harm, elsewhere.")
    card["notes"] = (f"Exported by n2n-raw {__version__} from {meta.get('chosen', 'a checkpoint')}. Verified against "
                     "PyTorch with ONNX Runtime and against an emulation of darktable's pipeline, not in darktable "
                     "itself.")
    return desc, card


# ------------------------------------------------------------------------------------------------ packages

def dtmodel_config(meta: dict, model_id: str) -> tuple[dict, str]:
    """(config.json, ONNX file name) of a package: raw → ``rawdenoise`` (bayer_v1), sRGB → ``denoise``.

    Raises InputError for what darktable cannot run the way the model was trained (a positional raw
    checkpoint)."""
    mode = meta.get("mode")
    desc, card = model_card(meta)
    config = {"id": model_id, "name": f"n2n-raw {model_id}", "description": desc, "backend": "onnx",
              "version": "1.0", "arch": "unet48-n2n", "tiling": True, "spatial_dims": [HEIGHT, WIDTH]}
    if mode == "raw":
        cfa_mode = meta.get("cfa_mode", "rggb")
        if cfa_mode != "rggb":
            raise InputError(f"{meta.get('chosen', 'checkpoint')}: a {cfa_mode} checkpoint cannot become a darktable "
                             "package: its packed channels hold the colours of its training CFA, and darktable packs "
                             "from the red photosite (force_rggb) or in each camera's own order (native); retrain "
                             "with --cfa-mode rggb, or export --format onnx")
        config["task"] = "rawdenoise"
        config["attributes"] = {"input_sizes": list(INPUT_SIZES), "variants": {"bayer": {
            "onnx": BAYER_ONNX, "input_kind": "bayer_v1", "bayer_orientation": "force_rggb", "edge_pad": "mirror",
            "wb_norm": "none", "output_scale": "absolute"}}}
        name = BAYER_ONNX
    elif mode == "srgb":
        config["task"] = "denoise"
        config["attributes"] = {"input_sizes": list(INPUT_SIZES)}
        name = RGB_ONNX
    else:
        raise InputError(f"{meta.get('chosen', 'checkpoint')}: unknown mode {mode!r}")
    config["model_card"] = card
    return config, name


def export(model: nn.Module, meta: dict, out: str | Path, fmt: str | None = None, *, force: bool = False,
           check: bool = True) -> ExportResult:
    """Write ``model`` (a checkpoint's, with its ``meta``) to ``out`` as ONNX or a darktable package.

    Args:
        fmt: ``onnx`` or ``dtmodel``; None takes it from ``out``'s suffix. A package's file name is its
            darktable model id (``<id>.dtmodel``).
        force: overwrite ``out``.
        check: run the export in ONNX Runtime (when installed) against PyTorch on a random input; more than
            :data:`AGREEMENT` apart is an error and nothing is written.
    Raises:
        InputError: a bad format or file name, an existing ``out`` without ``force``, a model darktable
            cannot run (see :func:`dtmodel_config`), a missing ``onnx`` package.
    """
    out = Path(out)
    fmt = check_format(fmt, out)
    model_id = check_model_id(out.stem) if fmt == "dtmodel" else None
    check_writable(out, force)
    check_available()
    m = cpu_copy(model)
    channels = model_channels(m, meta)
    config, name = dtmodel_config(meta, model_id) if fmt == "dtmodel" else (None, out.name)
    bayer = fmt == "dtmodel" and channels == 4
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / name
        write_onnx(m, channels, onnx_path, bayer=bayer, metadata=_graph_metadata(meta, channels, bayer))
        diff = ort_difference(onnx_path, m, channels, bayer) if check else None
        if diff is not None and not diff <= AGREEMENT:
            raise InputError(f"{out}: not written: ONNX Runtime and PyTorch disagree by {diff:.2e} (> {AGREEMENT:g})")
        with atomic_path(out, force) as part:
            if fmt == "onnx":
                part.write_bytes(onnx_path.read_bytes())
            else:
                with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as zf:
                    # darktable takes the model id from the first entry's folder
                    zf.writestr(f"{model_id}/config.json",
                                json.dumps(config, indent=4, ensure_ascii=False) + "\n")
                    zf.write(onnx_path, f"{model_id}/{name}")
    return ExportResult(out, fmt, model_id, config["task"] if config else None, diff)


# ------------------------------------------------------------------------------------------------ CPU engine
