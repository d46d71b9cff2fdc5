"""SIDD ``METADATA`` files (a MATLAB v5 ``imfinfo`` struct of the DNG) and the CFA they give."""
from __future__ import annotations

import dataclasses
from typing import Iterable, Iterator

import numpy as np

from n2n_raw.errors import InputError
from n2n_raw.io.sidd._mat import _existing_file, _is_hdf5, _loadmat, _whosmat
from n2n_raw.io.sidd.names import CFAS, PHONE_CFA, _phone_of_scene, parse_scene_name, phone_from_make


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


def frame_cfa(fs) -> dict:
    """What a SIDD scene folder says of one frame's mosaic: ``{"cfa", "cfa_source", "phone", "iso"}``.

    The CFA comes from the frame's METADATA file when there is one, else from the phone named in the scene
    folder (SIDD's five phones each have one CFA); the ISO from the metadata, else the scene name (or None).
    Used by both ``prepare sidd`` and ``train --data FOLDER``, so the two read a folder alike.
    ``fs``: a :class:`~n2n_raw.io.sidd.frames.FrameSet`. Raises InputError when neither tells the CFA.
    """
    hint = _phone_of_scene(fs.scene)
    if fs.meta is not None:
        meta = read_metadata(fs.meta, phone_hint=hint)
        info = {"cfa": meta.cfa, "cfa_source": meta.cfa_source, "phone": meta.phone, "iso": meta.iso}
    elif hint in PHONE_CFA:
        info = {"cfa": PHONE_CFA[hint], "cfa_source": "phone table", "phone": hint, "iso": None}
    else:
        raise InputError(f"{fs.noisy}: no METADATA file beside it and no SIDD phone in the folder name; "
                         f"cannot tell its CFA (pass --cfa)")
    if info["iso"] is None:
        try:
            info["iso"] = parse_scene_name(fs.scene)["iso"]
        except InputError:
            pass
    return info
