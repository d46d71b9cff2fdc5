"""The prepared HDF5 training store that ``prepare`` writes and ``train --data`` reads.

Layout (self-describing; h5py):

- file attrs: ``format="n2n-raw-store"``, ``version=1``, ``mode`` ("srgb" | "raw"), ``count``,
  ``complete=True`` (written last: a file without it is refused), ``sources`` (JSON text: what was read).
- ``/items/NNNNNN``: one dataset per image.
  sRGB: uint8 (H, W, 3). Raw: float32 (H, W) Bayer mosaic in [0, 1], MATLAB orientation, chunked in
  256×256 tiles so a random crop reads only the chunks it touches (frames may be far larger than memory).
  Per-item attrs (raw): ``cfa`` ("RGGB" | "BGGR" | "GRBG" | "GBRG"), and where known ``phone``, ``iso``,
  ``scene``, ``source``.
- ``/gt/NNNNNN`` (optional, raw ``--with-gt``): the clean frame for the same item.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import h5py
import numpy as np

from n2n_raw.errors import InputError
from n2n_raw.io.atomic import check_writable

FORMAT = "n2n-raw-store"
VERSION = 1
CHUNK = 256


class StoreWriter:
    """Write a store atomically: ``with StoreWriter(path, "raw") as w: w.add(mosaic, cfa="RGGB")``.

    Data go to a hidden temporary file that is renamed to ``path`` only after ``complete`` is set, so an
    interrupted ``prepare`` never leaves a file that looks finished.
    """

    def __init__(self, path: str | os.PathLike, mode: str, force: bool = False, sources: object = None):
        if mode not in ("srgb", "raw"):
            raise ValueError(f"mode must be 'srgb' or 'raw', got {mode!r}")
        self.path = check_writable(path, force)
        self.mode = mode
        self.tmp = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
        self.sources = sources
        self.count = 0
        self._f: h5py.File | None = None

    def __enter__(self) -> "StoreWriter":
        self._f = h5py.File(self.tmp, "w")
        self._f.attrs.update(format=FORMAT, version=VERSION, mode=self.mode, complete=False)
        self._f.create_group("items")
        return self

    def add(self, array: np.ndarray, gt: np.ndarray | None = None, **attrs) -> str:
        """Append one image. sRGB: uint8 (H, W, 3). Raw: float32 (H, W) mosaic with attrs ``cfa=...``."""
        assert self._f is not None, "use StoreWriter as a context manager"
        name = f"{self.count:06d}"
        self._f["items"].create_dataset(name, data=self._checked(array), chunks=self._chunks(array))
        self._f["items"][name].attrs.update({k: v for k, v in attrs.items() if v is not None})
        if gt is not None:
            if gt.shape != array.shape:
                raise ValueError(f"gt shape {gt.shape} != noisy shape {array.shape}")
            self._f.require_group("gt").create_dataset(name, data=self._checked(gt), chunks=self._chunks(gt))
        self.count += 1
        return name

    def _checked(self, a: np.ndarray) -> np.ndarray:
        if self.mode == "srgb":
            if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
                raise ValueError(f"sRGB items are uint8 (H, W, 3), got {a.dtype} {a.shape}")
            return a
        if a.ndim != 2:
            raise ValueError(f"raw items are (H, W) mosaics, got shape {a.shape}")
        return np.ascontiguousarray(a, dtype=np.float32)

    def _chunks(self, a: np.ndarray):
        if self.mode == "srgb":
            return None
        return (min(CHUNK, a.shape[0]), min(CHUNK, a.shape[1]))

    def __exit__(self, exc_type, exc, tb):
        f, self._f = self._f, None
        try:
            if exc_type is None:
                f.attrs["count"] = self.count
                f.attrs["sources"] = json.dumps(self.sources if self.sources is not None else [])
                f.attrs["complete"] = True
            f.close()
            if exc_type is None:
                os.replace(self.tmp, self.path)
        finally:
            if self.tmp.exists():
                self.tmp.unlink()
        return False


class Store:
    """Read a prepared store. ``len(store)``, ``store.attrs(i)``, ``store.shape(i)``, ``store.dtype(i)``,
    ``store.read(i)``, ``store.read_crop(i, y, x, h, w)``, ``store.read_gt(i)``, ``store.read_gt_crop(...)``.

    Crops read only the window asked for (sRGB items are contiguous: one hyperslab read of P rows; raw items are
    chunked), so nothing of a store stays in memory between crops."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such file")
        try:
            self._f = h5py.File(self.path, "r")
        except OSError:
            raise InputError(f"{self.path}: not an HDF5 file (or it is truncated)") from None
        try:
            a = self._f.attrs
            if a.get("format") != FORMAT:
                raise InputError(f"{self.path}: not an n2n-raw store (make one with `n2n-raw prepare`)")
            if not bool(a.get("complete", False)):
                raise InputError(f"{self.path}: incomplete store (an interrupted prepare?); prepare it again")
            self.mode = str(a["mode"])
            self.names = sorted(self._f["items"].keys())
            if not self.names:
                raise InputError(f"{self.path}: the store holds no images")
            self.sources = json.loads(a.get("sources", "[]"))
        except InputError:
            self._f.close()
            raise
        except (KeyError, AttributeError, TypeError, ValueError, RuntimeError, OSError) as e:
            self._f.close()
            raise InputError(f"{self.path}: damaged n2n-raw store ({type(e).__name__}: {e})") from None

    def __len__(self) -> int:
        return len(self.names)

    @contextlib.contextmanager
    def _damage(self):
        """h5py reports a damaged object header or chunk met after opening as KeyError, RuntimeError or
        OSError (found by tests/test_fuzz_readers.py); a user's damaged file is bad input, not a bug."""
        try:
            yield
        except (KeyError, RuntimeError, OSError) as e:
            raise InputError(f"{self.path}: damaged n2n-raw store ({type(e).__name__}: {e})") from None

    def attrs(self, i: int) -> dict:
        with self._damage():
            return {k: (v.item() if hasattr(v, "item") else v)
                    for k, v in self._f["items"][self.names[i]].attrs.items()}

    def shape(self, i: int) -> tuple[int, ...]:
        with self._damage():
            return tuple(self._f["items"][self.names[i]].shape)

    def dtype(self, i: int) -> np.dtype:
        with self._damage():
            return self._f["items"][self.names[i]].dtype

    def _read(self, group: str, i: int, window=()) -> np.ndarray:
        with self._damage():
            return self._f[group][self.names[i]][window]

    def read(self, i: int) -> np.ndarray:
        return self._read("items", i)

    def read_crop(self, i: int, y: int, x: int, h: int, w: int) -> np.ndarray:
        return self._read("items", i, np.s_[y:y + h, x:x + w])

    @property
    def has_gt(self) -> bool:
        with self._damage():
            return "gt" in self._f

    def read_gt(self, i: int) -> np.ndarray:
        return self._read("gt", i)

    def read_gt_crop(self, i: int, y: int, x: int, h: int, w: int) -> np.ndarray:
        return self._read("gt", i, np.s_[y:y + h, x:x + w])

    def close(self) -> None:
        self._f.close()


def is_store(path: str | os.PathLike) -> bool:
    """True for an HDF5 file (by its signature), whatever it holds; the caller then opens it as a Store."""
    p = Path(path)
    if not p.is_file():
        return False
    with open(p, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"
