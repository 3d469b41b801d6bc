"""Issue 12, fetch: never replace what fetch did not make; treat archives as hostile."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hccr.atomic import sweep_stale
from hccr.data import fetch as fetch_mod
from hccr.data.fetch import fetch, main, unpack_zip
from hccr.errors import DataError

from helpers_data import copy_raw, make_raw, truncate_file, zip_folder


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return make_raw(tmp_path_factory.mktemp("raw") / "cm", writers=2, samples=1)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- item 1: --out holding user files


def test_out_holding_the_users_archive_is_refused_and_kept(raw, tmp_path, capsys):
    data_raw = tmp_path / "data" / "raw"
    data_raw.mkdir(parents=True)
    archive = zip_folder(raw, data_raw / "archive.zip")
    (data_raw / "notes.txt").write_text("mine")
    before = snapshot(data_raw)
    assert main(["--source", str(archive), "--out", str(data_raw)]) == 2
    err = capsys.readouterr().err
    assert "archive.zip" in err and "did not make" in err and "chinese-mnist" in err
    assert snapshot(data_raw) == before
    assert sorted(p.name for p in data_raw.iterdir()) == ["archive.zip", "notes.txt"]


def test_own_earlier_output_is_replaced_but_not_with_a_user_file_inside(raw, tmp_path):
    out = tmp_path / "out"
    fetch(str(raw), out, progress=False)
    first = json.loads((out / "SOURCE.json").read_text())
    fetch(str(zip_folder(raw, tmp_path / "a.zip")), out, progress=False)  # its own output: replaced
    assert first["kind"] == "folder" and json.loads((out / "SOURCE.json").read_text())["kind"] == "archive"
    (out / "my_labels.csv").write_text("precious")
    with pytest.raises(DataError, match="my_labels.csv"):
        fetch(str(raw), out, progress=False)
    assert (out / "my_labels.csv").read_text() == "precious"


def test_folder_without_source_json_is_not_fetchs(raw, tmp_path):
    out = copy_raw(raw, tmp_path / "unpacked_by_hand")  # the layout, but not made by fetch
    (out / "SOURCE.json").unlink(missing_ok=True)
    before = snapshot(out)
    with pytest.raises(DataError, match="SOURCE.json"):
        fetch("synthetic", out, synthetic_writers=1, synthetic_samples=1, progress=False)
    assert snapshot(out) == before


# ---------------------------------------------------------------- item 2: source inside the output


def test_source_inside_or_equal_to_out_is_refused(raw, tmp_path):
    out = tmp_path / "data" / "raw" / "chinese-mnist"
    fetch(str(raw), out, progress=False)
    before = snapshot(out)
    with pytest.raises(DataError, match="inside the fetch output folder"):
        fetch(str(out), out, progress=False)
    inner = zip_folder(raw, tmp_path / "inner.zip").rename(out / "data" / "archive.zip")
    with pytest.raises(DataError, match="inside the fetch output folder"):
        fetch(str(inner), out, progress=False)
    inner.unlink()
    assert snapshot(out) == before
    with pytest.raises(DataError, match="holds the fetch output folder"):
        fetch(str(tmp_path / "data"), out, progress=False)


def test_snakemake_refuses_a_source_inside_its_output_before_deleting_it(raw, tmp_path):
    from helpers_workflow import describe, make_project, snakemake

    project = make_project(tmp_path / "project")
    user_data = project / "data" / "raw" / "chinese-mnist"
    fetch(str(raw), user_data, progress=False)
    before = snapshot(user_data)
    proc = snakemake(
        project,
        "--configfile",
        "tiny.yaml",
        "--config",
        "data_source=data/raw/chinese-mnist",
        "-R",
        "fetch",
        "fetch",
        timeout=300,
    )
    assert proc.returncode != 0, describe(proc)
    assert "inside the fetch output folder" in proc.stdout + proc.stderr, describe(proc)
    assert snapshot(user_data) == before


# ---------------------------------------------------------------- items 5 and 6: hostile archives


def test_zip_bomb_refused_before_writing(raw, tmp_path):
    archive = zip_folder(raw, tmp_path / "bomb.zip")
    with zipfile.ZipFile(archive, "a", compression=zipfile.ZIP_DEFLATED) as handle:
        handle.writestr("data/data/input_1_1_99.jpg", b"\0" * (8 << 20))  # 8 MiB from ~8 KB
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"bomb.zip:data/data/input_1_1_99.jpg: entry would inflate"):
        fetch(str(archive), out, progress=False)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bomb.zip"]


def test_total_size_capped(raw, tmp_path, monkeypatch):
    archive = zip_folder(raw, tmp_path / "big.zip")
    monkeypatch.setattr(fetch_mod, "MAX_UNPACKED_BYTES", 10_000)
    with pytest.raises(DataError, match="unpack to more than 10000 bytes"):
        fetch(str(archive), tmp_path / "out", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.zip"]


def test_only_layout_entries_are_unpacked(raw, tmp_path):
    archive = zip_folder(
        raw,
        tmp_path / "a.zip",
        prefix="chinese-mnist/",
        extra={"chinese-mnist/huge.bin": os.urandom(1000), "other/readme.txt": b"x"},
    )
    target = tmp_path / "unpacked"
    assert unpack_zip(archive, target, progress=False) == "chinese-mnist/"
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert files == sorted("chinese-mnist/" + name for name in snapshot(raw) if name != "SOURCE.json")


def _patch_central_flag(archive: Path, entry: str, flag: int) -> None:
    """Set a general-purpose flag bit of `entry` in the central directory (what zipfile trusts)."""
    data = bytearray(archive.read_bytes())
    end = data.rindex(b"PK\x05\x06")  # end of central directory: size at +12, offset at +16
    start = struct.unpack("<I", data[end + 16 : end + 20])[0]
    position = start
    while data[position : position + 4] == b"PK\x01\x02":
        name_len, extra_len, comment_len = struct.unpack("<HHH", data[position + 28 : position + 34])
        name = data[position + 46 : position + 46 + name_len].decode()
        if name == entry:
            old = struct.unpack("<H", data[position + 8 : position + 10])[0]
            data[position + 8 : position + 10] = struct.pack("<H", old | flag)
            archive.write_bytes(bytes(data))
            return
        position += 46 + name_len + extra_len + comment_len
    raise AssertionError(f"{entry} not in {archive}")


def test_encrypted_entry_named(raw, tmp_path):
    archive = zip_folder(raw, tmp_path / "enc.zip")
    _patch_central_flag(archive, "chinese_mnist.csv", 0x1)
    with pytest.raises(DataError, match=r"enc.zip:chinese_mnist.csv: entry is encrypted"):
        fetch(str(archive), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_corrupt_deflate_data_named(raw, tmp_path):
    archive = tmp_path / "corrupt.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as handle:
        for name, data in snapshot(raw).items():
            handle.writestr(name, data)
    with zipfile.ZipFile(archive) as handle:
        info = handle.getinfo("chinese_mnist.csv")
    data = bytearray(archive.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    body = info.header_offset + 30 + name_len + extra_len
    for offset in range(body + 2, body + min(info.compress_size, 40)):
        data[offset] ^= 0xA5
    archive.write_bytes(bytes(data))
    proc = subprocess.run(
        [sys.executable, "-m", "hccr.data.fetch", "--source", str(archive), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2, proc.stderr
    assert "corrupt.zip:chinese_mnist.csv: cannot be unpacked" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.zip"]


def test_bad_image_in_archive_names_the_entry_not_a_temp_path(raw, tmp_path):
    folder = copy_raw(raw, tmp_path / "src")
    truncate_file(folder / "data" / "data" / "input_2_1_7.jpg", keep=0.5)
    archive = zip_folder(folder, tmp_path / "a.zip", prefix="cm/")
    with pytest.raises(DataError) as info:
        fetch(str(archive), tmp_path / "out", progress=False, workers=1)
    message = str(info.value)
    assert f"{archive.resolve()}:cm/data/data/input_2_1_7.jpg" in message
    assert ".tmp" not in message


# ---------------------------------------------------------------- item 9: stale temporaries


def test_stale_temporaries_of_dead_writers_are_swept(raw, tmp_path):
    from hccr.atomic import _host

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "out"
    stale = tmp_path / f".out.{_host()}.{dead.pid}.abc123.tmp"
    (stale / "data").mkdir(parents=True)
    (stale / "data" / "x.jpg").write_bytes(b"x" * 100)
    alive = tmp_path / f".out.{_host()}.{os.getppid()}.def456.tmp"  # a live process: left alone
    alive.mkdir()
    other_host = tmp_path / f".out.elsewhere.{dead.pid}.ghi789.tmp"  # may be live on another node
    other_host.mkdir()
    fetch(str(raw), out, progress=False)
    assert not stale.exists() and alive.exists() and other_host.exists()
    assert sweep_stale(out) == []
