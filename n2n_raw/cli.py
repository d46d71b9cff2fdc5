"""The ``n2n-raw`` command line: parse options, call the library, map a user's mistakes to exit status 2.

Every command is a thin layer over ``n2n_raw``; see the README and docs/commands.md for examples and ``COMMAND --help``.

Over 400 lines, and why: it is long but shallow. Each of the 10 commands only parses options, calls one
library function and prints its result; keeping them together keeps one error mapping (:func:`handles_errors`)
and one place to read the whole command line. ``train``'s options are not written here but built from
:class:`n2n_raw.config.TrainConfig` (:func:`config_options`).
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import sys
import time
import typing
from pathlib import Path
from typing import List, Optional

import typer

# no torch at import: --help is built from the configuration's fields and fit's defaults
from n2n_raw.config import FIT_DEFAULTS, MODES, NOISES, SCRATCH_DEFAULTS, TrainConfig
from n2n_raw.errors import InputError, check_choice

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="Self-supervised Neighbor2Neighbor denoising for raw and sRGB images.")
prepare_app = typer.Typer(no_args_is_help=True, help="Turn a data folder into one HDF5 training store.")
app.add_typer(prepare_app, name="prepare")

DEBUG = {"on": False}
UNIFY_HELP = ("raw, rggb mode: how a BGGR/GRBG/GBRG block reaches RGGB phase: flip (default; the cost of an "
              "RGGB block) or pad (the default before: 1.56× the work; scores 0.03-0.14 dB higher in "
              "benchmarks/RESULTS.md).")
WHICH_HELP = ("Checkpoint of a run folder: best (highest validation PSNR; the newest when the run was never "
              "validated) or last (the newest).")


def _fail(message: str) -> None:
    typer.echo(f"n2n-raw: error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(2)


def handles_errors(fn):
    """Turn InputError (and a missing optional extra) into one line on stderr and exit status 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except InputError as e:
            if DEBUG["on"]:
                raise
            _fail(str(e))
        except KeyboardInterrupt:
            typer.echo("n2n-raw: interrupted", err=True)
            raise typer.Exit(130)
    return wrapper


def _out(text: str = "") -> None:
    typer.echo(text)


def _hook(desc: str, unit: str = "it"):
    from n2n_raw.progress import ProgressHook
    return ProgressHook(desc, unit)


def _workers(n: Optional[int]) -> int:
    if n is not None and n < 1:
        raise InputError(f"--workers: must be >= 1, got {n}")
    return n or (os.cpu_count() or 1)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks for errors.")):
    DEBUG["on"] = debug


# --------------------------------------------------------------------------------------------- prepare

@prepare_app.command("srgb")
@handles_errors
def prepare_srgb(input_dir: Path = typer.Argument(..., help="Folder of images (searched recursively)."),
                 output: Path = typer.Argument(..., help="HDF5 store to write."),
                 min_size: int = typer.Option(256, help="Keep images whose width and height are >= this."),
                 max_size: int = typer.Option(512, help="... and <= this (ImageNet val → 44,328 images)."),
                 workers: Optional[int] = typer.Option(None, help="Decoding processes (default: all cores)."),
                 force: bool = typer.Option(False, help="Overwrite OUTPUT if it exists.")):
    """Keep every readable image with both sides within [min, max], as RGB, in one store (the paper's filter)."""
    from n2n_raw.jobs.prepare import prepare_srgb as run
    if min_size < 1 or max_size < min_size:
        raise InputError(f"--min-size/--max-size: need 1 <= min <= max, got {min_size}, {max_size}")
    hook = _hook("prepare srgb", "img")
    c = run(input_dir, output, min_size=min_size, max_size=max_size, workers=_workers(workers), force=force,
            progress=hook)
    hook.close()
    _out(f"{output}: kept {c['kept']}, skipped by size {c['skipped_size']}, unreadable {c['unreadable']} "
         f"({c['seconds']:.1f} s, {c['images_per_s']:.1f} images/s)")


@prepare_app.command("sidd")
@handles_errors
def prepare_sidd(input_dir: Path = typer.Argument(..., help="SIDD_Medium_Raw folder (with Data/<scene>/)."),
                 output: Path = typer.Argument(..., help="HDF5 store to write."),
                 with_gt: bool = typer.Option(False, "--with-gt", help="Also store the ground-truth frames."),
                 workers: Optional[int] = typer.Option(None, help="Reading threads."),
                 force: bool = typer.Option(False, help="Overwrite OUTPUT if it exists.")):
    """Every *_NOISY_RAW_*.MAT frame, in MATLAB orientation, with CFA, phone, ISO and scene from its metadata."""
    from n2n_raw.jobs.prepare import prepare_sidd as run
    hook = _hook("prepare sidd", "frame")
    c = run(input_dir, output, with_gt=with_gt, workers=_workers(workers), force=force, progress=hook)
    hook.close()
    _out(f"{output}: {c['frames']} frames, skipped {c.get('skipped', 0)} ({c['seconds']:.1f} s)")


@prepare_app.command("dng")
@handles_errors
def prepare_dng(input_dir: Path = typer.Argument(..., help="Folder of camera raw files: DNG or any Bayer raw LibRaw "
                                                 "reads (NEF, CR2, CR3, ARW, RAF, ORF, RW2, ...), searched recursively."),
                output: Path = typer.Argument(..., help="HDF5 store to write."),
                workers: Optional[int] = typer.Option(None, help="Reading threads."),
                force: bool = typer.Option(False, help="Overwrite OUTPUT if it exists.")):
    """Every camera raw file (DNG, NEF, CR2, ...), normalised with its black and white levels, with its CFA."""
    from n2n_raw.jobs.prepare import prepare_dng as run
    hook = _hook("prepare dng", "file")
    c = run(input_dir, output, workers=_workers(workers), force=force, progress=hook)
    hook.close()
    _out(f"{output}: {c['frames']} frames, skipped {c.get('skipped', 0)} unreadable ({c['seconds']:.1f} s)")


# --------------------------------------------------------------------------------------------- train

def config_options(config_cls, before: list[inspect.Parameter], after: list[inspect.Parameter]):
    """Give a command one option per field of ``config_cls`` made with :func:`n2n_raw.config.option`: name, type,
    default and help come from the field (the config is their one source), between the command's own
    ``before`` and ``after`` parameters. The command takes the options as ``**options``."""
    hints = typing.get_type_hints(config_cls)
    params = list(before)
    for f in dataclasses.fields(config_cls):
        if "help" not in f.metadata:
            continue
        m, kind = f.metadata, hints[f.name]
        args = typing.get_args(kind)
        base = next(a for a in args if a is not type(None)) if type(None) in args else kind  # X | None → X
        if typing.get_origin(base) is tuple:
            kind = List[Path] if m["path"] else List[typing.get_args(base)[0]]
        else:
            base = Path if m["path"] else base
            kind = Optional[base] if f.default is None or m.get("cli_default", 0) is None else base
        default = m.get("cli_default", f.default)
        default = list(default) if isinstance(default, tuple) else default
        names = (f"--{f.name.replace('_', '-')}",) if m["flag"] else ()
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=kind,
                                        default=typer.Option(default, *names, help=m["help"])))
    params += after

    def decorate(fn):
        fn.__signature__ = inspect.Signature(params)
        fn.__annotations__ = {p.name: p.annotation for p in params if p.annotation is not inspect.Parameter.empty}
        return fn
    return decorate


def train_option(name: str):
    """The typer option of ``TrainConfig.<name>`` (default and help from the field), for a command other than
    train that takes the same setting."""
    f = next(f for f in dataclasses.fields(TrainConfig) if f.name == name)
    return typer.Option(f.default, help=f.metadata["help"])


def _kw(name: str, annotation, option) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=option)


@app.command()
@handles_errors
@config_options(
    TrainConfig,
    before=[inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
            _kw("out", Path, typer.Option(..., help="Run folder: config.json, metrics.csv, checkpoints."))],
    after=[_kw("resume", bool, typer.Option(False, "--resume", help="Continue the run in --out from its last "
                                            "checkpoint.")),
           _kw("force", bool, typer.Option(False, "--force", help="Start over in a non-empty --out."))])
def train(ctx: typer.Context, out: Path, resume: bool, force: bool, **options):
    """Train a Neighbor2Neighbor U-Net (paper defaults; docs/training-options.md gives every default's source), or with
    --target supervised the same U-Net on noisy → clean pairs (noise2noise: noisy → independently noisy)."""
    from n2n_raw.training.loop import train as run
    if resume and force:
        raise InputError("--resume and --force: choose one")
    if options["mode"] is None:
        if not resume:
            raise InputError("--mode: required (srgb or raw)")
        options["mode"] = "srgb"  # placeholder: train() takes the run's own config.json
    for name, value in options.items():
        paths = value if isinstance(value, list) else [value]
        for p in paths:
            if isinstance(p, Path) and not p.exists():
                raise InputError(f"{p}: no such file or folder")
    cfg = TrainConfig(**{n: tuple(str(p) for p in v) if isinstance(v, list) else str(v) if isinstance(v, Path)
                         else v for n, v in options.items()})
    given = {n for n in options  # options typed by the user, not left at their defaults
             if getattr(ctx.get_parameter_source(n), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")}
    summary = run(cfg, out, resume=resume, force=force, log=lambda s: typer.echo(s, err=True), given=given)
    if summary["rank"] != 0:  # DDP: rank 0 reports
        return
    val_txt = f", validation PSNR {summary['val_psnr']:.2f} dB" if summary.get("val_psnr") is not None else ""
    loss = "None" if summary.get("loss") is None else format(summary["loss"], ".6f")
    _out(f"{out}: {summary['steps']} steps in {summary['seconds']:.1f} s, final loss {loss}{val_txt}")


# --------------------------------------------------------------------------------------------- fit

ENSEMBLE_HELP = ("Raw: denoise each photo as the mean of 1, 2, 4 or 8 Bayer-preserving views (transpose, "
                 "180° rotation, flips), at that many times the time.")
MULTISCALE_HELP = ("Raw, noise-profiled models (the shipped one and its fine-tunes): also denoise at half scale "
                   "and fuse the two as much as an unbiased risk estimate (SURE) says helps, per photo: large smooth "
                   "areas lose their low-frequency noise. Costs (E + 1)·5/4 passes for E views instead of E: 1.6× the time "
                   "with 4 views, 2.5× with one.")

@app.command()
@handles_errors
def fit(photos: List[Path] = typer.Argument(..., help="Camera raw files (DNG, NEF, CR2, ARW, ...: any Bayer raw "
                                            "LibRaw reads) or folders of them (searched recursively)."),
        out: Path = typer.Option(..., help="Run folder: config.json, metrics.csv, checkpoints (reuse it with "
                                 "`denoise --checkpoint RUN`)."),
        denoised: Optional[Path] = typer.Option(None, help="Folder for the denoised DNGs and PNG previews "
                                                "(default: RUN/denoised)."),
        steps: int = typer.Option(FIT_DEFAULTS["steps"], help="Fine-tuning steps (settings chosen on real photos "
                                  "against BM3D; see the README)."),
        lr: Optional[float] = typer.Option(None, help=f"Adam LR (default {FIT_DEFAULTS['lr']:g}; "
                                           f"{SCRATCH_DEFAULTS['lr']:g} from scratch: short runs need more than the "
                                           "paper's raw 1e-4)."),
        batch_size: int = typer.Option(FIT_DEFAULTS["batch_size"], help="Crops per step."),
        patch_size: Optional[int] = typer.Option(None, help=f"Crop side in mosaic pixels, a multiple of 128 "
                                                 f"(default {FIT_DEFAULTS['patch_size']}); at most the smallest "
                                                 "photo's side."),
        seed: int = train_option("seed"),
        start_from: str = typer.Option(FIT_DEFAULTS["start_from"], help="pretrained: fine-tune the model shipped "
                                       "with n2n-raw (trained on synthetic noise); scratch: a fresh U-Net (the "
                                       "paper's method alone); or a raw run folder / checkpoint."),
        target: Optional[str] = typer.Option(None, help="The self-supervised loss: r2r (Recorrupted-to-Recorrupted "
                                             "in the pretrained model's variance-stabilised domain), r2r-lin (R2R in "
                                             "linear units, recorruption matched to each pixel's noise: unbiased in "
                                             "the dark; the default) or n2n (Neighbor2Neighbor; the default from "
                                             "scratch)."),
        ensemble: int = typer.Option(FIT_DEFAULTS["ensemble"], help=ENSEMBLE_HELP),
        multiscale: bool = typer.Option(FIT_DEFAULTS["multiscale"], "--multiscale/--no-multiscale",
                                        help=MULTISCALE_HELP),
        force: bool = typer.Option(False, "--force", help="Start over in a non-empty --out and overwrite outputs."),
        precision: str = train_option("precision"),
        device: str = train_option("device"),
        export: Optional[str] = typer.Option(None, "--export", help="Also write the model as RUN/ID.dtmodel (dtmodel: "
                                             "a darktable raw denoise package, ID = n2n-raw-<RUN's name>) or "
                                             "RUN/ID.onnx (onnx); checked before training.")):
    """Denoise your own raw photos, nothing else needed: train on them (self-supervised), then denoise each
    into a DNG (the source's metadata kept) and a PNG preview."""
    from n2n_raw.jobs.fit import fit as run
    res = run(photos, out, denoised_dir=denoised, steps=steps, lr=lr, batch_size=batch_size, patch_size=patch_size,
              seed=seed, force=force, device=device, precision=precision, start_from=start_from, target=target,
              ensemble=ensemble, multiscale=multiscale,
              log=lambda s: typer.echo(s, err=True),
              progress=_hook("denoise", "file"), export=export)
    for src, written in zip(res["photos"], res["outputs"]):
        _out(f"{src} -> {', '.join(str(w) for w in written)}")
    if res.get("export") is not None:
        _out(f"wrote {res['export'].describe()}")
    _out(f"{out}: trained {res['train']['steps']} steps in {res['train_seconds']:.1f} s; denoised "
         f"{len(res['photos'])} photo(s), {res['megapixels']:.2f} MP in {res['denoise_seconds']:.1f} s")


# --------------------------------------------------------------------------------------------- evaluate

PRECISION_HELP = ("fp32 (default, also for auto) or bf16 (autocast: faster on GPUs, but its rounding error, "
                  "measured at 64 dB PSNR against fp32 on raw blocks, costs about 0.2 dB on a 50-dB score; "
                  "see benchmarks/RESULTS.md).")

def _write_json(path: Path, obj: dict, force: bool) -> None:
    from n2n_raw.io.atomic import atomic_path
    with atomic_path(path, force=force) as tmp:
        tmp.write_text(json.dumps(obj, indent=2))


@app.command()
@handles_errors
def evaluate(checkpoint: Path = typer.Option(..., help="Checkpoint file or run folder."),
             which: str = typer.Option("best", help=WHICH_HELP),
             mode: str = typer.Option(..., help="srgb or raw (must match the checkpoint)."),
             data: List[Path] = typer.Option([], help="srgb: validation folders, in protocol order."),
             noise: str = typer.Option("gauss25", help="srgb: the noise model."),
             repeat: Optional[int] = typer.Option(None, help="srgb: repeats (default: Kodak 10, BSD300 3, Set14 20, else 1)."),
             seed: int = typer.Option(101, help="srgb: numpy legacy seed of the noise stream (paper: 101)."),
             noisy: Optional[Path] = typer.Option(None, help="raw: ValidationNoisyBlocksRaw.mat."),
             gt: Optional[Path] = typer.Option(None, help="raw: ValidationGtBlocksRaw.mat."),
             positions: Optional[Path] = typer.Option(None, help="raw: BenchmarkBlocks32.mat to check the blocks' "
                                                      "even starts against (default: the one beside --noisy, if any)."),
             cfa: Optional[str] = typer.Option(None, help="raw: override the 40-scene table's CFA for every image."),
             batch_size: int = typer.Option(32, help="raw: blocks per forward pass."),
             unify: str = typer.Option("flip", help=UNIFY_HELP),
             report: Optional[Path] = typer.Option(None, help="Write the JSON report here."),
             force: bool = typer.Option(False, help="Overwrite --report if it exists."),
             precision: str = typer.Option("fp32", help=PRECISION_HELP),
             device: str = typer.Option("auto", help="auto, cpu or cuda.")):
    """Evaluate a checkpoint: the paper's sRGB protocol, or the SIDD raw-block convention (the raw report's
    seconds_per_megapixel counts MP = 2^20 pixels, as the SIDD kit does)."""
    from n2n_raw.accel import inference_precision, pick_device
    from n2n_raw.checkpoint import load_model
    check_choice(mode, MODES, "--mode", "mode")
    if repeat is not None and repeat < 1:
        raise InputError(f"--repeat: must be >= 1, got {repeat}")
    if not 0 <= seed < 2 ** 32:
        raise InputError(f"--seed: must be in [0, 2**32), got {seed}")
    if batch_size < 1:
        raise InputError(f"--batch-size: must be >= 1, got {batch_size}")
    from n2n_raw.method.bayer import UNIFY
    check_choice(unify, UNIFY, "--unify")
    precision = inference_precision(precision)
    if report is not None:
        from n2n_raw.io.atomic import check_writable
        check_writable(report, force)
    model, meta = load_model(checkpoint, expect_mode=mode, which=which)
    _out(f"checkpoint: {meta['chosen']}")
    dev = pick_device(device)
    hook = _hook("evaluate", "img")
    if mode == "srgb":
        from n2n_raw.evaluation.protocols import evaluate_srgb
        if not data:
            raise InputError("--data: give at least one validation folder")
        check_choice(noise, NOISES, "--noise", "noise")
        rep = evaluate_srgb(model, data, noise, repeat, seed, dev, precision, progress=hook)
        hook.close()
        for s in rep["sets"]:
            _out(f"{s['name']:<12} {s['count']:>5} evals  PSNR {s['psnr']:.2f} dB  SSIM {s['ssim']:.4f}  "
                 f"(noisy {s['noisy_psnr']:.2f} dB)")
    else:
        from n2n_raw.evaluation.protocols import evaluate_raw, read_block_pair
        from n2n_raw.io.sidd import block_cfas
        if noisy is None or gt is None:
            raise InputError("--noisy/--gt: raw evaluation needs both block files")
        nb, gb = read_block_pair(noisy, gt, positions)
        rep = evaluate_raw(model, nb, gb, block_cfas(nb.shape[0], cfa), meta.get("cfa_mode", "rggb"),
                           batch_size, dev, precision, progress=hook, unify=unify)
        hook.close()
    rep["checkpoint"], rep["checkpoint_chosen"] = str(checkpoint), meta["chosen"]
    _out(f"all          {rep['count']:>5} evals  PSNR {rep['psnr']:.2f} dB  SSIM {rep['ssim']:.4f}  "
         f"(noisy {rep['noisy_psnr']:.2f} dB)")
    if report is not None:
        _write_json(report, rep, force)
        _out(f"report: {report}")


# --------------------------------------------------------------------------------------------- denoise

def _tile_option(tile: str) -> Optional[int]:
    """``--tile``: ``auto`` → None (plan from memory), else an int >= 128."""
    if tile.strip().lower() == "auto":
        return None
    try:
        n = int(tile)
    except ValueError:
        raise InputError(f"--tile: expected auto or an integer >= 128, got {tile!r}") from None
    if n < 128:
        raise InputError(f"--tile: must be >= 128, got {n}")
    return n


@app.command()
@handles_errors
def denoise(inputs: List[Path] = typer.Argument(..., help="Images, .npy arrays, camera raw files (DNG, NEF, CR2, "
                                              "ARW, ...: written back as DNG) or SIDD .MAT frames."),
            checkpoint: Optional[Path] = typer.Option(None, help="Checkpoint file or run folder (default: the raw "
                                                      "model shipped with n2n-raw, for camera raws and mosaics)."),
            which: str = typer.Option("best", help=WHICH_HELP),
            out: Path = typer.Option(..., help="Output folder."),
            tile: str = typer.Option("auto", help="auto: one pass per image unless it would not fit in the "
                                     "memory at hand (free RAM on CPU, free GPU memory on CUDA), then the "
                                     "largest overlapping tiles that fit; an int (>= 128) forces tiles of at "
                                     "most that many input pixels."),
            cfa: Optional[str] = typer.Option(None, help="raw: CFA of .npy mosaics (or override for MAT frames)."),
            keep_tone: Optional[bool] = typer.Option(None, "--keep-tone/--no-keep-tone", help="Camera raws: take each "
                                                     "CFA plane's low frequencies (Gaussian σ 3 plane pixels) from the "
                                                     "source, so colour and tone stay the photo's; --no-keep-tone "
                                                     "writes the network's output as it is. Default: on for models "
                                                     "trained from scratch, off for the pretrained model and its "
                                                     "fine-tunes (trained to be unbiased)."),
            ensemble: int = typer.Option(1, help=ENSEMBLE_HELP),
            multiscale: bool = typer.Option(True, "--multiscale/--no-multiscale", help=MULTISCALE_HELP),
            force: bool = typer.Option(False, help="Overwrite existing outputs."),
            precision: str = typer.Option("fp32", help=PRECISION_HELP),
            device: str = typer.Option("auto", help="auto, cpu or cuda."),
            engine: str = typer.Option("auto", help="auto (on a CPU in fp32 with onnxruntime installed: ONNX "
                                       "Runtime for passes of 4 MP and more, about 1.5× faster there; else PyTorch), "
                                       "torch or onnxruntime.")):
    """Denoise files with a trained checkpoint; outputs keep the inputs' names and sizes. Prints seconds per
    megapixel (MP = 2^20 pixels, as the SIDD kit's TimeMPRaw)."""
    from n2n_raw.denoiser import Denoiser
    from n2n_raw.evaluation.metrics import MEGAPIXEL
    if checkpoint is None:
        from n2n_raw.checkpoint import WEIGHTS as checkpoint
    from n2n_raw.inference.photos import check_ensemble
    d = Denoiser.load(checkpoint, which=which, device=device, precision=precision, tile=_tile_option(tile),
                      engine=engine, ensemble=check_ensemble(ensemble), multiscale=multiscale)
    _out(f"checkpoint: {d.meta['chosen']}")
    for p in inputs:
        if not p.is_file():
            raise InputError(f"{p}: no such file")
    out.mkdir(parents=True, exist_ok=True)
    t0, mp = time.perf_counter(), 0.0
    for p in inputs:
        written, pixels = d.denoise_file(p, out, cfa=cfa, force=force, keep_tone=keep_tone,
                                         log=lambda line, p=p: _out(f"{p}: {line}"))
        mp += pixels / MEGAPIXEL
        _out(f"{p} -> {', '.join(str(w) for w in written)}")
    dt = time.perf_counter() - t0
    _out(f"denoised {len(inputs)} file(s), {mp:.2f} MP in {dt:.2f} s ({dt / max(mp, 1e-9):.3f} s/MP)")


# --------------------------------------------------------------------------------------------- export

@app.command("export")
@handles_errors
def export_cmd(run: Path = typer.Argument(..., help="Run folder or checkpoint."),
               out: Path = typer.Option(..., help="model.onnx, or ID.dtmodel (a darktable package; its name is the "
                                        "model's id in darktable)."),
               format: Optional[str] = typer.Option(None, "--format", help="onnx or dtmodel (default: from --out)."),
               which: str = typer.Option("best", help=WHICH_HELP),
               force: bool = typer.Option(False, help="Overwrite --out if it exists.")):
    """Write a trained model as ONNX (any runtime) or as a darktable 5.6 package (neural restore: raw denoise for
    raw checkpoints, denoise for sRGB; import it in darktable's preferences → AI → import from file)."""
    from n2n_raw.io.atomic import check_writable
    from n2n_raw.jobs.export import check_available, check_format, check_model_id
    fmt = check_format(format, out)  # every mistake in the options is caught before the model is loaded
    if fmt == "dtmodel":
        check_model_id(out.stem)
    check_writable(out, force)
    check_available()
    from n2n_raw.denoiser import Denoiser
    d = Denoiser.load(run, which=which, device="cpu")
    _out(f"checkpoint: {d.meta['chosen']}")
    _out(f"wrote {d.export(out, fmt, force=force).describe()}")


# --------------------------------------------------------------------------------------------- submit-sidd

@app.command("submit-sidd")
@handles_errors
def submit_sidd(checkpoint: Path = typer.Option(..., help="Raw checkpoint file or run folder."),
                which: str = typer.Option("best", help=WHICH_HELP + " Written into OptionalData.Checkpoint."),
                blocks: Path = typer.Option(..., help="BenchmarkNoisyBlocksRaw.mat."),
                positions: Optional[Path] = typer.Option(None, help="BenchmarkBlocks32.mat: every block must start on "
                                                         "an even row and column (default: checked when beside --blocks)."),
                out: Path = typer.Option(..., help="SubmitRaw.mat or SubmitRaw.csv."),
                format: Optional[str] = typer.Option(None, "--format", help="mat or csv (default: from --out)."),
                cfa: Optional[str] = typer.Option(None, help="Override the 40-scene table's CFA for every image."),
                method_name: str = typer.Option("Neighbor2Neighbor (n2n-raw)", help="OptionalData.MethodName."),
                authors: str = typer.Option("", help="OptionalData.Authors."),
                paper_title: str = typer.Option("", help="OptionalData.PaperTitle."),
                venue: str = typer.Option("", help="OptionalData.Venue."),
                batch_size: int = typer.Option(32, help="Blocks per forward pass."),
                unify: str = typer.Option("flip", help=UNIFY_HELP + " Written into OptionalData.BlockUnify."),
                force: bool = typer.Option(False, help="Overwrite --out if it exists."),
                precision: str = typer.Option("fp32", help=PRECISION_HELP),
                device: str = typer.Option("auto", help="auto, cpu or cuda.")):
    """Denoise all benchmark blocks and write a SIDD submission (read back and verified). TimeMPRaw and the
    printed s/MP count a megapixel as 2^20 pixels, as the SIDD kit does."""
    from n2n_raw.jobs.submit import submit
    res = submit(checkpoint, blocks, out, fmt=format, cfa=cfa, batch_size=batch_size, force=force,
                 device=device, precision=precision, progress=_hook("denoise blocks", "img"),
                 optional={"MethodName": method_name, "Authors": authors, "PaperTitle": paper_title,
                           "Venue": venue}, which=which, positions=positions, unify=unify)
    _out(f"checkpoint: {res['checkpoint']}")
    _out(f"{out}: {res['blocks']} blocks denoised in {res['seconds']:.2f} s "
         f"({res['time_mp']:.4f} s/MP), written as {res['format']} and verified")


# --------------------------------------------------------------------------------------------- demo, info

@app.command()
@handles_errors
def demo(out: Path = typer.Option(Path("n2n-demo"), help="Folder for the demo's data, run and outputs."),
         steps: int = typer.Option(300, help="Training steps."),
         force: bool = typer.Option(False, help="Reuse/overwrite an existing demo folder.")):
    """The whole raw pipeline on built-in synthetic SIDD-format data: generate → prepare → train → evaluate →
    denoise → submit. Prints PSNR before and after. A few minutes on a laptop CPU."""
    from n2n_raw.jobs.demo import run_demo
    run_demo(out, steps=steps, force=force, echo=_out)


@app.command()
@handles_errors
def info(path: Path = typer.Argument(..., help="Run folder, checkpoint, or camera raw photo (.dng, .nef, ...).")):
    """Print a run's (or checkpoint's) configuration, progress, metrics and checkpoints; for a camera raw photo,
    its size, CFA, levels and noise profile (the DNG NoiseProfile tag, else estimated from the photo)."""
    from n2n_raw.io.camera_raw import RAW_SUFFIXES
    if path.suffix.lower() in RAW_SUFFIXES and not path.is_dir():
        from n2n_raw.inference.profile import describe_photo
        _out(describe_photo(path))
        return
    from n2n_raw.training.runfolder import describe
    _out(describe(path))


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings from the library reach the user as one line, without a source excerpt."""
    typer.echo(f"n2n-raw: warning: {' '.join(str(message).split())}", err=True)


def main() -> None:
    """Console entry point: one-line errors with exit status 2 for usage mistakes too."""
    import warnings
    warnings.showwarning = _show_warning
    try:
        rv = app(standalone_mode=False)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        typer.echo("n2n-raw: interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # the CLI parser's usage errors (unknown option, bad value) carry exit code 2
        if getattr(e, "exit_code", None) != 2 or not hasattr(e, "format_message") or DEBUG["on"]:
            raise
        if type(e).__name__ == "NoArgsIsHelpError":  # bare command: show its help as it is
            typer.echo(e.format_message(), err=True)
            sys.exit(2)
        typer.echo(f"n2n-raw: error: {' '.join(e.format_message().split())}", err=True)
        sys.exit(2)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
