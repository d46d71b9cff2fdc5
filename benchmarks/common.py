"""What every benchmark prints first (the commit it ran and the device it ran on), and where the shared data is."""
from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from pathlib import Path

import torch


def _data_folder(env: str, default: Path) -> Path:
    value = os.environ.get(env, "").strip()
    return Path(value).expanduser() if value else default


# Kodak, BSD300, Set14 (see datasets/README.md): N2N_RAW_VALIDATION_DATA, else beside the repository.
_BESIDE = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data from the repository
VALIDATION = _data_folder("N2N_RAW_VALIDATION_DATA", _BESIDE / "validation")
# The real camera files of datasets/real_raw.json (see datasets/REAL_FILES.md): N2N_RAW_REAL_DATA, else beside
# the repository. The same defaults as the tests' (tests/realdata.py).
REAL_RAW = _data_folder("N2N_RAW_REAL_DATA", _BESIDE / "real_raw")


def git_rev(path: Path, files: tuple[str, ...] = ()) -> str:
    """Short commit of the repo at ``path``, '+dirty' when tracked files differ from it.

    Outside a git checkout (a copy carried without .git): a hash of ``files``, or 'unknown'.
    """
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=path, capture_output=True, text=True)
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=path, capture_output=True, text=True)
    # A copy without .git that sits inside another repository must not take that repository's commit.
    if r.returncode != 0 or Path(top.stdout.strip()).resolve() != path.resolve():
        if not files:
            return "unknown"
        return "sha256:" + hashlib.sha256(b"".join((path / f).read_bytes() for f in files)).hexdigest()[:10]
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=path, capture_output=True).returncode != 0
    return r.stdout.strip() + ("+dirty" if dirty else "")


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's architecture and thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
