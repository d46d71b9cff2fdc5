"""How a run uses its hardware: device, precision, compilation, CUDA graphs, where the training set lives.

Every choice is a training option with ``auto`` resolved per device here, so the loop only asks:

=================  ===========================  ================================================
option             auto on CUDA                 auto on CPU
=================  ===========================  ================================================
``--precision``    bf16 autocast                fp32 (``bf16`` may still be asked for)
                   (training steps only: scores, submissions and files are fp32 unless bf16 is asked
                   for, see :func:`inference_precision`)
``--compile``      on (the whole loss step)     off (compiling takes ~100 s on 2 cores)
``--cuda-graphs``  on for ≤ 16 crops, one GPU   off (CUDA only)
``--data-on-dev``  device if it fits, else      off (host crops, the reference path)
                   pinned host memory if it
                   fits, else host crops
=================  ===========================  ================================================
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch

from n2n_raw.config import STORAGES, SWITCHES
from n2n_raw.errors import InputError, check_choice

# Small batches are launch-bound: one CUDA graph replays the step's hundreds of kernels in one go.
CUDA_GRAPH_MAX_BATCH = 16
# Compilation happens at the first call, CUDA-graph recording after a warm-up call or two: failures there
# fall back to eager.
GUARDED_CALLS = 3
# The training set may take this fraction of the free device memory; the rest is for activations.
DEVICE_DATA_FRACTION = 0.5


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto|cpu|cuda`` → a device (CUDA: the local rank's GPU)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise InputError("--device: cuda was asked for but no CUDA device is available")
        return torch.device("cuda", local_rank)
    check_choice(name, ("auto", "cpu", "cuda"), "--device", "device")
    return torch.device("cpu")


def place_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model on ``device`` with channels-last (NHWC) weights: cuDNN's and oneDNN's convolutions are fastest
    that way, and activations follow the weights' layout (on 2 CPU cores: 1.6× inference, 1.2× training)."""
    return model.to(device, memory_format=torch.channels_last)


def use_bf16(device: torch.device, precision: str) -> bool:
    """bf16 autocast: ``auto`` on CUDA only (fp32 is faster on most CPUs), ``bf16`` anywhere, ``fp32`` never."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


#: Precisions of the commands that produce a score, a submission or a file. ``auto`` is accepted and means fp32.
INFERENCE_PRECISIONS = ("fp32", "bf16")


def inference_precision(precision: str) -> str:
    """The precision of everything that produces a score, a submission or a file: ``fp32`` unless ``bf16``
    is asked for (``auto`` is fp32 here, unlike training's). bf16 output measured 64 dB PSNR against fp32
    on raw blocks (benchmarks/RESULTS.md): an error floor that lowers a 50-dB score by about 0.2 dB."""
    if precision == "auto":
        return "fp32"
    return check_choice(precision, INFERENCE_PRECISIONS, "--precision")


def autocast(device: torch.device, precision: str):
    """The autocast context of ``precision`` on ``device`` (a no-op for fp32). Losses and their
    reductions are cast to fp32 by the caller (see :func:`n2n_raw.method.loss.n2n_loss`)."""
    if use_bf16(device, precision):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _on(setting: str, auto: bool, option: str) -> bool:
    check_choice(setting, SWITCHES, option)
    return auto if setting == "auto" else setting == "on"


def compile_plan(device: torch.device, compile: str, cuda_graphs: str, batch: int, world: int = 1) -> tuple[bool, bool]:
    """(compile the step?, capture it in CUDA graphs?) for a per-process batch of ``batch`` crops.
    CUDA graphs come from compilation (mode ``reduce-overhead``), so ``--cuda-graphs on`` implies it; ``auto``
    leaves them out under DDP, whose gradient all-reduce runs between the graph's pieces."""
    compiled = _on(compile, device.type == "cuda", "--compile")
    small = batch <= CUDA_GRAPH_MAX_BATCH and world == 1
    graphs = _on(cuda_graphs, compiled and device.type == "cuda" and small, "--cuda-graphs")
    if graphs and device.type != "cuda":
        raise InputError("--cuda-graphs: on needs a CUDA device")
    return compiled or graphs, graphs


def training_step(loss_fn: Callable, compiled: bool, graphs: bool, fullgraph: bool = True, *, strict: bool = False,
                  reset: Callable[[], None] = lambda: None, log=print) -> Callable:
    """``step(*args)``: ``loss, *rest = loss_fn(*args)``, then ``loss.backward()``; returns the detached values.

    With ``compiled``, ``loss_fn`` is compiled as one graph (``fullgraph``: a graph break is an error, not a
    silent slowdown) and its backward with it, in CUDA graphs when ``graphs`` (mode ``reduce-overhead``).
    If compiling fails in the first steps (no Triton or C++ toolchain at the first call; CUDA graphs are
    recorded at a later one) the run goes on eager from that step with a warning,
    unless the user asked for compilation explicitly (``strict``: a one-line error); ``reset`` (zeroing the
    gradients) runs before the eager retry.
    """
    def run(f, args):
        loss, *rest = f(*args)
        loss.backward()
        return (loss.detach(), *rest)

    if not compiled:
        return lambda *args: run(loss_fn, args)
    state = {"f": torch.compile(loss_fn, fullgraph=fullgraph, mode="reduce-overhead" if graphs else None),
             "guarded": GUARDED_CALLS}

    def step(*args):
        if state["guarded"] == 0:
            return run(state["f"], args)
        state["guarded"] -= 1
        try:
            return run(state["f"], args)
        except Exception as e:  # noqa: BLE001 - any backend failure: fall back and say why
            first = str(e).splitlines()[0] if str(e) else ""
            if strict:
                raise InputError(f"--compile: compiling the training step failed ({type(e).__name__}: {first})") from None
            log(f"warning: compiling the training step failed ({type(e).__name__}: {first[:120]}); running eager")
            state["f"], state["guarded"] = loss_fn, 0
            reset()
            return run(loss_fn, args)

    return step


def host_available_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (Linux), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def data_storage(setting: str, device: torch.device, nbytes: int, free_bytes: int | None = None,
                 host_free_bytes: int | None = None) -> str:
    """Where the training set lives: ``device`` (crops gathered there), ``pinned`` (pinned host memory,
    crops gathered on the host and copied asynchronously) or ``host`` (the per-step host path, which reads
    crops from a store on demand: bounded memory for a set of any size).

    ``auto`` on CUDA keeps it on the device when it takes at most half the free device memory, else in pinned
    host memory when it takes at most half the available host memory, else on the host path.
    """
    check_choice(setting, STORAGES, "--data-on-device")
    if setting == "off":
        return "host"
    if device.type != "cuda":
        return "device" if setting in ("on", "pinned") else "host"  # no pinned memory without CUDA
    if setting == "auto":
        if free_bytes is None:
            free_bytes = torch.cuda.mem_get_info(device)[0]
        if nbytes <= DEVICE_DATA_FRACTION * free_bytes:
            return "device"
        if host_free_bytes is None:
            host_free_bytes = host_available_bytes()
        fits_host = host_free_bytes is None or nbytes <= DEVICE_DATA_FRACTION * host_free_bytes
        return "pinned" if fits_host else "host"
    return "device" if setting == "on" else "pinned"
