"""Tiny CASIA-HWDB sources for the tests: fixture corpora, zips of them, and broken .gnt files."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

from hccr.data.casia import HEADER
from hccr.data.casia_fixture import make_corpus

# Writers on both sides of the official split (1001-1240 train, 1241-1300 test).
WRITERS = (1001, 1002, 1003, 1004, 1005, 1006, 1241, 1242)
CHARACTERS = 8


def corpus(folder: Path, writers=WRITERS, characters=CHARACTERS, samples: int = 1) -> Path:
    make_corpus(folder, writers=writers, characters=characters, samples_per_character=samples)
    return folder


def zip_corpus(folder: Path, archive: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as handle:
        for path in sorted(folder.glob("*.gnt")):
            handle.write(path, prefix + path.name)
    return archive


def record_offsets(path: Path) -> list[int]:
    """Byte offsets of the records of a well-formed .gnt file."""
    data = path.read_bytes()
    offsets, offset = [], 0
    while offset < len(data):
        offsets.append(offset)
        offset += struct.unpack_from("<I", data, offset)[0]
    return offsets


def patch(path: Path, offset: int, fmt: str, value) -> None:
    """Overwrite bytes at `offset` with struct-packed `value`."""
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    path.write_bytes(bytes(data))


def break_size(path: Path, record: int) -> int:
    """Make record `record` announce one byte more than width x height; return its offset."""
    offset = record_offsets(path)[record]
    size = struct.unpack_from("<I", path.read_bytes(), offset)[0]
    patch(path, offset, "<I", size + 1)
    return offset


def break_tag(path: Path, record: int, tag: bytes = b"\xff\xff") -> int:
    offset = record_offsets(path)[record]
    patch(path, offset + 4, "2s", tag)
    return offset


def zero_width(path: Path, record: int) -> int:
    offset = record_offsets(path)[record]
    patch(path, offset + 6, "<H", 0)
    return offset


def cut(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


HEADER_SIZE = HEADER.size
