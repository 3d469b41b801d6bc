"""params.yaml validation and the questions the DAG asks of it (hccr.config)."""

import copy
import re

import pytest
import yaml

from hccr import config as hccr_config
from hccr.errors import ConfigError

PARAMS = hccr_config.ROOT / "params.yaml"


@pytest.fixture()
def params():
    return yaml.safe_load(PARAMS.read_text(encoding="utf-8"))


def test_shipped_params_are_valid():
    config = hccr_config.load(PARAMS)
    assert config["data_source"] == "kaggle"


def test_unknown_key_is_named(params):
    params["model"]["cnn"]["widht"] = [8]
    with pytest.raises(ConfigError, match=r"model\.cnn.*'widht'"):
        hccr_config.validate(params)


def test_unknown_top_level_key_is_named(params):
    params["epochs"] = 3
    with pytest.raises(ConfigError, match="'epochs'"):
        hccr_config.validate(params)


def test_wrong_type_is_named(params):
    params["model"]["efficientnet"]["batch_size"] = "32"
    with pytest.raises(ConfigError, match=r"model\.efficientnet\.batch_size"):
        hccr_config.validate(params)


def test_listed_model_without_block(params):
    params["models"].append("resnet")
    with pytest.raises(ConfigError, match="model.resnet is not defined"):
        hccr_config.validate(params)


def test_size_missing_from_scheme(params):
    params["sizes"].append("huge")
    with pytest.raises(ConfigError, match="'huge'"):
        hccr_config.validate(params)


def test_missing_params_file(tmp_path):
    with pytest.raises(ConfigError, match="no such params file"):
        hccr_config.load(tmp_path / "params.yaml")


def test_runs_and_model_sizes(params):
    params["model"]["inception_gru"]["sizes"] = ["small"]
    runs = hccr_config.runs(params)
    assert ("inception_gru", "small") in runs and ("inception_gru", "large") not in runs
    assert ("cnn", "full") in runs
    assert len(runs) == len(params["sizes"]) * 2 + 1


def test_resize_sizes_include_native_and_model_inputs(params):
    params["resize"]["sizes"] = [299]
    params["model"]["inception_gru"]["input_size"] = 75
    assert hccr_config.resize_sizes(params) == [64, 75, 299]


def test_sweep_has_the_studys_eighteen_cells(params):
    cells = hccr_config.sweep_cells(params)
    assert len(cells) == 18
    assert {c["lr"] for c in cells} == {"0.0001", "0.0002", "0.001"}
    disabled = copy.deepcopy(params)
    disabled["sweep"]["enabled"] = False
    assert hccr_config.sweep_cells(disabled) == []


def test_train_config_applies_sweep_overrides_without_touching_params(params):
    block = hccr_config.train_config(params, "inception_gru", "small", gpus="4", lr="0.0002", batch="20")
    assert (block["gpus"], block["batch_size"]) == (4, 20)
    assert all(p["lr"] == 2e-4 for p in block["phases"] + block["scratch_phases"])
    assert params["model"]["inception_gru"]["batch_size"] == 40


def test_per_size_epochs_resolve_for_each_run(params):
    per_size = {"small": 6, "large": 2}
    params["model"]["cnn"]["phases"] = [{"name": "train", "epochs": per_size, "lr": 1e-3, "freeze": "none"}]
    params["model"]["cnn"]["sizes"] = ["small", "large"]
    hccr_config.validate(params)
    assert hccr_config.train_config(params, "cnn", "small")["phases"][0]["epochs"] == 6
    assert hccr_config.train_config(params, "cnn", "large")["phases"][0]["epochs"] == 2
    # the params themselves keep the table; the typed form of a resolved block is an int
    assert params["model"]["cnn"]["phases"][0]["epochs"] == {"small": 6, "large": 2}
    sized = hccr_config.block_for_size(params["model"]["cnn"], "large", "model.cnn")
    assert hccr_config.model_settings("cnn", sized).phases[0].epochs == 2


def test_per_size_epochs_must_cover_every_size_the_model_runs(params):
    params["model"]["cnn"]["phases"] = [{"name": "train", "epochs": {"small": 6}, "lr": 1e-3, "freeze": "none"}]
    params["model"]["cnn"]["sizes"] = ["small", "medium"]
    with pytest.raises(ConfigError, match=r"model\.cnn\.phases\.0\.epochs has no entry for size 'medium'"):
        hccr_config.validate(params)
    params["model"]["cnn"]["phases"][0]["epochs"] = {"small": 0, "medium": 2}
    with pytest.raises(ConfigError, match=r"model\.cnn\.phases\.0\.epochs: small: 0 is less than the minimum of 1"):
        hccr_config.validate(params)


@pytest.mark.parametrize(
    "phase, message",
    [
        ({"freeze": -1}, "freeze: -1 is less than the minimum of 0"),
        ({"freeze": "some"}, "freeze: 'some' is not one of ['all', 'none']"),
        ({"epochs": 0}, "epochs: 0 is less than the minimum of 1"),
    ],
)
def test_a_value_of_either_form_is_told_what_its_own_form_needs(params, phase, message):
    # keys that take one of two forms (freeze: all | N, epochs: N | {size: N}) name the rule the
    # value broke, not "is not valid under any of the given schemas"
    params["model"]["cnn"]["phases"][0].update(phase)
    with pytest.raises(ConfigError) as err:
        hccr_config.validate(params)
    assert f"params: model.cnn.phases.0.{message}" in str(err.value)


def test_json_object_arg_inline_file_and_errors(tmp_path):
    assert hccr_config.json_object_arg('{"a": 1}') == {"a": 1}
    path = tmp_path / "cfg.json"
    path.write_text('{"b": [1, 2]}')
    assert hccr_config.json_object_arg(str(path)) == {"b": [1, 2]}
    with pytest.raises(ConfigError, match="--params-json: .*cannot read"):
        hccr_config.json_object_arg(str(tmp_path / "missing.json"), "--params-json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        hccr_config.json_object_arg("{oops")
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        hccr_config.json_object_arg(str(path))


def test_cli_strings_get_the_schema_types(params):
    # What Snakemake hands over for --config 'model={"cnn": {"batch_size": "64", ...}}'.
    params["model"]["cnn"]["batch_size"] = "64"
    params["model"]["cnn"]["dropout"] = "0.25"
    params["model"]["cnn"]["early_stopping"]["enabled"] = "true"
    params["model"]["cnn"]["arch"] = "cnn"
    converted = hccr_config.coerce_cli_strings(params)
    assert sorted(converted) == ["model.cnn.batch_size", "model.cnn.dropout", "model.cnn.early_stopping.enabled"]
    assert params["model"]["cnn"]["batch_size"] == 64
    assert params["model"]["cnn"]["dropout"] == 0.25
    assert params["model"]["cnn"]["early_stopping"]["enabled"] is True
    hccr_config.validate(params)


def test_cli_strings_inside_a_oneof_get_their_type(params):
    phases = params["model"]["efficientnet"]["phases"]
    phases[0]["freeze"], phases[1]["freeze"] = "all", "100"
    assert hccr_config.coerce_cli_strings(params) == ["model.efficientnet.phases.1.freeze"]
    assert [p["freeze"] for p in phases] == ["all", 100]
    hccr_config.validate(params)


def test_cli_strings_that_do_not_parse_are_left_for_validation_to_name(params):
    params["model"]["cnn"]["batch_size"] = "sixty"
    params["model"]["cnn"]["gpus"] = "true"  # a boolean is no integer
    assert hccr_config.coerce_cli_strings(params) == []
    with pytest.raises(ConfigError, match="model.cnn.batch_size"):
        hccr_config.validate(params)


# ---------------------------------------------------------------- the schema as the one validator

EFFICIENTNET_PHASES = [
    {"name": "head", "epochs": 1, "lr": 1e-4, "freeze": "all"},
    {"name": "finetune", "epochs": 1, "lr": 1e-5, "freeze": 1000000},
]

# What training cannot run (issue 12, item 12): (override merged over params, the key it must name).
UNRUNNABLE = {
    "epochs_0": (
        {"model": {"cnn": {"phases": [{"name": "train", "epochs": 0, "lr": 1e-3, "freeze": "none"}]}}},
        "model.cnn.phases.0.epochs",
    ),
    "head_typo": ({"model": {"efficientnet": {"head": {"hiden": 12}}}}, "model.efficientnet.head"),
    "head_hidden_big": ({"model": {"efficientnet": {"head": {"hidden": "big"}}}}, "model.efficientnet.head.hidden"),
    "inception_16px": ({"model": {"inception_gru": {"input_size": 16}}}, "model.inception_gru.input_size"),
    "freeze_1000000": (
        {"model": {"efficientnet": {"phases": EFFICIENTNET_PHASES}}},
        "model.efficientnet.phases.1.freeze",
    ),
    "cnn_freeze_1000000": (
        {"model": {"cnn": {"scratch_phases": [{"name": "train", "epochs": 1, "lr": 1e-3, "freeze": 1000000}]}}},
        "model.cnn.scratch_phases.0.freeze",
    ),
}


def merged(base, over):
    """`over` merged into a copy of `base` as Snakemake merges a --configfile (dicts deep, the rest replaced)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.mark.parametrize("case", sorted(UNRUNNABLE))
def test_what_training_cannot_run_is_rejected_naming_the_key(params, case):
    override, key = UNRUNNABLE[case]
    bad = merged(params, override)
    with pytest.raises(ConfigError, match=re.escape(f"params: {key}: ")):
        hccr_config.validate(bad)
    # The train step checks the block it gets with the same schema.
    name = next(iter(override["model"]))
    with pytest.raises(ConfigError, match=re.escape(f"params: {key}: ")):
        hccr_config.model_settings(name, bad["model"][name])


def test_where_the_two_old_validators_disagreed_the_schema_is_right(params):
    cnn = params["model"]["cnn"]
    cnn["label_smoothing"] = 0.9  # the old schema stopped at 0.5; anything below 1 trains
    hccr_config.validate(params)
    cnn["label_smoothing"] = 1.0
    with pytest.raises(ConfigError, match=r"model\.cnn\.label_smoothing"):
        hccr_config.validate(params)
    cnn["label_smoothing"] = 0.0
    cnn["optimizer"] = {"name": "adamw", "momentum": 0.9}  # only sgd has a momentum
    with pytest.raises(ConfigError, match=r"model\.cnn\.optimizer\.momentum: .*only optimizer sgd"):
        hccr_config.validate(params)
    cnn["optimizer"] = {"name": "sgd", "momentum": 0.5}
    assert hccr_config.settings(params).model["cnn"].optimizer == hccr_config.Optimizer("sgd", 0.0, 0.5)
    cnn["optimizer"] = {"name": "sgd"}
    assert hccr_config.settings(params).model["cnn"].optimizer.momentum == 0.9


def test_each_arch_takes_only_its_own_keys(params):
    for name, key, value in [
        ("efficientnet", "width", [8]),
        ("cnn", "head", {"hidden": 8}),
        ("inception_gru", "drop_path_rate", 0.1),
        ("efficientnet", "sequence", "pooled"),
    ]:
        bad = copy.deepcopy(params)
        bad["model"][name][key] = value
        with pytest.raises(ConfigError, match=rf"model\.{name}\.{key}: this key is not allowed here"):
            hccr_config.validate(bad)
    bad = copy.deepcopy(params)
    bad["model"]["efficientnet"]["head"]["gru_hidden"] = 8  # an inception head key
    with pytest.raises(ConfigError, match=r"model\.efficientnet\.head: 'gru_hidden'"):
        hccr_config.validate(bad)


def test_cnn_input_size_must_survive_its_pooling_blocks(params):
    params["model"]["cnn"].update(width=[8, 8, 8, 8, 8], input_size=16)
    with pytest.raises(ConfigError, match=r"model\.cnn\.input_size: 16 .*needs >= 32"):
        hccr_config.validate(params)


def schema_freeze_limit(params, name, block_changes=()):
    """The largest `freeze: N` the checks accept for a model block (None: no bound found below 10000)."""
    block = copy.deepcopy(params["model"][name])
    block.update(block_changes)
    low, high = 0, 10000
    while low < high:  # the accepted Ns are 0..limit: bisect for the limit
        mid = (low + high + 1) // 2
        block["phases"] = [{"name": "p", "epochs": 1, "lr": 1e-3, "freeze": mid}]
        try:
            hccr_config.validate_model(name, block)
            low = mid
        except ConfigError:
            high = mid - 1
    return None if low == 10000 else low


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, changes",
    [
        ("cnn", {}),
        ("cnn", {"width": [8, 16], "convs_per_block": 3}),
        ("efficientnet", {}),
        ("efficientnet", {"drop_path_rate": 0.0}),
        ("inception_gru", {"input_size": 75}),
    ],
)
def test_freeze_bounds_are_the_real_backbones_layer_counts(params, name, changes):
    from hccr import models

    block = {**params["model"][name], **changes, "pretrained": "none"}
    model, _ = models.create(name, block, "none", num_classes=15)
    assert schema_freeze_limit(params, name, changes) == len(model.freeze_layers())


def test_settings_are_typed_with_the_schemas_defaults(params):
    del params["synthetic"]
    del params["glyphs"]
    del params["model"]["cnn"]["early_stopping"]["patience"]
    del params["model"]["cnn"]["resume_every_s"]
    settings = hccr_config.settings(params)
    assert settings.synthetic == hccr_config.Synthetic(writers=100, samples_per_writer=10, seed=0)
    cnn = settings.model["cnn"]
    assert cnn.early_stopping == hccr_config.EarlyStopping(enabled=False, patience=3)
    assert cnn.resume_every_s == 0.0 and cnn.compile is False
    assert cnn.phases == (hccr_config.Phase("train", 12, 1e-3, "none"),)
    assert cnn.augment == hccr_config.AugmentConfig(True, 8.0, 0.08, 0.1, 5.0, views=0.5)
    # The block is kept as written (what checkpoints record), defaults not added.
    assert cnn.block == params["model"]["cnn"] and "compile" not in cnn.block
    efficientnet = settings.model["efficientnet"]
    assert efficientnet.phases_for("imagenet")[1].freeze == 100
    assert efficientnet.phases_for("scratch") == (hccr_config.Phase("scratch", 20, 1e-3, "none"),)
    assert settings.sweep.learning_rate == (1e-4, 2e-4, 1e-3)
    assert settings.subsets.ladder("holdout") == {"tiny": 10, "small": 70, "medium": 140, "large": 210, "full": "all"}
    # Without a glyphs block the schema's defaults fill it in.
    assert settings.glyphs.fonts == ("ukai", "uming", "microhei", "zenhei") and settings.glyphs.characters == ""
    assert settings.glyphs.pretrain["phases"] == [{"name": "glyphs", "epochs": 2, "lr": 1e-3, "freeze": "none"}]


def test_glyph_pretraining_sets_its_own_dropout_and_stochastic_depth(params):
    params["model"]["efficientnet"].update(arch="tf_efficientnet_lite0", drop_path_rate=0.2)
    params["glyphs"].update(size=96)  # InceptionV3 takes 75 px or more
    params["glyphs"]["pretrain"].update(dropout=0.0, drop_path_rate=0.05)
    lite0 = hccr_config.glyph_pretrain_config(params, "efficientnet", "none")
    assert lite0["head"]["dropout"] == 0.0 and lite0["drop_path_rate"] == 0.05
    assert lite0["head"]["hidden"] == params["model"]["efficientnet"]["head"]["hidden"]  # the shape is kept
    cnn = hccr_config.glyph_pretrain_config(params, "cnn", "none")
    assert cnn["dropout"] == 0.0 and "drop_path_rate" not in cnn and "head" not in cnn
    gru = hccr_config.glyph_pretrain_config(params, "inception_gru", "none")
    assert gru["head"]["dropout"] == 0.0 and "drop_path_rate" not in gru
    # The fine-tuned blocks keep their own.
    assert params["model"]["efficientnet"]["head"]["dropout"] == 0.5 and params["model"]["cnn"]["dropout"] == 0.1
    # null (the schema's default) keeps the block's.
    params["glyphs"]["pretrain"].update(dropout=None, drop_path_rate=None)
    lite0 = hccr_config.glyph_pretrain_config(params, "efficientnet", "none")
    assert lite0["head"]["dropout"] == 0.5 and lite0["drop_path_rate"] == 0.2
    params["glyphs"]["pretrain"]["dropout"] = 1.0
    with pytest.raises(hccr_config.ConfigError, match="dropout"):
        hccr_config.settings(params)


def test_quick_and_tiny_overrides_are_valid(params):
    root = hccr_config.ROOT
    for path in (root / "workflow/profiles/quick/params.yaml", root / "tests/workflow/tiny.yaml"):
        hccr_config.settings(merged(params, yaml.safe_load(path.read_text(encoding="utf-8"))))


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(UNRUNNABLE))
def test_snakemake_stops_before_any_job_naming_the_key(tmp_path, case):
    from helpers_workflow import describe, make_project, snakemake

    override, key = UNRUNNABLE[case]
    project = make_project(tmp_path / "project")
    (project / "bad.yaml").write_text(yaml.safe_dump(override), encoding="utf-8")
    proc = snakemake(project, "-n", "--configfile", "tiny.yaml", "bad.yaml", timeout=300)
    assert proc.returncode != 0, describe(proc)
    assert f"params: {key}: " in proc.stdout + proc.stderr, describe(proc)
    assert not (project / "data").exists() and not (project / "models").exists()
