# Shared wiring: validate the config once, then answer the DAG's questions through
# hccr.config so that Snakemake and the Python steps read params.yaml the same way.

import json

from hccr import config as hccr_config

# Nested --config overrides arrive as strings ('64'); give them the schema's types, then
# check the schema (types, unknown keys) and the cross-key rules; an error names the key.
hccr_config.coerce_cli_strings(config)
hccr_config.validate(config)

RUNS = hccr_config.runs(config)
SWEEP = hccr_config.sweep_cells(config)
SIZES = hccr_config.resize_sizes(config)
SCHEME_SIZES = hccr_config.scheme_sizes(config)
CONDA_ENV = "../envs/hccr.yaml"  # used with --sdm conda; otherwise the active venv
RAW = "data/raw/chinese-mnist"
INDEX = "data/interim/index.csv"


wildcard_constraints:
    model=r"[a-z][a-z0-9_]*",
    size=r"[a-z][a-z0-9_]*",
    res=r"\d+",
    gpus=r"\d+",
    lr=r"[0-9.e+-]+",
    batch=r"\d+",


def images_for(model):
    return f"data/processed/images_{config['model'][model]['input_size']}.npy"


def split_for(model, size):
    return f"data/processed/splits/{config['model'][model]['scheme']}/{size}.csv"


def run_dirs():
    return [f"models/runs/{m}/{s}" for m, s in RUNS]


def sweep_dirs():
    model, size = config["sweep"]["model"], config["sweep"]["size"]
    return [f"models/sweep/{model}/{size}/g{c['gpus']}-lr{c['lr']}-b{c['batch']}" for c in SWEEP]


FIG = "reports/figures"


def report_figures():
    figures = [f"{FIG}/{kind}/{m}/{s}.png" for kind in ("curves", "confusion", "misclassified") for m, s in RUNS]
    figures += [f"{FIG}/sizes/{m}.png" for m in config["models"]]
    figures.append(f"{FIG}/starts.png")  # accuracy vs training-set size per start (hccr.reporting.start_comparison)
    if SWEEP:
        figures.append(f"{FIG}/sweep/{config['sweep']['model']}_{config['sweep']['size']}.png")
    return figures


def histories_of(model):
    return [f"models/runs/{model}/{s}/history.csv" for m, s in RUNS if m == model]


def synthetic_args():
    # Only the synthetic source reads these; for real data they must not trigger a re-fetch.
    if config["data_source"] != "synthetic":
        return ""
    spec = config.get("synthetic", {})
    return (
        f"--seed {spec.get('seed', 0)} --synthetic-writers {spec.get('writers', 100)}"
        f" --synthetic-samples {spec.get('samples_per_writer', 10)}"
    )


def as_json(data):
    return json.dumps(data, sort_keys=True)
