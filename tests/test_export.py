"""ONNX and darktable ``.dtmodel`` export (n2n_raw/jobs/export.py), checked without darktable.

- ONNX Runtime (CPU) runs the exported graphs and agrees with PyTorch to 1e-4, on random inputs and on the real
  DNGs.
- The package: zip layout, config.json against the keys darktable-ai-sdk's format documents (and its own
  validator when ``darktable-ai-sdk`` is installed: GPL-3.0, a test tool only), ids, ONNX names and shapes.
- :func:`darktable_bayer_v1`, an emulation of darktable 5.6's raw denoise path for Bayer sensors, written from
  the facts of ``src/common/ai/restore_raw_bayer.c`` / ``restore_common.h`` / ``restore.c`` (not from their
  code): it runs the packaged ``.onnx`` on the real files and must reproduce ``n2n-raw denoise`` of the same
  mosaic (``--no-keep-tone``) within what its different tiling explains.

Measured here (a 6-step fit on two real photos; 2 shared CPU cores): see each test's bound and
docs/darktable.md.
"""
from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_one_line_error, cli
from realdata import REAL_RAW, needs_real, real_missing

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

KODAK = REAL_RAW / "kodak_dc50.kdc"                  # GRBG, 768×512
PI_GBRG = REAL_RAW / "pi_gbrg_no_blacklevel.dng"     # GBRG, 640×480
PI_BGGR = REAL_RAW / "pi_bggr_scene.dng"             # BGGR, 1456×1088
CANON = REAL_RAW / "canon_550d_colorchart.dng"       # RGGB, 14-bit
ORT_TOL = 1e-4
#: darktable-ai-sdk docs/dtmodel-format.md: the keys `dtai validate` requires.
REQUIRED = ("id", "name", "description", "task", "backend", "version")

pytestmark = needs_real(KODAK.name, PI_GBRG.name)


# ------------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Path:
    """``n2n-raw fit`` on two real photos with ``--export dtmodel`` (6 steps: a model that has moved from its
    init, quick to make)."""
    run = tmp_path_factory.mktemp("fit") / "run"
    r = cli("fit", KODAK, PI_GBRG, "--out", run, "--steps", "6", "--batch-size", "2", "--device", "cpu",
            "--export", "dtmodel")
    assert "wrote " in r.stdout and "n2n-raw-run.dtmodel" in r.stdout, r.stdout
    return run


@pytest.fixture(scope="module")
def package(fitted) -> Path:
    return fitted / "n2n-raw-run.dtmodel"


@pytest.fixture(scope="module")
def unpacked(package, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(package) as zf:
        zf.extractall(d)
    return d / "n2n-raw-run"


@pytest.fixture(scope="module")
def denoiser(fitted):
    from n2n_raw import Denoiser
    return Denoiser.load(fitted, which="last", device="cpu")


@pytest.fixture(scope="module")
def bayer_session(unpacked):
    return ort.InferenceSession(str(unpacked / "model_bayer.onnx"), providers=["CPUExecutionProvider"])


def _torch_model(denoiser):
    from n2n_raw.inference.onnx_engine import cpu_copy
    return cpu_copy(denoiser.model)


# ------------------------------------------------------------------------------------------------ the package

def test_package_layout_and_config(package, unpacked):
    with zipfile.ZipFile(package) as zf:
        infos = zf.infolist()
    names = [i.filename for i in infos]
    model_id = package.stem
    assert names == [f"{model_id}/config.json", f"{model_id}/model_bayer.onnx"]  # config first, one folder
    assert names[0].split("/")[0] == model_id  # darktable takes the id from the first entry's folder
    assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in infos)
    cfg = json.loads((unpacked / "config.json").read_text(encoding="utf-8"))
    assert all(isinstance(cfg.get(k), str) and cfg[k] for k in REQUIRED), cfg
    assert cfg["id"] == model_id and cfg["backend"] == "onnx" and cfg["task"] == "rawdenoise"
    # what darktable 5.6's loader looks up (restore.c: attributes "variants.<variant>.<key>", "input_sizes")
    bayer = cfg["attributes"]["variants"]["bayer"]
    assert bayer == {"onnx": "model_bayer.onnx", "input_kind": "bayer_v1", "bayer_orientation": "force_rggb",
                     "edge_pad": "mirror", "wb_norm": "none", "output_scale": "absolute"}
    sizes = cfg["attributes"]["input_sizes"]
    assert sizes == sorted(sizes, reverse=True) and all(t % 32 == 0 and t >= 4 * 32 for t in sizes)
    assert cfg["spatial_dims"] == ["height", "width"]
    card = cfg["model_card"]
    assert card["photos"] == "2" and card["steps"] == "6" and "Kodak" in card["cameras"]
    assert card["training"].startswith("self-supervised (Recorrupted-to-Recorrupted) fine-tuning of n2n-raw's "
                                       "shipped model")  # fit's defaults
    assert "kodak_dc50.kdc" in card["training_data"] and card["iso"] == "84"  # the KDC's EXIF; the Pi DNG has none
    assert all(isinstance(v, str) for v in card.values())


def test_onnx_names_and_shapes_match_the_config(unpacked, bayer_session):
    cfg = json.loads((unpacked / "config.json").read_text())
    proto = onnx.load(str(unpacked / cfg["attributes"]["variants"]["bayer"]["onnx"]))
    (inp,), (out,) = proto.graph.input, proto.graph.output
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    h, w = cfg["spatial_dims"]
    assert dims(inp) == ["batch", 4, h, w] and dims(out)[:2] == ["batch", 3]
    assert inp.type.tensor_type.elem_type == out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    t = min(cfg["attributes"]["input_sizes"])
    y = bayer_session.run(None, {inp.name: np.zeros((1, 4, t, t), np.float32)})[0]
    assert y.shape == (1, 3, 2 * t, 2 * t)


def test_sdk_validator_accepts_the_package(unpacked, capsys):
    """darktable-ai-sdk's own checks (``dtai validate``'s functions), when the SDK is installed."""
    validate = pytest.importorskip("dt_ai_sdk.validate")
    assert validate.validate_config_json(unpacked / "config.json")
    assert validate.validate_onnx(unpacked / "model_bayer.onnx", "model_bayer")


# ------------------------------------------------------------------------------------------------ ORT = PyTorch

@pytest.fixture(scope="module")
def plain(denoiser, tmp_path_factory):
    """The plain ONNX export (``Denoiser.export``) and its ONNX Runtime session."""
    res = denoiser.export(tmp_path_factory.mktemp("plain") / "model.onnx")
    assert res.format == "onnx" and res.ort_max_abs is not None and res.ort_max_abs <= ORT_TOL
    return ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("size", [(64, 96), (96, 160), (160, 64)])
def test_ort_matches_pytorch_on_random_inputs(denoiser, plain, bayer_session, size):
    from n2n_raw.inference.onnx_engine import BayerPlanes
    model = _torch_model(denoiser)
    x = torch.rand((2, 4, *size), generator=torch.Generator().manual_seed(sum(size))) * 1.3 - 0.15
    with torch.no_grad():
        y = model(x)
        ref, ref3 = y.numpy(), BayerPlanes(torch.nn.Identity())(y[:1]).numpy()  # the head alone
    assert np.abs(plain.run(None, {"input": x.numpy()})[0] - ref).max() <= ORT_TOL
    assert np.abs(bayer_session.run(None, {"input": x[:1].numpy()})[0] - ref3).max() <= ORT_TOL


def test_bayer_head_puts_each_value_at_its_photosite(denoiser):
    """The head is pure data movement: output plane FC(r, c) at (r, c) is the model's channel for that site."""
    from n2n_raw.method.bayer import unpack
    from n2n_raw.inference.onnx_engine import BayerPlanes
    model = _torch_model(denoiser)
    x = torch.rand(1, 4, 64, 64)
    with torch.no_grad():
        y, planes = model(x)[0], BayerPlanes(model)(x)[0]
    mosaic = unpack(y)  # RGGB mosaic of the model's output
    colour = np.array([[0, 1], [1, 2]])
    for dy in (0, 1):
        for dx in (0, 1):
            for c in range(3):
                got = planes[c, dy::2, dx::2]
                want = mosaic[dy::2, dx::2] if c == colour[dy, dx] else torch.zeros_like(got)
                assert torch.equal(got, want)


def test_ort_matches_pytorch_on_real_dngs(denoiser, plain, bayer_session):
    """The plain and the darktable graph on real packed mosaics (the model's own input), padded to the U-Net's
    32-pixel multiple as n2n_raw.inference.tiling pads them."""
    from n2n_raw.inference import tiling
    from n2n_raw.method.bayer import to_packed
    from n2n_raw.inference.onnx_engine import BayerPlanes
    from n2n_raw.io.camera_raw import read_raw
    model = _torch_model(denoiser)
    worst = 0.0
    for path, window in ((CANON, (slice(300, 556), slice(600, 920))), (PI_BGGR, (slice(0, 202), slice(0, 330))),
                         (PI_GBRG, (slice(None), slice(None)))):
        if not path.is_file():
            continue
        r = read_raw(path, clip=False)
        packed, _ = to_packed(torch.from_numpy(np.ascontiguousarray(r.mosaic[window])), r.cfa, "rggb")
        h, w = packed.shape[-2:]
        x = tiling.pad_reflect(packed[None], math.ceil(h / 32) * 32, math.ceil(w / 32) * 32)
        with torch.no_grad():
            y = model(x)
        got = plain.run(None, {"input": x.numpy()})[0]
        got3 = bayer_session.run(None, {"input": x.numpy()})[0]
        worst = max(worst, np.abs(got - y.numpy()).max(),
                    np.abs(got3 - BayerPlanes(torch.nn.Identity())(y).numpy()).max())
    assert worst <= ORT_TOL, worst


def test_ort_engine_follows_the_models_buffers():
    """The CPU engine re-exports when a buffer changes (a GatUNet is given each photo's noise profile)."""
    from n2n_raw.inference.onnx_engine import ort_forward

    class Gain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)
            self.register_buffer("k", torch.ones(1, 4, 1, 1))

        def forward(self, x):
            return self.conv(x) * self.k

    m, x = Gain().eval(), torch.rand(1, 4, 32, 32)
    for k in (1.0, 2.0):
        m.k = torch.full((1, 4, 1, 1), k)  # replaced, as GatUNet.set_profile does
        with torch.no_grad():
            assert torch.allclose(ort_forward(m, x), m(x), atol=1e-5, rtol=0)


def test_engines_agree_and_auto_picks_by_size(fitted, tmp_path):
    from n2n_raw import Denoiser
    from n2n_raw.inference.onnx_engine import ORT_MIN_PIXELS, pass_engine
    yy, xx = np.mgrid[0:250, 0:330]
    m = (0.2 + 0.1 * np.sin(yy / 9.0) * np.cos(xx / 13.0)
         + np.random.default_rng(7).normal(0, 0.01, yy.shape)).astype(np.float32)  # a scene with noise
    by = {e: Denoiser.load(fitted, which="last", device="cpu", engine=e) for e in ("torch", "onnxruntime", "auto")}
    assert by["auto"].engine == "auto"
    ref = by["torch"].denoise(m, cfa="GRBG")
    assert np.abs(by["onnxruntime"].denoise(m, cfa="GRBG") - ref).max() <= 1e-5
    assert np.array_equal(by["auto"].denoise(m, cfa="GRBG"), ref)  # a small pass stays in PyTorch
    side = int(math.isqrt(ORT_MIN_PIXELS))
    assert pass_engine("auto", torch.zeros(1, 4, side, side)) == "onnxruntime"
    assert pass_engine("auto", torch.zeros(1, 4, side, side - 32)) == "torch"
    r = cli("denoise", "--checkpoint", fitted, KODAK, "--out", tmp_path, "--engine", "tensorrt", expect=2)
    assert_one_line_error(r.stderr, "--engine", "tensorrt")


# ------------------------------------------------------------------------------------------------ darktable emulation

def _mirror(i: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """restore_common.h's periodic reflection of index ``i`` into [lo, hi) (edge not repeated)."""
    n = hi - lo
    if n <= 1:
        return np.full_like(i, lo)
    period = 2 * (n - 1)
    j = np.abs(i - lo) % period
    return lo + np.where(j >= n, period - j, j)


def _seam(s: np.ndarray, base: int, end: int, so: int, before: bool, after: bool) -> np.ndarray:
    """Blend weight of a tile at sensor coordinate ``s`` along one axis: ramps (d + 0.5) / (2·so) over the
    2·so-wide seam centred on each core boundary that has a neighbour, 1 elsewhere."""
    w = np.ones(s.shape, np.float64)
    if before:
        m = s < base + so
        w[m] = (s[m] - (base - so) + 0.5) / (2 * so)
    if after:
        m = s >= end - so
        w[m] = 1.0 - (s[m] - (end - so) + 0.5) / (2 * so)
    return w


def darktable_bayer_v1(cfa_in: np.ndarray, cfa: str, black, white: float, run_tile, tile: int, *,
                       strength: float = 1.0, edge_pad: str = "mirror") -> np.ndarray:
    """darktable 5.6's raw denoise of a Bayer buffer (bayer_v1, force_rggb, wb_norm none, output_scale absolute),
    emulated from the facts of its C source.

    Args:
        cfa_in: (H, W) raw values (ADC units) of the whole buffer, taken as the visible area.
        cfa: its 2×2 pattern; black: the black level of each 2×2 position (row-major); white: the white level.
        run_tile: the model, (1, 4, T, T) float32 → (1, 3, 2T, 2T).
        tile: T, packed pixels (darktable takes it from ``input_sizes``); 32 packed pixels overlap.
        edge_pad: ``mirror`` (reflect in the whole buffer) or ``mirror_cropped`` (in the RGGB-cropped frame).
    Returns:
        (H, W) uint16: the denoised buffer darktable writes into its DNG.
    """
    H, W = cfa_in.shape
    colour = {"R": 0, "G": 1, "B": 2}
    fc = np.array([[colour[cfa[0]], colour[cfa[1]]], [colour[cfa[2]], colour[cfa[3]]]])
    y0, x0 = divmod(cfa.index("R"), 2)                      # force_rggb: origin at the red photosite
    black = np.asarray(black, np.float64).reshape(2, 2)
    rng = white - black
    rng[rng <= 0] = 1.0
    out = (np.clip(cfa_in, 0, white) + 0.5).astype(np.uint16)  # margins keep the source
    Hh, Wh = (H - y0) // 2, (W - x0) // 2                  # working region, packed
    O = 32
    step = tile - 2 * O
    assert tile >= 4 * O
    rows, cols = -(-Hh // step), -(-Wh // step)
    ylo, yhi, xlo, xhi = 0, H, 0, W
    if edge_pad == "mirror_cropped":
        ylo, xlo = y0, x0
        yhi -= (yhi - ylo) & 1
        xhi -= (xhi - xlo) & 1
    so = 2 * O                                             # overlap in sensor pixels
    acc = np.zeros((H, W), np.float64)
    for ty in range(rows):
        for tx in range(cols):
            py, px = ty * step, tx * step
            py_end, px_end = min(py + step, Hh), min(px + step, Wh)
            r = _mirror(2 * (py - O) + y0 + np.arange(2 * tile), ylo, yhi)
            c = _mirror(2 * (px - O) + x0 + np.arange(2 * tile), xlo, xhi)
            site = (r[:, None] & 1, c[None, :] & 1)
            norm = (cfa_in[np.ix_(r, c)] - black[site]) / rng[site]     # × wb_norm (none: 1)
            tile_in = norm.reshape(tile, 2, tile, 2).transpose(1, 3, 0, 2).reshape(1, 4, tile, tile)
            tile_out = run_tile(tile_in.astype(np.float32))[0]            # output_scale absolute: no gain
            top, bot, left, right = ty > 0, ty < rows - 1, tx > 0, tx < cols - 1
            sy, sy_end, sx, sx_end = y0 + 2 * py, y0 + 2 * py_end, x0 + 2 * px, x0 + 2 * px_end
            sr = np.arange(max(0, sy - so if top else sy), min(H, sy_end + so if bot else sy_end))
            sc = np.arange(max(0, sx - so if left else sx), min(W, sx_end + so if right else sx_end))
            ch = fc[sr[:, None] & 1, sc[None, :] & 1]
            val = tile_out[ch, (2 * O + sr - sy)[:, None], (2 * O + sc - sx)[None, :]]
            site = (sr[:, None] & 1, sc[None, :] & 1)
            raw = val * rng[site] + black[site]                          # ÷ wb_norm (none: 1)
            blended = strength * raw + (1 - strength) * cfa_in[np.ix_(sr, sc)]
            weight = _seam(sr, sy, sy_end, so, top, bot)[:, None] * _seam(sc, sx, sx_end, so, left, right)[None, :]
            acc[np.ix_(sr, sc)] += weight * blended
    work = (slice(y0, y0 + 2 * Hh), slice(x0, x0 + 2 * Wh))
    out[work] = (np.clip(acc[work], 0, white) + 0.5).astype(np.uint16)
    return out


def _raw_buffer(path: Path, window=(slice(None), slice(None))):
    """(raw values, CFA, black per 2×2 position, white) of a camera raw's visible area cut to ``window``; an odd
    offset moves the CFA phase (a cut of the Canon's RGGB at row 1 is GBRG), and the black levels with it."""
    from n2n_raw.io.camera_raw import read_raw
    r = read_raw(path, clip=False)
    b = np.asarray(r.black_level, np.float64).reshape(2, 2)
    adc = r.mosaic.astype(np.float64)
    h, w = adc.shape
    adc = (adc.reshape(h // 2, 2, w // 2, 2) * (r.white_level - b)[None, :, None, :] + b[None, :, None, :])
    oy, ox = (window[0].start or 0) % 2, (window[1].start or 0) % 2
    cfa = "".join(r.cfa[((i // 2 + oy) % 2) * 2 + (i % 2 + ox) % 2] for i in range(4))
    black = np.roll(b, (-oy, -ox), axis=(0, 1)).ravel()
    cut = adc.reshape(h, w)[window]
    return cut[:cut.shape[0] // 2 * 2, :cut.shape[1] // 2 * 2], cfa, black, r.white_level


def _n2n_denoise_dn(denoiser, adc, cfa, black, white) -> np.ndarray:
    """``n2n-raw denoise`` of the mosaic (its network output, --no-keep-tone) in raw units as its DNG stores
    them (clipped to [0, white], not rounded). The model keeps the buffers it was saved with: a model that
    ``denoise`` gives each photo's noise profile (a GatUNet) is compared with the profile the package holds,
    since darktable can give it no other."""
    from n2n_raw.inference import tiling
    b = np.asarray(black, np.float64).reshape(2, 2)
    h, w = adc.shape
    tiles = lambda a: a.reshape(h // 2, 2, w // 2, 2)  # noqa: E731
    x01 = ((tiles(adc) - b[None, :, None, :]) / (white - b)[None, :, None, :]).reshape(h, w).astype(np.float32)
    y01 = tiling.denoise_mosaic(denoiser.model, x01, cfa, denoiser.meta.get("cfa_mode", "rggb"), device="cpu",
                               engine=denoiser.engine)
    dn = tiles(y01.astype(np.float64)) * (white - b)[None, :, None, :] + b[None, :, None, :]
    return np.clip(dn.reshape(h, w), 0, white)


def _runner(session):
    return lambda x: session.run(None, {"input": x})[0]


def _region(cfa: str, shape) -> tuple[slice, slice]:
    """darktable's working region (the rest keeps the source): from the red photosite, whole 2×2 cells."""
    y0, x0 = divmod(cfa.index("R"), 2)
    return slice(y0, y0 + (shape[0] - y0) // 2 * 2), slice(x0, x0 + (shape[1] - x0) // 2 * 2)


def _norm_diff(dt, ref, black, white) -> np.ndarray:
    return (dt.astype(np.float64) - ref) / (white - np.max(black))


def _rms(a) -> float:
    return float(np.sqrt(np.mean(np.square(a))))


#: Canon crops in each CFA phase (its RGGB cut at an odd row and/or column).
PHASES = {"RGGB": (slice(64, 832), slice(320, 1088)), "GBRG": (slice(65, 833), slice(320, 1088)),
          "GRBG": (slice(64, 832), slice(321, 1089)), "BGGR": (slice(65, 833), slice(321, 1089))}


@pytest.mark.parametrize("phase", list(PHASES))
def test_emulation_single_tile_equals_denoise_in_the_interior(denoiser, bayer_session, phase):
    """One tile over darktable's working region of a 768² crop, in each CFA phase, against n2n-raw denoise of
    that region (it starts at the red photosite, as darktable packs): away from the edges (more than the
    U-Net's reach) both see the same context on the same 32-pixel pooling grid, so they agree to darktable's
    rounding to uint16 whatever the model. This pins the geometry: packing from R, per-site black and range,
    the head's planes, re-mosaic and de-normalisation."""
    if not CANON.is_file():
        pytest.skip(real_missing(CANON.name))
    adc, cfa, black, white = _raw_buffer(CANON, PHASES[phase])
    assert cfa == phase
    dt = darktable_bayer_v1(adc, cfa, black, white, _runner(bayer_session), tile=384 + 64)
    work = _region(cfa, adc.shape)
    ref = _n2n_denoise_dn(denoiser, adc[work], "RGGB", np.roll(black.reshape(2, 2), (-work[0].start, -work[1].start),
                                                             axis=(0, 1)).ravel(), white)
    inner = (slice(256, -256), slice(256, -256))
    assert np.abs(dt[work][inner] - ref[inner]).max() <= 0.5 + 1e-5 * (white - black.max())  # rounding (+ float)


#: Tiling (T = 256 packed pixels: 32 of context, blended seams) against one pass on the same pooling grid, the
#: 64 edge pixels left out, for the 6-step model of :func:`fitted`: RMS of the difference over the RMS of what
#: denoising changed (measured 0.06-0.10 on the three files here, 0.19 on the GBRG Pi frame; 0.01-0.02 for a
#: 300-step fit, see docs/darktable.md), and the largest difference in normalised units (fraction of white − black;
#: measured 0.02-0.08 here, 0.15 on the Pi frame).
TILING_RATIO, TILING_MAX = 0.3, 0.25
#: ... or an RMS below half a raw step of a 10-bit file: where the model changes a photo little (fit's default,
#: a fine-tuned pretrained model, on a Pi frame it was not fitted on: RMS change 8e-4), the ratio says nothing
#: (measured there: RMS 3.0e-4, max 6e-4).
TILING_RMS_FLOOR = 0.5 / 1023
#: The same with the edges (mirrored context in darktable, the U-Net's zero padding in n2n-raw's pass), on the
#: CLI's RGGB cut: measured 0.34 and 0.44.
EDGES_RATIO, EDGES_MAX = 0.5, 0.6


@pytest.mark.parametrize("path,window", [
    (CANON, (slice(64, 832), slice(320, 1088))),      # RGGB
    (PI_BGGR, (slice(0, 512), slice(0, 768))),        # BGGR: origin shifted by a row and a column
    (KODAK, (slice(None), slice(None))),              # GRBG, whole frame
])
def test_emulation_tiled_reproduces_denoise(denoiser, bayer_session, path, window, record_property):
    """darktable's tiling against n2n-raw's one pass over its working region, on real files. Outside that
    region (at most one row and column, for non-RGGB phases) darktable keeps the source."""
    if not path.is_file():
        pytest.skip(real_missing(path.name))
    adc, cfa, black, white = _raw_buffer(path, window)
    dt = darktable_bayer_v1(adc, cfa, black, white, _runner(bayer_session), tile=256)
    work = _region(cfa, adc.shape)
    outside = np.ones(adc.shape, bool)
    outside[work] = False
    assert np.array_equal(dt[outside], (np.clip(adc[outside], 0, white) + 0.5).astype(np.uint16))
    b = np.roll(black.reshape(2, 2), (-work[0].start, -work[1].start), axis=(0, 1)).ravel()
    ref = _n2n_denoise_dn(denoiser, adc[work], "RGGB", b, white)
    inner = (slice(64, -64), slice(64, -64))
    d = _norm_diff(dt[work], ref, black, white)[inner]
    change = _norm_diff(ref, adc[work], black, white)[inner]
    record_property("tiling_max", float(np.abs(d).max()))
    record_property("tiling_ratio", _rms(d) / _rms(change))
    assert np.abs(d).max() <= TILING_MAX and _rms(d) <= max(TILING_RATIO * _rms(change), TILING_RMS_FLOOR)


@pytest.fixture(scope="module")
def scratch_fit(tmp_path_factory) -> tuple[Path, object]:
    """A fit from scratch (the paper's method: a plain U-Net, whose output does not depend on a per-photo noise
    profile, so the CLI's DNG and darktable's path can be compared whole) and its packaged bayer model."""
    run = tmp_path_factory.mktemp("fit_scratch") / "run"
    cli("fit", KODAK, "--out", run, "--steps", "4", "--batch-size", "2", "--device", "cpu", "--start-from",
        "scratch", "--ensemble", "1", "--export", "dtmodel")
    d = tmp_path_factory.mktemp("unpacked_scratch")
    with zipfile.ZipFile(run / "n2n-raw-run.dtmodel") as zf:
        zf.extractall(d)
    return run, ort.InferenceSession(str(d / "n2n-raw-run" / "model_bayer.onnx"), providers=["CPUExecutionProvider"])


def test_emulation_reproduces_the_cli_dng(scratch_fit, tmp_path, record_property):
    """The CLI itself: ``n2n-raw denoise --no-keep-tone`` of a DNG (a 512×768 RGGB cut of the real Canon frame,
    its 14-bit values, black and white as they are), read back, against the emulated darktable output. (A
    GatUNet, fit's default, is given each photo's own profile by ``denoise``, where the package holds the one
    it was fitted with: :func:`test_emulation_tiled_reproduces_denoise` compares it with its saved profile.)"""
    from n2n_raw.io import scratch_dng
    from n2n_raw.io.camera_raw import read_raw
    fitted, bayer_session = scratch_fit
    if not CANON.is_file() or not KODAK.is_file():
        pytest.skip(real_missing(f"{CANON.name} or {KODAK.name}"))
    adc, cfa, black, white = _raw_buffer(CANON, (slice(300, 812), slice(500, 1268)))
    src = scratch_dng.write_dng(tmp_path / "cut.dng", np.rint(adc).astype(np.uint16), cfa, 16,
                                black_level=[int(v) for v in black], white_level=int(white))
    cli("denoise", "--checkpoint", fitted, "--which", "last", src, "--out", tmp_path / "out", "--no-keep-tone",
        "--device", "cpu")
    out = read_raw(tmp_path / "out" / "cut.dng", clip=False)
    adc, cfa, black, white = _raw_buffer(src)
    assert out.cfa == cfa == "RGGB" and out.mosaic.shape == adc.shape
    h, w = adc.shape
    b = black.reshape(2, 2)
    cli_dn = (out.mosaic.reshape(h // 2, 2, w // 2, 2) * (white - b)[None, :, None, :]
              + b[None, :, None, :]).reshape(h, w)
    assert np.abs(cli_dn - _n2n_denoise_dn(Denoiser_of(fitted), adc, cfa, black, white)).max() <= 0.51  # its rounding
    dt = darktable_bayer_v1(adc, cfa, black, white, _runner(bayer_session), tile=256)
    d = _norm_diff(dt, cli_dn, black, white)
    change = _norm_diff(cli_dn, adc, black, white)
    record_property("edges_max", float(np.abs(d).max()))
    record_property("edges_ratio", _rms(d) / _rms(change))
    assert np.abs(d).max() <= EDGES_MAX and _rms(d) <= EDGES_RATIO * _rms(change)


def Denoiser_of(run):
    from n2n_raw import Denoiser
    return Denoiser.load(run, which="last", device="cpu")


# ------------------------------------------------------------------------------------------------ refusals

def test_srgb_checkpoint_exports_to_the_rgb_denoise_task(srgb_ckpt, tmp_path):
    cli("export", srgb_ckpt, "--out", tmp_path / "srgb-mine.dtmodel")
    with zipfile.ZipFile(tmp_path / "srgb-mine.dtmodel") as zf:
        assert zf.namelist() == ["srgb-mine/config.json", "srgb-mine/model.onnx"]
        cfg = json.loads(zf.read("srgb-mine/config.json"))
        zf.extractall(tmp_path)
    assert cfg["task"] == "denoise" and "variants" not in cfg["attributes"] and cfg["id"] == "srgb-mine"
    sess = ort.InferenceSession(str(tmp_path / "srgb-mine" / "model.onnx"), providers=["CPUExecutionProvider"])
    t = min(cfg["attributes"]["input_sizes"])
    assert sess.run(None, {"input": np.random.rand(1, 3, t, t).astype(np.float32)})[0].shape == (1, 3, t, t)


@pytest.fixture(scope="module")
def positional_ckpt(tmp_path_factory) -> Path:
    from n2n_raw.checkpoint import save_checkpoint
    from n2n_raw.method.unet import UNet
    run = tmp_path_factory.mktemp("positional")
    torch.manual_seed(0)
    return save_checkpoint(run, 1, UNet(4, 4), None, {"mode": "raw", "target": "n2n", "cfa_mode": "positional",
                                                      "config": {}, "metrics": {}})


def test_export_refusals_are_one_line(positional_ckpt, package, tmp_path):
    r = cli("export", positional_ckpt, "--out", tmp_path / "p.dtmodel", expect=2)
    assert "positional" in assert_one_line_error(r.stderr, "positional") and not (tmp_path / "p.dtmodel").exists()
    cli("export", positional_ckpt, "--out", tmp_path / "p.onnx")  # plain ONNX is fine: the caller packs
    for args, names in (
            (["--out", tmp_path / "x.zip"], ["--out"]),
            (["--out", tmp_path / "x.onnx", "--format", "dtmodel"], ["--out", "dtmodel"]),
            (["--out", tmp_path / "x.onnx", "--format", "tflite"], ["--format", "tflite"]),
            (["--out", tmp_path / "my model.dtmodel"], ["--out", "my model"]),
            (["--out", tmp_path / "p.onnx"], ["p.onnx", "--force"]),          # exists: never overwritten
    ):
        before = (tmp_path / "p.onnx").read_bytes()
        r = cli("export", positional_ckpt, *args, expect=2)
        assert_one_line_error(r.stderr, *map(str, names))
        assert (tmp_path / "p.onnx").read_bytes() == before
    r = cli("export", tmp_path / "nowhere", "--out", tmp_path / "y.onnx", expect=2)
    assert_one_line_error(r.stderr, "nowhere")
    cli("export", positional_ckpt, "--out", tmp_path / "p.onnx", "--force")


def test_fit_checks_the_export_format_before_training(tmp_path):
    run = tmp_path / "run"
    r = cli("fit", PI_GBRG, "--out", run, "--export", "tiff", "--steps", "1", expect=2)
    assert_one_line_error(r.stderr, "tiff")
    assert not run.exists()
