"""The glyph starts: the pretraining's backbone loads strictly, the head is new, the label is honest."""

from __future__ import annotations

import pytest
import torch

from hccr import models
from hccr.classes import Classes
from hccr.errors import ConfigError
from hccr.models import checkpoint
from hccr.starts import GLYPH_STARTS, start_label, start_order

CNN = {"arch": "cnn", "input_size": 32, "in_chans": 1, "width": [8, 16], "convs_per_block": 1, "dropout": 0.1}
GLYPH_CLASSES = Classes(tuple("啊阿埃挨哎唉零一"), (None,) * 8)
CORPUS = {"classes": 8, "fonts": [{"name": "ukai"}, {"name": "uming"}], "variants": 1}


def pretrain_checkpoint(path, cfg=CNN, start="scratch", split="all", excluded="", model="cnn"):
    """What the glyph_pretrain rule writes: an 8-way glyph model's checkpoint with its corpus record."""
    torch.manual_seed(0)
    net, _ = models.create(model, dict(cfg), "none", num_classes=len(GLYPH_CLASSES))
    for p in net.parameters():  # weights no fresh model would have
        torch.nn.init.normal_(p, 0.0, 0.5)
    checkpoint.save(
        path, model_name=model, config=dict(cfg), state_dict=net.state_dict(), input_size=cfg["input_size"],
        normalize={"mean": 0.1, "std": 0.2}, classes=GLYPH_CLASSES, start=start, epoch=1, val_accuracy=0.5,
        corpus={**CORPUS, "split": split, "excluded_characters": excluded},
    )  # fmt: skip
    return net


def test_glyphs_start_loads_the_backbone_exactly_and_a_fresh_15_way_head(tmp_path):
    pre = pretrain_checkpoint(tmp_path / "glyphs.pt")
    cfg = {**CNN, "input_size": 48}  # the fine-tuning may run at another size: the backbone is convolutional
    model, start = models.create("cnn", cfg, "glyphs", num_classes=15, start_weights=str(tmp_path / "glyphs.pt"))
    assert start == "glyphs"
    assert model.start_source == "pretrain/cnn: 8 classes, 2 fonts"
    theirs = pre.backbone.state_dict()
    for key, value in model.backbone.state_dict().items():
        torch.testing.assert_close(value, theirs[key], msg=key)
    assert model(torch.zeros(2, 1, 48, 48)).shape == (2, 15)
    pre_head = {k: v.shape for k, v in pre.head.state_dict().items()}
    assert any(pre_head[k] != v.shape for k, v in model.head.state_dict().items())  # 8-way there, 15-way here


def test_imagenet_then_glyphs_and_the_ablation_need_the_matching_pretraining(tmp_path):
    pretrain_checkpoint(tmp_path / "scratch.pt")
    pretrain_checkpoint(tmp_path / "imagenet.pt", start="imagenet")
    pretrain_checkpoint(tmp_path / "excl.pt", split="excl", excluded="零一")
    model, start = models.create(
        "cnn", CNN, "imagenet+glyphs", num_classes=15, start_weights=str(tmp_path / "imagenet.pt")
    )
    assert start == "imagenet+glyphs"
    model, start = models.create("cnn", CNN, "glyphs-excl", num_classes=15, start_weights=str(tmp_path / "excl.pt"))
    assert start == "glyphs-excl" and model.start_source.endswith("without the target's 2 characters")
    with pytest.raises(
        ConfigError, match="pretrained from 'scratch' weights.*needs a glyph pretraining from 'imagenet'"
    ):
        models.create("cnn", CNN, "imagenet+glyphs", num_classes=15, start_weights=str(tmp_path / "scratch.pt"))
    with pytest.raises(ConfigError, match="corpus split 'all'.*needs 'excl'"):
        models.create("cnn", CNN, "glyphs-excl", num_classes=15, start_weights=str(tmp_path / "scratch.pt"))
    with pytest.raises(ConfigError, match="corpus split 'excl'.*needs 'all'"):
        models.create("cnn", CNN, "glyphs", num_classes=15, start_weights=str(tmp_path / "excl.pt"))


def test_a_backbone_of_another_shape_or_a_plain_checkpoint_is_refused(tmp_path):
    pretrain_checkpoint(tmp_path / "wide.pt", cfg={**CNN, "width": [8, 32]})
    with pytest.raises(ConfigError, match="backbone in .*wide.pt does not fit model.cnn"):
        models.create("cnn", CNN, "glyphs", num_classes=15, start_weights=str(tmp_path / "wide.pt"))
    net, _ = models.create("cnn", CNN, "none", num_classes=15)
    torch.save(net.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ConfigError, match="not a glyph pretraining checkpoint"):
        models.create("cnn", CNN, "glyphs", num_classes=15, start_weights=str(tmp_path / "plain.pt"))
    with pytest.raises(ConfigError, match="needs the glyph pretraining's checkpoint"):
        models.create("cnn", CNN, "glyphs", num_classes=15)
    with pytest.raises(ConfigError, match="does not exist"):
        models.create("cnn", CNN, "glyphs", num_classes=15, start_weights=str(tmp_path / "none.pt"))


def test_efficientnet_lite0_glyph_start_loads_strictly(tmp_path):
    lite = {"network": "efficientnet", "arch": "tf_efficientnet_lite0", "input_size": 64, "in_chans": 3,
            "head": {"hidden": 16, "dropout": 0.1}, "drop_path_rate": 0.2}  # fmt: skip
    pre = pretrain_checkpoint(tmp_path / "lite.pt", cfg=lite, model="efficientnet")
    model, start = models.create(
        "efficientnet", lite, "glyphs", num_classes=15, start_weights=str(tmp_path / "lite.pt")
    )
    assert start == "glyphs"
    mine, theirs = model.backbone.state_dict(), pre.backbone.state_dict()
    assert mine.keys() == theirs.keys() and len(mine) > 200
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_every_glyph_start_has_a_label_and_sorts_after_imagenet():
    for kind in GLYPH_STARTS:
        assert start_label(kind) != kind
        assert start_order("imagenet") < start_order(kind) < start_order("file:/x.pt")
