"""Classes come from the data: the index defines them, checkpoints carry them, every step follows."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from hccr.classes import Classes
from hccr.data.index import build_index
from hccr.data.layout import CHINESE_MNIST
from hccr.errors import DataError
from hccr.evaluation import evaluate
from hccr.models import checkpoint
from hccr.serving import predict
from hccr.training.train import main as train_main

from helpers_data import make_raw
from helpers_train import cnn_config, evaluate_args, make_data, train_args

# Four classes, no numeric values: a label set Chinese MNIST's constants know nothing of.
FOUR = Classes(characters=tuple("甲乙丙丁"), values=(None, None, None, None))


def test_the_index_of_chinese_mnist_defines_its_fifteen_classes(tmp_path):
    index = build_index(make_raw(tmp_path / "raw", writers=2, samples=1))
    assert Classes.from_index(index, "index.csv") == CHINESE_MNIST


def index_frame(labels, characters, values=None):
    frame = pd.DataFrame({"label": labels, "character": characters})
    if values is not None:
        frame["value"] = values
    return frame


@pytest.mark.parametrize(
    "frame, message",
    [
        (index_frame([0, 2], ["甲", "丙"]), "without gaps"),
        (index_frame([1, 2], ["乙", "丙"]), "without gaps"),
        (index_frame([0, 0, 1], ["甲", "乙", "丙"]), "label 0 names more than one"),
        (index_frame([0, 1], ["甲", "甲"]), "a character appears under two labels"),
        (index_frame([0, 0], ["甲", "甲"], [1, 2]), "label 0 names more than one"),
        (pd.DataFrame({"label": [], "character": []}), "no rows"),
        (pd.DataFrame({"label": [0]}), "missing column 'character'"),
    ],
)
def test_a_bad_label_set_is_named(frame, message):
    with pytest.raises(DataError, match=message) as err:
        Classes.from_index(frame, "data/interim/index.csv")
    assert "data/interim/index.csv" in str(err.value)


def test_values_may_be_absent_and_survive_a_round_trip():
    classes = Classes.from_index(index_frame([1, 0, 1], ["乙", "甲", "乙"], [float("nan")] * 3), "i")
    assert classes == Classes(("甲", "乙"), (None, None))
    assert Classes.from_meta(json.loads(json.dumps(CHINESE_MNIST.to_meta())), "ckpt") == CHINESE_MNIST
    assert CHINESE_MNIST.value_of("百") == 100 and CHINESE_MNIST.value_of("x") is None


@pytest.mark.parametrize(
    "meta, message",
    [
        ({}, "no class list"),
        ({"characters": ""}, "no class list"),
        ({"characters": "甲乙", "values": [1]}, "one value per character"),
        ({"characters": "甲乙", "values": [1, "2"]}, "integers or null"),
        ({"characters": "甲甲"}, "two labels"),
    ],
)
def test_a_bad_class_list_in_a_model_file_is_named(meta, message):
    with pytest.raises(DataError, match=message) as err:
        Classes.from_meta(meta, "models/export/checkpoint.pt")
    assert "models/export/checkpoint.pt" in str(err.value)


def test_a_four_class_dataset_trains_evaluates_and_predicts(tmp_path):
    data = make_data(tmp_path / "data", n=160, classes=FOUR)
    out = tmp_path / "run"
    assert train_main(train_args(data, out, cnn_config())) == 0

    record = torch.load(out / "checkpoint.pt", weights_only=True)
    assert record["characters"] == "甲乙丙丁" and record["values"] == [None] * 4
    model, meta = checkpoint.load_model(out / "checkpoint.pt")
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 4)

    outputs = [tmp_path / name for name in ("metrics.json", "details.json", "predictions.csv")]
    argv = evaluate_args(out, data, outputs)
    assert evaluate.main(argv) == 0
    details = json.loads(outputs[1].read_text(encoding="utf-8"))
    assert list(details["test"]["per_class"]) == list("甲乙丙丁")
    assert len(details["test"]["confusion_matrix"]) == 4
    assert set(pd.read_csv(outputs[2])["predicted_character"]) <= set("甲乙丙丁")

    image = tmp_path / "one.png"
    from PIL import Image

    Image.fromarray(__import__("numpy").load(data / "images.npy")[0]).save(image)
    predictor = predict.load_predictor(out / "checkpoint.pt")
    [prediction] = list(predict.predict_sources(predictor, predict.iter_sources([str(image)]), top_k=4))
    assert prediction.error is None and prediction.character in "甲乙丙丁" and prediction.value is None


def test_evaluation_refuses_an_index_with_other_classes(tmp_path, capsys):
    data = make_data(tmp_path / "data", n=160, classes=FOUR)
    out = tmp_path / "run"
    one_epoch = [{"name": "t", "epochs": 1, "lr": 1e-3, "freeze": "none"}]
    assert train_main(train_args(data, out, cnn_config(phases=one_epoch, scratch_phases=one_epoch))) == 0
    other = make_data(tmp_path / "other", n=160, classes=Classes(tuple("子丑寅卯"), (None,) * 4))
    argv = evaluate_args(out, other, [tmp_path / "m.json", tmp_path / "d.json", tmp_path / "p.csv"])
    assert evaluate.main(argv) == 2
    err = capsys.readouterr().err
    assert str(other / "index.csv") in err and "子丑寅卯" in err and "甲乙丙丁" in err
    assert not (tmp_path / "m.json").exists()
