"""Write-then-rename helpers: nothing a user made is overwritten without ``force``, no half-file survives."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from n2n_raw.errors import InputError


def check_writable(path: str | os.PathLike, force: bool, *, make_folder: bool = True) -> Path:
    """Refuse an existing output unless ``force``; make sure its folder exists (``make_folder``: a check made
    before anything may be written, e.g. ``fit``'s outputs inside a run folder not yet made, passes False)."""
    path = Path(path)
    if path.exists() and not force:
        raise InputError(f"{path}: already exists (use --force to overwrite)")
    if path.exists() and path.is_dir():
        raise InputError(f"{path}: is a folder, expected a file path")
    if make_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, force: bool = False):
    """Yield a temporary path beside ``path``; on success rename it into place, on error delete it.

    The temporary name never ends with the real suffix, so an interrupted write can't pass for a finished file.
    """
    path = check_writable(path, force)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
