# Data half of the DAG: fetch -> index -> resize (one array per size) -> subset, and the
# predict-path views of the models that train on them (augment.views > 0).


rule data:
    input:
        INDEX,
        expand("data/processed/images_{res}.npy", res=SIZES),
        "data/processed/splits/summary.json",
        views_files(),


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
        "python -m hccr.data.views --images {input:q} --size {wildcards.res} --filter {params.filter}"
        " --settings-json {params.settings:q} --workers {threads} --out {output.views:q}"
        " --summary {output.summary:q} 2> {log:q}"
