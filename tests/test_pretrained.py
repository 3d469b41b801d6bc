"""Pretrained weights: local files (torch and safetensors), the HF cache, offline failures, auto."""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import timm
import torch
import yaml
from safetensors.torch import save_file

from hccr.errors import ConfigError
from hccr.models import create

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["model"]
EFFNET = "tf_efficientnetv2_s"


def cfg_for(name: str, **overrides) -> dict:
    cfg = copy.deepcopy(PARAMS[name])
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="module")
def effnet_weights(tmp_path_factory) -> dict:
    """A published-style timm state_dict (random init, 1000-class classifier included)."""
    torch.manual_seed(7)
    return timm.create_model(EFFNET, pretrained=False).state_dict()


@pytest.fixture(autouse=True)
def empty_caches(tmp_path, monkeypatch):
    """No weights in any cache, whatever this machine holds."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def assert_backbone_matches(backbone: torch.nn.Module, weights: dict, stem: str, in_chans: int = 3):
    state = backbone.state_dict()
    for key, value in state.items():
        if key == f"{stem}.weight" and in_chans == 1:
            # timm folds an RGB stem into one channel by summing over the colour axis.
            assert torch.allclose(value, weights[key].sum(dim=1, keepdim=True))
        else:
            assert torch.equal(value, weights[key]), key
    assert set(weights) - set(state) <= {"classifier.weight", "classifier.bias", "fc.weight", "fc.bias"}
    assert not any(key.startswith(("classifier.", "fc.")) for key in state)  # the classifier is gone


def test_efficientnet_from_a_torch_file(tmp_path, effnet_weights):
    path = tmp_path / "weights.pth"
    torch.save(effnet_weights, path)
    model, start = create("efficientnet", cfg_for("efficientnet", input_size=32), str(path), num_classes=15)
    assert start == f"file:{path.resolve()}"
    assert_backbone_matches(model.backbone, effnet_weights, "conv_stem")


def test_efficientnet_one_channel_from_safetensors(tmp_path, effnet_weights):
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in effnet_weights.items()}, str(path))
    model, start = create("efficientnet", cfg_for("efficientnet", input_size=32, in_chans=1), str(path), num_classes=15)
    assert start == f"file:{path.resolve()}"
    assert model.backbone.conv_stem.weight.shape[1] == 1
    assert_backbone_matches(model.backbone, effnet_weights, "conv_stem", in_chans=1)
    assert model.eval()(torch.randn(2, 1, 32, 32)).shape == (2, 15)


def test_inception_from_a_headless_torch_file(tmp_path):
    torch.manual_seed(3)
    weights = timm.create_model("inception_v3", pretrained=False, num_classes=0).state_dict()
    assert not any(key.startswith("fc.") for key in weights)
    path = tmp_path / "inception.pth"
    torch.save(weights, path)
    model, start = create("inception_gru", cfg_for("inception_gru", input_size=75), str(path), num_classes=15)
    assert start == f"file:{path.resolve()}"
    assert_backbone_matches(model.backbone, weights, "Conv2d_1a_3x3.conv")


def test_cnn_from_its_own_state_dict(tmp_path):
    source, _ = create("cnn", cfg_for("cnn"), num_classes=15)
    path = tmp_path / "cnn.pt"
    torch.save(source.state_dict(), path)
    model, start = create("cnn", cfg_for("cnn"), str(path), num_classes=15)
    assert start == f"file:{path.resolve()}"
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="missing.pth"):
        create("efficientnet", cfg_for("efficientnet", input_size=32), str(tmp_path / "missing.pth"), num_classes=15)


def test_corrupt_weights_file_is_named(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"\x00not a torch file")
    with pytest.raises(ConfigError, match="broken.pth"):
        create("efficientnet", cfg_for("efficientnet", input_size=32), str(path), num_classes=15)


def test_weights_of_another_network_are_refused(tmp_path):
    source, _ = create("cnn", cfg_for("cnn"), num_classes=15)
    path = tmp_path / "cnn.pt"
    torch.save({k.removeprefix("backbone."): v for k, v in source.state_dict().items()}, path)
    with pytest.raises(ConfigError, match="cnn.pt"):
        create("efficientnet", cfg_for("efficientnet", input_size=32), str(path), num_classes=15)


def test_imagenet_offline_fails_at_once_naming_the_ways_out():
    with pytest.raises(ConfigError) as err:
        create("efficientnet", cfg_for("efficientnet", input_size=32), "imagenet", num_classes=15)
    message = str(err.value)
    for way_out in ("pretrained: <path", "pretrained: none", "pretrained: auto", "HF_HUB_OFFLINE"):
        assert way_out in message


def test_auto_offline_falls_back_to_scratch(caplog):
    with caplog.at_level(logging.WARNING, logger="hccr.models.pretrained"):
        model, start = create("efficientnet", cfg_for("efficientnet", input_size=32), "auto", num_classes=15)
    assert start == "scratch"
    assert "starting from scratch" in caplog.text
    assert model.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 15)


def test_imagenet_comes_from_the_hf_cache_without_network(tmp_path, effnet_weights):
    # The layout huggingface_hub leaves behind after a download of the configured arch.tag.
    repo = timm.models.get_pretrained_cfg(cfg_for("efficientnet")["arch"]).hf_hub_id
    folder = Path(huggingface_hub.constants.HF_HUB_CACHE) / ("models--" + repo.replace("/", "--"))
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True)
    save_file(
        {k: v.contiguous() for k, v in effnet_weights.items()}, str(folder / "snapshots" / commit / "model.safetensors")
    )
    model, start = create("efficientnet", cfg_for("efficientnet", input_size=32), "imagenet", num_classes=15)
    assert start == "imagenet"
    assert_backbone_matches(model.backbone, effnet_weights, "conv_stem")


@pytest.mark.slow
def test_unreachable_hub_fails_without_the_download_retries(tmp_path):
    """A real process with the network "on" but the hub endpoint refusing connections."""
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf"),
        "TORCH_HOME": str(tmp_path / "torch"),
        "HF_ENDPOINT": "http://127.0.0.1:9",
    }
    env.pop("HF_HUB_OFFLINE", None)
    script = (
        "import json, sys\n"
        "from hccr.models import create\n"
        "from hccr.errors import ConfigError\n"
        "try:\n"
        "    create('cnn', {'width': [4]}, 'none', num_classes=15)\n"
        "    create('efficientnet', json.loads(sys.argv[1]), 'imagenet', num_classes=15)\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(2)\n"
    )
    cfg = json.dumps(cfg_for("efficientnet", input_size=32))
    # timm's own download retries for ~47 s here before giving up; the probe answers at once.
    done = subprocess.run([sys.executable, "-c", script, cfg], env=env, capture_output=True, text=True, timeout=40)
    assert done.returncode == 2, done.stderr
    assert "hub is unreachable" in done.stdout and "pretrained: none" in done.stdout
