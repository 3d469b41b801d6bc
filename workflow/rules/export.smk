# Export: the best run (params export.select) to ONNX beside its PyTorch checkpoint, with a
# parity check against onnxruntime on real held-out images and a model card.


rule export:
    input:
        metrics=[f"reports/metrics/{m}/{s}.json" for m, s in RUNS],
        runs=run_files("checkpoint.pt", "train.json"),
        details=evaluation_files("details.json"),
        images=sorted({images_for(m) for m, _ in RUNS}),
        index=INDEX,
        splits=sorted({split_for(m, s) for m, s in RUNS}),
    output:
        onnx="models/export/model.onnx",
        checkpoint="models/export/checkpoint.pt",
        card="models/export/model_card.md",
        parity="models/export/parity.json",
    log:
        "logs/export.log",
    benchmark:
        "logs/benchmarks/export.tsv"
    conda:
        CONDA_ENV
    threads: config["resources"]["train_threads"]
    params:
        select=config["export"]["select"],
        tolerance=config["export"]["tolerance"],
        filter=config["resize"]["filter"],
        ensemble=" ".join(PARAMS.export.ensemble),
    shell:
        "python -m hccr.serving.export --metrics {input.metrics:q} --models-dir models/runs --select {params.select}"
        " --images {input.images:q} --index {input.index:q} --split-dir data/processed/splits"
        " --evaluation-dir reports/evaluation --resize-filter {params.filter} --tolerance {params.tolerance}"
        " --ensemble {params.ensemble} --threads {threads} --out-dir models/export 2> {log:q}"
