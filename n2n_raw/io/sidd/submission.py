"""SIDD submissions: ``SubmitRaw.mat`` and the Kaggle ``SubmitRaw.csv``, written, read and verified."""
from __future__ import annotations

import base64
import itertools
import math
from pathlib import Path

import h5py
import numpy as np

from n2n_raw.errors import InputError
from n2n_raw.io.atomic import atomic_path
from n2n_raw.io.sidd._mat import _existing_file, _is_hdf5, _loadmat, _open_h5, _short, _whosmat, _write_v5

#: Fields of the ``OptionalData`` struct of a ``SubmitRaw.mat``.
OPTIONAL_FIELDS = ("MethodName", "Authors", "PaperTitle", "Venue", "MachineSpecs")


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
