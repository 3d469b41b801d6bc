"""The printed-glyph corpus: GB2312 level 1 from the codec, named fonts, rendering on real fonts, the split."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from hccr import fonts
from hccr.data import glyphs
from hccr.data.glyphs_augment import GlyphAugment
from hccr.data.glyphs_split import glyph_split
from hccr.data.glyphs_split import main as split_main
from hccr.data.index import read_index
from hccr.errors import DataError

NUMERALS = "零一二三四五六七八九十百千万亿"
DEJAVU = Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf"


def installed(name: str):
    try:
        return fonts.named_font(name)
    except DataError:
        return None


def two_real_fonts():
    found = [f for f in (installed(n) for n in fonts.FONTS) if f is not None]
    if len(found) < 2:
        pytest.skip("needs two of the Debian CJK fonts (.ci/run installs fonts-arphic-* and fonts-wqy-*)")
    return found[:2]


def test_level1_is_the_3755_characters_of_gb2312_rows_b0_to_d7():
    chars = glyphs.gb2312_level1()
    assert len(chars) == 3755 and len(set(chars)) == 3755
    lead = {ch.encode("gb2312")[0] for ch in chars}
    assert min(lead) == 0xB0 and max(lead) == 0xD7
    assert chars[0] == "啊" and chars[-1] == "座"  # the first and last of level 1 in code order
    assert all(ch in chars for ch in NUMERALS)  # the target's numerals are among the glyphs
    assert "亍" not in chars  # 0xD8A1: the first character of level 2


def test_a_missing_named_font_names_the_debian_package(monkeypatch):
    monkeypatch.setitem(fonts.FONTS, "nofont", fonts.FontSpec("No Such Family CN", ("nosuch.ttc",), "fonts-nosuch"))
    with pytest.raises(DataError, match=r"fonts-nosuch.*apt-get install fonts-nosuch"):
        fonts.named_font("nofont")
    with pytest.raises(DataError, match="unknown font 'comic'"):
        fonts.named_font("comic")


def test_render_on_two_real_fonts_every_glyph_inked_and_deterministic(tmp_path):
    two = two_real_fonts()
    chars = NUMERALS + "啊阿埃"
    images, table, lacking = glyphs.render_corpus(two, chars, 2, 64, seed=5, aug=GlyphAugment(), workers=1)
    assert images.shape == (2 * 2 * len(chars), 64, 64) and images.dtype == np.uint8
    assert not lacking
    assert ((images > 64).sum(axis=(1, 2)) >= 10).all()  # every glyph has visible strokes
    assert (images[:, 0, :] < 64).mean() > 0.9  # light on black: the border stays dark
    assert table["id"].tolist() == list(range(len(table)))
    assert set(table["font"]) == {f.name for f in two} and set(table["variant"]) == {0, 1}
    assert table.groupby("label")["character"].nunique().eq(1).all()
    assert table.drop_duplicates("label").sort_values("label")["character"].str.cat() == chars
    again, _, _ = glyphs.render_corpus(two, chars, 2, 64, seed=5, aug=GlyphAugment(), workers=2)
    np.testing.assert_array_equal(images, again)  # same seed, another worker count: same corpus
    other, _, _ = glyphs.render_corpus(two, chars, 2, 64, seed=6, aug=GlyphAugment(), workers=1)
    assert (other != images).any(axis=(1, 2)).all()  # another seed redraws every image
    assert (images[: len(chars)] != images[len(chars) : 2 * len(chars)]).any(axis=(1, 2)).all()  # variants differ


def test_each_image_is_the_same_whatever_else_the_corpus_holds(monkeypatch):
    # A job draws a glyph once for all variants; each image must still land on its own index row.
    two = two_real_fonts()
    chars = NUMERALS
    monkeypatch.setattr(glyphs, "CHUNK", 7)  # several jobs per font, the last one short
    three, table, _ = glyphs.render_corpus(two, chars, 3, 32, seed=1, aug=GlyphAugment(), workers=2)
    fewer, fewer_table, _ = glyphs.render_corpus(two, chars[:9], 2, 32, seed=1, aug=GlyphAugment(), workers=1)
    key = ["font", "variant", "character"]
    rows = table.reset_index().merge(fewer_table.reset_index(), on=key, suffixes=("", "_fewer"))
    assert len(rows) == len(fewer_table) == 2 * 2 * 9
    np.testing.assert_array_equal(three[rows["index"]], fewer[rows["index_fewer"]])


def test_a_font_lacking_a_glyph_is_reported(tmp_path):
    real = two_real_fonts()[0]
    latin = fonts.named_font(str(DEJAVU))  # DejaVu Sans maps no CJK character
    with pytest.raises(DataError, match=r"DejaVuSans.*no glyph for 3 of the 3 characters.*零 一 二"):
        glyphs.render_corpus([real, latin], "零一二", 1, 32, 0, GlyphAugment(), workers=1)
    images, table, lacking = glyphs.render_corpus(
        [real, latin], "零一二", 1, 32, 0, GlyphAugment(), workers=1, on_missing="skip"
    )
    assert lacking == {"DejaVuSans": "零一二"} and len(images) == 3 and set(table["font"]) == {real.name}
    with pytest.raises(DataError, match="no font has 零 一 二"):
        glyphs.render_corpus([latin], "零一二", 1, 32, 0, GlyphAugment(), workers=1, on_missing="skip")


def test_cli_writes_array_index_and_summary(tmp_path):
    two = two_real_fonts()
    out = tmp_path / "g"
    code = glyphs.main(
        ["--fonts", *[f.name for f in two], "--variants", "1", "--size", "32", "--characters", "零一二三",
         "--images", str(out / "images_32.npy"), "--index", str(out / "index.csv"),
         "--summary", str(out / "corpus.json"), "--workers", "1"]
    )  # fmt: skip
    assert code == 0
    index = read_index(out / "index.csv")  # the reader every step uses accepts it
    assert len(index) == 8 and np.load(out / "images_32.npy").shape == (8, 32, 32)
    summary = json.loads((out / "corpus.json").read_text())
    assert summary["classes"] == 4 and [f["name"] for f in summary["fonts"]] == [f.name for f in two]
    assert glyphs.main(["--fonts", "ukai", "--characters", "零", "--images", "a.npy", "--index", "a.csv",
                        "--summary", "a.json"]) == 2  # fmt: skip


def test_split_leaves_out_the_targets_characters_only_in_excl(tmp_path):
    chars = "零一二啊阿埃挨哎唉"
    index = pd.DataFrame({"id": range(len(chars) * 4), "character": list(chars) * 4})
    every = glyph_split(index, "", 0.25, seed=1)
    assert len(every) == len(index) and (every["role"] == "val").sum() == 9
    excl = glyph_split(index, "零一二", 0.25, seed=1)
    kept = index.set_index("id").loc[excl["id"], "character"]
    assert not set(kept) & set("零一二") and len(excl) == 24
    with pytest.raises(DataError, match="val_fraction"):
        glyph_split(index, "", 1.5, seed=1)


def test_split_cli_records_the_excluded_characters(tmp_path):
    corpus = pd.DataFrame(
        {"id": range(6), "writer": 0, "sample": 0, "code": [ord(c) for c in "零一啊阿埃挨"], "value": None,
         "character": list("零一啊阿埃挨"), "label": range(6), "path": "f.ttc"}
    )  # fmt: skip
    target = pd.DataFrame(
        {"id": range(3), "writer": 1, "sample": 1, "code": [1, 2, 3], "value": [0, 1, 2],
         "character": list("零一二"), "label": [0, 1, 2], "path": "x.jpg"}
    )  # fmt: skip
    corpus.to_csv(tmp_path / "index.csv", index=False)
    target.to_csv(tmp_path / "target.csv", index=False)
    (tmp_path / "corpus.json").write_text(json.dumps({"classes": 6, "fonts": [{"name": "f"}]}))
    args = ["--index", str(tmp_path / "index.csv"), "--summary", str(tmp_path / "corpus.json"),
            "--target-index", str(tmp_path / "target.csv"), "--val-fraction", "0.25"]  # fmt: skip
    assert (
        split_main(
            [*args, "--which", "excl", "--out", str(tmp_path / "e.csv"), "--out-summary", str(tmp_path / "e.json")]
        )
        == 0
    )
    summary = json.loads((tmp_path / "e.json").read_text())
    assert summary["split"] == "excl" and summary["excluded_characters"] == "零一"
    assert summary["target_characters_in_corpus"] == 2 and summary["classes"] == 6
    assert set(pd.read_csv(tmp_path / "e.csv")["id"]) == {2, 3, 4, 5}


def test_the_corpus_steps_import_neither_torch_nor_reporting():
    import subprocess
    import sys

    code = (
        "import sys, hccr.data.glyphs, hccr.data.glyphs_split; "
        "print(sorted(m for m in sys.modules if m == 'torch' or m == 'matplotlib' or m.startswith('hccr.reporting')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_count_takes_an_even_spread_of_the_characters():
    level1 = glyphs.gb2312_level1()
    picked = glyphs.spread(level1, 500)
    assert len(picked) == len(set(picked)) == 500
    positions = [level1.index(ch) for ch in picked]
    assert positions[0] == 0 and positions == sorted(positions)
    gaps = np.diff(positions)
    assert gaps.min() >= 7 and gaps.max() <= 8  # 3,755 / 500 = 7.51: every 7th or 8th
    assert glyphs.spread(level1, 0) == level1 == glyphs.spread(level1, 5000)
    with pytest.raises(DataError, match="glyphs.count: 1"):
        glyphs.spread(level1, 1)
