"""hccr.data.fetch: archive/folder/kaggle/synthetic sources, safe unpacking, verification."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from hccr.data import fetch as fetch_mod
from hccr.data.fetch import fetch, main, verify_dataset
from hccr.errors import DataError

from helpers_data import copy_raw, drop_csv_line, make_raw, truncate_file, zip_folder, zip_with_symlink


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return make_raw(tmp_path_factory.mktemp("raw") / "cm", writers=4, samples=2)


def _same_files(a: Path, b: Path) -> bool:
    names_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file() and p.name != "SOURCE.json")
    names_b = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file() and p.name != "SOURCE.json")
    return names_a == names_b and all((a / n).read_bytes() == (b / n).read_bytes() for n in names_a)


def test_verify_counts_from_csv(raw):
    counts = verify_dataset(raw, workers=1, progress=False)
    assert counts == {"images": 4 * 2 * 15, "writers": 4, "classes": 15, "samples_per_writer": 2}


def test_fetch_from_zip(raw, tmp_path):
    archive = zip_folder(raw, tmp_path / "archive.zip")
    out = tmp_path / "out"
    result = fetch(str(archive), out, progress=False)
    assert _same_files(raw, out)
    source = json.loads((out / "SOURCE.json").read_text())
    assert source["kind"] == "archive"
    assert source["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert source["counts"]["images"] == 120 == result["counts"]["images"]
    assert not list(out.glob(".unpack*"))


def test_fetch_from_nested_zip_and_folder(raw, tmp_path):
    archive = zip_folder(raw, tmp_path / "nested.zip", prefix="chinese-mnist/")
    fetch(str(archive), tmp_path / "a", progress=False)
    assert _same_files(raw, tmp_path / "a")
    parent = tmp_path / "download"
    copy_raw(raw, parent / "inner")
    fetch(str(parent), tmp_path / "b", progress=False)
    assert _same_files(raw, tmp_path / "b")
    assert json.loads((tmp_path / "b" / "SOURCE.json").read_text())["kind"] == "folder"


def test_missing_source_named(tmp_path):
    with pytest.raises(DataError, match="nowhere.zip"):
        fetch(str(tmp_path / "nowhere.zip"), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad_name", ["../evil.txt", "data/../../evil.txt", "/abs/evil.txt"])
def test_zip_escaping_entry_refused_before_extracting(raw, tmp_path, bad_name):
    archive = zip_folder(raw, tmp_path / "bad.zip", extra={bad_name: b"x"})
    out = tmp_path / "sub" / "out"
    with pytest.raises(DataError, match="refusing") as info:
        fetch(str(archive), out, progress=False)
    assert bad_name in str(info.value)
    assert not out.exists()
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "sub" / "evil.txt").exists()
    assert list((tmp_path / "sub").iterdir()) == []  # no temp folder left either


def test_not_a_zip_refused(tmp_path):
    bogus = tmp_path / "archive.tar.gz"
    bogus.write_bytes(b"\x1f\x8bnot really")
    with pytest.raises(DataError, match="archive.tar.gz: not a zip archive"):
        fetch(str(bogus), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_zip_symlink_refused(raw, tmp_path):
    archive = zip_with_symlink(raw, tmp_path / "link.zip")
    with pytest.raises(DataError, match="symbolic link"):
        fetch(str(archive), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_row_without_image(raw, tmp_path):
    folder = copy_raw(raw, tmp_path / "src")
    (folder / "data" / "data" / "input_2_1_7.jpg").unlink()
    with pytest.raises(DataError, match="input_2_1_7.jpg"):
        fetch(str(folder), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_image_without_row(raw, tmp_path):
    folder = copy_raw(raw, tmp_path / "src")
    frame = pd.read_csv(folder / "chinese_mnist.csv")
    row = frame.iloc[5]
    removed = drop_csv_line(folder, 5 + 2)
    assert removed.startswith(f"{row.suite_id},{row.sample_id},{row.code},")
    with pytest.raises(DataError, match=f"input_{row.suite_id}_{row.sample_id}_{row.code}.jpg: image has no row"):
        verify_dataset(folder, workers=1, progress=False)


def test_truncated_jpeg_caught(raw, tmp_path):
    folder = copy_raw(raw, tmp_path / "src")
    truncate_file(folder / "data" / "data" / "input_3_2_9.jpg", keep=0.6)
    with pytest.raises(DataError, match="input_3_2_9.jpg"):
        fetch(str(folder), tmp_path / "out", workers=2, progress=False)
    assert not (tmp_path / "out").exists()


def test_wrong_size_or_mode_named(raw, tmp_path):
    from PIL import Image

    folder = copy_raw(raw, tmp_path / "src")
    Image.new("RGB", (64, 64)).save(folder / "data" / "data" / "input_1_1_1.jpg")
    with pytest.raises(DataError, match=r"input_1_1_1.jpg: is 64x64 mode RGB"):
        verify_dataset(folder, workers=1, progress=False)
    Image.new("L", (32, 64)).save(folder / "data" / "data" / "input_1_1_1.jpg")
    with pytest.raises(DataError, match=r"input_1_1_1.jpg: is 32x64"):
        verify_dataset(folder, workers=1, progress=False)


def test_inconsistent_character_and_bad_code(raw, tmp_path):
    folder = copy_raw(raw, tmp_path / "src")
    csv = folder / "chinese_mnist.csv"
    original = csv.read_bytes()
    lines = original.decode().split("\r\n")
    s, n, c, v, ch = lines[3].split(",")
    lines[3] = ",".join([s, n, c, v, "亿" if ch != "亿" else "零"])
    csv.write_bytes("\r\n".join(lines).encode())
    with pytest.raises(DataError, match="line 4: character"):
        verify_dataset(folder, workers=1, progress=False)
    lines = original.decode().split("\r\n")
    lines[2] = ",".join([s, n, "16", v, ch])
    csv.write_bytes("\r\n".join(lines).encode())
    with pytest.raises(DataError, match="line 3: code=16"):
        verify_dataset(folder, workers=1, progress=False)
    csv.write_bytes(original.replace(b"character", b"glyph", 1))
    with pytest.raises(DataError, match="missing column.*character"):
        verify_dataset(folder, workers=1, progress=False)


def test_failed_fetch_keeps_previous_output(raw, tmp_path):
    out = tmp_path / "out"
    fetch(str(raw), out, progress=False)
    before = (out / "SOURCE.json").read_text()
    folder = copy_raw(raw, tmp_path / "src")
    truncate_file(folder / "data" / "data" / "input_1_2_3.jpg")
    with pytest.raises(DataError):
        fetch(str(folder), out, progress=False)
    assert (out / "SOURCE.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


def test_kaggle_download_used(raw, tmp_path, monkeypatch):
    import kagglehub

    calls = []

    def fake_download(handle, *args, **kwargs):
        calls.append(handle)
        return str(raw)

    monkeypatch.setattr(kagglehub, "dataset_download", fake_download)
    fetch("kaggle", tmp_path / "out", progress=False)
    assert calls == ["gpreda/chinese-mnist"]
    assert _same_files(raw, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "SOURCE.json").read_text())["kind"] == "kaggle"


def test_kaggle_unreachable_names_ways_out(tmp_path, monkeypatch):
    import kagglehub

    def offline(handle, *args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(kagglehub, "dataset_download", offline)
    with pytest.raises(DataError) as info:
        fetch("kaggle", tmp_path / "out", progress=False)
    message = str(info.value)
    for hint in ("data_source=PATH", "dvc exp run -S", "synthetic", "kaggle.json", "KAGGLE_KEY", "no network"):
        assert hint in message
    assert not (tmp_path / "out").exists()


def test_synthetic_source(tmp_path):
    result = fetch("synthetic", tmp_path / "out", seed=3, synthetic_writers=2, synthetic_samples=2, progress=False)
    assert result["kind"] == "synthetic" and result["counts"]["images"] == 60
    assert len(list((tmp_path / "out" / "data" / "data").glob("*.jpg"))) == 60


def test_cli_error_and_success(raw, tmp_path, capsys):
    assert main(["--source", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "error:" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert main(["--source", "synthetic", "--synthetic-writers", "0", "--out", str(tmp_path / "o")]) == 2
    assert "synthetic.writers" in capsys.readouterr().err and not (tmp_path / "o").exists()
    archive = zip_folder(raw, tmp_path / "a.zip")
    proc = subprocess.run(
        [sys.executable, "-m", "hccr.data.fetch", "--source", str(archive), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "120 images" in proc.stdout
    assert fetch_mod.verify_dataset(tmp_path / "o", workers=1, progress=False)["images"] == 120
