"""CASIA-HWDB source: the .gnt reader, its errors, sources, label sets, and the fetch/index/resize steps."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from hccr.data import casia, casia_steps
from hccr.data.casia_fixture import draw_glyph, encode_record, gnt_bytes
from hccr.data.casia_images import fit_square, margin_pixels
from hccr.data.index import read_index
from hccr.errors import ConfigError, DataError

from helpers_casia import (
    CHARACTERS,
    HEADER_SIZE,
    WRITERS,
    break_size,
    break_tag,
    corpus,
    cut,
    record_offsets,
    zero_width,
    zip_corpus,
)


def read_all(data: bytes, name: str = "x.gnt", pixels: bool = True) -> list[casia.Record]:
    return list(casia.iter_records(io.BytesIO(data), name, len(data), pixels=pixels))


# ---------------------------------------------------------------------------- records


def test_records_round_trip_pixels_tags_and_sizes():
    samples = [("啊", draw_glyph("啊", 1001, 1)), ("阿", draw_glyph("阿", 1001, 1)), ("，", draw_glyph("，", 1001, 2))]
    records = read_all(gnt_bytes(samples))
    assert [casia.tag_character(r.tag) for r in records] == ["啊", "阿", "，"]
    assert casia.tag_code(records[0].tag) == 0xB0A1
    offset = 0
    for record, (_, image) in zip(records, samples, strict=False):
        assert record.offset == offset
        assert (record.height, record.width) == image.shape
        np.testing.assert_array_equal(record.image(), image)
        offset += HEADER_SIZE + image.size
    headers = read_all(gnt_bytes(samples), pixels=False)
    assert [(r.offset, r.width, r.height, r.pixels) for r in headers] == [
        (r.offset, r.width, r.height, None) for r in records
    ]


def test_fixture_draws_dark_ink_on_white_at_varied_sizes():
    images = [draw_glyph(ch, w, 1) for ch in "啊阿埃" for w in (1001, 1002, 1003)]
    assert len({im.shape for im in images}) > 3
    for im in images:
        assert im.dtype == np.uint8 and np.median(im) == 255 and im.min() < 80
    np.testing.assert_array_equal(draw_glyph("啊", 1001, 1), draw_glyph("啊", 1001, 1))
    assert not np.array_equal(draw_glyph("啊", 1001, 1), draw_glyph("啊", 1002, 1))


@pytest.mark.parametrize(
    "breaker, message",
    [
        (lambda p: break_size(p, 2), r"sample size \d+ disagrees with \d+x\d+ pixels"),
        (lambda p: break_tag(p, 2), r"unknown tag code 0xFFFF"),
        (lambda p: break_tag(p, 2, b"AB"), r"unknown tag code 0x4142"),
        (lambda p: zero_width(p, 2), r"empty image \(0x\d+\)"),
    ],
)
def test_bad_record_names_file_record_and_offset(tmp_path, breaker, message):
    corpus(tmp_path, writers=(1001,))
    path = tmp_path / "1001-c.gnt"
    offset = breaker(path)
    with pytest.raises(DataError, match=rf"1001-c\.gnt: record 2 at byte offset {offset}: {message}"):
        list(casia.GntFile("1001-c.gnt", path).records())


def test_truncated_body_and_header_and_empty_file(tmp_path):
    corpus(tmp_path, writers=(1001,))
    path = tmp_path / "1001-c.gnt"
    offsets = record_offsets(path)
    cut(path, offsets[3] + HEADER_SIZE + 5)
    for pixels in (True, False):
        with pytest.raises(DataError, match=rf"record 3 at byte offset {offsets[3]}: truncated record"):
            list(casia.GntFile("1001-c.gnt", path).records(pixels=pixels))
    cut(path, offsets[3] + 4)
    with pytest.raises(DataError, match=rf"record 3 at byte offset {offsets[3]}: truncated header \(4 of 10"):
        list(casia.GntFile("1001-c.gnt", path).records())
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"1001-c\.gnt: empty file"):
        list(casia.GntFile("1001-c.gnt", path).records())


# ---------------------------------------------------------------------------- sources


def test_writer_from_file_name():
    assert casia.writer_of("1001-c.gnt") == 1001
    assert casia.writer_of("HWDB1.0/001-f.gnt") == 1
    assert casia.writer_of("HWDB1.1trn_gnt.zip!sub/1241-c.gnt") == 1241
    with pytest.raises(DataError, match=r"notes\.gnt: cannot tell the writer"):
        casia.writer_of("notes.gnt")


def test_folder_and_zip_sources_list_the_same_records(tmp_path):
    folder = corpus(tmp_path / "gnt")
    archive = zip_corpus(folder, tmp_path / "HWDB1.1trn_gnt.zip", prefix="HWDB1.1trn_gnt/")
    from_folder = casia.list_files(folder)
    from_zip = casia.list_files(archive)
    assert [f.writer for f in from_folder] == sorted(WRITERS) == [f.writer for f in from_zip]
    assert from_zip[0].name == "HWDB1.1trn_gnt.zip!HWDB1.1trn_gnt/1001-c.gnt"
    for a, b in zip(from_folder, from_zip, strict=False):
        assert a.size == b.size
        ra, rb = list(a.records()), list(b.records())
        assert [(r.offset, r.tag, r.pixels) for r in ra] == [(r.offset, r.tag, r.pixels) for r in rb]
    # A folder holding the archive finds its members as well.
    (tmp_path / "zips").mkdir()
    archive.rename(tmp_path / "zips" / archive.name)
    assert [f.name for f in casia.list_files(tmp_path / "zips")][0].startswith("HWDB1.1trn_gnt.zip!")


def test_bad_sources_are_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        casia.list_files(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no \.gnt files"):
        casia.list_files(tmp_path / "empty")
    import zipfile

    with zipfile.ZipFile(tmp_path / "HWDB1.1trn_gnt.zip", "w") as handle:
        handle.writestr("HWDB1.1trn_gnt.alz", b"ALZ\x01")
    with pytest.raises(DataError, match=r"no \.gnt members .* 'HWDB1\.1trn_gnt\.alz': unpack that first"):
        casia.list_files(tmp_path / "HWDB1.1trn_gnt.zip")
    dup = corpus(tmp_path / "dup", writers=(1001,))
    (dup / "again").mkdir()
    (dup / "again" / "1001-c.gnt").write_bytes((dup / "1001-c.gnt").read_bytes())
    with pytest.raises(DataError, match="the same file as"):
        casia.list_files(dup)
    assert casia.source_path("casia-hwdb:/data/hwdb").as_posix() == "/data/hwdb"
    assert casia.source_path("kaggle") is None
    with pytest.raises(ConfigError, match="names no path"):
        casia.source_path("casia-hwdb:")


# ---------------------------------------------------------------------------- label sets


def test_gb2312_level1_is_the_3755_benchmark_classes():
    level1 = casia.gb2312_level1()
    assert len(level1) == 3755 == len(set(level1))
    assert level1[0] == "啊" and level1[-1] == "座"
    assert all(len(ch.encode("gb2312")) == 2 and ch.encode("gb2312")[0] >= 0xB0 for ch in level1)
    assert "，" in casia.gb2312_symbols() and "啊" not in casia.gb2312_symbols()


def test_class_list_orders_level1_then_symbols_then_others():
    present = {"阿", "啊", "，", "亍", "Ａ"}  # 亍 is GB2312 level 2 (HWDB1.0's extra characters)
    assert casia.class_list(present, "level1") == ["啊", "阿"]
    assert casia.class_list(present, "level1+symbols") == ["啊", "阿", "，", "Ａ"]
    assert casia.class_list(present, "all") == ["啊", "阿", "，", "Ａ", "亍"]
    with pytest.raises(ConfigError, match="casia.label_set: unknown label set 'level3'"):
        casia.class_list(present, "level3")


# ---------------------------------------------------------------------------- steps


def test_fetch_index_and_labels(tmp_path):
    src = corpus(tmp_path / "gnt")
    # One writer also wrote a symbol and a level-2 character: left out of the default label set.
    extra = gnt_bytes([("，", draw_glyph("，", 1002, 1)), ("亍", draw_glyph("亍", 1002, 1))])
    with open(src / "1002-c.gnt", "ab") as handle:
        handle.write(extra)
    provenance = casia_steps.fetch(src, tmp_path / "raw", progress=False)
    assert provenance["counts"] == {
        "records": len(WRITERS) * CHARACTERS + 2,
        "files": len(WRITERS),
        "writers": len(WRITERS),
    }
    stored = json.loads((tmp_path / "raw" / "SOURCE.json").read_text(encoding="utf-8"))
    assert stored["kind"] == "casia-hwdb" and len(stored["sha256"]["1001-c.gnt"]) == 64

    table, counts = casia_steps.build_index(tmp_path / "raw", "level1", progress=False)
    assert counts["dropped"] == 2 and counts["dropped_characters"] == 2 and counts["classes"] == CHARACTERS
    assert list(table["id"]) == list(range(len(table))) == list(range(len(WRITERS) * CHARACTERS))
    assert list(table.columns[:8]) == ["id", "writer", "sample", "code", "value", "character", "label", "path"]
    first = table[table["writer"] == 1001]
    assert list(first["character"]) == list(casia.gb2312_level1()[:CHARACTERS])
    assert list(first["label"]) == list(range(CHARACTERS))
    assert list(first["offset"]) == record_offsets(src / "1001-c.gnt")
    assert (table["code"] == [int.from_bytes(ch.encode("gbk"), "big") for ch in table["character"]]).all()
    assert (table["sample"] == 1).all()

    with_symbols, counts = casia_steps.build_index(tmp_path / "raw", "level1+symbols", progress=False)
    assert counts["classes"] == CHARACTERS + 1 and counts["dropped"] == 1
    assert with_symbols.loc[with_symbols["character"] == "，", "label"].tolist() == [CHARACTERS]


def test_fetch_refuses_a_bad_file_and_leaves_the_old_output(tmp_path):
    src = corpus(tmp_path / "gnt")
    casia_steps.fetch(src, tmp_path / "raw", progress=False)
    before = (tmp_path / "raw" / "SOURCE.json").read_bytes()
    offset = break_size(src / "1003-c.gnt", 5)
    with pytest.raises(DataError, match=rf"1003-c\.gnt: record 5 at byte offset {offset}"):
        casia_steps.fetch(src, tmp_path / "raw", progress=False)
    assert (tmp_path / "raw" / "SOURCE.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # The index step reads the records again and stops at the same one.
    with pytest.raises(DataError, match=rf"1003-c\.gnt: record 5 at byte offset {offset}: sample size"):
        casia_steps.build_index(tmp_path / "raw", progress=False)
    # A file that grew since fetch is refused before any record is read.
    with open(src / "1004-c.gnt", "ab") as handle:
        handle.write(gnt_bytes([("啊", draw_glyph("啊", 1004, 9))]))
    with pytest.raises(DataError, match=r"1004-c\.gnt: not as .* recorded it .*rerun the fetch step"):
        casia_steps.build_index(tmp_path / "raw", progress=False)


def test_fit_square_keeps_aspect_and_centres_light_ink_on_black():
    record = np.full((50, 100), 255, dtype=np.uint8)
    record[:, :] = 0  # a solid dark block 100 wide, 50 tall
    out = fit_square(record, 64, margin_pixels(64, 0.0625), Image.Resampling.BILINEAR)
    ys, xs = np.nonzero(out > 128)
    assert (xs.min(), xs.max() + 1) == (4, 60)  # longer side fills the 56-px inner square
    assert (ys.min(), ys.max() + 1) == (18, 46)  # 28 px tall, centred
    assert out[0].max() == 0 and out[:, 0].max() == 0
    small = fit_square(np.zeros((10, 5), np.uint8), 64, 0, Image.Resampling.NEAREST)
    assert (small > 0).sum() == 32 * 64  # scaled up: 5x10 -> 32x64
    with pytest.raises(ConfigError, match="casia.margin"):
        margin_pixels(64, 0.5)


@pytest.mark.parametrize("source_kind", ["folder", "zip"])
def test_resize_rows_follow_the_index_with_any_worker_count(tmp_path, source_kind):
    src = corpus(tmp_path / "gnt", samples=2)
    source = src if source_kind == "folder" else zip_corpus(src, tmp_path / "hwdb.zip")
    casia_steps.fetch(source, tmp_path / "raw", progress=False)
    table, _ = casia_steps.build_index(tmp_path / "raw", progress=False)
    table.to_csv(tmp_path / "index.csv", index=False)
    shape = casia_steps.make_images(
        tmp_path / "raw",
        tmp_path / "index.csv",
        32,
        "bilinear",
        0.0625,
        tmp_path / "one.npy",
        workers=1,
        progress=False,
    )
    assert shape == (len(table), 32, 32)
    casia_steps.make_images(
        tmp_path / "raw",
        tmp_path / "index.csv",
        32,
        "bilinear",
        0.0625,
        tmp_path / "two.npy",
        workers=2,
        progress=False,
    )
    one, two = np.load(tmp_path / "one.npy"), np.load(tmp_path / "two.npy")
    np.testing.assert_array_equal(one, two)
    # Row i is the record the index's row i points at.
    index = read_index(tmp_path / "index.csv")
    for row in (0, 7, len(index) - 1):
        path, offset = index.loc[row, "path"], int(index.loc[row, "offset"])
        raw = (src / path.split("!")[-1]).read_bytes()
        record = read_all(raw[offset:])[0]
        assert casia.tag_character(record.tag) == index.loc[row, "character"]
        expected = fit_square(record.image(), 32, 2, Image.Resampling.BILINEAR)
        np.testing.assert_array_equal(one[row], expected)


def test_resize_refuses_an_index_the_source_no_longer_matches(tmp_path):
    src = corpus(tmp_path / "gnt")
    casia_steps.fetch(src, tmp_path / "raw", progress=False)
    table, _ = casia_steps.build_index(tmp_path / "raw", progress=False)
    table.loc[3, "offset"] += 1
    table.to_csv(tmp_path / "index.csv", index=False)
    out = tmp_path / "images_32.npy"
    with pytest.raises(DataError, match=rf"1001-c\.gnt: no record starts at byte offset {table.loc[3, 'offset']}"):
        casia_steps.make_images(
            tmp_path / "raw", tmp_path / "index.csv", 32, "bilinear", 0.0, out, workers=1, progress=False
        )
    assert not out.exists() and not any(p.name.startswith(".images_32") for p in tmp_path.iterdir())
    table.loc[3, "offset"] -= 1
    table.loc[3, "width"] += 1
    table.to_csv(tmp_path / "index.csv", index=False)
    with pytest.raises(DataError, match=r"the index says \d+x\d+ .*rerun fetch and index"):
        casia_steps.make_images(
            tmp_path / "raw", tmp_path / "index.csv", 32, "bilinear", 0.0, out, workers=1, progress=False
        )


def test_cli_runs_the_three_steps_and_reports_errors(tmp_path, capsys):
    src = corpus(tmp_path / "gnt", writers=(1001, 1002))
    raw, index, images = tmp_path / "raw", tmp_path / "index.csv", tmp_path / "images_24.npy"
    assert casia_steps.main(["fetch", "--source", f"casia-hwdb:{src}", "--out", str(raw)]) == 0
    assert casia_steps.main(["index", "--raw", str(raw), "--out", str(index)]) == 0
    assert (
        casia_steps.main(
            ["resize", "--raw", str(raw), "--index", str(index), "--size", "24", "--out", str(images), "--workers", "1"]
        )
        == 0
    )
    assert np.load(images).shape == (2 * CHARACTERS, 24, 24)
    out = capsys.readouterr().out
    assert re.search(rf"{2 * CHARACTERS} records, {CHARACTERS} classes \(level1\), 2 writers", out)
    (src / "1002-c.gnt").write_bytes(encode_record(b"\xff\xfe", np.zeros((2, 2), np.uint8)))
    assert casia_steps.main(["fetch", "--source", str(src), "--out", str(raw)]) == 2
    assert "1002-c.gnt: record 0 at byte offset 0: unknown tag code 0xFFFE" in capsys.readouterr().err


def test_resize_refuses_an_index_without_casia_columns(tmp_path):
    src = corpus(tmp_path / "gnt", writers=(1001, 1002))
    casia_steps.fetch(src, tmp_path / "raw", progress=False)
    table, _ = casia_steps.build_index(tmp_path / "raw", progress=False)
    table.drop(columns="offset").to_csv(tmp_path / "index.csv", index=False)
    with pytest.raises(DataError, match=r"index\.csv: missing column 'offset': not a CASIA-HWDB index"):
        casia_steps.make_images(tmp_path / "raw", tmp_path / "index.csv", 32, "bilinear", 0.0, tmp_path / "x.npy")
    table.iloc[::-1].to_csv(tmp_path / "index.csv", index=False)
    with pytest.raises(DataError, match=r"column 'id' must be the row number"):
        casia_steps.make_images(tmp_path / "raw", tmp_path / "index.csv", 32, "bilinear", 0.0, tmp_path / "x.npy")


def test_the_resize_filters_apply_and_no_torch_is_loaded():
    import subprocess
    import sys

    from hccr.data.resize import resampling

    with pytest.raises(ConfigError, match="resize.filter: unknown filter 'box'"):
        resampling("box")
    # The data steps of a million-record corpus run in worker processes: torch (300 MB) stays out.
    steps = "hccr.data.casia_steps, hccr.data.fetch, hccr.data.index, hccr.data.resize, hccr.data.subset"
    code = f"import sys, {steps}; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
