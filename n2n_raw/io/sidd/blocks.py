"""SIDD block files (``ValidationNoisyBlocksRaw.mat`` …) and the benchmark's block positions."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

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
from n2n_raw.io.sidd.names import BLOCK_VARIABLES


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
