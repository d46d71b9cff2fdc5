"""Training throughput of the reference Neighbor2Neighbor code against n2n-raw, on the same device.

The reference is the authors' code (train.py + arch_unet.py). Nothing of it is in this repository and this
script downloads nothing: make a checkout yourself and pass its folder (on a machine without internet, carry
the checkout there first).

    git clone https://github.com/TaoHuang2018/Neighbor2Neighbor
    python benchmarks/reference.py --reference Neighbor2Neighbor                          # CPU
    python benchmarks/reference.py --reference Neighbor2Neighbor --device cuda --steps 50 --warmup 10

What it does:

1. Copies the checkout's two Python files into a temporary folder (the checkout is never touched) and applies
   the fixes in FIXES there: only what current PyTorch and the chosen device need for it to run, no
   speed-ups. Each is a text substitution that must match an exact number of times, so a changed reference
   stops the script instead of being patched wrongly. Where cv2 or torchvision is not installed, a stand-in
   module is put on its path (STAND_INS). Its known gauss25 defect (one constant offset per image instead
   of per-pixel noise on current PyTorch) is left in: it does not stop it running, and it only makes its
   noise step cheaper, so the ratio printed here errs in the reference's favour.
2. Writes a training folder as the reference's dataset tool leaves one: JPEG quality 100, 4:4:4,
   ImageNet-like 500x375 dead-leaves images (bigger where the patch needs it), enough for one epoch
   longer than the measured steps, so no epoch end (workers restarting, checkpoint, validation) falls
   inside the measurement.
3. Runs the reference's own train.py as a subprocess (--batchsize, --patchsize, gauss25, an empty
   validation folder) and stops it once it has logged warm-up + N iterations.
   Timing: the reference prints one line per iteration; this script stamps each line as it arrives and
   takes the wall-clock time from the end of the last warm-up iteration to the end of the N-th measured one.
   That is everything its training loop does for N steps, as in real use: waiting for its DataLoader
   (8 workers decoding and cropping JPEGs), the host-to-device copy, noise, masks, both passes, Adam,
   and its log line with three .item() calls (which also synchronise the GPU, so the stamps are not early).
   Its own per-line `Time=` starts after the batch has arrived, so it leaves the data loading out; its
   sum is printed too, for comparison, but the ratio uses the wall clock.
4. Times n2n-raw's training loop the way benchmarks/throughput.py does (bench_train: `train` itself on its
   built-in data, every option at its default, so bf16 and the compiled step on CUDA; its own data path,
   noise, masks, loss, backward, Adam and logging are all in the step), at the same batch, patch and
   step counts, on the same device, and prints a Markdown row for benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import collections
import importlib.util
import inspect
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Callable, NamedTuple, NoReturn

import torch

from common import device_name, git_rev  # benchmarks/common.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_URL = "https://github.com/TaoHuang2018/Neighbor2Neighbor"
REFERENCE_FILES = ("train.py", "arch_unet.py")


class Fix(NamedTuple):
    file: str
    old: str
    new: str
    count: int                       # exact number of occurrences expected in the reference
    needed: Callable[[str], bool]    # device -> whether this fix is needed there
    reason: str


def _legacy_cuda_ctor_missing(device: str) -> bool:
    """True where this PyTorch can no longer build torch.cuda.FloatTensor (removed or CPU-only build)."""
    try:
        torch.cuda.FloatTensor(torch.Size([1]), device=torch.device(device))
        return False
    except Exception:
        return True


FIXES = [
    Fix("arch_unet.py", "nn.ConvTranspose2d(in_nc, out_nc, 2, 2, 0, False)",
        "nn.ConvTranspose2d(in_nc, out_nc, 2, 2, 0)", 1, lambda d: True,
        "the positional False lands in output_padding (bias stays on); PyTorch 2's forward rejects a bool there"),
    Fix("train.py", ".cuda()", "", 3, lambda d: d == "cpu",
        "model and tensors are moved with a hard-coded .cuda(); on CPU they already are where they belong"),
    Fix("train.py", 'torch.Generator(device="cuda")', 'torch.Generator(device="cpu")', 1, lambda d: d == "cpu",
        "the noise and mask generator is hard-coded CUDA"),
    Fix("train.py", "torch.cuda.FloatTensor(shape, device=x.device)", "torch.empty(shape, device=x.device)", 2,
        lambda d: d == "cpu" or _legacy_cuda_ctor_missing(d),
        "the noise buffer uses the legacy CUDA-only constructor; torch.empty makes the same uninitialised "
        "float32 buffer"),
]

# Modules train.py imports that a PyTorch environment may lack; a stand-in is used only where one is missing.
_TORCHVISION_TRANSFORMS = textwrap.dedent("""\
    import torch


    class Compose:
        def __init__(self, fns):
            self.fns = fns

        def __call__(self, x):
            for f in self.fns:
                x = f(x)
            return x


    class ToTensor:  # torchvision's behaviour for a numpy array
        def __call__(self, pic):
            pic = pic[:, :, None] if pic.ndim == 2 else pic
            t = torch.from_numpy(pic.transpose((2, 0, 1))).contiguous()
            return t.float().div(255) if t.dtype == torch.uint8 else t
    """)
STAND_INS = {
    "cv2": ("imported at the top but used only by validation SSIM, which the benchmark never reaches",
            {"cv2.py": "# stand-in: importing it works, using it fails (only validation uses cv2)\n"}),
    "torchvision": ("used only for transforms.ToTensor on each crop; the stand-in does what ToTensor does with "
                    "a float32 HWC array (CHW view made contiguous, no scaling)",
                    {"torchvision/__init__.py": "", "torchvision/transforms.py": _TORCHVISION_TRANSFORMS}),
}

ITER_LINE = re.compile(r"^\d{4} \d{5} Loss1=.*Time=([0-9.]+)\s*$")


def fail(msg: str, code: int = 2) -> NoReturn:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(code)


# ------------------------------------------------------------------------------------------- the copy

def prepare_copy(reference: Path, work: Path, device: str) -> tuple[list[str], Path | None]:
    """Fixed copy of the reference in ``work``; returns the fixes applied and the stand-in folder, if any."""
    applied = []
    for name in REFERENCE_FILES:
        shutil.copy2(reference / name, work / name)
    for fix in FIXES:
        if not fix.needed(device):
            continue
        path = work / fix.file
        text = path.read_text()
        found = text.count(fix.old)
        if found != fix.count:
            fail(f"{reference / fix.file}: expected {fix.count}x {fix.old!r}, found {found}; "
                 "the reference has changed, update FIXES in benchmarks/reference.py")
        path.write_text(text.replace(fix.old, fix.new))
        applied.append(f"{fix.file}: {fix.reason}  [{fix.old!r} -> {fix.new!r}, {fix.count}x]")
    shims = None
    for module, (reason, files) in STAND_INS.items():
        if importlib.util.find_spec(module) is not None:
            continue
        shims = work / "stand_ins"
        for rel, src in files.items():
            (shims / rel).parent.mkdir(parents=True, exist_ok=True)
            (shims / rel).write_text(src)
        applied.append(f"{module} is not installed, stand-in module: {reason}")
    return applied, shims


def write_training_folder(folder: Path, count: int, patch: int, unique: int = 16):
    """``count`` JPEGs (q100, 4:4:4 as the reference's dataset_tool.py saves them), ``unique`` distinct ones."""
    sys.path.insert(0, str(ROOT))
    from PIL import Image
    from n2n_raw.sim.dead_leaves import dead_leaves_set
    w, h = max(500, patch), max(375, patch)  # ImageNet val's usual size; never smaller than a crop
    blobs = []
    for im in dead_leaves_set(min(unique, count), h, w, seed=7):
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="JPEG", quality=100, subsampling=0)
        blobs.append(buf.getvalue())
    folder.mkdir()
    for i in range(count):  # repeats decode exactly as dearly as distinct images would
        (folder / f"{i:05d}.jpg").write_bytes(blobs[i % len(blobs)])
    return w, h


# ------------------------------------------------------------------------------------------- the runs

def run_reference(work: Path, shims: Path | None, device: str, batch: int, patch: int,
                  steps: int, warmup: int, timeout: float) -> dict:
    """Run the fixed copy's train.py; wall-clock crops/s over ``steps`` logged iterations after ``warmup``."""
    data, val, out = work / "train_data", work / "no_validation", work / "results"
    val.mkdir()
    cmd = [sys.executable, "train.py", "--data_dir", str(data), "--val_dirs", str(val),
           "--save_model_path", str(out), "--noisetype", "gauss25", "--batchsize", str(batch),
           "--patchsize", str(patch), "--n_epoch", "1"]
    if device == "cuda":  # the reference sets CUDA_VISIBLE_DEVICES itself: point it at the GPU we use
        cmd += ["--gpu_devices", os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]]
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # one line per iteration, as it happens
    if shims is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(shims), env.get("PYTHONPATH")) if p)
    need = warmup + steps
    stamps, own, other = [], [], collections.deque(maxlen=20)
    # A session of its own, so that its DataLoader workers stop with it.
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1, start_new_session=True)
    t_start = time.perf_counter()
    # A hung run (a DataLoader that freezes, say) must not hang the benchmark: killing it ends the loop below.
    watchdog = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))
    watchdog.start()
    try:
        for line in proc.stdout:
            now = time.perf_counter()
            m = ITER_LINE.match(line)
            if not m:
                other.append(line.rstrip())
                continue
            stamps.append(now)
            own.append(float(m.group(1)))
            if len(stamps) >= need:
                break
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        proc.stdout.close()
    if len(stamps) < need:
        print("\n".join(other), file=sys.stderr)
        fail(f"the reference stopped after {len(stamps)} of {need} iterations (exit status {proc.returncode}, "
             f"{time.perf_counter() - t_start:.0f} s, --timeout {timeout:.0f}); its last output is above", 1)
    wall = stamps[need - 1] - stamps[warmup - 1]
    # Its warnings, each once and in short: "UserWarning: first sentence."
    warnings = sorted({m.group(1) for ln in other if (m := re.search(r"(\w*Warning: [^.]*\.)", ln))})
    return {"crops_s": batch * steps / wall, "own_crops_s": batch * steps / sum(own[warmup:need]),
            "startup_s": stamps[0] - t_start, "warnings": warnings}


def run_ours(device: str, batch: int, patch: int, steps: int, warmup: int) -> dict:
    """n2n-raw's training loop as throughput.py times it, with every option at `n2n-raw train`'s default."""
    from throughput import bench_train
    kwargs = dict(mode="srgb", batch=batch, patch=patch, device=torch.device(device), steps=steps,
                  warmup=warmup, opts={}, variant="n2n-raw")
    try:
        inspect.signature(bench_train).bind(**kwargs)
    except TypeError as e:
        fail(f"benchmarks/throughput.py's bench_train has changed ({e}); "
             "update run_ours in benchmarks/reference.py", 1)
    return bench_train(**kwargs)


# ------------------------------------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", required=True, type=Path, help=f"a checkout of {REFERENCE_URL}")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--batch", type=int, default=4, help="crops per step (the paper's protocol: 4)")
    ap.add_argument("--patch", type=int, default=256, help="crop side in pixels, a multiple of 64")
    ap.add_argument("--steps", type=int, default=20, help="measured steps")
    ap.add_argument("--warmup", type=int, default=5, help="steps run before the measurement (at least 1)")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds after which the reference run is killed")
    args = ap.parse_args()

    ref = args.reference
    missing = [f for f in REFERENCE_FILES if not (ref / f).is_file()]
    if missing:
        fail(f"{ref} is not a checkout of the reference (no {', '.join(missing)}); "
             f"get one with: git clone {REFERENCE_URL}")
    if args.patch % 64 or args.patch <= 0:
        fail(f"--patch {args.patch}: must be a positive multiple of 64 (the U-Net sees half-size sub-images)")
    if min(args.batch, args.steps, args.warmup) < 1:  # warm-up 1 at least: its end starts the clock
        fail("--batch, --steps and --warmup must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: no CUDA device is available to PyTorch here")

    t0 = time.perf_counter()
    dev_name = device_name(torch.device(args.device))
    ours_rev, ref_rev = git_rev(ROOT), git_rev(ref, REFERENCE_FILES)
    print(f"device {dev_name}; torch {torch.__version__}; n2n-raw {ours_rev}; reference {ref_rev}")
    print(f"batch {args.batch}, patch {args.patch}, gauss25, {args.steps} steps after {args.warmup} warm-up")

    with tempfile.TemporaryDirectory(prefix="n2n_reference_") as td:
        work = Path(td)
        applied, shims = prepare_copy(ref, work, args.device)
        print("fixes applied to the reference's copy:")
        for line in applied:
            print(f"  - {line}")
        # One epoch longer than the measurement (drop_last), plus a spare batch.
        n_images = (args.warmup + args.steps + 2) * args.batch
        w, h = write_training_folder(work / "train_data", n_images, args.patch)
        print(f"training folder: {n_images} JPEGs {w}x{h} (q100, 4:4:4)")
        print("running the reference ...", flush=True)
        r = run_reference(work, shims, args.device, args.batch, args.patch, args.steps, args.warmup,
                          args.timeout)
    for wline in r["warnings"]:
        print(f"  reference warned: {wline}")
    print(f"reference: {r['crops_s']:.2f} crops/s wall clock (its own Time= lines, which leave out data "
          f"loading: {r['own_crops_s']:.2f}); {r['startup_s']:.1f} s to its first iteration")
    print("running n2n-raw ...", flush=True)
    o = run_ours(args.device, args.batch, args.patch, args.steps, args.warmup)
    how = o.get("how", "")
    print(f"n2n-raw: {o['crops_s']:.2f} crops/s ({how})")

    print()
    print("| device | torch | batch | patch | steps | reference crops/s (fp32) | n2n-raw crops/s "
          "| n2n-raw / reference | n2n-raw | reference |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {dev_name} | {torch.__version__} | {args.batch} | {args.patch} | {args.steps} | {r['crops_s']:.2f} "
          f"| {o['crops_s']:.2f} ({how}) | {o['crops_s'] / r['crops_s']:.2f}× | {ours_rev} | {ref_rev} |")
    print(f"\n({time.perf_counter() - t0:.0f} s in all)")


if __name__ == "__main__":
    main()
