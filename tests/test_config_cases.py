"""Issue 12, item 12: what the trainer or the models reject, the params validation rejects first.

The schema becomes the single validator in issue 11 (the `config` branch); these are the cases
the safety review found accepted. Each must be refused by `hccr.config.validate`, naming the key.
"""

from __future__ import annotations

import pytest
import yaml

from hccr import config as hccr_config
from hccr.errors import ConfigError

PARAMS = hccr_config.ROOT / "params.yaml"
PENDING = pytest.mark.xfail(strict=True, reason="schema hardening in issue 11")


@pytest.fixture()
def params():
    return yaml.safe_load(PARAMS.read_text(encoding="utf-8"))


def test_the_shipped_params_pass(params):
    hccr_config.validate(params)


def _phase_epochs_zero(params):
    params["model"]["cnn"]["phases"][0]["epochs"] = 0
    return r"model\.cnn\.phases\.0(\.epochs)?"


def _head_typo(params):
    params["model"]["efficientnet"]["head"] = {"hiden": 12, "dropout": 0.5}
    return r"model\.efficientnet\.head.*hiden"


def _head_hidden_string(params):
    params["model"]["efficientnet"]["head"]["hidden"] = "big"
    return r"model\.efficientnet\.head\.hidden"


def _inception_input_16(params):
    params["model"]["inception_gru"]["input_size"] = 16
    return r"model\.inception_gru\.input_size"


def _freeze_huge(params):
    params["model"]["efficientnet"]["phases"][1]["freeze"] = 1_000_000
    return r"model\.efficientnet\.phases\.1(\.freeze)?"


@pytest.mark.parametrize("case", [
    pytest.param(_phase_epochs_zero, id="epochs-0", marks=PENDING),
    pytest.param(_head_typo, id="head-unknown-key", marks=PENDING),
    pytest.param(_head_hidden_string, id="head-hidden-string", marks=PENDING),
    pytest.param(_inception_input_16, id="inceptionv3-input-16", marks=PENDING),
    pytest.param(_freeze_huge, id="freeze-1000000", marks=PENDING),
])
def test_the_validation_refuses_what_training_would(params, case):
    key = case(params)
    with pytest.raises(ConfigError, match=key):
        hccr_config.validate(params)
