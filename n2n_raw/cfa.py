"""The four Bayer patterns and the two packing modes: names and their checks, without torch.

Every layer names CFAs (file readers, the configuration, the method), so these facts live below all of them.
:mod:`n2n_raw.method.bayer` holds what is done with them (packing, unification, augmentation).
"""
from __future__ import annotations

from n2n_raw.errors import InputError, check_choice

CFAS = ("RGGB", "BGGR", "GRBG", "GBRG")
CFA_MODES = ("rggb", "positional")
#: Cell position (dy, dx) held by each packed channel, in order (pixel_unshuffle order).
PACK_ORDER = ((0, 0), (0, 1), (1, 0), (1, 1))
#: Channel names of a packed array in ``"rggb"`` mode.
RGGB_CHANNELS = ("R", "G1", "G2", "B")


def check_cfa(name: str, what: str = "--cfa") -> str:
    """Validate a CFA pattern name (case-insensitive); return it upper-case, e.g. ``"rggb"`` → ``"RGGB"``.

    Raises:
        InputError: ``--cfa: unknown CFA pattern 'x' (expected one of RGGB, BGGR, GRBG, GBRG)``; ``what``
        replaces ``--cfa`` (e.g. a file or attribute name).
    """
    up = str(name).strip().upper()
    if up not in CFAS:
        raise InputError(f"{what}: unknown CFA pattern {name!r} (expected one of {', '.join(CFAS)})")
    return up


def check_mode(mode: str) -> str:
    """Validate a packing mode (case-insensitive): ``"rggb"`` or ``"positional"``; return it lower-case."""
    check_choice(str(mode).strip().lower(), CFA_MODES, "--cfa-mode", "mode")
    return str(mode).strip().lower()
