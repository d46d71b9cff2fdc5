"""Property-based robustness of the readers: any bytes, any truncation, any array in a valid container.

Contract (errors.py, io/sidd/): a reader given a user's file either returns what it documents or raises
:class:`InputError` with a one-line message naming the file. Any other exception type is a bug (the CLI would
show a traceback). Readers: ``read_frame``, ``read_blocks``, ``read_metadata`` (io.sidd), ``read_dng``
(io.dng), ``read_rgb`` (io.images), ``Store`` (io.store, together with the training loader that consumes it),
and ``denoise.load_npy`` (the ``.npy`` inputs of ``denoise``).
"""
from __future__ import annotations

import io
import itertools
import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from n2n_raw.errors import InputError
from n2n_raw.io import sidd
from n2n_raw.io.images import read_rgb
from n2n_raw.io.store import Store, StoreWriter

# derandomize: the same examples on every run (CI-stable); no shrinking: a failure is reported as found,
# quickly (shrinking a file-writing example costs minutes on 2 cores).
FUZZ = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                phases=[Phase.explicit, Phase.reuse, Phase.generate],
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


_COUNTER = itertools.count()


def fresh(work: Path, name: str) -> Path:
    """A new file name per example: a reader that keeps a file open must not break the next example."""
    stem, _, ext = name.rpartition(".")
    return work / f"{stem}-{next(_COUNTER)}.{ext}"


def only_input_error(path, fn, *args, **kw):
    """Run ``fn``; pass on success (returns the result) or on a one-line InputError naming ``path``.
    Any other exception propagates and fails the test with its traceback."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kw)
    except InputError as e:
        msg = str(e)
        assert "\n" not in msg, msg
        assert str(path) in msg, f"the message does not name {path}: {msg}"
        return None


# ------------------------------------------------------------------------------------------------ bytes

MAGICS = [b"", b"\x89HDF\r\n\x1a\n", b"\x00" * 512 + b"\x89HDF\r\n\x1a\n",
          b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024".ljust(116) + b"\0" * 8
          + b"\x00\x01IM", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"II*\x00", b"MM\x00*", b"\x93NUMPY"]

random_files = st.tuples(st.sampled_from(MAGICS), st.binary(max_size=3000)).map(lambda t: t[0] + t[1])


def _store_and_loader(path, mode="srgb"):
    """Open a store the way ``train --data`` does and cut one batch from it.

    Success means a batch the U-Net can take: float32 (1, C, P, P), C = 3 (sRGB) or 4 (packed raw)."""
    import torch

    from n2n_raw.config import TrainConfig
    from n2n_raw.training.batches import make_batch
    from n2n_raw.training.sources import load_source
    Store(path).close()
    patch = 64 if mode == "srgb" else 128
    cfg = TrainConfig(mode=mode, data=str(path), patch_size=patch).resolved()
    source = load_source(cfg)
    batch = make_batch(source, 0, 1, 0, None)
    side = patch if mode == "srgb" else patch // 2
    assert batch.dtype == torch.float32 and tuple(batch.shape) == (1, 3 if mode == "srgb" else 4, side, side), \
        f"{path}: the store gave a {batch.dtype} batch of shape {tuple(batch.shape)}"
    return batch


def _load_npy_srgb(path):
    from n2n_raw.inference.photos import load_npy
    return load_npy(path, 3, "float32 (H, W, 3)")


def _load_npy_raw(path):
    from n2n_raw.inference.photos import load_npy
    return load_npy(path, 2, "a float32 (H, W) Bayer mosaic")


def _read_dng(path):
    from n2n_raw.io.camera_raw import read_dng
    return read_dng(path)


READERS = {
    "read_frame.MAT": sidd.read_frame,
    "read_blocks.mat": sidd.read_blocks,
    "read_metadata.MAT": sidd.read_metadata,
    "read_dng.dng": _read_dng,
    "read_rgb.png": read_rgb,
    "read_rgb.jpg": read_rgb,
    "store.h5": _store_and_loader,
    "load_npy.npy": _load_npy_srgb,
}


@pytest.mark.parametrize("name", list(READERS))
@FUZZ
@given(data=random_files)
def test_random_bytes(work, name, data):
    path = fresh(work, f"rnd_{name}")
    path.write_bytes(data)
    only_input_error(path, READERS[name], path)


# ------------------------------------------------------------------------------------------------ valid files

def _frame_bytes(tmp: Path) -> bytes:
    p = tmp / "frame_src.MAT"
    sidd.write_frame(p, np.random.default_rng(0).random((6, 8), dtype=np.float32), force=True)
    return p.read_bytes()


def _frame_bytes_uncompressed(tmp: Path) -> bytes:
    p = tmp / "frame_src2.MAT"
    sidd.write_frame(p, np.random.default_rng(1).random((6, 8), dtype=np.float32), force=True, compress=False)
    return p.read_bytes()


def _blocks_bytes(tmp: Path) -> bytes:
    p = tmp / "ValidationNoisyBlocksRaw.mat"
    sidd.write_blocks(p, np.random.default_rng(0).random((2, 2, 4, 4), dtype=np.float32), force=True)
    return p.read_bytes()


def _blocks_v73_bytes(tmp: Path) -> bytes:
    p = tmp / "BenchmarkNoisyBlocksRaw_v73.mat"
    a = np.random.default_rng(0).random((2, 2, 4, 4), dtype=np.float32)
    with h5py.File(p, "w", userblock_size=512) as f:
        f.create_dataset("BenchmarkNoisyBlocksRaw", data=np.ascontiguousarray(a.T))  # MATLAB: axes reversed
    with open(p, "r+b") as fh:
        fh.write(sidd.matlab73_header())
    return p.read_bytes()


def _metadata_bytes(tmp: Path) -> bytes:
    p = tmp / "0001_METADATA_RAW_010.MAT"
    sidd.write_metadata(p, make="samsung", model="SM-G925V", cfa="GRBG", width=8, height=6, iso=800,
                        cfa_in="SubIFDs", force=True)
    return p.read_bytes()


def _dng_bytes(tmp: Path) -> bytes:
    pytest.importorskip("pidng")
    from n2n_raw.io import scratch_dng
    p = tmp / "src.dng"
    raw = np.random.default_rng(0).integers(0, 4096, (24, 26)).astype(np.uint16)
    scratch_dng.write_dng(p, raw, "GRBG", 12, black_level=64, force=True)
    return p.read_bytes()


def _png_bytes(tmp: Path) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _jpg_bytes(tmp: Path) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _store_bytes(tmp: Path) -> bytes:
    p = tmp / "store_src.h5"
    with StoreWriter(p, "srgb", force=True, sources={"kind": "test"}) as w:
        w.add(np.random.default_rng(0).integers(0, 256, (64, 66, 3), dtype=np.uint8), source="a.png")
    return p.read_bytes()


def _npy_bytes(tmp: Path) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(0).random((4, 6, 3), dtype=np.float32))
    return buf.getvalue()


VALID = {
    "read_frame.MAT": (_frame_bytes, sidd.read_frame),
    "read_frame_contiguous.MAT": (_frame_bytes_uncompressed, sidd.read_frame),
    "read_blocks.mat": (_blocks_bytes, lambda p: sidd.read_blocks(p, "ValidationNoisyBlocksRaw")),
    "read_blocks_v73.mat": (_blocks_v73_bytes, lambda p: sidd.read_blocks(p, "BenchmarkNoisyBlocksRaw")),
    "read_metadata.MAT": (_metadata_bytes, sidd.read_metadata),
    "read_dng.dng": (_dng_bytes, _read_dng),
    "read_rgb.png": (_png_bytes, read_rgb),
    "read_rgb.jpg": (_jpg_bytes, read_rgb),
    "store.h5": (_store_bytes, _store_and_loader),
    "load_npy.npy": (_npy_bytes, _load_npy_srgb),
}
_VALID_CACHE: dict[str, bytes] = {}


def _valid(work: Path, name: str) -> bytes:
    if name not in _VALID_CACHE:
        _VALID_CACHE[name] = VALID[name][0](work)
    return _VALID_CACHE[name]


def test_valid_sources_read(work):
    """Sanity: every untouched source file reads without error."""
    for name, (_, reader) in VALID.items():
        path = fresh(work, f"ok_{name}")
        path.write_bytes(_valid(work, name))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert reader(path) is not None, name


@pytest.mark.parametrize("name", list(VALID))
@FUZZ
@given(cut=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated(work, name, cut):
    data = _valid(work, name)
    path = fresh(work, f"cut_{name}")
    path.write_bytes(data[:int(cut * len(data))])
    only_input_error(path, VALID[name][1], path)


@pytest.mark.parametrize("name", list(VALID))
@FUZZ
@example(edits=[(0.2578125, 1)])  # found by this test: h5py raised RuntimeError from read_frame
@example(edits=[(0.28125, 0)])    # ... KeyError (message not aligned)
@example(edits=[(0.5, 0)])        # ... KeyError (unable to determine object type)
@example(edits=[(0.25, 40)])      # a damaged .npy header: numpy raised SyntaxError from load_npy
@example(edits=[(40.5 / 20864, 0)])  # byte 40 of the 20,864-byte store: h5py's KeyError on item access
@given(edits=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 255)), min_size=1,
                      max_size=6))
def test_corrupted_bytes(work, name, edits):
    """A few bytes of a valid file overwritten at random places (bit rot, a bad copy)."""
    data = bytearray(_valid(work, name))
    for where, value in edits:
        data[int(where * len(data))] = value
    path = fresh(work, f"bad_{name}")
    path.write_bytes(bytes(data))
    only_input_error(path, VALID[name][1], path)


# ------------------------------------------------------------------------------------------------ arrays

DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int16, np.uint8, np.int64, np.bool_,
                          np.complex64])


@st.composite
def arrays(draw, min_dims=0, max_dims=4, max_side=6, shapes=None):
    dtype = np.dtype(draw(DTYPES))
    shape = draw(st.sampled_from(shapes)) if shapes else draw(
        hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=max_side))
    if dtype.kind in "fc":
        elements = st.floats(allow_nan=True, allow_infinity=True, width=32 if dtype.itemsize <= 8 else 64)
        if dtype == np.float16:
            elements = st.floats(allow_nan=True, allow_infinity=True, width=16)
        if dtype.kind == "c":
            elements = st.complex_numbers(allow_nan=True, allow_infinity=True, width=64)
        fill = st.sampled_from([0.0, 0.5, 1.0])
    else:
        elements, fill = None, None
    return draw(hnp.arrays(dtype, shape, elements=elements, fill=fill))


def _h5_frame(path: Path, name: str, a: np.ndarray, userblock: bool) -> None:
    with h5py.File(path, "w", userblock_size=512 if userblock else 0) as f:
        if name == "group":
            f.create_group("x").create_dataset("x", data=a)
        else:
            f.create_dataset(name, data=a)
    if userblock:
        with open(path, "r+b") as fh:
            fh.write(sidd.matlab73_header())


@FUZZ
@given(a=arrays(), name=st.sampled_from(["x", "y", "group"]), userblock=st.booleans())
def test_read_frame_any_hdf5_array(work, a, name, userblock):
    path = fresh(work, "arr_NOISY_RAW_010.MAT")
    _h5_frame(path, name, a, userblock)
    x = only_input_error(path, sidd.read_frame, path)
    if x is not None:
        stored = a if name == "x" else None
        assert stored is not None and stored.ndim == 2 and stored.dtype.kind == "f"
        assert x.dtype == np.float32 and x.shape == stored.shape[::-1] and np.isfinite(x).all()


@FUZZ
@given(a=arrays(), name=st.sampled_from(["x", "other"]))
def test_read_frame_any_v5_array(work, a, name):
    path = fresh(work, "arr5_NOISY_RAW_010.MAT")
    scipy.io.savemat(path, {name: a})
    x = only_input_error(path, sidd.read_frame, path)
    if x is not None:
        assert x.dtype == np.float32 and x.ndim == 2 and np.isfinite(x).all()


BLOCK_SHAPES = [(2, 2, 4, 4), (1, 1, 2, 2), (2, 2, 5, 4), (2, 2, 255, 256), (41, 1, 2, 2), (0, 2, 4, 4),
                (2, 0, 4, 4), (2, 2, 0, 4), (2, 4, 4), (4, 4), (), (1, 2, 2, 4, 4), (3, 1, 6, 2)]


@FUZZ
@given(a=st.one_of(arrays(shapes=BLOCK_SHAPES), arrays(max_dims=5)),
       name=st.sampled_from(["ValidationNoisyBlocksRaw", "BenchmarkNoisyBlocksRaw", "blocks"]),
       v73=st.booleans())
def test_read_blocks_any_array(work, a, name, v73):
    path = fresh(work, "blocks.d") / "ValidationNoisyBlocksRaw.mat"
    path.parent.mkdir()
    if v73:
        _h5_frame(path, name, np.ascontiguousarray(np.transpose(a)), True)
    else:
        scipy.io.savemat(path, {name: a})
    b = only_input_error(path, sidd.read_blocks, path)
    if b is not None:
        assert b.dtype == np.float32 and b.ndim == 4 and np.isfinite(b).all()
        assert 1 <= b.shape[0] <= 40 and b.shape[1] >= 1 and b.shape[2] % 2 == 0 and b.shape[3] % 2 == 0


# metadata: imfinfo-like structs with random field values

numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**40, 2**40))
values = st.one_of(
    numbers,
    st.text(max_size=8),
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=5),
               elements=st.floats(allow_nan=True, allow_infinity=True)),
    hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=5)),
    st.just(np.zeros((0, 0))),
)


@st.composite
def tag_arrays(draw):
    n = draw(st.integers(0, 4))
    arr = np.empty((1, n), dtype=[("ID", object), ("Offset", object), ("Value", object)])
    for k in range(n):
        tid = draw(st.one_of(st.sampled_from([33421.0, 33422.0, 51041.0]), numbers, st.text(max_size=3)))
        val = draw(st.one_of(values, st.sampled_from([np.array([[2.0, 2.0]]), np.array([[0, 1, 1, 2]], np.uint8),
                                                      np.array([[np.nan, 2.0]]), np.array([[np.inf, 0, 1, 2]]),
                                                      np.array([[1e300, 2, 2, 2]])])))
        arr[0, k] = (tid, 0.0, val)
    return arr


@st.composite
def metadata_structs(draw):
    md = {}
    for field, strat in (("Width", values), ("Height", values), ("Make", st.one_of(st.sampled_from(
            ["samsung", "Apple", " LGE ", "Unknown"]), values)), ("Model", values), ("ISOSpeedRatings", values),
            ("BlackLevel", values), ("WhiteLevel", values), ("UnknownTags", st.one_of(tag_arrays(), values)),
            ("DigitalCamera", st.one_of(values, st.fixed_dictionaries({"ISOSpeedRatings": values})))):
        if draw(st.booleans()):
            md[field] = draw(strat)
    if draw(st.booleans()):
        cell = np.empty((1, 1), dtype=object)
        cell[0, 0] = {"Width": 8.0, "UnknownTags": draw(tag_arrays())}
        md["SubIFDs"] = draw(st.sampled_from([cell, {"UnknownTags": draw(tag_arrays())}, 3.0]))
    return md


@FUZZ
@given(md=metadata_structs(), name=st.sampled_from(["metadata", "meta"]),
       hint=st.sampled_from([None, "S6", "XX", "ip"]))
def test_read_metadata_any_struct(work, md, name, hint):
    path = fresh(work, "0001_METADATA_RAW_010.MAT")
    try:
        scipy.io.savemat(path, {name: md if md else {"Nothing": 0.0}})
    except Exception:  # noqa: BLE001 - scipy could not write this structure: not a test case
        assume(False)
    m = only_input_error(path, sidd.read_metadata, path, phone_hint=hint)
    if m is not None:
        assert m.cfa in sidd.CFAS and m.cfa_source in ("UnknownTags", "SubIFDs", "phone table")


@pytest.mark.parametrize("tag_id, value", [
    (33422.0, np.array([[np.inf, 0.0, 1.0, 2.0]])),  # CFAPattern with an infinite code
    (33422.0, np.array([[np.nan, 1.0, 1.0, 2.0]])),
    (33421.0, np.array([[np.nan, 2.0]])),            # CFARepeatPatternDim with NaN
    (33421.0, np.array([[np.inf, 2.0]])),
])
def test_read_metadata_non_finite_tag_values(work, tag_id, value):
    """Non-finite numbers in the CFA tags: no usable CFA there (phone table) or an InputError, no crash."""
    tags = np.empty((1, 1), dtype=[("ID", object), ("Offset", object), ("Value", object)])
    tags[0, 0] = (tag_id, 0.0, value)
    path = fresh(work, "0001_METADATA_RAW_010.MAT")
    scipy.io.savemat(path, {"metadata": {"Make": "samsung", "Width": 8.0, "UnknownTags": tags}})
    m = only_input_error(path, sidd.read_metadata, path)
    if m is not None:
        assert (m.cfa, m.cfa_source) == ("GRBG", "phone table")


# DNG: valid files of random sizes, bit depths, levels

@FUZZ
@given(h=st.integers(11, 20).map(lambda v: 2 * v), w=st.integers(11, 20).map(lambda v: 2 * v),
       bits=st.sampled_from([10, 12, 16]), cfa=st.sampled_from(sidd.CFAS), black=st.integers(0, 100),
       seed=st.integers(0, 10))
def test_read_dng_random_valid(work, h, w, bits, cfa, black, seed):
    pytest.importorskip("pidng")
    from n2n_raw.io import scratch_dng
    path = fresh(work, "rand.dng")
    raw = np.random.default_rng(seed).integers(0, 1 << bits, (h, w)).astype(np.uint16)
    scratch_dng.write_dng(path, raw, cfa, bits, black_level=black, force=True)
    r = only_input_error(path, _read_dng, path)
    assert r is not None and r.mosaic.shape == (h, w) and r.cfa == cfa
    assert r.mosaic.dtype == np.float32 and 0 <= r.mosaic.min() and r.mosaic.max() <= 1


# images: every PIL mode and tiny sizes

MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "I;16", "I", "F", "CMYK", "YCbCr", "HSV"]


@FUZZ
@given(mode=st.sampled_from(MODES), h=st.integers(1, 9), w=st.integers(1, 9), fmt=st.sampled_from(
    ["PNG", "TIFF", "BMP", "JPEG", "WEBP", "PPM"]), seed=st.integers(0, 1000))
def test_read_rgb_any_mode(work, mode, h, w, fmt, seed):
    rng = np.random.default_rng(seed)
    if mode == "F":
        im = Image.fromarray(rng.normal(0, 1000, (h, w)).astype(np.float32))
    elif mode == "I":
        im = Image.fromarray(rng.integers(-2**20, 2**20, (h, w)).astype(np.int32))
    elif mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65536, (h, w)).astype(np.uint16))
    else:
        base = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8))  # RGBA
        try:
            im = base.convert(mode) if mode in ("RGBA", "LA", "PA", "CMYK") else base.convert("RGB").convert(mode)
        except ValueError:
            assume(False)  # PIL has no conversion to this mode: not a test case
    path = fresh(work, f"img.{fmt.lower()}")
    try:
        im.save(path, format=fmt)
    except (OSError, KeyError, ValueError):
        assume(False)  # PIL cannot write this mode in this format: not a test case
    rgb = only_input_error(path, read_rgb, path)
    if rgb is not None:
        assert rgb.dtype == np.uint8 and rgb.shape == (h, w, 3)


# stores: what `prepare` writes, but with random items and attributes

@st.composite
def store_specs(draw):
    mode = draw(st.sampled_from(["srgb", "raw", "other", 7]))
    attrs = {"format": draw(st.sampled_from(["n2n-raw-store", "n2n-raw-store", "something"])),
             "version": 1, "mode": mode, "complete": draw(st.sampled_from([True, True, False, "yes"])),
             "sources": draw(st.sampled_from(['["a"]', "not json", "{}", '"x"']))}
    for k in list(attrs):
        if draw(st.integers(0, 5)) == 0:
            del attrs[k]
    items = draw(st.lists(arrays(shapes=[(64, 64, 3), (130, 130), (64, 70), (130, 130, 3), (66, 66, 4),
                                         (2, 130, 130), (0, 0), (), (5,), (70, 64, 3)]), min_size=1, max_size=2))
    cfa = draw(st.sampled_from([None, "RGGB", "XYZW", 3, "gbrg"]))
    with_items_group = draw(st.integers(0, 5)) > 0
    return attrs, items, cfa, with_items_group


@FUZZ
@given(spec=store_specs(), loader_mode=st.sampled_from(["srgb", "raw"]))
def test_store_random_contents(work, spec, loader_mode):
    attrs, items, cfa, with_items_group = spec
    path = fresh(work, "rand_store.h5")
    with h5py.File(path, "w") as f:
        f.attrs.update(attrs)
        if with_items_group:
            g = f.create_group("items")
            for i, a in enumerate(items):
                ds = g.create_dataset(f"{i:06d}", data=a)
                if cfa is not None:
                    ds.attrs["cfa"] = cfa
    only_input_error(path, _store_and_loader, path, loader_mode)


_OK_ATTRS = {"format": "n2n-raw-store", "version": 1, "mode": "srgb", "complete": True, "sources": "[]"}
_RGB = np.full((64, 64, 3), 128, np.uint8)
_MOSAIC = np.full((130, 130), 0.25, np.float32)


@pytest.mark.parametrize("attrs, items, cfa, layout", [
    pytest.param({k: v for k, v in _OK_ATTRS.items() if k != "mode"}, [_RGB], None, "group", id="no-mode-attribute"),
    pytest.param(_OK_ATTRS, [], None, "none", id="no-items-group"),
    pytest.param(_OK_ATTRS, [], None, "dataset", id="items-is-a-dataset"),
    pytest.param({**_OK_ATTRS, "sources": "not json"}, [_RGB], None, "group", id="sources-not-JSON"),
    pytest.param(_OK_ATTRS, [_RGB[..., 0]], None, "group", id="sRGB-item-is-2-D"),
    pytest.param(_OK_ATTRS, [_RGB / 255.0], None, "group", id="sRGB-item-is-float64"),
    pytest.param(_OK_ATTRS, [np.concatenate([_RGB, _RGB[..., :1]], 2)], None, "group", id="sRGB-item-has-4-channels"),
    pytest.param({**_OK_ATTRS, "mode": "raw"}, [np.stack([_MOSAIC] * 3, -1)], "RGGB", "group", id="raw-item-is-3-D"),
    pytest.param({**_OK_ATTRS, "mode": "raw"}, [_MOSAIC], "XYZW", "group", id="raw-item-has-a-bad-CFA"),
])
def test_store_damaged_layout(work, attrs, items, cfa, layout):
    """Stores that `prepare` never writes (damaged, or made by hand): an InputError naming the store, or a
    batch the U-Net can take (see :func:`_store_and_loader`)."""
    path = fresh(work, "damaged.h5")
    with h5py.File(path, "w") as f:
        f.attrs.update(attrs)
        if layout == "dataset":
            f.create_dataset("items", data=np.zeros(3))
        elif layout == "group":
            g = f.create_group("items")
            for i, a in enumerate(items):
                g.create_dataset(f"{i:06d}", data=a)
                if cfa is not None:
                    g[f"{i:06d}"].attrs["cfa"] = cfa
    only_input_error(path, _store_and_loader, path, attrs.get("mode", "srgb"))


@FUZZ
@given(a=arrays(max_dims=4, max_side=5))
def test_load_npy_any_array(work, a):
    path = fresh(work, "arr.npy")
    np.save(path, a)
    for loader in (_load_npy_srgb, _load_npy_raw):
        x = only_input_error(path, loader, path)
        if x is not None:
            assert x.dtype == np.float32 and np.isfinite(x).all()


def test_load_npy_refuses_pickles(work):
    path = work / "obj.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert only_input_error(path, _load_npy_srgb, path) is None
    path.write_text(json.dumps([1, 2]))
    assert only_input_error(path, _load_npy_srgb, path) is None
