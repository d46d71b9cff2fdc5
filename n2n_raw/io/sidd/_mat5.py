"""A structural check of MATLAB v5 MAT files, run before scipy parses one.

Why: scipy's compiled MAT v5 reader trusts the file. A data-element type code it does not know indexes a
C array out of bounds (``VarReader5.read_char`` / ``read_numeric``: ``self.dtypes[mdtype]``), and a
damaged size field misaligns the stream until that happens, so one flipped byte in a metadata file can
kill the process with a segmentation fault instead of raising (scipy 1.17; found by
tests/test_fuzz_readers.py). A damaged dimension can also ask for hundreds of GiB (``MemoryError``).

:func:`check_mat5` walks the element tree (format: MathWorks, "MAT-File Format", v5 chapter) and raises
``ValueError`` naming the first inconsistency: every tag's type must be one the format defines and the
position expects, every element must fit in its parent, and the element counts a header declares (cells,
struct fields) must fit in the bytes that remain. Numeric payloads are skipped, not read, so the check
costs one pass of I/O (and one decompression of ``miCOMPRESSED`` elements, streamed in bounded memory).
It does not check what scipy checks well itself (payload sizes against dims, text decoding).
"""
from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

# Data types (miXXX).
MI_INT8, MI_UINT8, MI_INT16, MI_UINT16, MI_INT32, MI_UINT32 = 1, 2, 3, 4, 5, 6
MI_MATRIX, MI_COMPRESSED, MI_UTF8, MI_UTF16, MI_UTF32 = 14, 15, 16, 17, 18
_NUMERIC = {1, 2, 3, 4, 5, 6, 7, 9, 12, 13}   # (u)int8 ... (u)int32, single 7, double 9, (u)int64 12-13
_INT32S = {MI_INT32, MI_UINT32}       # scipy takes miUINT32 where int32 belongs (non-negative values)
_CHAR = {MI_INT8, MI_UINT8, MI_UINT16, MI_UTF8, MI_UTF16, MI_UTF32}
# Array classes (mxXXX).
MX_CELL, MX_STRUCT, MX_OBJECT, MX_CHAR, MX_SPARSE = 1, 2, 3, 4, 5
_MX_NUMERIC = range(6, 16)            # double, single, int8 ... uint64
_MAX_DIMS = 32                        # scipy's limit
_CHUNK = 1 << 16
_MAX_KEPT = 1 << 20                   # flags, dims and names are small; a larger count is damage


class _Stream:
    """Forward-only bytes: a file's (``limit`` of them from its position), or the inflated bytes of one
    ``miCOMPRESSED`` element of ``limit`` compressed bytes."""

    def __init__(self, f: BinaryIO, limit: int, compressed: bool):
        self.f, self.left = f, limit            # left: bytes of f this stream may still take
        self.z = zlib.decompressobj() if compressed else None
        self.buf = b""

    def _raw(self, n: int) -> bytes:
        chunk = self.f.read(min(n, self.left))
        self.left -= len(chunk)
        return chunk

    def _inflate(self, want: int) -> bytes:
        src = self.z.unconsumed_tail or self._raw(_CHUNK)
        if not src:
            return b""
        try:
            return self.z.decompress(src, want)
        except zlib.error as e:
            raise ValueError(f"damaged compressed element ({e})") from None

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            if self.z is None:
                more = self._raw(n - len(self.buf))
                if not more:
                    raise ValueError("truncated: an element runs past the end of the file")
            elif self.z.eof or not (self.z.unconsumed_tail or self.left):
                raise ValueError("truncated: an element runs past the end of its compressed variable")
            else:
                more = self._inflate(n - len(self.buf))   # may be empty while zlib takes input
            self.buf += more
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def skip(self, n: int) -> None:
        if self.z is None and n > len(self.buf):   # a file: seek past numeric payloads, read nothing
            n -= len(self.buf)
            self.buf = b""
            if n > self.left:
                raise ValueError("truncated: an element runs past the end of the file")
            self.f.seek(n, 1)
            self.left -= n
            return
        while n > 0:
            k = min(n, _CHUNK)
            self.read(k)
            n -= k

    def finish_compressed(self) -> None:
        """The element's compressed bytes are one complete zlib stream that inflates to nothing more."""
        while not self.buf and not self.z.eof and (self.z.unconsumed_tail or self.left):
            self.buf = self._inflate(1)
        if self.buf:
            raise ValueError("a compressed element holds more than its one variable")
        if not self.z.eof:
            raise ValueError("truncated or damaged compressed element (the zlib stream does not end)")


class _Walker:
    def __init__(self, endian: str):
        self.e = endian

    def tag(self, s: _Stream, room: int) -> tuple[int, int, bytes | None, int]:
        """One element tag -> (type, byte count, inline data of a small element or None, bytes the whole
        element takes with its padding). ``room``: bytes left in the parent."""
        if room < 8:
            raise ValueError("an element tag runs past the end of its parent")
        raw = s.read(8)
        first, second = struct.unpack(self.e + "II", raw)
        if first >> 16:   # small data element: type and count packed in 4 bytes, data in the next 4
            mdtype, n = first & 0xFFFF, first >> 16
            if n > 4:
                raise ValueError(f"small data element of {n} bytes (at most 4)")
            return mdtype, n, raw[4:4 + n], 8
        total = 8 + second + (-second % 8)
        if total > room:
            raise ValueError(f"an element of {second} bytes (type {first}) runs past the end of its parent")
        return first, second, None, total

    def payload(self, s: _Stream, n: int, inline: bytes | None, total: int) -> bytes:
        if inline is not None:
            return inline
        data = s.read(n)
        s.skip(total - 8 - n)
        return data

    def element(self, s: _Stream, room: int, allowed: set, what: str, keep: bool = False):
        """Check one non-matrix element of a type in ``allowed``; returns (type, bytes used, data or None)."""
        mdtype, n, inline, total = self.tag(s, room)
        if mdtype not in allowed:
            raise ValueError(f"{what}: data type {mdtype} is not one of {sorted(allowed)}")
        if keep:
            if n > _MAX_KEPT:
                raise ValueError(f"{what}: {n} bytes")
            return mdtype, total, self.payload(s, n, inline, total)
        if inline is None:
            s.skip(total - 8)
        return mdtype, total, None

    def matrix(self, s: _Stream, room: int) -> int:
        """One ``miMATRIX`` element (tag included) inside ``room`` bytes; returns the bytes it used."""
        mdtype, n, inline, total = self.tag(s, room)
        if mdtype != MI_MATRIX or inline is not None:
            raise ValueError(f"expected a matrix element (type {MI_MATRIX}), found type {mdtype}")
        self.matrix_body(s, n)
        s.skip(total - 8 - n)
        return total

    def matrix_body(self, s: _Stream, n: int) -> None:
        """The ``n`` bytes of a matrix element after its tag: flags, dims, name, then the class's data."""
        left = n
        if left == 0:          # an empty matrix []
            return
        _, used, flags = self.element(s, left, {MI_UINT32}, "array flags", keep=True)
        left -= used
        if len(flags) != 8:
            raise ValueError("array flags are not 8 bytes")
        flags_class, _ = struct.unpack(self.e + "II", flags)
        mclass, is_complex = flags_class & 0xFF, bool(flags_class >> 11 & 1)
        if mclass not in (MX_CELL, MX_STRUCT, MX_OBJECT, MX_CHAR, MX_SPARSE) and mclass not in _MX_NUMERIC:
            raise ValueError(f"array class {mclass} is not supported (function handles and opaque objects "
                             f"have no place in SIDD data)")
        _, used, dims_raw = self.element(s, left, _INT32S, "dimensions", keep=True)
        left -= used
        if len(dims_raw) % 4 or not 8 <= len(dims_raw) <= 4 * _MAX_DIMS:
            raise ValueError(f"dimensions element of {len(dims_raw)} bytes (2 to {_MAX_DIMS} int32)")
        dims = struct.unpack(self.e + f"{len(dims_raw) // 4}i", dims_raw)
        if min(dims) < 0:
            raise ValueError(f"negative dimension in {dims}")
        count = 1
        for d in dims:
            count *= d
        _, used, _ = self.element(s, left, {MI_INT8, MI_UTF8}, "array name")
        left -= used

        if mclass in _MX_NUMERIC:
            for part in ("real part", "imaginary part")[:1 + is_complex]:
                _, used, _ = self.element(s, left, _NUMERIC, part)
                left -= used
        elif mclass == MX_CHAR:
            mdt, n_c, inline, tot = self.tag(s, left)
            if n_c and mdt not in _CHAR:
                raise ValueError(f"text: data type {mdt} is not one of {sorted(_CHAR)}")
            if inline is None:
                s.skip(tot - 8)
            left -= tot
        elif mclass == MX_SPARSE:
            for part in ("row indices", "column indices", "values", "imaginary values")[:3 + is_complex]:
                _, used, _ = self.element(s, left, _NUMERIC, part)
                left -= used
        else:
            n_fields = 1
            if mclass == MX_OBJECT:
                _, used, _ = self.element(s, left, {MI_INT8, MI_UTF8}, "class name")
                left -= used
            if mclass in (MX_STRUCT, MX_OBJECT):
                n_fields, used = self.field_names(s, left)
                left -= used
            # Each member is a matrix element of at least 8 bytes: bounds the count a damaged dim declares.
            if count * n_fields * 8 > left:
                raise ValueError(f"dimensions {dims} declare {count * n_fields} members in {left} bytes")
            for _ in range(count * n_fields):
                left -= self.matrix(s, left)
        s.skip(left)           # padding MATLAB may leave at the end of a matrix

    def field_names(self, s: _Stream, room: int) -> tuple[int, int]:
        _, used, data = self.element(s, room, _INT32S, "field name length", keep=True)
        if len(data) != 4:
            raise ValueError("field name length is not one int32")
        (length,) = struct.unpack(self.e + "i", data)
        _, used2, names = self.element(s, room - used, {MI_INT8, MI_UTF8}, "field names", keep=True)
        if not names:
            return 0, used + used2
        if length <= 0 or len(names) % length:
            raise ValueError(f"{len(names)} bytes of field names do not split into names of {length}")
        for k in range(0, len(names), length):
            name = names[k:k + length]
            if 0 not in name or max(name) > 127:
                raise ValueError("a field name is not NUL-terminated ASCII")
        return len(names) // length, used + used2


def check_mat5(f: BinaryIO, size: int) -> None:
    """Raise ValueError unless the v5 MAT file in ``f`` (``size`` bytes, position anywhere) is well formed.

    A v5 file: a 128-byte header (116 bytes of text, subsystem offset, version 0x0100, endian mark
    ``IM`` little / ``MI`` big), then top-level variables, each an ``miMATRIX`` element or an
    ``miCOMPRESSED`` element holding exactly one (zlib).
    """
    f.seek(0)
    head = f.read(128)
    if len(head) < 4 or 0 in head[:4]:   # how scipy tells v4 (binary first bytes) from v5 (header text)
        raise ValueError("not a v5 MAT file (a MATLAB v4 file, or no MAT header)")
    if len(head) < 128:
        raise ValueError("truncated within the 128-byte header")
    mark = head[126:128]
    if mark not in (b"IM", b"MI"):
        raise ValueError(f"no endian mark IM/MI in the header (found {mark!r})")
    endian = "<" if mark == b"IM" else ">"
    (version,) = struct.unpack(endian + "H", head[124:126])
    if version != 0x0100:
        raise ValueError(f"header version 0x{version:04x}; a v5 MAT file has 0x0100")
    w, pos = _Walker(endian), 128
    while pos < size:
        if size - pos < 8:
            raise ValueError(f"{size - pos} stray bytes at the end")
        f.seek(pos)
        mdtype, n = struct.unpack(endian + "II", f.read(8))
        if n > size - pos - 8:
            raise ValueError(f"a variable of {n} bytes runs past the end of the file (truncated)")
        if mdtype == MI_COMPRESSED:
            s = _Stream(f, n, compressed=True)
            inner, inner_n, inline, _ = w.tag(s, 1 << 62)
            if inner != MI_MATRIX or inline is not None:
                raise ValueError(f"a compressed variable holds type {inner}, not a matrix")
            w.matrix_body(s, inner_n)
            s.finish_compressed()
        elif mdtype == MI_MATRIX:
            w.matrix_body(_Stream(f, n, compressed=False), n)
        else:
            raise ValueError(f"a top-level element of type {mdtype} (a variable is type 14 or 15)")
        pos += 8 + n
