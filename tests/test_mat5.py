"""The MAT v5 structure check that runs before scipy parses a user's file (n2n_raw/io/sidd/_mat5.py).

scipy's compiled reader indexes a C array with a data-type code read from the file: one damaged byte in
a metadata file crashed the whole test run with a segmentation fault (CI, exit 139). The check must pass
every well-formed v5 file (MATLAB's own, in scipy's test corpus, both byte orders, compressed or not) and
turn every damaged one into a one-line InputError. A crash can not be caught in-process, so the cases
that crashed before run in a forked child.
"""
from __future__ import annotations

import io
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse

from realdata import REAL_RAW, real_missing
from n2n_raw.errors import InputError
from n2n_raw.io import sidd
from n2n_raw.io.sidd._mat5 import check_mat5

SCIPY_CORPUS = Path(scipy.io.__file__).parent / "matlab" / "tests" / "data"
REAL_META = REAL_RAW / "sidd_0001_METADATA_RAW_010.MAT"


def _check_bytes(data: bytes) -> None:
    check_mat5(io.BytesIO(data), len(data))


def _v5_files() -> list[Path]:
    """MATLAB-written v5 files of scipy's corpus (a v5 file's header starts with text, version 0x0100)."""
    out = []
    for p in sorted(SCIPY_CORPUS.glob("*.mat")) if SCIPY_CORPUS.is_dir() else []:
        head = p.read_bytes()[:128]
        if len(head) == 128 and 0 not in head[:4] and head[124:126] in (b"\x00\x01", b"\x01\x00"):
            out.append(p)
    return out


# The check refuses these: damaged on purpose (scipy refuses them too), or they hold function handles, which
# no SIDD file has. (bad_miutf8_array_name.mat passes: its only fault is a name scipy decodes and rejects.)
_REFUSED = {"bad_miuint32.mat", "corrupted_zlib_checksum.mat",
            "corrupted_zlib_data.mat", "malformed1.mat",
            "parabola.mat", "some_functions.mat", "sqr.mat", "testfunc_7.4_GLNX86.mat"}


@pytest.mark.skipif(not _v5_files(), reason="scipy's MAT test corpus is not installed")
def test_matlab_written_v5_files_pass_and_damaged_ones_fail():
    """An independent source: files MATLAB 5.3-7.4 wrote (cells, structs, objects, sparse, complex, UTF-8,
    big-endian, compressed). Every one scipy reads as data passes; scipy's damaged samples fail."""
    files = _v5_files()
    assert len(files) > 60
    passed = set()
    for p in files:
        try:
            _check_bytes(p.read_bytes())
            passed.add(p.name)
        except ValueError:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                scipy.io.loadmat(p)
            except ValueError:
                assert p.name == "bad_miutf8_array_name.mat"   # a name scipy decodes and rejects: fine
    assert {"big_endian.mat", "little_endian.mat", "testsimplecell.mat", "teststructnest_7.4_GLNX86.mat",
            "testobject_7.4_GLNX86.mat", "testsparsecomplex_7.4_GLNX86.mat"} <= passed
    assert passed == {p.name for p in files} - _REFUSED


@pytest.mark.parametrize("compress", [False, True])
def test_scipy_written_variety_passes(tmp_path, compress):
    """Every class the reader supports, through scipy.io.savemat, compressed or not; zero-size arrays too."""
    variables = {
        "f32": np.arange(15, dtype=np.float32).reshape(3, 5), "c": np.array([1 + 2j, 3 - 1j]),
        "i64": np.array([[-(2 ** 40)]], np.int64), "b": np.array([True, False]), "empty": np.zeros((0, 3)),
        "text": "Ünïcode ✓", "texts": np.array(["ab", "cd"]), "cells": np.array([[1.0, "x"], [[], {"a": 1}]],
                                                                                 dtype=object),
        "st": {"Make": "samsung", "nested": {"ID": np.uint16(33422), "Value": np.array([1, 0, 2, 1], np.uint8)}},
        "sparse": scipy.sparse.csc_array(np.array([[0, 1.5], [2.0, 0]])),
    }
    p = tmp_path / "v.mat"
    scipy.io.savemat(p, variables, do_compression=compress)
    _check_bytes(p.read_bytes())


def test_real_sidd_metadata_passes():
    if not REAL_META.is_file():
        pytest.skip(real_missing(REAL_META.name))
    _check_bytes(REAL_META.read_bytes())


def _synthetic_metadata(tmp_path) -> Path:
    p = tmp_path / "0001_METADATA_RAW_010.MAT"
    sidd.write_metadata(p, make="samsung", model="SM-G925V", cfa="GRBG", width=8, height=6, iso=800,
                        cfa_in="SubIFDs", force=True)
    return p


def _offset_of_char_payload_tag(data: bytes, text: bytes) -> int:
    """Byte offset of the data-element tag before ``text`` (a char array's payload, miUTF8, regular tag)."""
    at = data.index(text)
    assert int.from_bytes(data[at - 8:at - 4], "little") == 16 and \
        int.from_bytes(data[at - 4:at], "little") == len(text)
    return at - 8


def _in_child(fn) -> str:
    """Run ``fn()`` in a forked child: 'ok', 'InputError', another exception's name, or 'signal N'."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # child: report, never return into pytest
        os.close(r)
        try:
            fn()
            out = "ok"
        except InputError:
            out = "InputError"
        except BaseException as e:   # noqa: BLE001
            out = type(e).__name__
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as fh:
        out = fh.read()
    _, status = os.waitpid(pid, 0)
    return f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else out


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork")
@pytest.mark.parametrize("value", [0x00, 0x7F, 0xFF])
def test_damaged_type_code_that_crashed_scipy_is_an_input_error(tmp_path, value):
    """The type code of a char array's payload, overwritten: scipy 1.17 alone dies of SIGSEGV here."""
    p = _synthetic_metadata(tmp_path)
    data = bytearray(p.read_bytes())
    data[_offset_of_char_payload_tag(bytes(data), b"0001_RAW_010.dng")] = value
    p.write_bytes(bytes(data))
    assert _in_child(lambda: sidd.read_metadata(p)) == "InputError"
    with pytest.raises(InputError, match=r"not a readable MATLAB v5 file.*data type"):
        sidd.read_metadata(p)


def test_damaged_dimension_is_an_input_error_not_a_memory_error(tmp_path):
    """The top-level struct declared 0x7F000001 x 1: scipy asked for 333 GiB and raised MemoryError."""
    p = _synthetic_metadata(tmp_path)
    data = bytearray(p.read_bytes())
    dims = data.index(b"metadata") - 16        # the dims element (miINT32, 8 bytes) precedes the name
    assert data[dims - 8:dims] == (5).to_bytes(4, "little") + (8).to_bytes(4, "little")
    data[dims + 3] = 0x7F
    p.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"dimensions \(2130706433, 1\) declare"):
        sidd.read_metadata(p)


def test_every_single_byte_change_is_read_or_refused(tmp_path):
    """Each byte of a metadata file, in turn, flipped: the reader returns or raises InputError, never
    anything else (before the check, 302 of 13,664 such edits crashed or raised MemoryError)."""
    p = _synthetic_metadata(tmp_path)
    data = p.read_bytes()
    outcomes = {"read": 0, "refused": 0}
    for i in range(len(data)):
        d = bytearray(data)
        d[i] ^= 0xFF
        q = tmp_path / f"e{i}.MAT"
        q.write_bytes(bytes(d))
        try:
            sidd.read_metadata(q)
            outcomes["read"] += 1
        except InputError as e:
            assert "\n" not in str(e) and str(q) in str(e)
            outcomes["refused"] += 1
        q.unlink()
    # Header text and payload bytes may change harmlessly; structure bytes must be refused.
    assert outcomes["refused"] > len(data) // 4 and outcomes["read"] > 0, outcomes


@pytest.mark.parametrize("cut", [0, 3, 100, 127, 135, 500, -8, -1])
def test_truncated_file_refused(tmp_path, cut):
    p = _synthetic_metadata(tmp_path)
    data = p.read_bytes()
    with pytest.raises(ValueError):
        _check_bytes(data[:cut])


def test_header_alone_is_an_empty_file(tmp_path):
    """128 bytes of header and no variable: well formed (MATLAB writes it for save with nothing)."""
    p = _synthetic_metadata(tmp_path)
    p.write_bytes(p.read_bytes()[:128])
    _check_bytes(p.read_bytes())
    with pytest.raises(InputError, match="no variable 'metadata'"):
        sidd.read_metadata(p)


def test_trailing_garbage_and_v4_and_v73_refused(tmp_path):
    p = _synthetic_metadata(tmp_path)
    data = p.read_bytes()
    _check_bytes(data)
    with pytest.raises(ValueError, match="stray bytes"):
        _check_bytes(data + b"\0" * 5)
    with pytest.raises(ValueError, match="v4"):
        _check_bytes(b"\0\0\0\0" + data[4:])
    with pytest.raises(ValueError, match="version 0x0200"):
        _check_bytes(sidd.matlab73_header() + data[128:])
