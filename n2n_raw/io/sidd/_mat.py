"""Small helpers shared by the SIDD readers and writers: MATLAB v5 / v7.3 (HDF5) access, error mapping."""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import h5py
import numpy as np
import scipy.io

from n2n_raw.errors import InputError
from n2n_raw.io.sidd._mat5 import check_mat5

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


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


def _check_v5(p: Path) -> None:
    """Structure check before scipy parses ``p``: scipy's compiled reader can crash the process on a
    damaged file (see _mat5.py). Once per file version: readers call whosmat, then loadmat."""
    try:
        st = p.stat()
        _check_v5_once(str(p), st.st_ino, st.st_size, st.st_mtime_ns)
    except (ValueError, OSError) as e:
        raise InputError(f"{p}: not a readable MATLAB v5 file, damaged or truncated ({_short(e)})") from None


@functools.lru_cache(maxsize=64)
def _check_v5_once(path: str, ino: int, size: int, mtime_ns: int) -> None:   # raising calls are not cached
    with open(path, "rb") as f:
        check_mat5(f, size)


def _loadmat(p: Path, **kw) -> dict:
    """scipy.io.loadmat with every failure turned into an InputError naming ``p``."""
    if _is_hdf5(p):
        raise InputError(f"{p}: a MATLAB v7.3 (HDF5) file where a v5 MAT file was expected")
    _check_v5(p)
    try:
        return scipy.io.loadmat(p, **kw)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - any parse failure of a user's file is bad input
        raise InputError(f"{p}: not a readable MATLAB v5 file ({_short(e)})") from None


def _whosmat(p: Path) -> list[tuple[str, tuple, str]]:
    if not _is_hdf5(p):
        _check_v5(p)
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
