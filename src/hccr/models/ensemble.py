"""Several trained runs as one model: their softmax averaged, each on its own framing.

The exported model of `export.ensemble` (hccr.serving.export). Member m reads channel m of a
`(B, M, S, S)` batch: the image framed as member m was trained (`config.members[m].framing`,
hccr.serving.preprocess.FRAMINGS), normalised with the ensemble's mean and std (member 0's);
each member's own normalisation is restored inside the graph, so one input contract holds
for the checkpoint and the ONNX file alike. The output is log(mean_m softmax_m): a log-probability
that `softmax` maps back onto the mean exactly, so everything that reads logits (evaluation,
predict, the ONNX export's softmax) reads the ensemble unchanged.

config: {"members": [{"model", "config", "normalize": {"mean", "std"}, "framing", "run"}, ...]}.
An ensemble checkpoint is an ordinary format-1 checkpoint whose model is `ensemble`: its
state_dict holds `members.{m}.{parameter}`, so `load_model` rebuilds it and checks its shapes.

    python -m hccr.models.ensemble --run cnn/full=models/cv/cnn/full/fold0/checkpoint.pt \
        --run cnn_box/full=models/cv/cnn_box/full/fold0/checkpoint.pt \
        --out models/cv/ensemble/full/fold0/checkpoint.pt --out-summary models/cv/ensemble/full/fold0/train.json

writes the ensemble of trained runs (writer cross-validation scores it per fold, as the export's
recipe); `hccr.serving.export` writes the exported one with `save_checkpoint` too.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hccr.errors import ConfigError, DataError, reports_errors

NAME = "ensemble"
MAX_MEMBERS = 8


def member_framings(meta: Mapping[str, Any]) -> list[str]:
    """The framing of each input channel of a checkpoint's model (one for a single run)."""
    config = meta.get("config") or {}
    if meta.get("model") == NAME:
        return [str(member.get("framing", "cell")) for member in config.get("members", [])]
    return [str(config.get("framing", "cell"))]


class Ensemble(nn.Module):
    """Mean softmax of `members`; member m reads channel m, renormalised as it was trained."""

    def __init__(self, members: Sequence[nn.Module], scales: Sequence[float], offsets: Sequence[float]):
        super().__init__()
        self.members = nn.ModuleList(members)
        # Buffers that are not saved: they come from the config, so the state_dict holds weights only.
        self.register_buffer("scales", torch.tensor(list(scales), dtype=torch.float32), persistent=False)
        self.register_buffer("offsets", torch.tensor(list(offsets), dtype=torch.float32), persistent=False)
        self.start_source = ""  # trained already: no backbone or head to freeze, nothing to start from

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != len(self.members):
            raise ValueError(f"ensemble input: expected (B, {len(self.members)}, S, S), got {tuple(x.shape)}")
        log_probs = [
            torch.log_softmax(member(x[:, m : m + 1] * self.scales[m] + self.offsets[m]).float(), dim=1)
            for m, member in enumerate(self.members)
        ]
        return torch.logsumexp(torch.stack(log_probs), dim=0) - math.log(len(self.members))


def _affine(normalize: Any, where: str) -> tuple[float, float]:
    if not isinstance(normalize, Mapping):
        raise ConfigError(f"{where}.normalize: expected a mapping with mean and std")
    mean, std = normalize.get("mean"), normalize.get("std")
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (mean, std))
    if not ok or not 1e-6 <= std <= 255 or abs(mean) > 255:
        raise ConfigError(f"{where}.normalize: mean {mean!r} and std {std!r} must be finite, std positive")
    return float(mean), float(std)


def build(cfg: dict, pretrained: str, num_classes: int) -> tuple[Ensemble, str]:
    """Rebuild an ensemble from its config (members without weights: the checkpoint has them).

    The framings are not the network's business: the predictor checks them (framing_named).
    """
    from hccr.models import create

    members = cfg.get("members")
    if not isinstance(members, list) or not 2 <= len(members) <= MAX_MEMBERS:
        raise ConfigError(f"ensemble.members: expected a list of 2 to {MAX_MEMBERS} runs")
    base_mean, base_std = _affine(cfg.get("normalize"), "ensemble")
    modules, scales, offsets = [], [], []
    for m, member in enumerate(members):
        where = f"ensemble.members.{m}"
        if not isinstance(member, Mapping) or not isinstance(member.get("config"), dict):
            raise ConfigError(f"{where}: expected a mapping with model and config")
        if member.get("model") == NAME or member["config"].get("network") == NAME:
            raise ConfigError(f"{where}: an ensemble cannot hold another ensemble")
        mean, std = _affine(member.get("normalize"), where)
        model, _ = create(str(member.get("model")), member["config"], pretrained="none", num_classes=num_classes)
        modules.append(model)
        # x = (u - base_mean) / base_std  ->  (u - mean) / std = x * base_std / std + (base_mean - mean) / std
        scales.append(base_std / std)
        offsets.append((base_mean - mean) / std)
    return Ensemble(modules, scales, offsets), NAME


def save_checkpoint(
    path: str | os.PathLike,
    runs: Mapping[str, str | os.PathLike],
    resize_filter: str | None = None,
    val_accuracy: float | None = None,
) -> Path:
    """Write the trained runs {model/size: checkpoint.pt} as one `ensemble` checkpoint.

    Every member must read the same input size and name the same classes; each keeps its own
    normalisation and framing. DataError naming the two files otherwise.
    """
    from hccr.classes import Classes
    from hccr.models.checkpoint import check_fits, load, save

    if not 2 <= len(runs) <= MAX_MEMBERS:
        raise ConfigError(f"an ensemble needs 2 to {MAX_MEMBERS} runs, got {len(runs)}")
    records = {}
    for run, file in runs.items():
        record = load(file)
        check_fits(record, file)
        if record["model"] == NAME:
            raise DataError(f"{file}: run {run} is an ensemble already; list its runs instead")
        records[run] = (Path(file), record)
    (first_file, first), *rest = records.values()
    for file, record in rest:
        for key in ("input_size", "characters", "values"):
            if record.get(key) != first.get(key):
                raise DataError(f"{file} has {key} {record.get(key)!r} but {first_file} has {first.get(key)!r}")
    config = {
        "members": [
            {
                "run": run,
                "model": record["model"],
                "config": record["config"],
                "normalize": record["normalize"],
                "framing": str(record["config"].get("framing", "cell")),
            }
            for run, (_, record) in records.items()
        ],
        "normalize": first["normalize"],
    }
    state = {
        f"members.{m}.{key}": value
        for m, (_, record) in enumerate(records.values())
        for key, value in record["state_dict"].items()
    }
    return save(
        path,
        model_name=NAME,
        config=config,
        state_dict=state,
        input_size=first["input_size"],
        normalize=first["normalize"],
        classes=Classes.from_meta(first, str(first_file)),
        start=" + ".join(dict.fromkeys(str(record.get("start", "scratch")) for _, record in records.values())),
        epoch=0,
        val_accuracy=val_accuracy,
        resize_filter=resize_filter or first.get("resize_filter", "bilinear"),
    )


def _run_arg(text: str) -> tuple[str, str]:
    run, sep, file = text.partition("=")
    if not sep or "/" not in run or not file:
        raise argparse.ArgumentTypeError(f"--run {text!r}: expected model/size=path/to/checkpoint.pt")
    return run, file


@reports_errors
def main(argv: list[str] | None = None) -> int:
    from hccr.atomic import write_json

    p = argparse.ArgumentParser(prog="hccr ensemble", description="Write trained runs as one ensemble checkpoint.")
    p.add_argument("--run", type=_run_arg, action="append", required=True, help="model/size=checkpoint.pt (2 or more)")
    p.add_argument("--out", required=True, help="the ensemble checkpoint.pt")
    p.add_argument("--out-summary", default=None, help="a train.json for the evaluate step: members, parameters")
    args = p.parse_args(argv)
    runs = dict(args.run)
    path = save_checkpoint(args.out, runs)
    if args.out_summary:
        from hccr.models.checkpoint import load_model

        model, _ = load_model(path)  # rebuilt as every reader will: the file is usable
        parameters = int(sum(p.numel() for p in model.parameters()))
        summary = {"model": NAME, "members": list(runs), "parameters": {"total": parameters}, "precision": "float32"}
        write_json(args.out_summary, summary)
    print(f"{path}: ensemble of {', '.join(runs)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
