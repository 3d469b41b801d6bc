# Evaluation: every trained run scored on its validation split and, under the `writer`
# protocol, on the held-out test writers.


rule evaluate:
    input:
        [f"reports/metrics/{m}/{s}.json" for m, s in RUNS],


rule evaluate_run:
    input:
        checkpoint="models/runs/{model}/{size}/checkpoint.pt",
        summary="models/runs/{model}/{size}/train.json",
        images=lambda w: images_for(w.model),
        index=INDEX,
        split=lambda w: split_for(w.model, w.size),
    output:
        metrics="reports/metrics/{model}/{size}.json",
        details="reports/evaluation/{model}/{size}/details.json",
        predictions="reports/evaluation/{model}/{size}/predictions.csv",
    log:
        "logs/evaluate/{model}/{size}.log",
    benchmark:
        "logs/benchmarks/evaluate/{model}/{size}.tsv"
    conda:
        CONDA_ENV
    threads: config["evaluate"]["threads"]
    params:
        protocol=hccr_config.single_split_protocol(config),
        batch=config["evaluate"]["batch_size"],
        bins=config["evaluate"]["calibration_bins"],
        precision=config["evaluate"]["precision"],
    shell:
        "python -m hccr.evaluation.evaluate --checkpoint {input.checkpoint:q} --train-summary {input.summary:q}"
        " --images {input.images:q} --index {input.index:q} --split {input.split:q}"
        " --protocol {params.protocol} --model {wildcards.model} --size {wildcards.size}"
        " --batch-size {params.batch} --bins {params.bins} --precision {params.precision}"
        " --threads {threads} --out-metrics {output.metrics:q}"
        " --out-details {output.details:q} --out-predictions {output.predictions:q} 2> {log:q}"
