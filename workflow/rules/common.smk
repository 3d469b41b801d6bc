# Shared wiring: validate the config once, then answer the DAG's questions through
# hccr.config so that Snakemake and the Python steps read params.yaml the same way.

import json

from hccr import config as hccr_config
from hccr.data import casia as hccr_casia
from hccr.starts import GLYPH_STARTS
from hccr.serving.preprocess import FRAMINGS

# Nested --config overrides arrive as strings ('64'); give them the schema's types, then
# check the schema (types, unknown keys, per-arch bounds) and the cross-key rules, so every
# config error stops the DAG before any job runs, naming the key. PARAMS is the typed form.
hccr_config.coerce_cli_strings(config)
PARAMS = hccr_config.settings(config)

RUNS = hccr_config.runs(config)
SWEEP = hccr_config.sweep_cells(config)
SIZES = hccr_config.resize_sizes(config)
SCHEME_SIZES = hccr_config.scheme_sizes(config)
CONDA_ENV = "../envs/hccr.yaml"  # used with --sdm conda; otherwise the active venv
CASIA = hccr_casia.source_path(
    config["data_source"]
)  # None unless data_source is casia-hwdb:PATH
RAW = "data/raw/casia-hwdb" if CASIA else "data/raw/chinese-mnist"
INDEX = "data/interim/index.csv"

# Snakemake deletes RAW before rerunning fetch: a source inside it must be refused now (issue 12).
from hccr.data.fetch import check_source_outside

check_source_outside(config["data_source"], RAW)


wildcard_constraints:
    model=r"[a-z][a-z0-9_]*",
    size=r"[a-z][a-z0-9_]*",
    res=r"\d+",
    gpus=r"\d+",
    lr=r"[0-9.e+-]+",
    batch=r"\d+",
    framing="|".join(f for f in FRAMINGS if f != "cell"),  # data/processed/{framing}/: the other framings


def processed_dir(model):
    """data/processed, or data/processed/{framing} for a model not framed as a dataset cell."""
    framing = PARAMS.model[model].framing
    return "data/processed" if framing == "cell" else f"data/processed/{framing}"


def images_for(model):
    return f"{processed_dir(model)}/images_{PARAMS.model[model].input_size}.npy"


def views_for(model):
    """The predict-path views a run of `model` trains on ([] unless its augment.views > 0)."""
    block = PARAMS.model[model]
    return (
        [f"{processed_dir(model)}/views_{block.input_size}.npy"]
        if block.augment.views > 0
        else []
    )


def framed_image_files():
    """The ink-box (or other non-cell) arrays the listed models train on, once per size."""
    models = set(PARAMS.models) | {m for m, _ in CV_RUNS}
    return sorted({images_for(m) for m in models if PARAMS.model[m].framing != "cell"})


def views_files():
    """The views every listed (or cross-validated) model needs, once per input size."""
    models = set(PARAMS.models) | {m for m, _ in CV_RUNS}
    if PARAMS.sweep.enabled:
        models.add(PARAMS.sweep.model)
    return sorted({path for m in models for path in views_for(m)})


def train_args(model):
    """A run's extra train arguments: its glyph start's weights and its views."""
    weights, views = glyph_weights(model), views_for(model)
    return " ".join(
        ([f"--start-weights {weights[0]}"] if weights else [])
        + ([f"--views {views[0]}"] if views else [])
    )


def split_for(model, size):
    return f"data/processed/splits/{PARAMS.model[model].scheme}/{size}.csv"


# A sweep cell's folder name; the wildcards {gpus}, {lr}, {batch} in the train rules' paths.
CELL = "g{gpus}-lr{lr}-b{batch}"


def run_dirs():
    return [f"models/runs/{m}/{s}" for m, s in RUNS]


def run_files(*names):
    """Each run's files of these names (checkpoint.pt, train.json, ...)."""
    return [f"{d}/{name}" for d in run_dirs() for name in names]


def evaluation_files(*names):
    """Each run's evaluation files of these names (details.json, predictions.csv)."""
    return [f"reports/evaluation/{m}/{s}/{name}" for m, s in RUNS for name in names]


def sweep_dirs():
    model, size = PARAMS.sweep.model, PARAMS.sweep.size
    return [f"models/sweep/{model}/{size}/{CELL.format(**c)}" for c in SWEEP]


FIG = "reports/figures"


def report_figures():
    figures = [
        f"{FIG}/{kind}/{m}/{s}.png"
        for kind in ("curves", "confusion", "misclassified")
        for m, s in RUNS
    ]
    figures += [f"{FIG}/sizes/{m}.png" for m in PARAMS.models]
    figures.append(
        f"{FIG}/starts.png"
    )  # accuracy vs training-set size per start (hccr.reporting.start_comparison)
    if SWEEP:
        figures.append(f"{FIG}/sweep/{PARAMS.sweep.model}_{PARAMS.sweep.size}.png")
    return figures


def histories_of(model):
    return [f"models/runs/{model}/{s}/history.csv" for m, s in RUNS if m == model]


def synthetic_args():
    # Only the synthetic source reads these; for real data they must not trigger a re-fetch.
    if PARAMS.data_source != "synthetic":
        return ""
    spec = PARAMS.synthetic  # the schema's defaults filled in
    return (
        f"--seed {spec.seed} --synthetic-writers {spec.writers}"
        f" --synthetic-samples {spec.samples_per_writer}"
    )


def as_json(data):
    return json.dumps(data, sort_keys=True)


# Printed-glyph starts (workflow/rules/glyphs.smk): which runs need a glyph pretraining.
GLYPHS = "data/glyphs"


def glyph_start(model):
    """The model block's glyph start (glyphs, imagenet+glyphs, glyphs-excl), or None."""
    start = PARAMS.model[model].pretrained
    return start if start in GLYPH_STARTS else None


def glyph_weights(model):
    """The glyph pretraining checkpoint a run of `model` fine-tunes ([] for other starts)."""
    start = glyph_start(model)
    return [f"models/pretrain/{model}/{start}/checkpoint.pt"] if start else []


def glyph_pretrain_summaries():
    """The train.json of every glyph pretraining the listed models need (the report reads them)."""
    starts = {(m, glyph_start(m)) for m in PARAMS.models if glyph_start(m)}
    return [f"models/pretrain/{m}/{s}/train.json" for m, s in sorted(starts)]


# Writer cross-validation (workflow/rules/writer_cv.smk; docs/writer_cv.md).
# Writer folds 0..k-1; none unless the protocol is writer_cv.
CV_FOLDS = hccr_config.cv_folds(config)
# (model, size) pairs trained once per fold; none unless the protocol is writer_cv.
CV_RUNS = hccr_config.cv_runs(config)
CV_FOLD = "models/cv/{model}/{size}/fold{fold}"
CV_EVALUATION = ["metrics.json", "details.json", "predictions.csv"]
# writer_cv.ensemble: {size: member runs}, each scored per fold as run ensemble/{size}.
CV_ENSEMBLES = hccr_config.cv_ensembles(config)
ENSEMBLE = hccr_config.ENSEMBLE
# Every run the summary gathers: the trained ones, then the ensembles of them.
CV_SCORED = CV_RUNS + [(ENSEMBLE, size) for size in CV_ENSEMBLES]


def cv_fold_dirs(model=None, size=None):
    return [
        CV_FOLD.format(model=m, size=s, fold=i)
        for m, s in CV_SCORED
        if model in (None, m) and size in (None, s)
        for i in CV_FOLDS
    ]


def cv_images(model, size):
    """The arrays a writer-fold run reads: its own, or one per member of an ensemble."""
    if model == ENSEMBLE:
        return [images_for(m) for m, _ in CV_ENSEMBLES[size]]
    return [images_for(model)]


def cv_split_for(w):
    # An ensemble is scored on its first member's split (the config checks they share a scheme).
    model = CV_ENSEMBLES[w.size][0][0] if w.model == ENSEMBLE else w.model
    return f"data/processed/splits/cv/fold{w.fold}/{PARAMS.model[model].scheme}/{w.size}.csv"


def writer_cv_report_inputs():
    """What the report reads of the cross-validation: the summary, and each run's figure."""
    return ["models/cv/summary.json", "models/cv/per_writer.csv"] + [
        f"{FIG}/writer_cv/{m}/{s}.png" for m, s in CV_SCORED
    ]


def cv_split_files():
    """Every writer fold's split files (subset writes them beside the single split)."""
    return [
        f"data/processed/splits/cv/fold{i}/{scheme}/{size}.csv"
        for i in CV_FOLDS
        for scheme, size in SCHEME_SIZES
    ]
