"""SIDD frames: reading the v7.3 ``NOISY`` / ``GT`` files, and finding frame sets in a SIDD folder."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import h5py
import numpy as np

from ...errors import InputError
from ._mat import _check_float_finite, _existing_file, _h5_damage, _is_hdf5, _loadmat, _open_h5, _short, _whosmat


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
