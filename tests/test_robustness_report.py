"""The report's robustness section reads what the rule wrote and states parameters and the target."""

from __future__ import annotations

import json

from hccr.reporting import report_render as rr
from hccr.reporting import robustness


def result(accuracy, delta, only_a, only_b, p):
    return {
        "accuracy": accuracy,
        "n": 100,
        "delta_points": delta,
        "only_original_right": only_a,
        "only_transformed_right": only_b,
        "mcnemar_p": p,
        "refused": 0,
        "seconds": 1.0,
    }


def test_section_table_states_parameters_and_the_target(tmp_path):
    folder = tmp_path / "robustness"
    folder.mkdir()
    details = {
        "model": "models/export/model.onnx",
        "n": 100,
        "baseline": "original",
        "test": "McNemar exact",
        "settings": {"transforms": {"jpeg": {"quality": 40}, "shifted": {"pad": 12, "shift": [5, -2]}}},
        "results": {
            "original": result(0.99, 0.0, 0, 0, 1.0),
            "jpeg": result(0.97, -2.0, 2, 0, 0.5),  # 2 points off: target missed though p is large
            "shifted": result(0.99, 0.0, 1, 1, 1.0),
        },
    }
    (folder / "robustness.json").write_text(json.dumps(details))
    doc = rr.Document("t")
    robustness.section(doc, tmp_path)
    (table,) = [b for b in doc.blocks if isinstance(b, rr.Table)]
    rows = {row[0]: row for row in table.rows}
    assert rows["jpeg"][1] == "JPEG, quality 40" and rows["jpeg"][-1] == "no"
    assert "12 px black border" in rows["shifted"][1] and "(+5, -2)" in rows["shifted"][1]
    assert rows["shifted"][-1] == "yes" and rows["original"][-1] == "—"
    assert rows["jpeg"][4] == "2 / 0"


def test_section_says_when_the_step_did_not_run(tmp_path):
    doc = rr.Document("t")
    robustness.section(doc, tmp_path)
    assert any(isinstance(b, rr.Para) and "Not run" in b.text for b in doc.blocks)
