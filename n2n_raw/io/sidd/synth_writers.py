"""Writers of SIDD's input files (frames, metadata, block files, block positions), as SIDD made them.

Used by the synthetic SIDD world (:mod:`n2n_raw.sim.sidd_world`) and the tests; the pipeline itself only reads
these kinds. All writers are atomic and refuse an existing file unless ``force``.
"""
from __future__ import annotations

import time
from pathlib import Path

import h5py
import numpy as np

from n2n_raw.io.atomic import atomic_path
from n2n_raw.io.sidd._mat import _write_v5
from n2n_raw.io.sidd.names import check_cfa

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def matlab73_header(when: float | None = None) -> bytes:
    """The 512-byte user block MATLAB writes in front of a ``-v7.3`` MAT file.

    Bytes 0–115: text ``MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: <asctime> HDF5 schema 1.00 .``
    padded with spaces; 116–123: subsystem-data offset (zeros: none); 124–125: version 0x0200 written
    little-endian (``00 02``); 126–127: endian indicator ``IM``; the rest of the 512 bytes is zero.
    """
    t = time.localtime(when)
    stamp = (f"{_DAYS[t.tm_wday]} {_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} "
             f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {t.tm_year}")
    text = f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: {stamp} HDF5 schema 1.00 .".encode("ascii")
    head = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    return head.ljust(512, b"\x00")


def _set_matlab_class(obj, cls: str) -> None:
    """``MATLAB_class`` attribute as MATLAB writes it: fixed-length ASCII string, null-terminated padding."""
    raw = cls.encode("ascii")
    tid = h5py.h5t.C_S1.copy()
    tid.set_size(len(raw))
    tid.set_strpad(h5py.h5t.STR_NULLTERM)
    space = h5py.h5s.create(h5py.h5s.SCALAR)
    if "MATLAB_class" in obj.attrs:
        del obj.attrs["MATLAB_class"]
    attr = h5py.h5a.create(obj.id, b"MATLAB_class", tid, space)
    attr.write(np.array(raw, dtype=f"S{len(raw)}"), mtype=tid)  # no conversion: all 6 bytes kept


def write_frame(path, x: np.ndarray, force: bool = False, compress: bool = True) -> Path:
    """Write a mosaic as SIDD does (``save(path, 'x', '-v7.3')`` in MATLAB).

    Args:
        x: float (H, W) mosaic in MATLAB orientation, normally in [0, 1]; stored as float32 (MATLAB single).
        compress: gzip level 3 on chunks (MATLAB's default for -v7.3); False writes it contiguous.
    On disk: HDF5 with a 512-byte MATLAB user block, dataset ``x`` of shape (W, H) (column-major), attribute
    ``MATLAB_class = "single"``. Written to a temporary name and renamed; refuses an existing file unless
    ``force``.
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.dtype.kind != "f":
        raise ValueError(f"a frame is a 2-D float array, got {x.dtype} {x.shape}")
    data = np.ascontiguousarray(x.T, dtype=np.float32)  # what h5py sees of a column-major MATLAB array
    with atomic_path(path, force) as tmp:
        with h5py.File(tmp, "w", userblock_size=512, libver="earliest") as f:
            kw = {"compression": "gzip", "compression_opts": 3} if compress and data.size > 1 else {}
            ds = f.create_dataset("x", data=data, **kw)
            _set_matlab_class(ds, "single")
        with open(tmp, "r+b") as fh:
            fh.write(matlab73_header())
    return Path(path)


def _tag_array(tags: list[tuple[int, int, np.ndarray]]) -> np.ndarray:
    """An N×1 MATLAB struct array with fields ID / Offset / Value (what imfinfo calls UnknownTags), stored
    as in the real SIDD metadata file: a column, ID as uint16, Offset as the smallest unsigned type."""
    arr = np.empty((len(tags), 1), dtype=[("ID", object), ("Offset", object), ("Value", object)])
    for k, (tid, off, val) in enumerate(tags):
        arr[k, 0] = (np.array([[tid]], np.uint16), np.array([[off]], np.uint8 if off < 256 else np.uint16), val)
    return arr


def write_metadata(path, *, make: str, model: str, cfa: str, width: int, height: int, iso: int | None,
                   black_level: float = 64.0, white_level: float = 1023.0, cfa_in: str = "UnknownTags",
                   force: bool = False) -> Path:
    """Write a SIDD-style ``METADATA_RAW`` file: a MATLAB v5 struct ``metadata`` shaped like ``imfinfo``.

    ``cfa_in`` says where the CFAPattern tag (33422, row-major codes 0=R 1=G 2=B, as uint8) goes:
    "UnknownTags" (second entry of the top-level ``UnknownTags``, after 33421 CFARepeatPatternDim),
    "SubIFDs" (inside ``SubIFDs{1}.UnknownTags``; the top-level one then lacks it) or "none" (nowhere: a
    reader must fall back to the phone). Tag 51041 (NoiseProfile) is always present.
    """
    cfa = check_cfa(cfa, "cfa")
    if cfa_in not in ("UnknownTags", "SubIFDs", "none"):
        raise ValueError(f"cfa_in must be 'UnknownTags', 'SubIFDs' or 'none', got {cfa_in!r}")
    codes = np.array([["RGB".index(c) for c in cfa]], dtype=np.uint8)
    dim_tag = (33421, 9210, np.array([[2, 2]], dtype=np.uint16))
    cfa_tag = (33422, 9222, codes)
    noise_tag = (51041, 9654, np.array([[2.1e-5, 3.4e-7] * 3]))
    private_tag = (50740, 9700, np.zeros((1, 8), dtype=np.uint8))  # DNGPrivateData, opaque
    dng_name = Path(path).name.split(".")[0].replace("METADATA_", "") + ".dng"
    md = {
        "Filename": dng_name,
        "FileModDate": "01-Jan-2017 00:00:00",
        "FileSize": float(width * height * 2 + 65536),
        "Format": "tif",
        "FormatVersion": np.zeros((0, 0)),
        "Width": float(width),
        "Height": float(height),
        "BitDepth": 16.0,
        "ColorType": "CFA",
        "Make": str(make),
        "Model": str(model),
        "Orientation": 1.0,
        "BlackLevel": np.full((1, 4), float(black_level)),
        "WhiteLevel": float(white_level),
        "AsShotNeutral": np.array([[0.52, 1.0, 0.61]]),
        "ColorMatrix1": np.array([[0.92, -0.33, -0.08, -0.43, 1.19, 0.27, -0.07, 0.18, 0.62]]),
        "ColorMatrix2": np.array([[0.77, -0.22, -0.07, -0.49, 1.27, 0.24, -0.11, 0.21, 0.57]]),
        "DigitalCamera": {"ExposureTime": 0.01, "FNumber": 1.9,
                          **({"ISOSpeedRatings": float(iso)} if iso is not None else {})},
    }
    if iso is not None:
        md["ISOSpeedRatings"] = float(iso)
    if cfa_in == "UnknownTags":
        md["UnknownTags"] = _tag_array([dim_tag, cfa_tag, private_tag, noise_tag])
    else:
        md["UnknownTags"] = _tag_array([private_tag, noise_tag])
    if cfa_in == "SubIFDs":
        cell = np.empty((1, 1), dtype=object)
        cell[0, 0] = {"Width": float(width), "Height": float(height), "BitDepth": 16.0,
                      "UnknownTags": _tag_array([dim_tag, cfa_tag])}
        md["SubIFDs"] = cell
    with atomic_path(path, force) as tmp:
        _write_v5(tmp, {"metadata": md})
    return Path(path)


def write_blocks(path, blocks: np.ndarray, varname: str | None = None, force: bool = False) -> Path:
    """Write float (N, B, h, w) blocks as SIDD does: MATLAB v5, uncompressed, float32, variable = stem."""
    blocks = np.asarray(blocks)
    if blocks.ndim != 4 or blocks.dtype.kind != "f":
        raise ValueError(f"blocks are a 4-D float array (N, B, h, w), got {blocks.dtype} {blocks.shape}")
    with atomic_path(path, force) as tmp:
        _write_v5(tmp, {varname or Path(path).stem: np.ascontiguousarray(blocks, dtype=np.float32)})
    return Path(path)


def write_block_positions(path, positions: np.ndarray, force: bool = False) -> Path:
    """Write (K, 4) [row, col, h, w] 1-based positions as ``BenchmarkBlocks32`` (uint16, MATLAB v5)."""
    pos = np.asarray(positions)
    if pos.ndim != 2 or pos.shape[1] != 4 or np.any(pos < 1):
        raise ValueError(f"positions are (K, 4) positive 1-based [row, col, h, w], got {pos.shape}")
    with atomic_path(path, force) as tmp:
        _write_v5(tmp, {"BenchmarkBlocks32": pos.astype(np.uint16)})
    return Path(path)
