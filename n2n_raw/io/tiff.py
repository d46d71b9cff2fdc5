"""TIFF directories as bytes: read every entry of a file's IFDs, write a new file that carries them.

A denoised DNG is its source with new pixels, so its tags are copied as the bytes the source stored, in the
source's byte order, not re-encoded. Why a reader and writer of our own: tifffile (the tests' independent
reader) writes arbitrary tags but not IFD-type tags ("Extratags cannot be used to write IFD type tags"), and
pidng writes a fixed tag set; neither can carry an EXIF, GPS or Interoperability directory. Classic TIFF
only (DNG files are classic TIFF; BigTIFF is refused).

- :func:`read_tiff` → ``(byteorder, [IFD0, IFD1, ...])``: :class:`Node` trees whose children are the
  SubIFDs / EXIF / GPS / Interop directories.
- :func:`write_tiff` writes one :class:`Node` tree (IFD0 with one uncompressed strip) and returns the bytes.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

# Byte size of one value of each TIFF field type (1 BYTE ... 13 IFD; 16-18 are BigTIFF's 8-byte types).
TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
              16: 8, 17: 8, 18: 8}
_FORMATS = {1: "B", 3: "H", 4: "I", 5: "I", 6: "b", 7: "B", 8: "h", 9: "i", 10: "i", 11: "f", 12: "d", 13: "I"}
#: Tags whose values are offsets of further directories (followed and rewritten, never copied as bytes).
POINTER_TAGS = {330: "SubIFDs", 34665: "ExifIFD", 34853: "GPSInfo", 40965: "InteroperabilityIFD"}
MAX_ENTRIES = 4096  # a damaged file must not make us read millions of entries
MAX_IFDS = 64


class TiffError(ValueError):
    """The file is not a TIFF this module can read (a one-line reason)."""


@dataclass
class Entry:
    """One IFD entry: ``data`` holds ``count`` values of ``type`` as stored (the file's byte order)."""

    tag: int
    type: int
    count: int
    data: bytes

    def values(self, byteorder: str) -> tuple:
        """Decoded numbers (RATIONAL/SRATIONAL as floats), or the ASCII text as a 1-tuple."""
        if self.type == 2:
            return (self.data.split(b"\x00", 1)[0].decode("latin-1"),)
        fmt = _FORMATS.get(self.type)
        if fmt is None:
            return ()
        n = self.count * (2 if self.type in (5, 10) else 1)
        raw = struct.unpack(f"{byteorder}{n}{fmt}", self.data[:n * struct.calcsize(fmt)])
        if self.type in (5, 10):
            return tuple(a / b if b else float("nan") for a, b in zip(raw[::2], raw[1::2]))
        return raw


@dataclass
class Node:
    """One directory: its entries by tag, and the directories its pointer tags lead to."""

    entries: dict[int, Entry] = field(default_factory=dict)
    children: dict[int, list["Node"]] = field(default_factory=dict)

    def value(self, tag: int, byteorder: str, default=None):
        e = self.entries.get(tag)
        if e is None:
            return default
        v = e.values(byteorder)
        return v[0] if len(v) == 1 else v


def _parse(buf: bytes, offset: int, bo: str, seen: set[int], depth: int) -> tuple[Node, int]:
    if depth > 4 or offset in seen or not 8 <= offset <= len(buf) - 2:
        raise TiffError(f"bad directory offset {offset}")
    seen.add(offset)
    (n,) = struct.unpack_from(f"{bo}H", buf, offset)
    if n > MAX_ENTRIES or offset + 2 + 12 * n + 4 > len(buf):
        raise TiffError(f"directory at {offset} is truncated or damaged ({n} entries)")
    node = Node()
    for i in range(n):
        tag, typ, count, raw = struct.unpack_from(f"{bo}HHI4s", buf, offset + 2 + 12 * i)
        size = TYPE_SIZES.get(typ)
        if size is None:
            continue  # unknown type: a reader must skip it
        nbytes = size * count
        if nbytes <= 4:
            data = raw[:nbytes]
        else:
            (at,) = struct.unpack(f"{bo}I", raw)
            if at + nbytes > len(buf):
                raise TiffError(f"tag {tag} points past the end of the file")
            data = buf[at:at + nbytes]
        entry = Entry(tag, typ, count, data)  # a repeated tag (a writer's bug): the last counts, as in LibRaw
        if tag in POINTER_TAGS and typ in (4, 13):
            node.children[tag] = [_parse(buf, off, bo, seen, depth + 1)[0] for off in entry.values(bo)[:MAX_IFDS]]
        else:
            node.entries[tag] = entry
    (nxt,) = struct.unpack_from(f"{bo}I", buf, offset + 2 + 12 * n)
    return node, nxt


def read_tiff(buf: bytes) -> tuple[str, list[Node]]:
    """Parse a classic TIFF held in memory.

    Returns:
        (byteorder ``"<"`` or ``">"``, the main chain of directories IFD0, IFD1, ...), each with its
        SubIFDs/EXIF/GPS/Interop children parsed; pointer tags appear only as ``children``.
    Raises:
        TiffError: not a classic TIFF, or damaged directories.
    """
    if len(buf) < 8 or buf[:2] not in (b"II", b"MM"):
        raise TiffError("not a TIFF file")
    bo = "<" if buf[:2] == b"II" else ">"
    magic, first = struct.unpack_from(f"{bo}HI", buf, 2)
    if magic == 43:
        raise TiffError("BigTIFF is not supported")
    if magic != 42:  # some camera raws (ORF, RW2) use their own magic number with TIFF directories
        if magic not in (0x4F52, 0x5352, 0x55):
            raise TiffError(f"unknown TIFF magic {magic}")
    seen: set[int] = set()
    chain, offset = [], first
    while offset and len(chain) < MAX_IFDS:
        node, offset = _parse(buf, offset, bo, seen, 0)
        chain.append(node)
    if not chain:
        raise TiffError("no image directory")
    return bo, chain


def entry(tag: int, typ: int, values, byteorder: str) -> Entry:
    """Build an entry from Python values (ASCII: a str; RATIONAL types: (numerator, denominator) pairs
    flattened; others: numbers)."""
    if typ == 2:
        data = values.encode("ascii", "replace") + b"\x00"
        return Entry(tag, 2, len(data), data)
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    if typ == 7 and isinstance(values[0], (bytes, bytearray)):
        return Entry(tag, 7, len(values[0]), bytes(values[0]))
    data = struct.pack(f"{byteorder}{len(values)}{_FORMATS[typ]}", *values)
    return Entry(tag, typ, len(values) // (2 if typ in (5, 10) else 1), data)


def _pad(n: int) -> int:
    return n + (n & 1)


def _size(node: Node) -> int:
    """Bytes of one directory: count, entries, next-offset, then its out-of-line values."""
    n = len(node.entries) + len(node.children)
    out_of_line = sum(_pad(len(e.data)) for e in node.entries.values() if len(e.data) > 4)
    out_of_line += sum(4 * len(k) for k in node.children.values() if len(k) > 1)
    return 2 + 12 * n + 4 + out_of_line


def _layout(node: Node, at: int, places: dict[int, int]) -> int:
    """Give ``node`` and (after it) its children their offsets; returns the next free offset."""
    places[id(node)] = at
    at += _size(node)
    for kids in node.children.values():
        for kid in kids:
            at = _layout(kid, at, places)
    return at


def _emit(node: Node, bo: str, places: dict[int, int], out: bytearray) -> None:
    at = places[id(node)]
    assert len(out) == at
    items: list[tuple[int, int, int, bytes]] = [(e.tag, e.type, e.count, e.data) for e in node.entries.values()]
    for tag, kids in node.children.items():
        items.append((tag, 4, len(kids), struct.pack(f"{bo}{len(kids)}I", *(places[id(k)] for k in kids))))
    items.sort(key=lambda t: t[0])  # TIFF requires ascending tags
    head = bytearray(struct.pack(f"{bo}H", len(items)))
    tail = bytearray()
    data_at = at + 2 + 12 * len(items) + 4
    for tag, typ, count, data in items:
        if len(data) <= 4:
            head += struct.pack(f"{bo}HHI", tag, typ, count) + data.ljust(4, b"\x00")
        else:
            head += struct.pack(f"{bo}HHII", tag, typ, count, data_at + len(tail))
            tail += data + b"\x00" * (len(data) & 1)
    head += struct.pack(f"{bo}I", 0)  # one directory in the main chain
    out += head + tail
    for kids in node.children.values():
        for kid in kids:
            _emit(kid, bo, places, out)


def write_tiff(root: Node, strip: bytes, byteorder: str) -> bytes:
    """Serialise ``root`` as IFD0 of a classic TIFF whose only image data is ``strip``.

    ``root`` must hold StripOffsets (273) and StripByteCounts (279) entries of type LONG, count 1 (their values
    are set here). Layout: header, strip, IFD0, then every child directory; values word-aligned.
    """
    if len(strip) + 4096 >= 2 ** 32:
        raise ValueError("image too large for a classic TIFF")
    bo = byteorder
    strip_at = 8
    root.entries[273] = entry(273, 4, strip_at, bo)
    root.entries[279] = entry(279, 4, len(strip), bo)
    ifd_at = _pad(strip_at + len(strip))
    places: dict[int, int] = {}
    end = _layout(root, ifd_at, places)
    out = bytearray((b"II" if bo == "<" else b"MM") + struct.pack(f"{bo}HI", 42, ifd_at))
    out += strip
    out += b"\x00" * (ifd_at - len(out))
    _emit(root, bo, places, out)
    assert len(out) == end
    return bytes(out)
