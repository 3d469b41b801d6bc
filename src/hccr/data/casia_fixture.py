"""Small CASIA-HWDB-shaped `.gnt` files for tests and benchmarks: glyphs drawn into real records.

Each character gets a fixed stroke skeleton (3-6 polylines drawn from a generator seeded with
its GBK code); each writer and sample jitters the points, the stroke width and the ink, and
draws it at its own size (about 40-110 px wide and tall, aspect varying), dark ink on white,
as the scanned HWDB samples are. The bytes follow the real format (see hccr.data.casia), so
every reader path runs on them unchanged. Same arguments, same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from hccr.data.casia import HEADER, gb2312_level1


def encode_record(tag: bytes, image: np.ndarray) -> bytes:
    """One `.gnt` record: header (size, tag, width, height) then the pixels row by row."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    height, width = image.shape
    return HEADER.pack(HEADER.size + width * height, tag, width, height) + image.tobytes()


def character_tag(character: str) -> bytes:
    tag = character.encode("gbk")
    if len(tag) != 2:
        raise ValueError(f"{character!r} has no 2-byte GBK code")
    return tag


def _skeleton(character: str) -> list[np.ndarray]:
    rng = np.random.default_rng(int.from_bytes(character_tag(character), "big"))
    strokes = []
    for _ in range(int(rng.integers(3, 7))):
        points = int(rng.integers(2, 4))
        strokes.append(rng.uniform(0.1, 0.9, size=(points, 2)))
    return strokes


def draw_glyph(character: str, writer: int, sample: int, seed: int = 0) -> np.ndarray:
    """A (height, width) uint8 image of `character` as `writer` wrote it the `sample`-th time."""
    rng = np.random.default_rng([seed, writer, sample, int.from_bytes(character_tag(character), "big")])
    width, height = (int(v) for v in rng.integers(40, 111, size=2))
    canvas = Image.new("L", (width, height), 255)
    pen = ImageDraw.Draw(canvas)
    ink = int(rng.integers(0, 70))
    stroke = max(2, int(round(min(width, height) * rng.uniform(0.04, 0.09))))
    for points in _skeleton(character):
        moved = np.clip(points + rng.normal(0, 0.03, size=points.shape), 0.02, 0.98)
        xy = [(float(x * (width - 1)), float(y * (height - 1))) for x, y in moved]
        pen.line(xy, fill=ink, width=stroke, joint="curve")
    return np.asarray(canvas)


def gnt_bytes(samples: Iterable[tuple[str, np.ndarray]]) -> bytes:
    """A whole `.gnt` file's bytes from (character, image) pairs."""
    return b"".join(encode_record(character_tag(ch), image) for ch, image in samples)


def write_writer_file(
    path: str | os.PathLike, writer: int, characters: Sequence[str], samples_per_character: int = 1, seed: int = 0
) -> Path:
    """One writer's `.gnt` file: every character `samples_per_character` times, in order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        for sample in range(1, samples_per_character + 1):
            for ch in characters:
                handle.write(encode_record(character_tag(ch), draw_glyph(ch, writer, sample, seed)))
    return path


def make_corpus(
    folder: str | os.PathLike,
    writers: Iterable[int] = range(1001, 1006),
    characters: Sequence[str] | int = 12,
    samples_per_character: int = 1,
    seed: int = 0,
) -> list[Path]:
    """A folder of `NNNN-c.gnt` files, one per writer; `characters` is a list or the first N of level 1."""
    if isinstance(characters, int):
        characters = gb2312_level1()[:characters]
    folder = Path(folder)
    return [write_writer_file(folder / f"{w}-c.gnt", w, characters, samples_per_character, seed) for w in writers]
