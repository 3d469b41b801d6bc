"""params.yaml validation and the questions the DAG asks of it (hccr.config)."""

import copy

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
    block = hccr_config.train_config(params, "inception_gru", gpus="4", lr="0.0002", batch="20")
    assert (block["gpus"], block["batch_size"]) == (4, 20)
    assert all(p["lr"] == 2e-4 for p in block["phases"] + block["scratch_phases"])
    assert params["model"]["inception_gru"]["batch_size"] == 40


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


def test_cli_strings_that_do_not_parse_are_left_for_validation_to_name(params):
    params["model"]["cnn"]["batch_size"] = "sixty"
    params["model"]["cnn"]["gpus"] = "true"  # a boolean is no integer
    assert hccr_config.coerce_cli_strings(params) == []
    with pytest.raises(ConfigError, match="model.cnn.batch_size"):
        hccr_config.validate(params)
