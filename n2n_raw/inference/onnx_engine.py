"""ONNX: tracing a model into a graph (for export), and running it with ONNX Runtime (the faster CPU engine
of ``denoise``). ``onnx`` and ``onnxruntime`` are the optional ``onnx`` extra: imported where used.

The model is traced as a generic module (packed (N, 4, H, W) → (N, 4, H, W) for raw): its buffers become
constants of the graph, so a model whose buffers are set per photo (a GatUNet's noise profile) is exported
with the values it holds.
"""
from __future__ import annotations

import copy
import inspect
import io
import math
import warnings
import weakref
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from n2n_raw.errors import InputError, check_choice
from n2n_raw.version import __version__

#: ONNX opset: ONNX Runtime's CPU provider runs it from version 1.13 on (darktable 5.6 bundles a newer one).
OPSET = 17
#: Symbolic dimension names: darktable fixes "height"/"width" (its default ``spatial_dims``) and "batch" to
#: the tile size and 1 when it creates a session.
BATCH, HEIGHT, WIDTH = "batch", "height", "width"


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


def cpu_copy(model: nn.Module) -> nn.Module:
    """An fp32, contiguous-layout, eval-mode copy of ``model`` on the CPU (the caller's model is untouched)."""
    m = copy.deepcopy(model).to("cpu")
    return m.to(memory_format=torch.contiguous_format).float().eval()


def model_channels(model: nn.Module, meta: dict) -> int:
    """Input channels (raw: 4 packed, sRGB: 3), checked by a trial forward: the model must map C → C."""
    c = 4 if meta.get("mode") == "raw" else 3
    with torch.no_grad():
        y = model(torch.zeros(1, c, 64, 64))
    if tuple(y.shape) != (1, c, 64, 64):
        kind = "a packed raw (N, 4, H, W)" if c == 4 else "an sRGB (N, 3, H, W)"
        raise InputError(f"the model does not map {kind} input to the same shape (got {tuple(y.shape)})")
    return c


def trace(model: nn.Module, channels: int, f, bayer: bool = False) -> None:
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
    trace(model, channels, str(path), bayer)
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
        trace(cpu_copy(model), channels, graph)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        # No memory arena: it kept a 12-MP pass's peak (5.4 GB against 3.2 without) and grew by as much again on
        # a second pass of the same size (ensembles, two-scale probes: 9.9 GB), for no measurable speed
        opts.enable_cpu_mem_arena = False
        session = ort.InferenceSession(graph.getvalue(), opts, providers=["CPUExecutionProvider"])
        held = (session, [t.cpu().clone() for t in now], channels)
        _SESSIONS[model] = held
    y = held[0].run(None, {"input": x.detach().float().cpu().contiguous().numpy()})[0]
    return torch.from_numpy(y)
