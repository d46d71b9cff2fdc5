"""SIDD raw-RGB files: v7.3 frames, v5 metadata and CFA, block files, block positions, submissions.

This is the one place that decodes SIDD's file formats (see the project's SIDD notes for the facts used).
Everything returned here is in MATLAB orientation: a mosaic ``m`` of shape (H, W) has ``m[0, 0]`` at the
top-left pixel of the sensor as MATLAB shows it, and a CFA string such as ``"GRBG"`` names the colours of
the 2×2 cell row by row: (0,0)=G, (0,1)=R, (1,0)=B, (1,1)=G.

File kinds:

- frames ``NNNN_{NOISY,GT}_RAW_0XX.MAT``: MATLAB v7.3 = HDF5 behind a 512-byte user block, one variable
  ``x`` (float32, normalised raw in [0, 1]). MATLAB stores column-major, so h5py sees ``x`` as (W, H); it is
  transposed back here, once.
- metadata ``NNNN_METADATA_RAW_0XX.MAT``: MATLAB v5, a struct ``metadata`` = MATLAB's ``imfinfo`` of the DNG.
  The CFA is the TIFF/EP CFAPattern tag 33422 in ``UnknownTags`` (else in ``SubIFDs{1}.UnknownTags``, else
  from the phone).
- block files (``ValidationNoisyBlocksRaw.mat`` …): MATLAB v5, float32 (N, B, h, w) named like the file.
- ``BenchmarkBlocks32.mat``: (32, 4) [row, col, h, w], 1-based.
- submissions: ``SubmitRaw.mat`` (cell + time + struct) and the Kaggle ``SubmitRaw.csv`` (``ID,BLOCK``).

Every problem with a user's file raises :class:`~n2n_raw.errors.InputError` whose one-line message starts
with the file's path. All writers are atomic and refuse an existing file unless ``force``.
"""
from __future__ import annotations

import base64
import collections
import contextlib
import concurrent.futures
import dataclasses
import itertools
import math
import os
import re
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import h5py
import numpy as np
import scipy.io

from ..bayer import CFAS, check_cfa  # the one definition of the patterns (re-exported here)
from ..errors import InputError
from .atomic import atomic_path

# ---------------------------------------------------------------------------------------------------------
# Phones, CFAs, scene names
# ---------------------------------------------------------------------------------------------------------


#: CFA pattern of each SIDD phone in MATLAB orientation (row-major 2×2 cell).
PHONE_CFA = {"GP": "BGGR", "IP": "RGGB", "S6": "GRBG", "N6": "BGGR", "G4": "BGGR"}

#: DNG ``Make`` → SIDD phone code. Match with :func:`phone_from_make` (case-insensitive, stripped).
MAKE_TO_PHONE = {"Apple": "IP", "Google": "GP", "samsung": "S6", "motorola": "N6", "LGE": "G4"}
_MAKE_TO_PHONE_FOLDED = {k.casefold(): v for k, v in MAKE_TO_PHONE.items()}

#: The 40 scenes of the validation / benchmark block files, in image-index order.
BLOCK_SCENES = (
    "0009_001_S6_00800_00350_3200_L", "0021_001_GP_10000_05000_5500_N", "0024_001_N6_03200_01500_5500_N",
    "0026_001_G4_00400_00160_5500_L", "0031_001_IP_01600_02000_3200_N", "0037_002_GP_06400_03200_3200_L",
    "0041_002_IP_01600_04000_5500_L", "0046_002_G4_00400_00350_3200_L", "0049_002_N6_00800_00800_5500_L",
    "0053_002_S6_03200_02000_5500_N", "0056_003_N6_03200_04000_5500_N", "0058_003_G4_00400_00500_5500_L",
    "0061_003_S6_00800_00500_4400_L", "0067_003_GP_01600_01500_3200_L", "0071_003_IP_02000_04000_5500_L",
    "0074_004_N6_00400_00040_3200_L", "0079_004_G4_00800_00160_3200_N", "0082_004_S6_03200_00500_4400_L",
    "0085_004_GP_06400_02000_4400_N", "0093_004_IP_01250_00250_3200_L", "0095_005_N6_00400_00200_3200_L",
    "0100_005_G4_00800_00400_3200_N", "0103_005_S6_01600_00800_4400_L", "0109_005_GP_10000_08000_4400_N",
    "0112_005_IP_01000_07500_5500_L", "0119_006_N6_00400_00100_3200_L", "0124_006_G4_00800_00350_3200_N",
    "0128_006_S6_03200_01600_4400_L", "0131_006_GP_01600_01250_4400_N", "0141_006_IP_01600_01620_3200_L",
    "0143_007_N6_00800_00800_4400_N", "0148_007_G4_00400_00400_4400_L", "0153_007_S6_03200_03200_5500_L",
    "0158_007_GP_03200_03200_5500_N", "0162_007_IP_01600_01600_3200_L", "0171_008_N6_03200_01600_4400_L",
    "0174_008_G4_00800_00800_4400_N", "0176_008_S6_00400_00100_5500_L", "0183_008_GP_06400_06400_5500_N",
    "0187_008_IP_01600_01600_3200_L",
)

#: Variable names of the SIDD raw block files.
BLOCK_VARIABLES = ("ValidationNoisyBlocksRaw", "ValidationGtBlocksRaw", "BenchmarkNoisyBlocksRaw")

#: Fields of the ``OptionalData`` struct of a ``SubmitRaw.mat``.
OPTIONAL_FIELDS = ("MethodName", "Authors", "PaperTitle", "Venue", "MachineSpecs")

_SCENE_RE = re.compile(r"^(\d{4})_(\d{3})_([A-Z0-9]{2})_(\d{5})_(\d{5})_(\d{4})_([LNH])$")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def phone_from_make(make: str | None) -> str | None:
    """SIDD phone code for a DNG ``Make`` (``" samsung "`` → ``"S6"``); None when unknown."""
    if not make:
        return None
    return _MAKE_TO_PHONE_FOLDED.get(str(make).strip().casefold())


def parse_scene_name(name: str) -> dict:
    """Split a SIDD scene folder name such as ``0001_001_S6_00100_00060_3200_L``.

    A path is accepted (its last component is parsed). Returns a dict: ``instance`` ("0001"), ``scene``
    ("001"), ``phone`` ("S6"), ``iso`` (int, 100), ``shutter`` (int, 60: exposure 1/60 s), ``temperature``
    (int kelvin, 3200), ``brightness`` ("L" low light, "N" normal, "H" high exposure).
    Raises InputError for a name that does not follow the pattern.
    """
    base = Path(str(name)).name
    m = _SCENE_RE.match(base)
    if not m:
        raise InputError(f"{name}: not a SIDD scene name (expected like 0001_001_S6_00100_00060_3200_L)")
    inst, scene, phone, iso, shutter, temp, bright = m.groups()
    return {"instance": inst, "scene": scene, "phone": phone, "iso": int(iso), "shutter": int(shutter),
            "temperature": int(temp), "brightness": bright}


def _phone_of_scene(name: str) -> str | None:
    try:
        return parse_scene_name(name)["phone"]
    except InputError:
        return None


def block_cfas(n: int = 40, override: str | None = None) -> list[str]:
    """CFA pattern of each of the first ``n`` block-file images (via the phone in :data:`BLOCK_SCENES`).

    ``override`` (e.g. from ``--cfa``) replaces all of them. The block files carry no CFA themselves: this
    table is the only link between image index and phone.
    """
    if override is not None:
        return [check_cfa(override, "--cfa")] * int(n)
    if not 1 <= int(n) <= len(BLOCK_SCENES):
        raise InputError(f"block files: {n} images, but the SIDD table knows {len(BLOCK_SCENES)}; pass a CFA")
    return [PHONE_CFA[parse_scene_name(s)["phone"]] for s in BLOCK_SCENES[:int(n)]]


# ---------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------

def _existing_file(path) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if not p.is_file():
        raise InputError(f"{p}: is not a file")
    return p


def _is_hdf5(p: Path) -> bool:
    """HDF5 signature at 0 or behind a user block (512, 1024, ...), as h5py.is_hdf5 but never raising."""
    try:
        with open(p, "rb") as f:
            for off in (0, 512, 1024, 2048, 4096):
                f.seek(off)
                if f.read(8) == _HDF5_SIGNATURE:
                    return True
    except OSError:
        return False
    return False


def _short(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return msg[:200] if msg else type(e).__name__


def _loadmat(p: Path, **kw) -> dict:
    """scipy.io.loadmat with every failure turned into an InputError naming ``p``."""
    if _is_hdf5(p):
        raise InputError(f"{p}: a MATLAB v7.3 (HDF5) file where a v5 MAT file was expected")
    try:
        return scipy.io.loadmat(p, **kw)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - any parse failure of a user's file is bad input
        raise InputError(f"{p}: not a readable MATLAB v5 file ({_short(e)})") from None


def _whosmat(p: Path) -> list[tuple[str, tuple, str]]:
    try:
        return scipy.io.whosmat(p)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{p}: not a readable MATLAB file ({_short(e)})") from None


@contextlib.contextmanager
def _h5_damage(p: Path):
    """h5py raises KeyError / RuntimeError / ValueError (not only OSError) for damaged metadata."""
    try:
        yield
    except InputError:
        raise
    except (KeyError, RuntimeError, ValueError, OSError, TypeError) as e:
        raise InputError(f"{p}: damaged HDF5 / MATLAB v7.3 file ({_short(e)})") from None


def _open_h5(p: Path) -> h5py.File:
    try:
        return h5py.File(p, "r")
    except OSError as e:
        raise InputError(f"{p}: unreadable HDF5 / MATLAB v7.3 file, truncated or damaged ({_short(e)})") from None


def _check_float_finite(p, a: np.ndarray, what: str) -> None:
    if a.dtype.kind != "f":
        raise InputError(f"{p}: {what} has dtype {a.dtype}; expected floating point (normalised raw in [0, 1])")
    if not np.isfinite(a).all():
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        raise InputError(f"{p}: {what} holds {bad} NaN/Inf value(s)")


def _write_v5(tmp: Path, variables: dict) -> None:
    # Through a file object: scipy would append ".mat" to the temporary name otherwise.
    with open(tmp, "wb") as fh:
        scipy.io.savemat(fh, variables, do_compression=False, oned_as="row")


# ---------------------------------------------------------------------------------------------------------
# v7.3 frames
# ---------------------------------------------------------------------------------------------------------

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


def read_frame(path, varname: str = "x") -> np.ndarray:
    """Read a SIDD frame (NOISY or GT) in MATLAB orientation.

    Accepts the real SIDD v7.3 files (and, for convenience, a v5 MAT file holding ``x``).
    Returns:
        float32 (H, W) C-contiguous, normalised raw (SIDD: in [0, 1]), MATLAB orientation.
    Raises InputError: missing file, not a MAT/HDF5 file, truncated, no variable ``x``, not 2-D, not floating
    point, NaN/Inf values.
    """
    p = _existing_file(path)
    if _is_hdf5(p):
        with _open_h5(p) as f, _h5_damage(p):
            if varname not in f or not isinstance(f[varname], h5py.Dataset):
                names = ", ".join(sorted(f.keys())) or "nothing"
                raise InputError(f"{p}: no variable {varname!r} (holds {names})")
            ds = f[varname]
            if ds.dtype.kind != "f":
                raise InputError(f"{p}: variable {varname!r} has dtype {ds.dtype}; expected floating point "
                                 f"(normalised raw in [0, 1])")
            if ds.ndim != 2:
                raise InputError(f"{p}: variable {varname!r} is {ds.ndim}-D {tuple(ds.shape[::-1])}; "
                                 f"expected a 2-D mosaic")
            try:
                stored = ds[()]
            except OSError as e:
                raise InputError(f"{p}: truncated or damaged data ({_short(e)})") from None
        x = np.ascontiguousarray(stored.T, dtype=np.float32)  # (W, H) on disk -> (H, W)
    else:
        names = [n for n, _, _ in _whosmat(p)]
        if varname not in names:
            raise InputError(f"{p}: no variable {varname!r} (holds {', '.join(names) or 'nothing'})")
        x = np.asarray(_loadmat(p, variable_names=[varname])[varname])
        if x.ndim != 2:
            raise InputError(f"{p}: variable {varname!r} is {x.ndim}-D {x.shape}; expected a 2-D mosaic")
        if x.dtype.kind != "f":
            raise InputError(f"{p}: variable {varname!r} has dtype {x.dtype}; expected floating point")
        x = np.ascontiguousarray(x, dtype=np.float32)
    if x.size == 0:
        raise InputError(f"{p}: variable {varname!r} is empty {x.shape}")
    _check_float_finite(p, x, f"variable {varname!r}")
    return x


# ---------------------------------------------------------------------------------------------------------
# Metadata (v5 imfinfo struct) and the CFA
# ---------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class SiddMeta:
    """What the pipeline needs from a SIDD ``METADATA`` file.

    cfa: one of :data:`CFAS`, MATLAB orientation. cfa_source: "UnknownTags" | "SubIFDs" | "phone table".
    black_level: the DNG BlackLevel values (tuple of floats, often 4) or None; white_level: float or None
    (SIDD frames are already normalised with them; kept for information). width/height: of the DNG.
    """
    cfa: str
    cfa_source: str
    phone: str | None = None
    make: str | None = None
    model: str | None = None
    iso: int | None = None
    width: int | None = None
    height: int | None = None
    black_level: tuple | None = None
    white_level: float | None = None


def _unwrap(v):
    """Peel scipy's 1×1 wrappers (object arrays of one element, 1×1 struct arrays)."""
    while isinstance(v, np.ndarray) and v.size == 1 and (v.dtype == object or v.dtype.names is not None):
        v = v.reshape(-1)[0]
    return v


def _field(s, name: str):
    """Field ``name`` of a struct as scipy returns it (np.void record, dict, mat_struct); None if absent."""
    s = _unwrap(s)
    if isinstance(s, dict):
        return s.get(name)
    names = getattr(getattr(s, "dtype", None), "names", None)
    if names is not None:
        return s[name] if name in names else None
    if hasattr(s, "_fieldnames"):
        return getattr(s, name, None) if name in s._fieldnames else None
    return None


def _structs(v) -> Iterator:
    """The elements of a struct array or cell of structs, whatever wrapping scipy used."""
    if v is None:
        return
    if isinstance(v, (list, tuple)):
        for e in v:
            yield from _structs(e)
    elif isinstance(v, dict) or hasattr(v, "_fieldnames") or isinstance(v, np.void):
        yield v
    elif isinstance(v, np.ndarray):
        if v.dtype.names is not None:
            yield from v.reshape(-1)
        elif v.dtype == object:
            for e in v.reshape(-1):
                yield from _structs(e)


def _text(v) -> str | None:
    v = _unwrap(v)
    if isinstance(v, bytes):
        return v.decode("latin-1")
    if isinstance(v, str):
        return v
    if isinstance(v, np.ndarray) and v.dtype.kind in "US":
        parts = [e.decode("latin-1") if isinstance(e, bytes) else str(e) for e in v.reshape(-1)]
        return "".join(parts)
    return None


def _numbers(v) -> np.ndarray | None:
    v = _unwrap(v)
    if v is None or isinstance(v, (str, bytes, dict)):
        return None
    try:
        a = np.asarray(v)
    except Exception:  # noqa: BLE001
        return None
    if a.dtype.kind not in "biuf" or a.size == 0:
        return None
    return a.astype(np.float64).reshape(-1)


def _scalar(v) -> float | None:
    a = _numbers(v)
    return float(a[0]) if a is not None and a.size >= 1 and np.isfinite(a[0]) else None


def cfa_from_codes(codes: Iterable) -> str | None:
    """TIFF/EP CFAPattern codes (row-major, 0=R 1=G 2=B) → CFA string; None unless a Bayer pattern."""
    try:
        c = [int(round(float(v))) for v in codes]
    except (TypeError, ValueError, OverflowError):
        return None
    if len(c) != 4 or any(v not in (0, 1, 2) for v in c):
        return None
    s = "".join("RGB"[v] for v in c)
    return s if s in CFAS else None


def _cfa_from_tags(tags) -> str | None:
    entries = list(_structs(tags))
    ids = [_scalar(_field(e, "ID")) for e in entries]
    for e, i in zip(entries, ids):
        if i == 33421:  # CFARepeatPatternDim: anything but 2×2 is not a Bayer CFA
            dim = _numbers(_field(e, "Value"))
            if dim is not None and dim.tolist() != [2.0, 2.0]:
                return None
    for e, i in zip(entries, ids):
        if i == 33422:
            codes = _numbers(_field(e, "Value"))
            if codes is not None:
                return cfa_from_codes(codes)
    return None


def read_metadata(path, phone_hint: str | None = None) -> SiddMeta:
    """Read a SIDD ``METADATA_RAW`` file (v5 ``metadata`` struct = imfinfo of the DNG).

    CFA, in this order: ``UnknownTags`` entry ID 33422; ``SubIFDs{k}.UnknownTags`` (first that has it); the
    phone table :data:`PHONE_CFA` for the phone from ``Make`` or, failing that, ``phone_hint`` (e.g. from the
    scene name). Raises InputError if the file is unreadable, has no ``metadata`` struct, or no CFA is found.
    """
    p = _existing_file(path)
    if _is_hdf5(p):
        raise InputError(f"{p}: a MATLAB v7.3 (HDF5) file; SIDD metadata files are v5 MAT files")
    names = [n for n, _, _ in _whosmat(p)]
    if "metadata" not in names:
        raise InputError(f"{p}: no variable 'metadata' (holds {', '.join(names) or 'nothing'})")
    md = _unwrap(_loadmat(p, variable_names=["metadata"])["metadata"])
    if _field(md, "Width") is None and _field(md, "UnknownTags") is None and _field(md, "Make") is None:
        raise InputError(f"{p}: 'metadata' is not an imfinfo struct (no Width, Make or UnknownTags)")

    make = _text(_field(md, "Make"))
    make = make.strip() if make else None
    model = _text(_field(md, "Model"))
    model = model.strip() if model else None
    phone = phone_from_make(make)
    if phone is None and phone_hint:
        phone = str(phone_hint).strip().upper()

    cfa, source = _cfa_from_tags(_field(md, "UnknownTags")), "UnknownTags"
    if cfa is None:
        source = "SubIFDs"
        for sub in _structs(_field(md, "SubIFDs")):
            cfa = _cfa_from_tags(_field(sub, "UnknownTags"))
            if cfa is not None:
                break
    if cfa is None and phone in PHONE_CFA:
        cfa, source = PHONE_CFA[phone], "phone table"
    if cfa is None:
        raise InputError(f"{p}: no CFA pattern (no tag 33422 in UnknownTags or SubIFDs, and the phone is "
                         f"unknown: Make={make!r}); give the CFA explicitly")

    iso = _scalar(_field(md, "ISOSpeedRatings"))
    if iso is None:
        iso = _scalar(_field(_field(md, "DigitalCamera"), "ISOSpeedRatings"))
    black = _numbers(_field(md, "BlackLevel"))
    width, height = _scalar(_field(md, "Width")), _scalar(_field(md, "Height"))
    return SiddMeta(
        cfa=cfa, cfa_source=source, phone=phone, make=make, model=model,
        iso=int(iso) if iso is not None else None,
        width=int(width) if width is not None else None, height=int(height) if height is not None else None,
        black_level=tuple(float(v) for v in black) if black is not None else None,
        white_level=_scalar(_field(md, "WhiteLevel")),
    )


def _tag_array(tags: list[tuple[int, int, np.ndarray]]) -> np.ndarray:
    """A 1×N MATLAB struct array with fields ID / Offset / Value (what imfinfo calls UnknownTags)."""
    arr = np.empty((1, len(tags)), dtype=[("ID", object), ("Offset", object), ("Value", object)])
    for k, (tid, off, val) in enumerate(tags):
        arr[0, k] = (float(tid), float(off), val)
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


# ---------------------------------------------------------------------------------------------------------
# Finding frames
# ---------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class FrameSet:
    """One SIDD capture: its NOISY frame and, where present, its GT and METADATA files beside it.

    scene: the folder name (e.g. ``0001_001_S6_00100_00060_3200_L``); index: the frame tag ("010", "011").
    """
    scene: str
    noisy: Path
    gt: Path | None
    meta: Path | None
    index: str


_NOISY_RE = re.compile(r"^(.*)_NOISY_RAW_(.*)\.mat$", re.IGNORECASE)


def find_frames(root) -> list[FrameSet]:
    """Every ``*_NOISY_RAW_*.MAT`` under ``root/Data/*/`` (or ``root/*/`` when there is no Data folder).

    Matching is case-insensitive (.MAT / .mat). GT and METADATA files are looked up beside each noisy file
    with the same prefix and index. Sorted by scene, then index. InputError if none is found.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    data = next((c for c in sorted(root.iterdir()) if c.is_dir() and c.name.lower() == "data"), None)
    base = data if data is not None else root
    found: list[FrameSet] = []
    for folder in sorted(c for c in base.iterdir() if c.is_dir()):
        files = {f.name.lower(): f for f in folder.iterdir() if f.is_file()}
        for low, f in sorted(files.items()):
            m = _NOISY_RE.match(f.name)
            if not m:
                continue
            prefix, index = m.groups()
            gt = files.get(f"{prefix}_gt_raw_{index}.mat".lower())
            meta = files.get(f"{prefix}_metadata_raw_{index}.mat".lower())
            found.append(FrameSet(scene=folder.name, noisy=f, gt=gt, meta=meta, index=index))
    if not found:
        raise InputError(f"{root}: no *_NOISY_RAW_*.MAT files under {'Data/*/' if data else '*/'} "
                         f"(expected a SIDD_Medium_Raw folder)")
    found.sort(key=lambda s: (s.scene, s.index, s.noisy.name))
    return found


# ---------------------------------------------------------------------------------------------------------
# Block files and block positions
# ---------------------------------------------------------------------------------------------------------

def _pick_variable(p: Path, names: list[str], expected: str, known: Iterable[str] = ()) -> str:
    if expected in names:
        return expected
    known_here = [n for n in names if n in set(known)]
    if len(known_here) == 1 and expected not in set(known):
        return known_here[0]  # a renamed file still holding one SIDD variable
    raise InputError(f"{p}: no variable {expected!r} (holds {', '.join(names) or 'nothing'}); "
                     f"SIDD files name their variable like the file")


def read_blocks(path, varname: str | None = None) -> np.ndarray:
    """Read a SIDD block file (``ValidationNoisyBlocksRaw.mat`` etc.).

    The variable is ``varname`` or the file's stem; a renamed file (stem not a SIDD name) holding exactly
    one of :data:`BLOCK_VARIABLES` is accepted too. v5 (scipy) and v7.3 (HDF5, axes reversed) both work.
    Returns:
        float32 (N, B, h, w) C-contiguous: [image, block, row, col], MATLAB orientation; SIDD: (40, 32, 256,
        256) in [0, 1]. Raises InputError unless 4-D, 1 <= N <= 40, h and w even, floating point, finite.
    """
    p = _existing_file(path)
    expected = varname or p.stem
    if _is_hdf5(p):
        with _open_h5(p) as f, _h5_damage(p):
            names = [k for k in f.keys() if isinstance(f[k], h5py.Dataset)]
            name = _pick_variable(p, names, expected, () if varname else BLOCK_VARIABLES)
            ds = f[name]
            if ds.dtype.kind != "f":
                raise InputError(f"{p}: variable {name!r} has dtype {ds.dtype}; expected floating point")
            try:
                a = np.transpose(ds[()])
            except OSError as e:
                raise InputError(f"{p}: truncated or damaged data ({_short(e)})") from None
    else:
        names = [n for n, _, _ in _whosmat(p)]
        name = _pick_variable(p, names, expected, () if varname else BLOCK_VARIABLES)
        a = np.asarray(_loadmat(p, variable_names=[name])[name])
    if a.ndim != 4:
        raise InputError(f"{p}: variable {name!r} has shape {a.shape}; expected 4-D (images, blocks, h, w)")
    n, b, h, w = a.shape
    if not 1 <= n <= 40 or b < 1:
        raise InputError(f"{p}: variable {name!r} has shape {a.shape}; expected 1..40 images of >= 1 block")
    if h % 2 or w % 2 or h < 2 or w < 2:
        raise InputError(f"{p}: variable {name!r} has blocks of {h}x{w}; raw blocks need even sizes "
                         f"(shape {a.shape})")
    _check_float_finite(p, a, f"variable {name!r}")
    return np.ascontiguousarray(a, dtype=np.float32)


def write_blocks(path, blocks: np.ndarray, varname: str | None = None, force: bool = False) -> Path:
    """Write float (N, B, h, w) blocks as SIDD does: MATLAB v5, uncompressed, float32, variable = stem."""
    blocks = np.asarray(blocks)
    if blocks.ndim != 4 or blocks.dtype.kind != "f":
        raise ValueError(f"blocks are a 4-D float array (N, B, h, w), got {blocks.dtype} {blocks.shape}")
    with atomic_path(path, force) as tmp:
        _write_v5(tmp, {varname or Path(path).stem: np.ascontiguousarray(blocks, dtype=np.float32)})
    return Path(path)


def read_block_positions(path) -> np.ndarray:
    """Read ``BenchmarkBlocks32.mat``: int64 (K, 4) rows [row, col, h, w], 1-based (SIDD: K = 32).

    Block k of a frame ``f`` (MATLAB orientation) is ``f[r-1:r-1+h, c-1:c-1+w]``.
    """
    p = _existing_file(path)
    names = [n for n, _, _ in _whosmat(p)]
    if "BenchmarkBlocks32" in names:
        name = "BenchmarkBlocks32"
    elif p.stem in names:
        name = p.stem
    elif len(names) == 1:
        name = names[0]
    else:
        raise InputError(f"{p}: no variable 'BenchmarkBlocks32' (holds {', '.join(names) or 'nothing'})")
    a = np.asarray(_loadmat(p, variable_names=[name])[name])
    if a.ndim != 2 or a.shape[1] != 4 or a.shape[0] < 1:
        raise InputError(f"{p}: variable {name!r} has shape {a.shape}; expected (32, 4) [row, col, h, w]")
    if a.dtype.kind not in "iuf" or not np.isfinite(a).all() or np.any(a != np.round(a)) or np.any(a < 1):
        raise InputError(f"{p}: variable {name!r} must hold positive integers (1-based positions)")
    return a.astype(np.int64)


POSITIONS_FILE = "BenchmarkBlocks32.mat"


def positions_beside(blocks_path) -> Path | None:
    """The ``BenchmarkBlocks32.mat`` lying beside a block file, or None."""
    p = Path(blocks_path).with_name(POSITIONS_FILE)
    return p if p.is_file() else None


def check_block_positions(positions_path, block_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Check the benchmark's block positions against what the 40-scene CFA table assumes.

    Every block must start on an even 0-based row and column (odd 1-based), so each block keeps its phone's
    CFA phase, and, when ``block_hw`` is given, have the blocks' height and width. Returns the positions
    (K, 4); raises InputError naming the first offending block.
    """
    pos = read_block_positions(positions_path)
    odd = np.flatnonzero((pos[:, 0] - 1) % 2 | (pos[:, 1] - 1) % 2)
    if odd.size:
        k = int(odd[0])
        raise InputError(f"{positions_path}: block {k + 1} starts at 0-based row {pos[k, 0] - 1}, column "
                         f"{pos[k, 1] - 1}; every block must start on an even row and column for the CFA table "
                         f"to hold ({odd.size} of {len(pos)} do not)")
    if block_hw is not None:
        bad = np.flatnonzero((pos[:, 2] != block_hw[0]) | (pos[:, 3] != block_hw[1]))
        if bad.size:
            k = int(bad[0])
            raise InputError(f"{positions_path}: block {k + 1} is {pos[k, 2]}×{pos[k, 3]} but the block file's "
                             f"blocks are {block_hw[0]}×{block_hw[1]}")
    return pos


def read_checked_blocks(blocks_path, positions_path=None) -> np.ndarray:
    """:func:`read_blocks`, then :func:`check_block_positions` with the positions given or lying beside."""
    blocks = read_blocks(blocks_path)
    pos = positions_path if positions_path is not None else positions_beside(blocks_path)
    if pos is not None:
        check_block_positions(pos, blocks.shape[2:])
    return blocks


def write_block_positions(path, positions: np.ndarray, force: bool = False) -> Path:
    """Write (K, 4) [row, col, h, w] 1-based positions as ``BenchmarkBlocks32`` (uint16, MATLAB v5)."""
    pos = np.asarray(positions)
    if pos.ndim != 2 or pos.shape[1] != 4 or np.any(pos < 1):
        raise ValueError(f"positions are (K, 4) positive 1-based [row, col, h, w], got {pos.shape}")
    with atomic_path(path, force) as tmp:
        _write_v5(tmp, {"BenchmarkBlocks32": pos.astype(np.uint16)})
    return Path(path)


# ---------------------------------------------------------------------------------------------------------
# Submissions
# ---------------------------------------------------------------------------------------------------------

def _check_submission_blocks(blocks) -> np.ndarray:
    blocks = np.asarray(blocks)
    if blocks.ndim != 4 or blocks.dtype.kind != "f":
        raise ValueError(f"blocks are a 4-D float array (N, B, h, w), got {blocks.dtype} {blocks.shape}")
    if not np.isfinite(blocks).all():
        raise ValueError("denoised blocks hold NaN/Inf values")
    return blocks


def write_submission_mat(path, blocks: np.ndarray, time_mp: float, optional: dict | None = None,
                         force: bool = False) -> Path:
    """Write ``SubmitRaw.mat`` (SIDD Benchmark kit layout; MATLAB v5, which MATLAB and scipy read).

    Args:
        blocks: float (N, B, h, w) denoised blocks (SIDD: 40, 32, 256, 256), same order and orientation as
            the input blocks; stored as float32.
        time_mp: seconds per megapixel.
        optional: strings for MethodName, Authors, PaperTitle, Venue, MachineSpecs (missing ones are "";
            other keys are kept as extra fields).
    Contents: ``DenoisedBlocksRaw`` N×B cell of single h×w, ``TimeMPRaw`` double, ``OptionalData`` struct.
    """
    blocks = _check_submission_blocks(blocks)
    n, b = blocks.shape[:2]
    cell = np.empty((n, b), dtype=object)
    for i in range(n):
        for j in range(b):
            cell[i, j] = np.ascontiguousarray(blocks[i, j], dtype=np.float32)
    optional = dict(optional or {})
    od = {k: str(optional.pop(k, "") or "") for k in OPTIONAL_FIELDS}
    od.update({str(k): str(v) for k, v in optional.items()})
    with atomic_path(path, force) as tmp:
        _write_v5(tmp, {"DenoisedBlocksRaw": cell, "TimeMPRaw": float(time_mp), "OptionalData": od})
    return Path(path)


def write_submission_csv(path, blocks: np.ndarray, force: bool = False) -> Path:
    """Write the Kaggle ``SubmitRaw.csv``: header ``ID,BLOCK``; row ``i*B + j`` holds block (i, j) as base64
    of its float32 little-endian C-order bytes (256×256 → 262,144 bytes). Streams block by block."""
    blocks = _check_submission_blocks(blocks)
    n, b = blocks.shape[:2]
    with atomic_path(path, force) as tmp:
        with open(tmp, "w", encoding="ascii", newline="") as fh:
            fh.write("ID,BLOCK\n")
            for i in range(n):
                for j in range(b):
                    raw = np.ascontiguousarray(blocks[i, j], dtype="<f4").tobytes()
                    fh.write(f"{i * b + j},{base64.b64encode(raw).decode('ascii')}\n")
    return Path(path)


def _read_csv_blocks(p: Path, block_shape) -> tuple[list[int], list[np.ndarray]]:
    ids, out = [], []
    try:
        fh = open(p, "r", encoding="ascii", newline="")
    except OSError as e:
        raise InputError(f"{p}: cannot open ({_short(e)})") from None
    with fh:
        try:
            header = fh.readline().strip()
            if header.replace(" ", "").upper() != "ID,BLOCK":
                raise InputError(f"{p}: first line is {header[:40]!r}; expected the header 'ID,BLOCK'")
            for lineno, line in enumerate(fh, start=2):
                line = line.strip()
                if not line:
                    continue
                sid, sep, b64 = line.partition(",")
                try:
                    ids.append(int(sid))
                    raw = base64.b64decode(b64, validate=True)
                except ValueError:
                    raise InputError(f"{p}: line {lineno} is not 'ID,base64'") from None
                if block_shape is None:
                    side = math.isqrt(len(raw) // 4)
                    if side * side * 4 != len(raw):
                        raise InputError(f"{p}: line {lineno} holds {len(raw)} bytes, not a square float32 "
                                         f"block; give block_shape")
                    block_shape = (side, side)
                h, w = block_shape
                if len(raw) != h * w * 4:
                    raise InputError(f"{p}: line {lineno} holds {len(raw)} bytes; a float32 {h}x{w} block "
                                     f"has {h * w * 4}")
                out.append(np.frombuffer(raw, dtype="<f4").reshape(h, w).astype(np.float32))
        except UnicodeDecodeError:
            raise InputError(f"{p}: not a text CSV file") from None
    if not out:
        raise InputError(f"{p}: no blocks after the header")
    return ids, out


def _mat73_blocks(p: Path) -> tuple[np.ndarray, list[str]]:
    """DenoisedBlocksRaw from a MATLAB -v7.3 SubmitRaw.mat (cell of references, or a 4-D array)."""
    with _open_h5(p) as f:
        if "DenoisedBlocksRaw" not in f:
            raise InputError(f"{p}: no variable 'DenoisedBlocksRaw' (holds {', '.join(f.keys()) or 'nothing'})")
        ds = f["DenoisedBlocksRaw"]
        try:
            if ds.dtype == h5py.ref_dtype:
                refs = np.transpose(ds[()])  # (B, N) on disk -> (N, B)
                n, b = refs.shape
                cells = [[np.transpose(f[refs[i, j]][()]) for j in range(b)] for i in range(n)]
                dtypes = sorted({str(c.dtype) for row in cells for c in row})
                shapes = {c.shape for row in cells for c in row}
                if len(shapes) != 1:
                    raise InputError(f"{p}: DenoisedBlocksRaw cells differ in shape: {sorted(shapes)[:3]}")
                return np.stack([np.stack(row) for row in cells]), dtypes
            a = np.transpose(ds[()])
            return a, [str(a.dtype)]
        except OSError as e:
            raise InputError(f"{p}: truncated or damaged data ({_short(e)})") from None


def _read_submission_raw(path, block_shape=None, grid=None) -> tuple[np.ndarray, list[str], list[int] | None]:
    """(blocks as stored, their dtypes as stored, csv IDs in file order or None)."""
    p = _existing_file(path)
    if p.suffix.lower() == ".csv":
        ids, blocks = _read_csv_blocks(p, block_shape)
        k = len(blocks)
        if sorted(ids) != list(range(k)):
            raise InputError(f"{p}: IDs are not 0..{k - 1} each once")
        order = np.argsort(ids, kind="stable")
        if grid is None:
            if k % 32:
                raise InputError(f"{p}: {k} blocks is not a multiple of 32 blocks per image; give grid=(N, B)")
            grid = (k // 32, 32)
        if grid[0] * grid[1] != k:
            raise InputError(f"{p}: {k} blocks do not fill a {grid[0]}x{grid[1]} grid")
        a = np.stack([blocks[o] for o in order]).reshape(grid[0], grid[1], *blocks[0].shape)
        return a, ["float32"], ids
    if _is_hdf5(p):
        a, dtypes = _mat73_blocks(p)
    else:
        names = [n for n, _, _ in _whosmat(p)]
        if "DenoisedBlocksRaw" not in names:
            raise InputError(f"{p}: no variable 'DenoisedBlocksRaw' (holds {', '.join(names) or 'nothing'})")
        v = _loadmat(p, variable_names=["DenoisedBlocksRaw"])["DenoisedBlocksRaw"]
        if v.dtype == object:
            if v.ndim != 2:
                raise InputError(f"{p}: DenoisedBlocksRaw is a {v.shape} cell; expected images x blocks")
            cells = [np.asarray(c) for c in v.reshape(-1)]
            shapes = {c.shape for c in cells}
            if len(shapes) != 1 or len(next(iter(shapes))) != 2:
                raise InputError(f"{p}: DenoisedBlocksRaw cells are not 2-D blocks of one shape")
            dtypes = sorted({str(c.dtype) for c in cells})
            if any(c.dtype.kind != "f" for c in cells):
                raise InputError(f"{p}: DenoisedBlocksRaw cells have dtype {', '.join(dtypes)}; expected single")
            a = np.stack(cells).reshape(v.shape[0], v.shape[1], *cells[0].shape)
        else:
            a, dtypes = v, [str(v.dtype)]
    if a.ndim != 4:
        raise InputError(f"{p}: DenoisedBlocksRaw has shape {a.shape}; expected (images, blocks, h, w)")
    if a.dtype.kind != "f":
        raise InputError(f"{p}: DenoisedBlocksRaw has dtype {a.dtype}; expected floating point")
    return a, dtypes, None


def read_submission(path, block_shape: tuple[int, int] | None = None,
                    grid: tuple[int, int] | None = None) -> np.ndarray:
    """Read a ``SubmitRaw.mat`` (v5 cell, v5 4-D array or MATLAB v7.3) or a Kaggle ``SubmitRaw.csv``.

    CSV: ``block_shape`` (h, w) defaults to the square that the byte count implies (256×256 for SIDD);
    ``grid`` (N, B) defaults to B = 32 blocks per image. Rows are put in ID order.
    Returns float32 (N, B, h, w). Raises InputError for unreadable or malformed files.
    """
    a, _, _ = _read_submission_raw(path, block_shape, grid)
    return np.ascontiguousarray(a, dtype=np.float32)


def verify_submission(path, expected_blocks: np.ndarray) -> None:
    """Re-read a written submission and check it against what was meant to be written.

    Checks shape, float32 storage, finiteness, row order (CSV IDs ascending), and exact equality with
    ``expected_blocks`` (N, B, h, w); for .mat also that ``TimeMPRaw`` and ``OptionalData`` exist.
    Raises RuntimeError describing the first mismatch.
    """
    exp = np.asarray(expected_blocks, dtype=np.float32)
    p = Path(path)
    try:
        got, dtypes, ids = _read_submission_raw(p, block_shape=exp.shape[2:], grid=exp.shape[:2])
        if p.suffix.lower() != ".csv":
            if _is_hdf5(p):
                with _open_h5(p) as f:
                    names = list(f.keys())
            else:
                names = [n for n, _, _ in _whosmat(p)]
            missing = [n for n in ("TimeMPRaw", "OptionalData") if n not in names]
            if missing:
                raise RuntimeError(f"{p}: submission lacks {', '.join(missing)}")
    except InputError as e:
        raise RuntimeError(f"submission check failed: {e}") from None
    if got.shape != exp.shape:
        raise RuntimeError(f"{p}: holds blocks of shape {got.shape}, expected {exp.shape}")
    if dtypes != ["float32"]:
        raise RuntimeError(f"{p}: blocks stored as {', '.join(dtypes)}, expected float32")
    if ids is not None and ids != list(range(len(ids))):
        raise RuntimeError(f"{p}: IDs are not in ascending order 0..{len(ids) - 1}")
    if not np.isfinite(got).all():
        raise RuntimeError(f"{p}: holds NaN/Inf values")
    if np.array_equal(got, exp):
        return
    n, b = exp.shape[:2]
    for i, j in itertools.product(range(n), range(b)):
        if not np.array_equal(got[i, j], exp[i, j]):
            flat = exp.reshape(n * b, *exp.shape[2:])
            hits = [k for k in range(n * b) if np.array_equal(flat[k], got[i, j])]
            where = f"; it equals expected block {divmod(hits[0], b)} (order wrong)" if hits else ""
            raise RuntimeError(f"{p}: block ({i}, {j}) differs from what was written{where}")


# ---------------------------------------------------------------------------------------------------------
# prepare sidd
# ---------------------------------------------------------------------------------------------------------

def _ordered_map(fn: Callable, items: list, workers: int) -> Iterator:
    """``map(fn, items)`` in order, with at most ``workers`` calls running ahead (bounded memory)."""
    if workers <= 1:
        for it in items:
            yield fn(it)
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as ex:
        source = iter(items)
        pending = collections.deque(ex.submit(fn, it) for it in itertools.islice(source, workers))
        try:
            while pending:
                result = pending.popleft().result()
                nxt = next(source, _END)
                if nxt is not _END:
                    pending.append(ex.submit(fn, nxt))
                yield result
        finally:
            for fut in pending:
                fut.cancel()


_END = object()


def _phase_check(mosaic: np.ndarray, cfa: str) -> None:
    try:
        from .. import bayer  # written separately; optional until it exists
        check = bayer.cfa_phase_check
    except (ImportError, AttributeError):
        return
    check(mosaic, cfa)


def prepare_sidd(root, out, *, with_gt: bool = False, workers: int | None = None, force: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> dict:
    """Convert a SIDD-Medium raw folder into the training store (``n2n-raw prepare sidd``).

    For every frame set from :func:`find_frames`: the NOISY frame (float32 (H, W) in [0, 1], MATLAB
    orientation; and its GT with ``with_gt``) goes to a raw :class:`~n2n_raw.io.store.StoreWriter` item with
    attrs ``cfa``, ``cfa_source``, ``phone``, ``iso``, ``scene``, ``source`` (path relative to ``root``).
    The CFA comes from the METADATA file (phone hint from the scene name); without a METADATA file, from the
    phone in the scene name. Frames are read by ``workers`` threads (default min(4, CPUs)) a few at a time
    and written in order, so memory stays at a few frames. With ``with_gt``, frames without a GT file are
    skipped. ``progress(done, total)`` is called after each frame. Prints nothing.
    Returns {"frames": written, "skipped": skipped, "seconds": elapsed}.
    """
    from .store import StoreWriter  # local: keeps this module importable on its own

    t0 = time.perf_counter()
    root = Path(root)
    sets = find_frames(root)
    jobs = [s for s in sets if s.gt is not None or not with_gt]
    skipped = len(sets) - len(jobs)
    if not jobs:
        raise InputError(f"{root}: no NOISY frame has a GT file beside it (needed by --with-gt)")
    if workers is None:
        workers = min(4, os.cpu_count() or 1)

    def rel(p: Path) -> str:
        try:
            return p.relative_to(root).as_posix()
        except ValueError:
            return p.as_posix()

    def load(fs: FrameSet):
        noisy = read_frame(fs.noisy)
        if noisy.shape[0] % 2 or noisy.shape[1] % 2:
            raise InputError(f"{fs.noisy}: mosaic of {noisy.shape[0]}x{noisy.shape[1]}; raw mosaics need even "
                             f"sizes")
        gt = None
        if with_gt:
            gt = read_frame(fs.gt)
            if gt.shape != noisy.shape:
                raise InputError(f"{fs.gt}: shape {gt.shape} differs from its noisy frame's {noisy.shape}")
        hint = _phone_of_scene(fs.scene)
        if fs.meta is not None:
            meta = read_metadata(fs.meta, phone_hint=hint)
            info = {"cfa": meta.cfa, "cfa_source": meta.cfa_source, "phone": meta.phone, "iso": meta.iso}
        elif hint in PHONE_CFA:
            info = {"cfa": PHONE_CFA[hint], "cfa_source": "phone table", "phone": hint, "iso": None}
        else:
            raise InputError(f"{fs.noisy}: no METADATA file beside it and no SIDD phone in the folder name; "
                             f"cannot tell its CFA")
        if info["iso"] is None:
            try:
                info["iso"] = parse_scene_name(fs.scene)["iso"]
            except InputError:
                pass
        return fs, noisy, gt, info

    total = len(jobs)
    done = 0
    with StoreWriter(out, "raw", force=force, sources=[rel(s.noisy) for s in jobs]) as writer:
        for fs, noisy, gt, info in _ordered_map(load, jobs, int(workers)):
            _phase_check(noisy, info["cfa"])
            writer.add(noisy, gt=gt, scene=fs.scene, source=rel(fs.noisy), **info)
            done += 1
            if progress is not None:
                progress(done, total)
    return {"frames": done, "skipped": skipped, "seconds": time.perf_counter() - t0}
