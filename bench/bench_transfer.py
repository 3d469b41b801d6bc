"""Cost and accuracy of single runs of a profile: train + evaluate, as the workflow runs them.

    python bench/bench_transfer.py --data DIR [--profile quick] --run efficientnet/small
        [--run inception_gru_scratch/large ...] [--set '{"input_size": 96}'] [--threads 2]
        [--out /tmp/hccr-bench-transfer] [--json OUT]

`--data` is a workflow folder whose `data/interim/index.csv`, `data/processed/images_S.npy`
and `data/processed/splits/` exist (`snakemake --profile workflow/profiles/quick data`).
Each run is trained with `hccr.training.train` and scored with `hccr.evaluation.evaluate`
(the modules the rules call), from the model's block of params.yaml with the profile's
overrides merged (and `--set`, a JSON object merged into every block, for experiments).
Prints per run: training images, training seconds, evaluation seconds, seconds per
training image (epochs included), validation and test accuracy with the 95 % Wilson
interval — the figures the quick profile's budget is planned from. The machine's load
average is printed too: on a shared machine every time is inflated.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common


def profile_params(profile: str) -> dict:
    params = yaml.safe_load((_common.ROOT / "params.yaml").read_text(encoding="utf-8"))
    over = _common.ROOT / "workflow" / "profiles" / profile / "params.yaml"
    if over.exists():
        _common._merge(params, yaml.safe_load(over.read_text(encoding="utf-8")) or {})
    return params


def run_one(params: dict, model: str, size: str, data: Path, out: Path, threads: int, extra: dict) -> dict:
    from hccr.config import train_config
    from hccr.evaluation import evaluate
    from hccr.training import train

    cfg = train_config(params, model, size)
    _common._merge(cfg, copy.deepcopy(extra))
    images = data / "data" / "processed" / f"images_{cfg['input_size']}.npy"
    split = data / "data" / "processed" / "splits" / cfg["scheme"] / f"{size}.csv"
    index = data / "data" / "interim" / "index.csv"
    run_dir = out / model / size
    began = time.perf_counter()
    rc = train.main(
        [
            "--model",
            model,
            "--size",
            size,
            "--images",
            str(images),
            "--index",
            str(index),
            "--split",
            str(split),
            "--config-json",
            json.dumps(cfg),
            "--seed",
            str(params["seed"]),
            "--threads",
            str(threads),
            "--out",
            str(run_dir),
        ]
    )
    trained = time.perf_counter() - began
    if rc:
        raise SystemExit(f"{model}/{size}: training failed ({rc})")
    metrics = out / "metrics" / model / f"{size}.json"
    began = time.perf_counter()
    rc = evaluate.main(
        [
            "--checkpoint",
            str(run_dir / "checkpoint.pt"),
            "--train-summary",
            str(run_dir / "train.json"),
            "--images",
            str(images),
            "--index",
            str(index),
            "--split",
            str(split),
            "--protocol",
            params["subsets"]["protocol"],
            "--model",
            model,
            "--size",
            size,
            "--threads",
            str(threads),
            "--out-metrics",
            str(metrics),
            "--out-details",
            str(out / "evaluation" / model / size / "details.json"),
            "--out-predictions",
            str(out / "evaluation" / model / size / "predictions.csv"),
        ]
    )
    scored = time.perf_counter() - began
    if rc:
        raise SystemExit(f"{model}/{size}: evaluation failed ({rc})")
    summary = json.loads((run_dir / "train.json").read_text())
    result = json.loads(metrics.read_text())
    epochs = summary["epochs"]
    test = result.get("test") or {}
    return {
        "run": f"{model}/{size}",
        "start": summary["start"],
        "start_source": summary.get("start_source", ""),
        "input_size": cfg["input_size"],
        "n_train": summary["n_train"],
        "epochs": epochs,
        "train_s": trained,
        "evaluate_s": scored,
        "s_per_train_image_epoch": trained / (summary["n_train"] * epochs),
        "val_accuracy": result["val"]["accuracy"],
        "test_accuracy": test.get("accuracy"),
        "test_ci": [test.get("accuracy_ci_low"), test.get("accuracy_ci_high")],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, type=Path, help="workflow folder holding data/interim and data/processed")
    p.add_argument("--profile", default="quick")
    p.add_argument("--run", action="append", required=True, help="model/size, repeatable")
    p.add_argument("--set", default="{}", help="JSON object merged into every run's model block")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("/tmp/hccr-bench-transfer"))
    p.add_argument("--json", type=Path, default=None, help="append the results as JSON lines here")
    args = p.parse_args()
    params = profile_params(args.profile)
    extra = json.loads(args.set)
    print(f"machine: {_common.cpu_description()}; load average before: {_common.load_average()}")
    for spec in args.run:
        model, _, size = spec.partition("/")
        r = run_one(params, model, size, args.data.resolve(), args.out, args.threads, extra)
        low, high = r["test_ci"]
        test = f"{r['test_accuracy']:.1%} [{low:.1%}, {high:.1%}]" if r["test_accuracy"] is not None else "n/a"
        print(
            f"{r['run']:<28} {r['start']:<8} {r['input_size']:>3} px  n_train {r['n_train']:>5}  "
            f"epochs {r['epochs']:>2}  train {r['train_s']:7.1f} s  evaluate {r['evaluate_s']:5.1f} s  "
            f"{1000 * r['s_per_train_image_epoch']:.2f} ms/image-epoch  val {r['val_accuracy']:.1%}  test {test}  "
            f"(load {_common.load_average()})",
            flush=True,
        )
        if args.json:
            with args.json.open("a", encoding="utf-8") as f:
                f.write(json.dumps({**r, "profile": args.profile, "set": extra}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
