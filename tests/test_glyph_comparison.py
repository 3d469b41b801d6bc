"""The report's glyph part: the honesty note, the duels, the winners, the pretraining cost."""

from __future__ import annotations

import json

from hccr.reporting import glyph_comparison as gc
from hccr.reporting import report_render as rr
from hccr.reporting import start_comparison as sc
from hccr.starts import glyph_source
from test_start_comparison import make_run

CNN = {"network": "cnn", "arch": "cnn", "input_size": 64}


def runs():
    return [
        make_run("cnn", "tiny", "scratch", 0.30, 0.27, 0.33, 100, config=CNN),
        make_run(
            "cnn_glyphs", "tiny", "glyphs", 0.62, 0.59, 0.65, 100, config=CNN, source="pretrain/cnn: 3,755 classes"
        ),
        make_run("cnn_glyphs_excl", "tiny", "glyphs-excl", 0.55, 0.52, 0.58, 100, config=CNN),
        make_run("cnn", "small", "scratch", 0.80, 0.78, 0.82, 1050, config=CNN),
        make_run("cnn_glyphs", "small", "glyphs", 0.81, 0.79, 0.83, 1050, config=CNN),
    ]


def test_duels_and_winners_say_who_wins_and_whether_it_counts():
    table = sc.comparison_table(runs())
    found = {(d["size"], d["better"], d["baseline"]): d for d in gc.duels(table)}
    assert set(found) == {
        ("tiny", "glyphs", "scratch"),
        ("tiny", "glyphs", "glyphs-excl"),
        ("small", "glyphs", "scratch"),
    }
    assert (
        found[("tiny", "glyphs", "scratch")]["better_wins"] and not found[("small", "glyphs", "scratch")]["better_wins"]
    )
    lines = gc.winners(table)
    assert len(lines) == 2 and "`tiny`" in lines[0] and "+7.00 pp over printed glyphs without" in lines[0]
    assert "intervals overlap" in lines[1] and "`small`" in lines[1]


def test_section_has_the_numerals_note_and_the_pretraining_cost(tmp_path):
    pre = tmp_path / "models/pretrain/cnn_glyphs/glyphs"
    pre.mkdir(parents=True)
    corpus = {"classes": 3755, "fonts": [{}, {}, {}, {}], "excluded_characters": "", "target_characters_in_corpus": 15}
    (pre / "train.json").write_text(
        json.dumps(
            {"corpus": corpus, "n_train": 28530, "epochs": 2, "seconds_total": 812.0, "config": {"dropout": 0.0}}
        )
    )
    lite0 = tmp_path / "models/pretrain/efficientnet_glyphs/glyphs"
    lite0.mkdir(parents=True)
    recorded = {"head": {"hidden": 1024, "dropout": 0.5}, "drop_path_rate": 0.2}
    (lite0 / "train.json").write_text(json.dumps({"corpus": corpus, "n_train": 10, "epochs": 1, "config": recorded}))
    doc = rr.Document("t")
    gc.add_section(doc, sc.comparison_table(runs()), tmp_path / "models/runs")
    text = rr.to_markdown(doc, tmp_path)
    assert "15 numerals are among" in text and "ablation" in text
    assert "| cnn_glyphs | printed glyphs (pretrained) | 3,755 | 4 | — | 28,530 | 2 | dropout 0 | 13.5 min |" in text
    assert "| 10 | 1 | dropout 0.5, stochastic depth 0.2 |" in text
    empty = rr.Document("t")
    gc.add_section(empty, sc.comparison_table(runs()[:1] + runs()[3:4]), tmp_path / "models/runs")
    assert empty.blocks == []  # no glyph start: nothing added


def test_the_note_says_so_when_the_corpus_holds_none_of_the_numerals(tmp_path):
    corpus = {"classes": 500, "fonts": [{}], "target_characters_in_corpus": 0}
    for start in ("cnn_glyphs/glyphs", "efficientnet_imagenet_glyphs/imagenet+glyphs"):
        pre = tmp_path / "models/pretrain" / start
        pre.mkdir(parents=True)
        (pre / "train.json").write_text(json.dumps({"corpus": corpus, "n_train": 15200, "epochs": 8}))
    doc = rr.Document("t")
    gc.add_section(doc, sc.comparison_table(runs()), tmp_path / "models/runs")
    text = rr.to_markdown(doc, tmp_path)
    assert "(500 of GB2312 level 1's 3,755 characters) holds none of" in text and "is transfer" in text
    assert "are among them" not in text
    # one pretraining that saw them is enough for the other note
    (tmp_path / "models/pretrain/cnn_glyphs/glyphs/train.json").write_text(
        json.dumps({"corpus": {"classes": 3755, "target_characters_in_corpus": 15}})
    )
    doc = rr.Document("t")
    gc.add_section(doc, sc.comparison_table(runs()), tmp_path / "models/runs")
    assert "15 numerals are among" in rr.to_markdown(doc, tmp_path)


def test_model_card_says_the_weights_came_from_printed_glyphs():
    from hccr.reporting.model_card import _start_banner

    cfg = {"arch": "cnn", "pretrained": "glyphs"}
    full = glyph_source("cnn_glyphs", 3755, 4, target_seen=15)
    banner = _start_banner("glyphs", full, cfg)
    assert "pretrained on printed Chinese glyphs" in banner and "scratch" not in banner
    assert "glyphs (pretrain/cnn_glyphs: 3,755 classes, 4 fonts, the target's 15 characters among them" in banner
    # The CPU corpus prints none of the numerals: the card must not claim it does (it once did).
    cpu = _start_banner("glyphs", glyph_source("cnn", 500, 4, target_seen=0), cfg)
    assert "none of the target's characters among them" in cpu and "15" not in cpu
    ablation = _start_banner("glyphs-excl", glyph_source("cnn", 3740, 4, excluded=15, target_seen=15), cfg)
    assert "without the target's 15 characters" in ablation and "among them" not in ablation


def test_a_glyph_source_without_a_corpus_count_claims_nothing_about_the_target():
    assert glyph_source("cnn", 8, 1) == "pretrain/cnn: 8 classes, 1 font"
