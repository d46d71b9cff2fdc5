"""Where the tests find data that does not ship with the project, and how they skip when it is absent.

- Real camera files (datasets/real_raw.json lists them, datasets/REAL_FILES.md says how to get them): the folder
  named by ``N2N_RAW_REAL_DATA``, else ``../shared/data/real_raw`` beside the repository.
- The sRGB validation sets Kodak, BSD300 and Set14 (datasets/README.md): the folder named by
  ``N2N_RAW_VALIDATION_DATA``, else ``../shared/data/validation`` beside the repository.

A test that needs a file calls :func:`real_file` / :func:`validation_dir` (or marks its module with
:data:`needs_real_raw` / :data:`needs_validation`): where the data is absent it is skipped with one line that
says what is missing and how to get it, never failed.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "datasets" / "real_raw.json"
REAL_ENV = "N2N_RAW_REAL_DATA"
VALIDATION_ENV = "N2N_RAW_VALIDATION_DATA"


def _folder(env: str, default: Path) -> Path:
    value = os.environ.get(env, "").strip()
    return Path(value).expanduser() if value else default


REAL_RAW = _folder(REAL_ENV, REPO.parent / "shared" / "data" / "real_raw")
VALIDATION = _folder(VALIDATION_ENV, REPO.parent / "shared" / "data" / "validation")

GET_REAL = (f"set {REAL_ENV} to a folder holding the files listed in datasets/real_raw.json; "
            "see datasets/REAL_FILES.md")
GET_VALIDATION = (f"set {VALIDATION_ENV} to a folder holding Kodak/, BSD300/ and Set14/; "
                  "see datasets/README.md")


def real_missing(*names: str) -> str:
    """The one-line skip reason for missing real files (or, without a name, the whole folder)."""
    what = (f"real file {names[0]} is missing" if len(names) == 1 else
            f"real files {', '.join(names)} are missing" if names else "real camera files are missing")
    return f"{what} (looked in {REAL_RAW}): {GET_REAL}"


def validation_missing(name: str = "") -> str:
    what = f"validation set {name} is missing" if name else "validation images are missing"
    return f"{what} (looked in {VALIDATION}): {GET_VALIDATION}"


def real_file(name: str) -> Path:
    """``REAL_RAW / name`` (``name`` relative, as in the manifest), or skip the calling test."""
    __tracebackhide__ = True  # the skip is reported at the calling test's line
    path = REAL_RAW / name
    if not path.exists():
        pytest.skip(real_missing(name))
    return path


def real_files_present(*names: str) -> bool:
    return all((REAL_RAW / n).exists() for n in names)


def validation_dir(name: str = "") -> Path:
    """``VALIDATION / name`` (e.g. "Kodak"; the folder itself without a name), or skip the calling test."""
    __tracebackhide__ = True
    path = VALIDATION / name if name else VALIDATION
    if not path.is_dir():
        pytest.skip(validation_missing(name))
    return path


def manifest() -> dict:
    """datasets/real_raw.json, parsed."""
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


#: Skip a whole module (``pytestmark = needs_real_raw``) or one test where the real files' folder is absent.
needs_real_raw = pytest.mark.skipif(not REAL_RAW.is_dir(), reason=real_missing())
#: The same for the validation images.
needs_validation = pytest.mark.skipif(not VALIDATION.is_dir(), reason=validation_missing())


def needs_real(*names: str) -> pytest.MarkDecorator:
    """Skip marker for a test that needs these real files (names relative to the folder)."""
    missing = [n for n in names if not (REAL_RAW / n).exists()]
    return pytest.mark.skipif(bool(missing), reason=real_missing(*missing))
