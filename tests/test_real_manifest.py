"""datasets/real_raw.json, the list of the real camera files the tests use (datasets/REAL_FILES.md).

The manifest itself is checked everywhere; the files against it (sha256, size, nothing unlisted) only where the
folder is present (``N2N_RAW_REAL_DATA``, else ``../shared/data/real_raw`` beside the repository).
"""
from __future__ import annotations

import hashlib
import re
from pathlib import PurePosixPath
from urllib.parse import quote

import pytest
from realdata import MANIFEST, REAL_ENV, REAL_RAW, manifest, needs_real_raw, real_missing

FIELDS = {"file", "origin", "url", "licence", "sha256", "size", "exercises"}
ORIGIN = {"repository", "commit", "path"}
NOT_LISTED = {"SOURCES.md"}  # the folder's own notes, not a test file


def _files() -> list[dict]:
    return manifest()["files"]


def test_manifest_is_well_formed():
    m = manifest()
    assert m["env"] == REAL_ENV
    assert m["url_pattern"] == "https://raw.githubusercontent.com/{repository}/{commit}/{path}"
    files = m["files"]
    assert files, MANIFEST
    names = [f["file"] for f in files]
    assert len(set(names)) == len(names), "a file listed twice"
    for f in files:
        assert set(f) == FIELDS, f["file"]
        name = PurePosixPath(f["file"])
        assert not name.is_absolute() and ".." not in name.parts and "\\" not in f["file"], f["file"]
        o = f["origin"]
        assert set(o) == ORIGIN, f["file"]
        assert re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", o["repository"]), o
        assert re.fullmatch(r"[0-9a-f]{40}", o["commit"]), o  # full commits: the URL names one file version
        assert o["path"] and not o["path"].startswith("/"), o
        assert f["url"] == m["url_pattern"].format(repository=o["repository"], commit=o["commit"],
                                                   path=quote(o["path"])), f["file"]
        assert re.fullmatch(r"[0-9a-f]{64}", f["sha256"]), f["file"]
        assert isinstance(f["size"], int) and f["size"] > 0, f["file"]
        assert f["licence"].strip() and f["exercises"].strip(), f["file"]
    # The 8-frame burst that the noise-profile test and the burst benchmark score against.
    assert sum(n.startswith("burst_lowlight/") for n in names) == 8


@needs_real_raw
@pytest.mark.parametrize("entry", _files(), ids=lambda f: f["file"])
def test_present_files_match_the_manifest(entry):
    path = REAL_RAW / entry["file"]
    if not path.is_file():
        pytest.skip(real_missing(entry["file"]))
    data = path.read_bytes()
    size, digest = len(data), hashlib.sha256(data).hexdigest()
    assert size == entry["size"], f"{entry['file']}: {size} bytes, the manifest says {entry['size']}"
    assert digest == entry["sha256"], (
        f"{entry['file']}: sha256 differs from datasets/real_raw.json (another version of the file? "
        f"fetch it from {entry['url']})")


@needs_real_raw
def test_every_file_in_the_folder_is_listed():
    listed = {f["file"] for f in _files()}
    present = {p.relative_to(REAL_RAW).as_posix() for p in REAL_RAW.rglob("*")
               if p.is_file() and not p.name.startswith(".")}
    unlisted = sorted(present - listed - NOT_LISTED)
    assert not unlisted, f"in {REAL_RAW} but not in datasets/real_raw.json: {unlisted}"
