"""SIDD frames: reading the v7.3 ``NOISY`` / ``GT`` files, and finding frame sets in a SIDD folder."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import h5py
import numpy as np

from n2n_raw.errors import InputError
from n2n_raw.io.sidd._mat import (
    _check_float_finite,
    _existing_file,
    _h5_damage,
    _is_hdf5,
    _loadmat,
    _open_h5,
    _short,
    _whosmat,
)


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


_FRAME_RE = re.compile(r"^(.*)_(NOISY|GT)_RAW_(.*)\.mat$", re.IGNORECASE)


def _frame_set(folder: Path, files: dict[str, Path], prefix: str, index: str, noisy: Path) -> FrameSet:
    """The capture ``prefix``/``index`` in ``folder``; ``files``: the folder's files by lower-case name."""
    return FrameSet(scene=folder.name, noisy=noisy, gt=files.get(f"{prefix}_gt_raw_{index}.mat".lower()),
                    meta=files.get(f"{prefix}_metadata_raw_{index}.mat".lower()), index=index)


def _files_of(folder: Path) -> dict[str, Path]:
    return {f.name.lower(): f for f in folder.iterdir() if f.is_file()}


def frame_set(path) -> FrameSet:
    """The capture one SIDD frame file belongs to, its GT and METADATA looked up beside it as :func:`find_frames`
    does (case-insensitively, same prefix and index).

    ``noisy`` is ``path`` itself (a GT file can be denoised too). A file not named ``*_NOISY_RAW_*`` or
    ``*_GT_RAW_*`` gets no GT or METADATA; its scene is still its folder's name, which may name the phone.
    """
    path = Path(path)
    m = _FRAME_RE.match(path.name)
    if not m:
        return FrameSet(scene=path.parent.name, noisy=path, gt=None, meta=None, index="")
    prefix, _, index = m.groups()
    return _frame_set(path.parent, _files_of(path.parent), prefix, index, path)


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
        files = _files_of(folder)
        for _, f in sorted(files.items()):
            m = _FRAME_RE.match(f.name)
            if m and m.group(2).upper() == "NOISY":
                found.append(_frame_set(folder, files, m.group(1), m.group(3), f))
    if not found:
        raise InputError(f"{root}: no *_NOISY_RAW_*.MAT files under {'Data/*/' if data else '*/'} "
                         f"(expected a SIDD_Medium_Raw folder)")
    found.sort(key=lambda s: (s.scene, s.index, s.noisy.name))
    return found
