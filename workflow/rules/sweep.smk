# The study's Table 2: every sweep cell (trained by rule sweep_run in train.smk) gathered into
# models/sweep/summary.csv, which the sweep figure and the report read.


rule sweep:
    input:
        [f"{d}/{name}" for d in sweep_dirs() for name in TRAIN_OUTPUTS],
    output:
        "models/sweep/summary.csv",
    log:
        "logs/sweep_summary.log",
    benchmark:
        "logs/benchmarks/sweep_summary.tsv"
    conda:
        CONDA_ENV
    params:
        model=config["sweep"]["model"],
        size=config["sweep"]["size"],
        cells=sweep_dirs(),
    shell:
        "python -m hccr.evaluation.sweep --model {params.model} --size {params.size} --cells {params.cells:q}"
        " --out {output:q} 2> {log:q}"
