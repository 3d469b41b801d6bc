# Data half of the DAG: fetch -> index -> resize (one array per size) -> subset, the
# predict-path views of the models that train on them (augment.views > 0), and the archive
# framed by its ink box for the models whose `framing` is ink_box.


rule data:
    input:
        INDEX,
        expand("data/processed/images_{res}.npy", res=SIZES),
        "data/processed/splits/summary.json",
        views_files(),
        framed_image_files(),


rule fetch:
    output:
        directory(RAW),
    log:
        "logs/fetch.log",
    benchmark:
        "logs/benchmarks/fetch.tsv"
    conda:
        CONDA_ENV
    params:
        source=config["data_source"],
        synthetic=synthetic_args(),
    shell:
        "python -m hccr.data.fetch --source {params.source:q} --out {output:q} {params.synthetic}"
        " 2> {log:q}"


rule index:
    input:
        RAW,
    output:
        INDEX,
    log:
        "logs/index.log",
    benchmark:
        "logs/benchmarks/index.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m hccr.data.index --raw {input:q} --out {output:q} 2> {log:q}"


rule resize:
    input:
        raw=RAW,
        index=INDEX,
    output:
        "data/processed/images_{res}.npy",
    log:
        "logs/resize/{res}.log",
    benchmark:
        "logs/benchmarks/resize/{res}.tsv"
    conda:
        CONDA_ENV
    params:
        filter=config["resize"]["filter"],
    shell:
        "python -m hccr.data.resize --raw {input.raw:q} --index {input.index:q} --size {wildcards.res}"
        " --filter {params.filter} --out {output:q} 2> {log:q}"


rule subset:
    input:
        INDEX,
    output:
        splits=[
            f"data/processed/splits/{scheme}/{size}.csv"
            for scheme, size in SCHEME_SIZES
        ]
        + cv_split_files(),
        summary="data/processed/splits/summary.json",
    log:
        "logs/subset.log",
    benchmark:
        "logs/benchmarks/subset.tsv"
    conda:
        CONDA_ENV
    params:
        subsets=as_json(config["subsets"]),
        seed=config["seed"],
    shell:
        "python -m hccr.data.subset --index {input:q} --config-json {params.subsets:q} --seed {params.seed}"
        " --out-dir data/processed/splits 2> {log:q}"


VIEWS_SHELL = (
    "python -m hccr.data.views --images {{input:q}} --size {{wildcards.res}} --filter {{params.filter}}"
    " --framing {framing} --settings-json {{params.settings:q}} --workers {{threads}}"
    " --out {{output.views:q}} --summary {{output.summary:q}} 2> {{log:q}}"
)


# Each glyph as `hccr predict` frames a user's file (hccr.data.views; docs/robustness.md),
# resized to a training size: only for models with augment.views > 0.
rule views:
    input:
        "data/processed/images_64.npy",
    output:
        views="data/processed/views_{res}.npy",
        summary="data/processed/views_{res}.json",
    log:
        "logs/views/{res}.log",
    benchmark:
        "logs/benchmarks/views/{res}.tsv"
    priority: 1  # a training input: scheduled with the trainings (train.smk)
    conda:
        CONDA_ENV
    # One worker: Snakemake's scheduler fills every free core with a one-thread job, so on 2 cores a
    # two-thread job waited until the end, and the exported model's training with it. (Not
    # workflow.cores: cluster executors run without --cores.)
    threads: 1
    params:
        filter=config["resize"]["filter"],
        settings=as_json(PARAMS.views),
    shell:
        VIEWS_SHELL.format(framing="cell")


# The same views framed as an ink_box model reads a user's file (FRAMINGS in hccr.serving.preprocess).
rule framed_views:
    input:
        "data/processed/images_64.npy",
    output:
        views="data/processed/{framing}/views_{res}.npy",
        summary="data/processed/{framing}/views_{res}.json",
    log:
        "logs/views/{framing}/{res}.log",
    benchmark:
        "logs/benchmarks/views/{framing}/{res}.tsv"
    priority: 1
    conda:
        CONDA_ENV
    threads: 1  # as the views rule
    params:
        filter=config["resize"]["filter"],
        settings=as_json(PARAMS.views),
    shell:
        VIEWS_SHELL.format(framing="{wildcards.framing}")


# The archive framed by its ink box (hccr.data.reframe), at an ink_box model's input size.
rule reframe:
    input:
        "data/processed/images_64.npy",
    output:
        images="data/processed/{framing}/images_{res}.npy",
        summary="data/processed/{framing}/images_{res}.json",
    log:
        "logs/reframe/{framing}/{res}.log",
    benchmark:
        "logs/benchmarks/reframe/{framing}/{res}.tsv"
    priority: 1
    conda:
        CONDA_ENV
    threads: 1
    params:
        filter=config["resize"]["filter"],
    shell:
        "python -m hccr.data.reframe --images {input:q} --framing {wildcards.framing} --size {wildcards.res}"
        " --filter {params.filter} --workers {threads} --out {output.images:q} --summary {output.summary:q}"
        " 2> {log:q}"
