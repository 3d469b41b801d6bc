# Robustness (issue 14): the exported model on the test writers' images as users bring them
# (inverted, enlarged RGB, shifted and padded, JPEG, textured paper), each through
# `hccr predict`'s own path, with McNemar against the untransformed images. On when
# params `robustness.enabled` and the protocol holds test writers out (not `paper`).

ROBUSTNESS_ON = PARAMS.robustness.enabled and PARAMS.subsets.protocol != "paper"
ROBUSTNESS_OUTPUTS = (
    [
        "reports/robustness/robustness.json",
        "reports/robustness/metrics.json",
        "reports/robustness/examples.png",
    ]
    if ROBUSTNESS_ON
    else []
)
EXPORT_FILE = {
    "onnx": "models/export/model.onnx",
    "checkpoint": "models/export/checkpoint.pt",
}


rule robustness:
    input:
        ROBUSTNESS_OUTPUTS,


rule robustness_evaluate:
    input:
        model=EXPORT_FILE[PARAMS.robustness.model],
        images="data/processed/images_64.npy",
        index=INDEX,
        split=split_for(*RUNS[0]),  # every writer-protocol split carries the same test rows
    output:
        details="reports/robustness/robustness.json",
        metrics="reports/robustness/metrics.json",
        figure=report(
            "reports/robustness/examples.png",
            caption="../report/robustness.rst",
            category="Robustness",
        ),
    log:
        "logs/robustness.log",
    benchmark:
        "logs/benchmarks/robustness.tsv"
    conda:
        CONDA_ENV
    threads: config["evaluate"]["threads"]
    params:
        settings=as_json(vars(PARAMS.robustness)),  # with the schema's defaults filled in
    shell:
        "python -m hccr.evaluation.robustness --model {input.model:q} --images {input.images:q}"
        " --index {input.index:q} --split {input.split:q} --settings-json {params.settings:q}"
        " --threads {threads} --out-json {output.details:q} --out-metrics {output.metrics:q}"
        " --out-figure {output.figure:q} 2> {log:q}"
