"""CASIA-HWDB offline isolated characters: the `.gnt` format, where the files are, and the label sets.

A `.gnt` file is records back to back, each:

    uint32 LE   sample size in bytes, this 10-byte header included
    2 bytes     tag code: the character's GB2312/GBK code, lead byte first
    uint16 LE   width
    uint16 LE   height
    width x height uint8 pixels, row by row, dark ink on white (255)

Records are read from a stream one at a time (never a whole file, never the whole corpus),
and a record that breaks the format raises `DataError` naming the file, the record number
and its byte offset: a truncated header or body, a size that disagrees with width x height,
a zero width or height, a tag code that is not one GBK character, an empty file.

A source (`data_source: casia-hwdb:PATH`) is a folder holding `.gnt` files and/or the
official zip archives (searched recursively), or one zip archive. Zip members are read as
streams; nothing is extracted. A file's writer comes from its name: `1001-c.gnt` -> 1001.
"""

from __future__ import annotations

import codecs
import os
import re
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path, PurePosixPath
from typing import BinaryIO, NamedTuple

import numpy as np

from hccr.errors import ConfigError, DataError

SOURCE_PREFIX = "casia-hwdb:"
HEADER = struct.Struct("<I2sHH")
MEMBER_SEPARATOR = "!"  # "archive.zip!member.gnt" names a zip member in the index's `path`
WRITER_PATTERN = re.compile(r"^(\d+)-[^/\\]*\.gnt$", re.IGNORECASE)
READ_BUFFER = 1 << 20

# The official HWDB1.1 writer split (also used for HWDB1.0 + 1.1 training in the literature).
OFFICIAL_TRAIN_WRITERS = range(1001, 1241)
OFFICIAL_TEST_WRITERS = range(1241, 1301)

LABEL_SETS = ("level1", "level1+symbols", "all")


def source_path(data_source: str) -> Path | None:
    """PATH of a `casia-hwdb:PATH` data source; None for any other source."""
    if not str(data_source).startswith(SOURCE_PREFIX):
        return None
    rest = str(data_source)[len(SOURCE_PREFIX) :]
    if not rest:
        raise ConfigError(f"data_source: {data_source!r} names no path (casia-hwdb:PATH)")
    return Path(rest).expanduser()


# ---------------------------------------------------------------------------- records


class Record(NamedTuple):
    """One sample: where it starts in its file, its GBK tag bytes, size, and pixels (or None)."""

    offset: int
    tag: bytes
    width: int
    height: int
    pixels: bytes | None

    def image(self) -> np.ndarray:
        """The pixels as a (height, width) uint8 array (a view, no copy)."""
        return np.frombuffer(self.pixels, dtype=np.uint8).reshape(self.height, self.width)


@cache
def tag_character(tag: bytes) -> str | None:
    """The one character a 2-byte GBK tag code stands for, or None if it is not one."""
    if len(tag) != 2 or tag[0] < 0x81 or tag[1] < 0x40:
        return None
    try:
        text = codecs.decode(tag, "gbk")
    except UnicodeDecodeError:
        return None
    return text if len(text) == 1 else None


def tag_code(tag: bytes) -> int:
    """The tag as one integer, lead byte high (0xB0A1 for 啊), as the CASIA docs write it."""
    return (tag[0] << 8) | tag[1]


def iter_records(
    stream: BinaryIO, name: str, total_size: int, pixels: bool = True, chunk: int = READ_BUFFER
) -> Iterator[Record]:
    """Every record of a `.gnt` stream of `total_size` bytes, in order; DataError at the first bad one.

    The stream is read in `chunk`-byte blocks and records are cut out of them (two small reads
    per record would cost more than the parsing). With `pixels=False` the records carry no
    pixel bytes: all the index needs.
    """
    if total_size == 0:
        raise DataError(f"{name}: empty file (no records)")
    unpack, header = HEADER.unpack_from, HEADER.size
    buffer, pos = b"", 0  # pos: where the next record starts in buffer
    offset = number = 0  # its byte offset in the file, and its number
    while offset < total_size:
        if len(buffer) - pos < header:
            buffer, pos = buffer[pos:] + stream.read(chunk), 0
            if len(buffer) < header:
                _bad(name, number, offset, f"truncated header ({len(buffer)} of {header} bytes before the end)")
        size, tag, width, height = unpack(buffer, pos)
        if size != header + width * height or not width or not height or offset + size > total_size:
            _bad(name, number, offset, _size_problem(size, width, height, total_size - offset))
        if tag_character(tag) is None:
            _bad(name, number, offset, f"unknown tag code 0x{tag.hex().upper()} (not one GB2312/GBK character)")
        if len(buffer) - pos < size:
            buffer, pos = buffer[pos:] + stream.read(max(chunk, size)), 0
            if len(buffer) < size:
                _bad(name, number, offset, f"truncated record (the file ends {size - len(buffer)} bytes early)")
        yield Record(offset, tag, width, height, buffer[pos + header : pos + size] if pixels else None)
        pos += size
        offset += size
        number += 1


def _size_problem(size: int, width: int, height: int, left: int) -> str:
    if not width or not height:
        return f"empty image ({width}x{height})"
    if size != HEADER.size + width * height:
        return f"sample size {size} disagrees with {width}x{height} pixels (expected {HEADER.size + width * height})"
    return f"truncated record ({size} bytes announced, {left} left)"


def _bad(name: str, number: int, offset: int, problem: str) -> None:
    raise DataError(f"{name}: record {number} at byte offset {offset}: {problem}")


# ---------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class GntFile:
    """One `.gnt` file of a source: a plain file, or a member of a zip archive."""

    name: str  # as the index records it: "a/1001-c.gnt" or "HWDB1.1trn_gnt.zip!1001-c.gnt"
    path: Path  # the file, or the archive holding the member
    member: str | None = None

    @property
    def writer(self) -> int:
        return writer_of(self.name)

    @property
    def size(self) -> int:
        if self.member is None:
            return self.path.stat().st_size
        with zipfile.ZipFile(self.path) as archive:
            return archive.getinfo(self.member).file_size

    def open(self) -> BinaryIO:
        """A binary stream over the file's bytes (a zip member is decompressed as it is read)."""
        if self.member is None:
            return open(self.path, "rb", buffering=READ_BUFFER)
        # The member stream holds its own reference to the archive's file: closing the
        # ZipFile here leaves it readable until the stream itself is closed.
        with zipfile.ZipFile(self.path) as archive:
            return archive.open(self.member)

    def records(self, pixels: bool = True) -> Iterator[Record]:
        with self.open() as stream:
            yield from iter_records(stream, self.name, self.size, pixels=pixels)


def writer_of(name: str) -> int:
    """The writer number in a `.gnt` file name (`1001-c.gnt` -> 1001); DataError if it has none."""
    base = PurePosixPath(name.split(MEMBER_SEPARATOR)[-1]).name
    match = WRITER_PATTERN.match(base)
    if not match:
        raise DataError(f"{name}: cannot tell the writer from the file name (expected NNNN-x.gnt, e.g. 1001-c.gnt)")
    return int(match.group(1))


def _zip_members(archive_path: Path, label: str) -> list[GntFile]:
    try:
        with zipfile.ZipFile(archive_path) as archive:
            names = [i.filename for i in archive.infolist() if not i.is_dir()]
    except zipfile.BadZipFile as exc:
        raise DataError(f"{archive_path}: not a valid zip archive ({exc})") from exc
    members = sorted(n for n in names if n.lower().endswith(".gnt"))
    if not members:
        packed = [n for n in names if n.lower().endswith((".alz", ".zip", ".rar"))]
        hint = (
            f"; it holds {packed[0]!r}: unpack that first (e.g. unar/alunzip) and point at the folder" if packed else ""
        )
        raise DataError(f"{archive_path}: no .gnt members in this zip archive{hint}")
    return [GntFile(f"{label}{MEMBER_SEPARATOR}{m}", archive_path, m) for m in members]


def list_files(root: str | os.PathLike) -> list[GntFile]:
    """Every `.gnt` file of a source (folder or zip), sorted by writer then name."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: CASIA-HWDB source does not exist (a folder of .gnt files or a zip archive)")
    if root.is_file():
        if not zipfile.is_zipfile(root):
            raise DataError(f"{root}: not a zip archive (give a folder of .gnt files or the official zip archives)")
        files = _zip_members(root, root.name)
    else:
        files = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            if path.suffix.lower() == ".gnt":
                files.append(GntFile(rel, path))
            elif path.suffix.lower() == ".zip":
                files.extend(_zip_members(path, rel))
    if not files:
        raise DataError(f"{root}: no .gnt files here (searched the folder and its zip archives)")
    files.sort(key=lambda f: (f.writer, f.name))
    seen: dict[str, GntFile] = {}
    for f in files:
        base = PurePosixPath(f.name.split(MEMBER_SEPARATOR)[-1]).name
        if base in seen:
            raise DataError(f"{f.name}: the same file as {seen[base].name}; keep one copy in the source")
        seen[base] = f
    return files


# ---------------------------------------------------------------------------- label sets


def _gb2312_range(rows: range) -> list[str]:
    chars = []
    for lead in rows:
        for trail in range(0xA1, 0xFF):
            try:
                chars.append(bytes((lead, trail)).decode("gb2312"))
            except UnicodeDecodeError:
                continue  # unassigned cells (e.g. D7FA-D7FE at the end of level 1)
    return chars


@lru_cache(maxsize=1)
def gb2312_level1() -> tuple[str, ...]:
    """The 3,755 GB2312 level-1 characters (rows 16-55), in code order: the benchmark's classes."""
    return tuple(_gb2312_range(range(0xB0, 0xD8)))


@lru_cache(maxsize=1)
def gb2312_symbols() -> frozenset[str]:
    """GB2312's non-hanzi rows 1-9 (punctuation, digits, letters...); HWDB's 171 symbols are among them."""
    return frozenset(_gb2312_range(range(0xA1, 0xAA)))


def class_list(characters: set[str] | frozenset[str], label_set: str) -> list[str]:
    """The classes of `label_set` among the characters present, in label order.

    Order: GB2312 level 1 in code order, then symbols, then anything else, each in GBK code
    order, so that labels are dense (0..K-1) and the full HWDB1.1 gives level 1 as labels 0..3754.
    """
    if label_set not in LABEL_SETS:
        raise ConfigError(f"casia.label_set: unknown label set {label_set!r}; choose from {', '.join(LABEL_SETS)}")
    level1 = set(gb2312_level1())

    def key(ch: str) -> tuple[int, bytes]:
        group = 0 if ch in level1 else 1 if ch in gb2312_symbols() else 2
        return group, ch.encode("gbk")

    def wanted(ch: str) -> bool:
        if label_set == "all":
            return True
        return ch in level1 or (label_set == "level1+symbols" and ch in gb2312_symbols())

    return sorted((ch for ch in characters if wanted(ch)), key=key)
