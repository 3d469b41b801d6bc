"""hccr.models: shapes, registry errors, layer counting, freezing, frozen BatchNorm, learning."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from hccr.errors import ConfigError
from hccr.models import REGISTRY, apply_freeze, count_parameters, create, layer_list
from hccr.models.base import is_frozen_batchnorm
from hccr.models.inception_gru import GruHead

from helpers_data import NUM_CLASSES

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["model"]


def cfg_for(name: str, **overrides) -> dict:
    cfg = copy.deepcopy(PARAMS[name])
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="module")
def efficientnet():
    model, start = create("efficientnet", cfg_for("efficientnet", input_size=64), "none", num_classes=15)
    assert start == "scratch"
    return model


@pytest.fixture(scope="module")
def inception():
    model, start = create("inception_gru", cfg_for("inception_gru", input_size=75), "none", num_classes=15)
    assert start == "scratch"
    return model


def backbone_ids(model: nn.Module) -> set[int]:
    return {id(p) for p in model.backbone.parameters()}


def trainable_ids(model: nn.Module) -> set[int]:
    return {id(p) for p in model.parameters() if p.requires_grad}


# --- shapes -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [64, 32])
def test_cnn_maps_grayscale_batch_to_logits(size):
    model, start = create("cnn", cfg_for("cnn", input_size=size), num_classes=15)
    assert start == "scratch"
    out = model.eval()(torch.randn(3, 1, size, size))
    assert out.shape == (3, NUM_CLASSES)
    assert torch.isfinite(out).all()


def test_efficientnet_shape_and_flatten_size(efficientnet):
    out = efficientnet.eval()(torch.randn(2, 1, 64, 64))
    assert out.shape == (2, NUM_CLASSES)
    # 64 px -> 1280 x 2 x 2 feature map, flattened into the first head Linear.
    first_linear = next(m for m in efficientnet.head if isinstance(m, nn.Linear))
    assert first_linear.in_features == 1280 * 2 * 2
    assert first_linear.out_features == PARAMS["efficientnet"]["head"]["hidden"]


def test_inception_gru_shape_and_head(inception):
    out = inception.eval()(torch.randn(2, 1, 75, 75))
    assert out.shape == (2, NUM_CLASSES)
    kinds = [type(m) for m in inception.head.classifier]
    assert kinds == [nn.Linear, nn.ReLU, nn.BatchNorm1d, nn.Dropout, nn.Linear]
    assert inception.head.gru.input_size == 2048
    assert inception.head.gru.hidden_size == PARAMS["inception_gru"]["head"]["gru_hidden"]


def test_three_channel_models_see_the_same_image_on_every_channel(efficientnet):
    x = torch.randn(2, 1, 64, 64)
    efficientnet.eval()
    assert torch.allclose(efficientnet(x), efficientnet.head(efficientnet.backbone(x.repeat(1, 3, 1, 1))))


@pytest.mark.parametrize("sequence, steps", [("pooled", 1), ("spatial", 12)])
def test_gru_head_sequence_length(sequence, steps):
    head = GruHead(
        features=8,
        sequence=sequence,
        gru_hidden=4,
        noise_std=0.1,
        hidden=6,
        dropout=0.0,
        batchnorm=True,
        num_classes=NUM_CLASSES,
    )
    seen = []
    head.gru.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape))
    out = head.eval()(torch.randn(5, 8, 3, 4))
    assert out.shape == (5, NUM_CLASSES)
    assert seen == [torch.Size([5, steps, 8])]


def test_gaussian_noise_only_in_training():
    head = GruHead(
        features=8,
        sequence="pooled",
        gru_hidden=4,
        noise_std=1.0,
        hidden=6,
        dropout=0.0,
        batchnorm=False,
        num_classes=NUM_CLASSES,
    )
    features = torch.randn(4, 8, 2, 2)
    head.eval()
    assert torch.equal(head(features), head(features))
    head.train()
    assert not torch.equal(head(features), head(features))


# --- registry and config errors ----------------------------------------------------------------


def test_unknown_model_lists_registry_keys():
    with pytest.raises(ConfigError) as err:
        create("resnet", {}, num_classes=15)
    for key in REGISTRY:
        assert key in str(err.value)


def test_inception_rejects_inputs_below_75_px():
    with pytest.raises(ConfigError, match="input_size.*75"):
        create("inception_gru", cfg_for("inception_gru", input_size=64), "none", num_classes=15)


def test_cnn_has_no_imagenet_weights():
    with pytest.raises(ConfigError, match="cnn.*imagenet|imagenet.*cnn"):
        create("cnn", cfg_for("cnn"), "imagenet", num_classes=15)


def test_cnn_default_size_is_about_0_29_m_parameters():
    model, _ = create("cnn", cfg_for("cnn"), num_classes=15)
    total, trainable = count_parameters(model)
    assert 250_000 < total < 330_000
    assert trainable == total
    wider, _ = create("cnn", cfg_for("cnn", width=[8, 16]), num_classes=15)
    assert count_parameters(wider)[0] < total


@pytest.mark.parametrize("bad", [{"width": []}, {"width": [32, -1]}, {"convs_per_block": 0}, {"input_size": 4}])
def test_cnn_rejects_bad_config(bad):
    with pytest.raises(ConfigError, match="model.cnn"):
        create("cnn", cfg_for("cnn", **bad), num_classes=15)


# --- layer counting -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cnn", "efficientnet", "inception"])
def test_layer_list_owns_every_backbone_parameter_once(name, efficientnet, inception):
    model = {"efficientnet": efficientnet, "inception": inception}.get(name) or create(
        "cnn", cfg_for("cnn"), num_classes=15
    )[0]
    owned = [id(p) for _, params in model.freeze_layers() for p in params]
    assert len(owned) == len(set(owned))
    assert set(owned) == backbone_ids(model)


def test_efficientnetv2_s_counts_513_layers_like_keras(efficientnet):
    names = [name for name, _ in efficientnet.freeze_layers()]
    assert len(names) == 513  # Keras EfficientNetV2S(include_top=False): len(model.layers) == 513
    assert names[:5] == ["input", "rescaling", "conv_stem", "bn1", "bn1.act"]
    assert names[-3:] == ["conv_head", "bn2", "bn2.act"]
    # Keras's layers[:100] end at block4c_activation: timm blocks.3.2 after its depthwise BN + act.
    assert names[99] == "blocks.3.2.bn2.act"
    assert names[100] == "blocks.3.2.se.se_squeeze"


def test_cnn_layers_follow_its_blocks():
    model, _ = create("cnn", cfg_for("cnn", width=[4, 8], convs_per_block=1), num_classes=15)
    names = [name for name, _ in layer_list(model.backbone)]
    assert names == ["input", "0.0", "0.1", "0.2", "0.3", "1.0", "1.1", "1.2", "1.3"]


# --- freezing --------------------------------------------------------------------------------------


def test_freeze_all_trains_only_the_head(efficientnet):
    total, trainable = apply_freeze(efficientnet, "all")
    assert trainable_ids(efficientnet) == {id(p) for p in efficientnet.head.parameters()}
    assert trainable == sum(p.numel() for p in efficientnet.head.parameters())
    assert total == sum(p.numel() for p in efficientnet.parameters())
    apply_freeze(efficientnet, "none")
    assert trainable_ids(efficientnet) == {id(p) for p in efficientnet.parameters()}


def test_freeze_first_100_layers(efficientnet):
    total, trainable = apply_freeze(efficientnet, 100)
    layers = efficientnet.freeze_layers()
    frozen = {id(p) for _, params in layers[:100] for p in params}
    assert frozen and {id(p) for p in efficientnet.parameters() if not p.requires_grad} == frozen
    assert total - trainable == sum(p.numel() for _, params in layers[:100] for p in params)
    assert not efficientnet.backbone.blocks[3][2].conv_dw.weight.requires_grad
    assert efficientnet.backbone.blocks[3][2].se.conv_reduce.weight.requires_grad
    assert efficientnet.backbone.conv_head.weight.requires_grad
    # `"100"` from a command line means the same.
    assert apply_freeze(efficientnet, "100") == (total, trainable)
    apply_freeze(efficientnet, "none")


@pytest.mark.parametrize("n", [0, 1, 3, 7, 22])
def test_freeze_n_on_cnn_freezes_exactly_the_first_n_layers(n):
    model, _ = create("cnn", cfg_for("cnn"), num_classes=15)
    apply_freeze(model, n)
    layers = model.freeze_layers()
    frozen = {id(p) for _, params in layers[:n] for p in params}
    assert {id(p) for p in model.parameters() if not p.requires_grad} == frozen
    assert all(p.requires_grad for p in model.head.parameters())


@pytest.mark.parametrize("bad", [-1, "some", 1.5, True, 10_000])
def test_bad_freeze_values_are_config_errors(bad):
    model, _ = create("cnn", cfg_for("cnn"), num_classes=15)
    with pytest.raises(ConfigError, match="freeze"):
        apply_freeze(model, bad)


def test_frozen_batchnorm_stays_in_eval_mode_and_keeps_its_statistics():
    model, _ = create("cnn", cfg_for("cnn"), num_classes=15)
    apply_freeze(model, 7)  # input, block 1 (conv, bn, relu, conv, bn): its BNs are frozen ...
    model.train()
    first_block, second_block = model.backbone[0], model.backbone[1]
    frozen_bn, live_bn = first_block[1], second_block[1]
    assert is_frozen_batchnorm(frozen_bn) and not frozen_bn.training
    assert not is_frozen_batchnorm(live_bn) and live_bn.training
    assert first_block[4].training is False  # ... both of them
    before_frozen, before_live = frozen_bn.running_mean.clone(), live_bn.running_mean.clone()
    model(torch.randn(4, 1, 32, 32) * 3 + 1)
    assert torch.equal(frozen_bn.running_mean, before_frozen)
    assert not torch.equal(live_bn.running_mean, before_live)
    apply_freeze(model, "none")
    assert frozen_bn.training  # unfrozen again: back in train mode, the model still trains
    model.eval()
    assert not live_bn.training


def test_freeze_all_puts_every_backbone_batchnorm_in_eval(inception):
    apply_freeze(inception, "all")
    inception.train()
    bns = [m for m in inception.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and not any(m.training for m in bns)
    assert inception.head.classifier[2].training  # the head's BatchNorm1d trains
    apply_freeze(inception, "none")
    assert all(m.training for m in bns)
    inception.eval()


# --- learning ------------------------------------------------------------------------------------


def loss_drops(model: nn.Module, size: int, steps: int, lr: float) -> tuple[float, float]:
    torch.manual_seed(0)
    x = torch.randn(8, 1, size, size)
    y = torch.arange(8) % NUM_CLASSES
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for _ in range(steps + 1):
        loss = nn.functional.cross_entropy(model(x), y)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return losses[0], losses[-1]


def test_cnn_learns_a_fixed_batch():
    torch.manual_seed(0)
    model, _ = create("cnn", cfg_for("cnn", dropout=0.0), num_classes=15)
    first, last = loss_drops(model, 32, steps=3, lr=1e-2)
    assert last < first


def test_efficientnet_learns_a_fixed_batch():
    torch.manual_seed(0)
    cfg = cfg_for("efficientnet", input_size=32, head={"hidden": 64, "dropout": 0.0}, drop_path_rate=0.0)
    model, _ = create("efficientnet", cfg, "none", num_classes=15)
    apply_freeze(model, 100)
    first, last = loss_drops(model, 32, steps=2, lr=1e-3)
    assert last < first


# --- the EfficientNet head's optional BatchNorm ------------------------------------------------


def hidden_activations(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the head's ReLU lets through, for a train-mode forward of `x`."""
    seen = {}
    relu = next(m for m in model.head if isinstance(m, nn.ReLU))
    handle = relu.register_forward_hook(lambda _m, _i, out: seen.setdefault("out", out.detach().clone()))
    model.train()(x)
    handle.remove()
    return seen["out"]


@pytest.mark.parametrize("batchnorm", [False, True])
def test_a_batchnorm_head_keeps_its_units_firing_after_a_step_that_kills_the_studys(batchnorm):
    # The death from scratch (hccr.models.efficientnet): one Adam step pushes a unit's input
    # below zero for every image. Simulated here by moving every hidden bias far down.
    torch.manual_seed(0)
    head = {"hidden": 32, "dropout": 0.0, "batchnorm": batchnorm}
    cfg = cfg_for("efficientnet", arch="tf_efficientnet_lite0", input_size=32, head=head, drop_path_rate=0.0)
    model, _ = create("efficientnet", cfg, "none", num_classes=15)
    kinds = [type(m) for m in model.head]
    assert (nn.BatchNorm1d in kinds) is batchnorm
    if batchnorm:
        assert kinds.index(nn.BatchNorm1d) == kinds.index(nn.ReLU) - 1  # normalised before the ReLU
    hidden = next(m for m in model.head if isinstance(m, nn.Linear))
    with torch.no_grad():
        hidden.bias -= 100.0
    fires = (hidden_activations(model, torch.randn(8, 1, 32, 32)) > 0).any(dim=0)
    if batchnorm:
        assert fires.all()  # every unit fires for some image of the batch
    else:
        assert not fires.any()  # the study's head: dead for good
