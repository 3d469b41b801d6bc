"""The real snakemake on the tiny config with glyph starts: corpus -> split -> pretrain -> fine-tune -> metrics."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from snakemake.utils import update_config

from hccr import fonts
from hccr.errors import DataError

from helpers_workflow import describe, make_project, snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

TARGETS = ["models/runs/cnn_glyphs/small/train.json", "reports/metrics/cnn_glyphs/small.json",
           "models/runs/cnn_glyphs_excl/small/train.json"]  # fmt: skip


def real_fonts():
    found = []
    for name in fonts.FONTS:
        try:
            fonts.named_font(name)
            found.append(name)
        except DataError:
            continue
    if len(found) < 2:
        pytest.skip("needs two of the Debian CJK fonts (.ci/run installs fonts-arphic-* and fonts-wqy-*)")
    return found[:2]


@pytest.fixture(scope="module")
def glyph_project(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("glyph_project"))
    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    tiny = yaml.safe_load((project / "tiny.yaml").read_text(encoding="utf-8"))
    block = params["model"]["cnn"]
    update_config(block, tiny["model"]["cnn"])  # nested keys (augment) merge, as Snakemake merges them
    block.update(network="cnn", pretrained="glyphs")
    block.pop("sizes")
    overrides = {
        "models": ["cnn_glyphs", "cnn_glyphs_excl"],
        "sizes": ["small"],
        "model": {"cnn_glyphs": block, "cnn_glyphs_excl": {**block, "pretrained": "glyphs-excl"}},
        "glyphs": {
            "fonts": real_fonts(),
            "characters": "零一二三四五六七八九十百千万亿啊阿埃挨哎唉哀皑癌蔼矮艾碍爱隘",
            "variants": 1,
            "pretrain": {"batch_size": 16, "phases": [{"name": "glyphs", "epochs": 1, "lr": 3e-3, "freeze": "none"}]},
        },
    }
    (project / "glyphs.yaml").write_text(yaml.safe_dump(overrides, allow_unicode=True), encoding="utf-8")
    proc = snakemake(project, *TARGETS, "--configfile", "tiny.yaml", "glyphs.yaml", timeout=1200)
    assert proc.returncode == 0, describe(proc)
    return project


def test_the_pretrain_rule_trains_on_the_corpus_and_keeps_its_record(glyph_project):
    pre = glyph_project / "models/pretrain/cnn_glyphs/glyphs"
    record = torch.load(pre / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert len(record["characters"]) == 30 and record["start"] == "scratch"  # N from the data, not 3,755
    assert record["corpus"]["split"] == "all" and record["corpus"]["excluded_characters"] == ""
    summary = json.loads((pre / "train.json").read_text())
    assert summary["n_train"] + summary["n_val"] == 60  # 30 characters x 2 fonts x 1 variant
    excl = torch.load(glyph_project / "models/pretrain/cnn_glyphs_excl/glyphs-excl/checkpoint.pt", weights_only=True)
    assert excl["corpus"]["excluded_characters"] == "零一二三四五六七八九十百千万亿"
    assert (
        json.loads((glyph_project / "models/pretrain/cnn_glyphs_excl/glyphs-excl/train.json").read_text())["n_train"]
        + 2
        < summary["n_train"]
    )  # the numerals' 30 images are gone


def test_fine_tuned_runs_record_the_glyph_start_everywhere(glyph_project):
    run = json.loads((glyph_project / "models/runs/cnn_glyphs/small/train.json").read_text())
    assert run["start"] == "glyphs"
    # the tiny corpus prints the 15 numerals, and every artifact's source says so
    assert run["start_source"] == (
        "pretrain/cnn_glyphs: 30 classes, 2 fonts, the target's 15 characters among them (printed, not handwritten)"
    )
    metrics = json.loads((glyph_project / "reports/metrics/cnn_glyphs/small.json").read_text())
    assert metrics["start"] == "glyphs" and metrics["test"]["n"] > 0
    ckpt = torch.load(glyph_project / "models/runs/cnn_glyphs/small/checkpoint.pt", weights_only=True)
    assert ckpt["start"] == "glyphs" and len(ckpt["characters"]) == 15
    excl = json.loads((glyph_project / "models/runs/cnn_glyphs_excl/small/train.json").read_text())
    assert excl["start"] == "glyphs-excl" and "without the target's 15 characters" in excl["start_source"]


def test_nothing_to_do_after_and_a_new_corpus_reruns_the_pretraining(glyph_project):
    proc = snakemake(glyph_project, *TARGETS, "--configfile", "tiny.yaml", "glyphs.yaml", "-n")
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr, describe(proc)
    proc = snakemake(
        glyph_project, *TARGETS, "--configfile", "tiny.yaml", "glyphs.yaml", "--config", "glyphs={'variants': 2}",
        "-n", "--quiet", "rules",
    )  # fmt: skip
    assert proc.returncode == 0, describe(proc)
    for rule in ("glyph_corpus", "glyph_pretrain", "train_run"):
        assert rule in proc.stdout, (rule, proc.stdout)
