"""Tiny datasets for the data-step tests: synthetic raw folders, zips (good and bad), indexes."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from hccr.data.layout import CHINESE_MNIST
from hccr.data.synthetic import generate

# Chinese MNIST's label set, as the tests spell it.
CHARACTERS = CHINESE_MNIST.text
VALUES = CHINESE_MNIST.values
NUM_CLASSES = len(CHINESE_MNIST)

# Small but with enough writers for the writer protocol (test/val/train writers all non-empty).
WRITERS = 12
SAMPLES = 3


def make_raw(folder: Path, writers: int = WRITERS, samples: int = SAMPLES, seed: int = 0) -> Path:
    """A synthetic raw folder in the Kaggle layout."""
    generate(folder, writers=writers, samples_per_writer=samples, seed=seed, progress=False)
    return folder


def zip_folder(folder: Path, archive: Path, prefix: str = "", extra: dict[str, bytes] | None = None) -> Path:
    """Zip a raw folder (optionally under `prefix/`), adding `extra` raw entries by name."""
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                handle.write(path, prefix + path.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            handle.writestr(name, data)
    return archive


def zip_with_symlink(folder: Path, archive: Path) -> Path:
    """A zip of `folder` plus an entry stored as a symbolic link."""
    zip_folder(folder, archive)
    info = zipfile.ZipInfo("data/data/link.jpg")
    info.external_attr = 0o120777 << 16  # S_IFLNK | 0777
    with zipfile.ZipFile(archive, "a") as handle:
        handle.writestr(info, "/etc/passwd")
    return archive


def copy_raw(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def drop_csv_line(folder: Path, line_number: int) -> str:
    """Remove a data line (1-based, header = line 1) from the raw CSV; return it."""
    csv_path = folder / "chinese_mnist.csv"
    lines = csv_path.read_bytes().decode("utf-8").split("\r\n")
    removed = lines.pop(line_number - 1)
    csv_path.write_bytes("\r\n".join(lines).encode("utf-8"))
    return removed


def truncate_file(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def stroke_glyph(seed: int) -> np.ndarray:
    """A 64x64 light-on-black 'character': three 3-px strokes at seeded places, as thin as the
    archive's (2-5 px; the synthetic renderer's are wider than the framing's 9-px paper window)."""
    rng = np.random.default_rng(seed)
    image = Image.new("L", (64, 64), 0)
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x0, y0, x1, y1 = (int(v) for v in rng.integers(14, 50, size=4))
        draw.line((x0, y0, x1, y1), fill=int(rng.integers(150, 230)), width=3)
    return np.asarray(image)
