"""`hccr predict`: real images through a model trained here, bad files, zips, folders, exit codes."""

from __future__ import annotations

import csv
import io
import json
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from hccr.data.layout import CHINESE_MNIST
from hccr.models import checkpoint, create
from hccr.serving.predict import main as predict_main

from helpers_data import CHARACTERS, VALUES

ROOT = Path(__file__).resolve().parents[1]
TRAIN_WRITERS = 50
HELD_OUT_WRITERS = 4
MARGIN = 0.05  # transformed images may lose at most 5 points against the original files
SMALL_CNN = {
    "arch": "cnn",
    "scheme": "holdout",
    "width": [16, 32, 64],
    "convs_per_block": 2,
    "dropout": 0.1,
    "input_size": 32,
    "in_chans": 1,
}


def read_archive(archive: Path) -> tuple[pd.DataFrame, zipfile.ZipFile]:
    handle = zipfile.ZipFile(archive)
    table = pd.read_csv(io.BytesIO(handle.read("chinese_mnist.csv")))
    table["name"] = [f"data/data/input_{r.suite_id}_{r.sample_id}_{r.code}.jpg" for r in table.itertuples()]
    return table, handle


def archive_index(table: pd.DataFrame, writers: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`writers`' rows of `read_archive`'s table in index order, and their index.csv as the index step writes it."""
    table = table[table["suite_id"].isin(writers)].sort_values(["suite_id", "sample_id", "code"]).reset_index(drop=True)
    index = pd.DataFrame(
        {
            "id": range(len(table)),
            "writer": table["suite_id"],
            "sample": table["sample_id"],
            "code": table["code"],
            "value": table["value"],
            "character": table["character"],
            "label": table["code"] - 1,
            "path": table["name"],
        }
    )
    return table, index


def train_small_cnn(images: np.ndarray, labels: np.ndarray, cfg: dict, epochs: int, seed: int = 0):
    """A few epochs of plain AdamW + one-cycle on uint8 (N, 64, 64) glyphs; returns (model, mean, std)."""
    from hccr.normalization import normalize
    from hccr.serving.preprocess import glyph_to_size

    size = cfg["input_size"]
    sized = np.stack([glyph_to_size(g, size) for g in images])
    mean, std = float(sized.mean() / 255), float(sized.std() / 255)
    torch.manual_seed(seed)
    model, _ = create("cnn", cfg, "none", num_classes=15)
    x, y = normalize(sized, mean, std), torch.from_numpy(labels).long()
    batch = 64
    optimizer = torch.optim.AdamW(model.parameters(), 3e-3, weight_decay=1e-4)
    steps = epochs * ((len(x) + batch - 1) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch):
            rows = order[start : start + batch]
            loss = torch.nn.functional.cross_entropy(model(x[rows]), y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval(), mean, std


def save_checkpoint(path: Path, model, cfg: dict, mean: float, std: float, val_accuracy: float = 0.0) -> Path:
    return checkpoint.save(
        path,
        classes=CHINESE_MNIST,
        model_name="cnn",
        config=cfg,
        state_dict=model.state_dict(),
        input_size=cfg["input_size"],
        normalize={"mean": mean, "std": std},
        start="scratch",
        epoch=1,
        val_accuracy=val_accuracy,
    )


@pytest.fixture(scope="module")
def real_run(real_archive, tmp_path_factory):
    """A small CNN trained on 50 real writers, and the held-out writers' files as they are."""
    table, handle = read_archive(real_archive)
    writers = sorted(table["suite_id"].unique())
    train_rows = table[table["suite_id"].isin(writers[:TRAIN_WRITERS])]
    held_rows = table[table["suite_id"].isin(writers[-HELD_OUT_WRITERS:])]
    images = np.stack([np.asarray(Image.open(io.BytesIO(handle.read(n)))) for n in train_rows["name"]])
    started = time.perf_counter()
    model, mean, std = train_small_cnn(images, train_rows["code"].to_numpy() - 1, SMALL_CNN, epochs=2)
    print(f"\ntrained the fixture CNN on {len(images)} images in {time.perf_counter() - started:.1f} s")
    folder = tmp_path_factory.mktemp("real_predict")
    ckpt = save_checkpoint(folder / "checkpoint.pt", model, SMALL_CNN, mean, std)
    originals = folder / "originals"
    originals.mkdir()
    truth = {}
    for row in held_rows.itertuples():
        path = originals / Path(row.name).name
        path.write_bytes(handle.read(row.name))  # the archive's own JPEG bytes
        truth[Path(row.name).stem] = CHARACTERS[row.code - 1]
    return {"checkpoint": ckpt, "folder": folder, "originals": originals, "truth": truth}


def run_csv(argv: list[str], capsys) -> tuple[int, list[dict]]:
    status = predict_main(argv + ["--format", "csv"])
    out = capsys.readouterr().out
    return status, list(csv.DictReader(io.StringIO(out)))


def accuracy(rows: list[dict], truth: dict[str, str]) -> float:
    assert rows and all(not r["error"] for r in rows), [r["error"] for r in rows if r["error"]][:3]
    hits = [truth[Path(r["path"]).stem] == r["character"] for r in rows]
    return float(np.mean(hits))


@pytest.mark.realdata
@pytest.mark.slow
def test_predict_held_out_writers_original_and_inverted_rescaled(real_run, tmp_path, capsys):
    status, rows = run_csv([str(real_run["originals"]), "--model", str(real_run["checkpoint"]), "--top-k", "3"], capsys)
    assert status == 0
    assert len(rows) == len(real_run["truth"]) == HELD_OUT_WRITERS * 150
    original = accuracy(rows, real_run["truth"])

    # The same glyphs as a user might have them: dark ink on white, 300x300, RGB, PNG.
    transformed = tmp_path / "inverted_300_rgb"
    transformed.mkdir()
    for path in sorted(real_run["originals"].iterdir()):
        glyph = np.asarray(Image.open(path))
        image = Image.fromarray(255 - glyph).resize((300, 300), Image.Resampling.BILINEAR).convert("RGB")
        image.save(transformed / f"{path.stem}.png")
    status, rows_t = run_csv([str(transformed), "--model", str(real_run["checkpoint"])], capsys)
    assert status == 0
    inverted = accuracy(rows_t, real_run["truth"])
    with capsys.disabled():
        print(
            f"\npredict on {len(rows)} held-out images of {HELD_OUT_WRITERS} writers: "
            f"original files {original:.4f}, inverted + 300x300 RGB {inverted:.4f}"
        )
    assert original >= 0.90
    assert inverted >= original - MARGIN

    # Every row is consistent: value follows the character, top-k is sorted and starts with it.
    for row in rows[:50]:
        assert int(row["value"]) == VALUES[CHARACTERS.index(row["character"])]
        pairs = [item.split(":") for item in row["top_k"].split(";")]
        assert len(pairs) == 3 and pairs[0][0] == row["character"]
        probs = [float(p) for _, p in pairs]
        assert probs == sorted(probs, reverse=True) and abs(probs[0] - float(row["confidence"])) < 1e-4


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height grayscale pixels (and holds almost no data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def _glyph(seed: int = 0) -> np.ndarray:
    """A synthetic light-on-black glyph (two strokes) in the dataset's format."""
    from PIL import ImageDraw

    image = Image.new("L", (64, 64), 0)
    draw = ImageDraw.Draw(image)
    offset = seed % 5
    draw.line([(20 + offset, 22), (44, 22 + offset)], fill=170, width=3)
    draw.line([(32, 16), (30 - offset, 46)], fill=160, width=3)
    return np.asarray(image)


@pytest.fixture(scope="module")
def untrained_checkpoint(tmp_path_factory) -> Path:
    """A real (randomly initialised) CNN checkpoint: enough to exercise files, formats and errors."""
    torch.manual_seed(0)
    cfg = dict(SMALL_CNN, width=[8, 16, 16], convs_per_block=1)
    model, _ = create("cnn", cfg, "none", num_classes=15)
    return save_checkpoint(tmp_path_factory.mktemp("untrained") / "checkpoint.pt", model.eval(), cfg, 0.05, 0.15)


def test_bad_files_get_their_own_errors_and_the_batch_runs(untrained_checkpoint, tmp_path):
    good_a, good_b = tmp_path / "good_a.png", tmp_path / "good_b.jpg"
    Image.fromarray(_glyph(1)).save(good_a)
    Image.fromarray(255 - _glyph(2)).resize((200, 120)).convert("RGB").save(good_b, quality=90)
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is not an image\n")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good_b.read_bytes()[: good_b.stat().st_size // 3])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    enormous = tmp_path / "enormous.png"
    enormous.write_bytes(_png_header_only(100_000, 100_000))
    large = tmp_path / "large.png"  # over the 50 MP limit but under PIL's own bomb guard
    large.write_bytes(_png_header_only(8_000, 8_000))
    missing = tmp_path / "missing.png"
    paths = [good_a, not_image, truncated, empty, enormous, large, missing, good_b]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hccr.serving.predict",
            *map(str, paths),
            "--model",
            str(untrained_checkpoint),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    records = {Path(r["path"]).name: r for r in json.loads(result.stdout)}
    assert list(records) == [p.name for p in paths]
    for name in ("good_a.png", "good_b.jpg"):
        assert records[name]["error"] is None
        assert records[name]["character"] in CHARACTERS
        assert len(records[name]["top_k"]) == 3
    expected = {
        "notes.png": "not an image",
        "truncated.jpg": "truncated",
        "empty.jpg": "empty file",
        "enormous.png": "too large",
        "large.png": "too large",
        "missing.png": "no such file",
    }
    for name, words in expected.items():
        error = records[name]["error"]
        assert error and words in error and name in error, (name, error)
        assert records[name]["character"] is None
    assert "6 of 8 files failed" in result.stderr


def test_zip_folder_and_formats(untrained_checkpoint, tmp_path, capsys):
    folder = tmp_path / "scans" / "nested"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(_glyph(i)).save(folder / f"g{i}.png")
    (folder / "readme.txt").write_text("ignored: not an image extension")
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for i in range(2):
            buffer = io.BytesIO()
            Image.fromarray(255 - _glyph(i)).convert("RGBA").save(buffer, format="PNG")
            handle.writestr(f"inner/z{i}.png", buffer.getvalue())
        handle.writestr("inner/broken.png", b"\x89PNG garbage")
        handle.writestr("../escape.txt", b"never read")
    status, rows = run_csv([str(tmp_path / "scans"), str(archive), "--model", str(untrained_checkpoint)], capsys)
    assert status == 1  # the broken zip entry
    paths = [r["path"] for r in rows]
    assert paths[:3] == [str(folder / f"g{i}.png") for i in range(3)]
    assert paths[3:] == [f"{archive}:inner/z0.png", f"{archive}:inner/z1.png", f"{archive}:inner/broken.png"]
    assert [bool(r["error"]) for r in rows] == [False] * 5 + [True]
    assert not (tmp_path / "escape.txt").exists()

    status = predict_main([str(folder), "--model", str(untrained_checkpoint), "--top-k", "20"])
    text = capsys.readouterr().out.splitlines()
    assert status == 0 and len(text) == 3
    assert text[0].split("\t")[1] in CHARACTERS
    assert text[0].count(",") == len(CHARACTERS) - 1  # top-k capped at the 15 classes


def test_usage_and_model_errors_exit_2(untrained_checkpoint, tmp_path, capsys):
    image = tmp_path / "a.png"
    Image.fromarray(_glyph()).save(image)
    assert predict_main([str(image)]) == 2  # --model missing
    assert predict_main([str(image), "--model", str(tmp_path / "nope.pt")]) == 2
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    assert predict_main([str(image), "--model", str(garbage)]) == 2
    assert "garbage.pt" in capsys.readouterr().err
    assert predict_main([str(image), "--model", str(untrained_checkpoint), "--top-k", "0"]) == 2
    fake_onnx = tmp_path / "model.onnx"
    fake_onnx.write_bytes(b"\x08\x01")
    assert predict_main([str(image), "--model", str(fake_onnx)]) == 2


class _Payload:
    """Pickled into a checkpoint: loading it would need full unpickling."""


def test_checkpoint_is_loaded_weights_only(untrained_checkpoint, tmp_path, capsys):
    record = torch.load(untrained_checkpoint, weights_only=True)
    record["extra"] = _Payload()
    unsafe = tmp_path / "unsafe.pt"
    torch.save(record, unsafe)
    image = tmp_path / "a.png"
    Image.fromarray(_glyph()).save(image)
    assert predict_main([str(image), "--model", str(unsafe)]) == 2
    assert "unsafe.pt" in capsys.readouterr().err
    assert predict_main([str(image), "--model", str(untrained_checkpoint)]) == 0
