"""Export a trained model: a plain ONNX graph for any runtime, or a darktable ``.dtmodel`` package.

``onnx``: the model as it is, (N, C, H, W) → (N, C, H, W) float32, input ``input`` and output ``output``, batch,
height and width dynamic (H and W multiples of 32, the U-Net's five poolings; pad as :mod:`n2n_raw.infer`
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
  mosaic (:func:`n2n_raw.bayer.unify_pad`). A ``positional`` checkpoint is refused: its channels hold the
  colours of its training CFA, which darktable cannot be told.
- sRGB checkpoints → task ``denoise`` (``model.onnx``): darktable feeds [1, 3, T, T] sRGB-encoded values
  clamped to [0, 1] and reads back the same shape, which is what the sRGB model was trained on.

The model is traced as a generic module (packed (N, 4, H, W) → (N, 4, H, W) for raw): its buffers become
constants of the graph, so a model whose buffers are set per photo (a GatUNet's noise profile) is exported
with the values it holds; darktable gives the graph nothing but the tile.

``config.json`` carries the keys the SDK's validator requires (``id``, ``name``, ``description``, ``task``,
``version``, ``backend``) and a model card (``model_card``: darktable renders ``long_description``,
``scope``, ``training_data``, ``notes`` ...; the card also holds ``cameras``, ``iso``, ``photos``, ``steps``,
``training``). darktable 5.6 itself was not run on these packages: see the README, "Use your model in
darktable", for what was verified.
"""
from __future__ import annotations

import copy
import inspect
import io
import json
import math
import re
import struct
import tempfile
import warnings
import weakref
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import __version__
from .errors import InputError, check_choice

FORMATS = ("onnx", "dtmodel")
SUFFIXES = {"onnx": ".onnx", "dtmodel": ".dtmodel"}
#: ONNX opset: ONNX Runtime's CPU provider runs it from version 1.13 on (darktable 5.6 bundles a newer one).
OPSET = 17
#: Tile sides darktable may choose from, largest first (packed pixels for raw, image pixels for sRGB): it takes
#: the first whose estimated memory fits a quarter of what is available, and the next one after a failed run.
#: All are multiples of 32 (the U-Net's) and at least 4 × darktable's 32-pixel overlap.
INPUT_SIZES = (1024, 768, 512, 256)
BAYER_ONNX = "model_bayer.onnx"
RGB_ONNX = "model.onnx"
#: Symbolic dimension names: darktable fixes "height"/"width" (its default ``spatial_dims``) and "batch" to
#: the tile size and 1 when it creates a session.
BATCH, HEIGHT, WIDTH = "batch", "height", "width"
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


class BayerPlanes(nn.Module):
    """A raw model with darktable's ``bayer_v1`` output: packed (N, 4, H, W) RGGB → (N, 3, 2H, 2W).

    The model's four output channels (R, G1, G2, B, as packed from the red photosite) go back to their
    photosites of the 2×2 cell, each in the plane of its colour (R → 0, G1 and G2 → 1, B → 2), zeros in
    the other planes: darktable reads only plane FC(r, c) at each photosite. Pure data movement (a channel
    concatenation and a pixel shuffle), so values pass unchanged.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        z = torch.zeros_like(y[:, :1])
        r, g1, g2, b = y[:, 0:1], y[:, 1:2], y[:, 2:3], y[:, 3:4]
        # pixel_shuffle puts channel 4c + 2i + j of its input at (2y + i, 2x + j) of output plane c
        return F.pixel_shuffle(torch.cat([r, z, z, z, z, g1, g2, z, z, z, z, b], dim=1), 2)


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


# ------------------------------------------------------------------------------------------------ ONNX

def _cpu_copy(model: nn.Module) -> nn.Module:
    """An fp32, contiguous-layout, eval-mode copy of ``model`` on the CPU (the caller's model is untouched)."""
    m = copy.deepcopy(model).to("cpu")
    return m.to(memory_format=torch.contiguous_format).float().eval()


def _channels(model: nn.Module, meta: dict) -> int:
    """Input channels (raw: 4 packed, sRGB: 3), checked by a trial forward: the model must map C → C."""
    c = 4 if meta.get("mode") == "raw" else 3
    with torch.no_grad():
        y = model(torch.zeros(1, c, 64, 64))
    if tuple(y.shape) != (1, c, 64, 64):
        kind = "a packed raw (N, 4, H, W)" if c == 4 else "an sRGB (N, 3, H, W)"
        raise InputError(f"the model does not map {kind} input to the same shape (got {tuple(y.shape)})")
    return c


def _trace(model: nn.Module, channels: int, f, bayer: bool = False) -> None:
    """torch.onnx.export of ``model`` (or :class:`BayerPlanes` of it) into ``f`` (a path or a binary buffer):
    the TorchScript exporter (no onnxscript needed), batch, height and width dynamic."""
    graph = BayerPlanes(model).eval() if bayer else model
    out_dims = {0: BATCH, 2: "out_height", 3: "out_width"} if bayer else {0: BATCH, 2: HEIGHT, 3: WIDTH}
    kw = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with warnings.catch_warnings():  # the tracer's notes on the U-Net's shape check, the exporter's deprecation
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (torch.zeros(1, channels, 64, 96),), f, opset_version=OPSET,
                          input_names=["input"], output_names=["output"], do_constant_folding=True,
                          dynamic_axes={"input": {0: BATCH, 2: HEIGHT, 3: WIDTH}, "output": out_dims}, **kw)


def write_onnx(model: nn.Module, channels: int, path: Path, *, bayer: bool = False,
               metadata: dict[str, str] | None = None) -> None:
    """Trace ``model`` (fp32, CPU) into an ONNX file at ``path``: input ``input`` (batch, C, height, width),
    output ``output``; with ``bayer`` wrapped in :class:`BayerPlanes` (output (batch, 3, 2·height, 2·width)).
    ``metadata``: string pairs stored in the graph's metadata_props."""
    import onnx
    _trace(model, channels, str(path), bayer)
    proto = onnx.load(str(path))
    proto.producer_name, proto.producer_version = "n2n-raw", __version__
    for k, v in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, str(v)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def ort_difference(path: Path, model: nn.Module, channels: int, bayer: bool = False, size=(96, 160),
                   seed: int = 0) -> float | None:
    """max |ONNX Runtime − PyTorch| of the exported ``path`` on a random input of ``size``; None without
    onnxruntime. Raw models get values around black and white, as a photo's are."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((1, channels, *size), generator=g) * 1.2 - 0.1
    with torch.no_grad():
        ref = (BayerPlanes(model) if bayer else model)(x).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    if got.shape != ref.shape:
        return math.inf
    return float(abs(got - ref).max())


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
    from .io import tiff
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
    from .io.atomic import atomic_path, check_writable
    out = Path(out)
    fmt = check_format(fmt, out)
    model_id = check_model_id(out.stem) if fmt == "dtmodel" else None
    check_writable(out, force)
    check_available()
    m = _cpu_copy(model)
    channels = _channels(m, meta)
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

#: Inference engines of :class:`n2n_raw.Denoiser` and ``n2n-raw denoise --engine``. ``auto`` (on a CPU in fp32,
#: onnxruntime installed): ONNX Runtime for every pass of at least :data:`ORT_MIN_PIXELS` pixels, PyTorch for
#: smaller ones; elsewhere PyTorch. On 2 CPU cores ONNX Runtime's forward pass of a 12-MP mosaic took 0.68× the
#: time of PyTorch's channels-last one and agreed to 7e-6 (benchmarks/RESULTS.md), but making its session costs
#: about 1.5 s (tracing the model), which only a large pass pays back.
ENGINES = ("auto", "torch", "onnxruntime")
#: Pixels (N·H·W of the padded input) from which ``auto`` runs a pass in ONNX Runtime: 2^20 packed pixels, a
#: 4-MP mosaic (break-even measured near 0.9 · 2^20).
ORT_MIN_PIXELS = 1 << 20


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_engine(engine: str, device: torch.device, precision: str) -> str:
    """``engine`` (see :data:`ENGINES`) on ``device`` at ``precision``: ``torch``, ``onnxruntime``, or ``auto``
    where ONNX Runtime can run (a CPU, fp32, installed; :func:`pass_engine` then decides per pass)."""
    check_choice(engine, ENGINES, "--engine", "engine")
    fits = torch.device(device).type == "cpu" and precision == "fp32"
    if engine == "onnxruntime":
        if not fits:
            raise InputError("--engine onnxruntime: runs on the CPU in fp32 only (use --device cpu --precision fp32)")
        if not onnxruntime_available():
            raise InputError("--engine onnxruntime: onnxruntime is not installed: pip install 'n2n-raw[onnx]'")
        return engine
    if engine == "auto":
        return "auto" if fits and onnxruntime_available() else "torch"
    return engine


def pass_engine(engine: str, x: torch.Tensor) -> str:
    """The engine of one forward pass of ``x`` (N, C, H, W): ``auto`` → ONNX Runtime from
    :data:`ORT_MIN_PIXELS` on (a resolved ``auto``, see :func:`resolve_engine`), else PyTorch."""
    if engine == "auto":
        return "onnxruntime" if x.shape[0] * x.shape[-2] * x.shape[-1] >= ORT_MIN_PIXELS else "torch"
    return engine


#: ONNX Runtime sessions of the models :func:`ort_forward` has run, with the tensors each was exported from.
_SESSIONS: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _state(model: nn.Module) -> list[torch.Tensor]:
    return [t.detach() for t in (*model.parameters(), *model.buffers())]


def ort_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` run by ONNX Runtime's CPU provider: (N, C, H, W) → float32 CPU tensor.

    The graph is exported from ``model`` (fp32, CPU copy) at the first call and again whenever its parameters or
    buffers have changed since (a model given a noise profile per photo stays right); ONNX Runtime uses as many
    threads as PyTorch."""
    import onnxruntime as ort
    channels = int(x.shape[1])
    now = _state(model)
    held = _SESSIONS.get(model)
    if (held is None or held[2] != channels or len(now) != len(held[1])
            or not all(a.shape == b.shape and torch.equal(a.cpu(), b) for a, b in zip(now, held[1]))):
        graph = io.BytesIO()
        _trace(_cpu_copy(model), channels, graph)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(graph.getvalue(), opts, providers=["CPUExecutionProvider"])
        held = (session, [t.cpu().clone() for t in now], channels)
        _SESSIONS[model] = held
    y = held[0].run(None, {"input": x.detach().float().cpu().contiguous().numpy()})[0]
    return torch.from_numpy(y)
