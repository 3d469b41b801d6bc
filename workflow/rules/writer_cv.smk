# Writer cross-validation (subsets.protocol: writer_cv; docs/writer_cv.md): every model x size
# of the `writer_cv` params block is trained and evaluated once per writer fold, on the fold
# splits the subset rule writes (data/processed/splits/cv/fold{i}/), with the train and evaluate
# steps and conventions of the grid's runs. Rule writer_cv gathers the folds into
# models/cv/summary.json and per_writer.csv, which the report and its figure read; under any
# other protocol there are no folds and it writes both empty, so the report and DVC find them.


rule writer_cv:
    input:
        [f"{d}/evaluation/{name}" for d in cv_fold_dirs() for name in CV_EVALUATION],
    output:
        summary="models/cv/summary.json",
        per_writer="models/cv/per_writer.csv",
    log:
        "logs/writer_cv/summary.log",
    benchmark:
        "logs/benchmarks/writer_cv/summary.tsv"
    conda:
        CONDA_ENV
    params:
        runs=" ".join(f"--run {m}/{s}" for m, s in CV_SCORED),
        folds=len(CV_FOLDS),
    shell:
        "python -m hccr.evaluation.writer_cv --cv-dir models/cv {params.runs} --folds {params.folds}"
        " --out-summary {output.summary:q} --out-per-writer {output.per_writer:q} 2> {log:q}"


rule cv_train_run:
    input:
        images=lambda w: images_for(w.model),
        index=INDEX,
        split=cv_split_for,
        start=lambda w: glyph_weights(w.model),  # a glyph start's pretraining (glyphs.smk)
        views=lambda w: views_for(w.model),  # predict-path views (data.smk)
    output:
        [f"{CV_FOLD}/{name}" for name in TRAIN_OUTPUTS],
    log:
        "logs/writer_cv/train/{model}/{size}/fold{fold}.log",
    benchmark:
        "logs/benchmarks/writer_cv/train/{model}/{size}/fold{fold}.tsv"
    wildcard_constraints:
        fold=r"\d+",
        model=rf"(?!{ENSEMBLE}/)[a-z][a-z0-9_]*",  # an ensemble's fold is written by cv_ensemble
    # Trainings before evaluations and plots: the long jobs first, the short ones fill the
    # cores at the end (otherwise a training could start last and run alone).
    priority: 1
    conda:
        CONDA_ENV
    threads: PARAMS.resources.train_threads
    resources:
        gpu=lambda w: PARAMS.model[w.model].gpus,
    params:
        model=lambda w: w.model,
        size=lambda w: w.size,
        cfg=lambda w: as_json(hccr_config.train_config(config, w.model, w.size)),
        seed=PARAMS.seed,
        filter=PARAMS.resize.filter,
        slots=PARAMS.resources.slots_per_gpu,
        gpus=lambda w: PARAMS.model[w.model].gpus,
        out=lambda w: CV_FOLD.format(model=w.model, size=w.size, fold=w.fold),
        train_args=lambda w: train_args(w.model),
    shell:
        TRAIN_CMD


# writer_cv.ensemble: the fold's trained members as one checkpoint (hccr.models.ensemble), the
# recipe of export.ensemble, scored by cv_evaluate_run like any run.
rule cv_ensemble:
    input:
        lambda w: [
            f"{CV_FOLD}/checkpoint.pt".format(model=m, size=s, fold=w.fold)
            for m, s in CV_ENSEMBLES[w.size]
        ],
    output:
        checkpoint=f"models/cv/{ENSEMBLE}/{{size}}/fold{{fold}}/checkpoint.pt",
        summary=f"models/cv/{ENSEMBLE}/{{size}}/fold{{fold}}/train.json",
    log:
        f"logs/writer_cv/{ENSEMBLE}/{{size}}/fold{{fold}}.log",
    wildcard_constraints:
        fold=r"\d+",
    conda:
        CONDA_ENV
    params:
        runs=lambda w, input: " ".join(
            f"--run {m}/{s}={path}"
            for (m, s), path in zip(CV_ENSEMBLES[w.size], input)
        ),
    shell:
        "python -m hccr.models.ensemble {params.runs} --out {output.checkpoint:q}"
        " --out-summary {output.summary:q} 2> {log:q}"


rule cv_evaluate_run:
    input:
        checkpoint=f"{CV_FOLD}/checkpoint.pt",
        summary=f"{CV_FOLD}/train.json",
        images=lambda w: cv_images(w.model, w.size),
        index=INDEX,
        split=cv_split_for,
    output:
        metrics=f"{CV_FOLD}/evaluation/metrics.json",
        details=f"{CV_FOLD}/evaluation/details.json",
        predictions=f"{CV_FOLD}/evaluation/predictions.csv",
    log:
        "logs/writer_cv/evaluate/{model}/{size}/fold{fold}.log",
    benchmark:
        "logs/benchmarks/writer_cv/evaluate/{model}/{size}/fold{fold}.tsv"
    wildcard_constraints:
        fold=r"\d+",
    conda:
        CONDA_ENV
    threads: config["evaluate"]["threads"]
    params:
        batch=config["evaluate"]["batch_size"],
        bins=config["evaluate"]["calibration_bins"],
        precision=config["evaluate"]["precision"],
    shell:
        # Each fold is a `writer` split of its own: its test writers are its group.
        "python -m hccr.evaluation.evaluate --checkpoint {input.checkpoint:q} --train-summary {input.summary:q}"
        " --images {input.images:q} --index {input.index:q} --split {input.split:q}"
        " --protocol writer --model {wildcards.model} --size {wildcards.size}"
        " --batch-size {params.batch} --bins {params.bins} --precision {params.precision}"
        " --threads {threads} --out-metrics {output.metrics:q}"
        " --out-details {output.details:q} --out-predictions {output.predictions:q} 2> {log:q}"


rule plot_writer_cv:
    input:
        per_writer="models/cv/per_writer.csv",
        predictions=lambda w: [
            f"{d}/evaluation/predictions.csv" for d in cv_fold_dirs(w.model, w.size)
        ],
        details=lambda w: f"{cv_fold_dirs(w.model, w.size)[0]}/evaluation/details.json",
        images=lambda w: cv_images(w.model, w.size)[0],
    output:
        figure=report(
            f"{FIG}/writer_cv/{{model}}/{{size}}.png",
            caption="../report/writer_cv.rst",
            category="Writer cross-validation",
        ),
        data="reports/plots/writer_cv/{model}_{size}.csv",
    log:
        "logs/plots/writer_cv/{model}/{size}.log",
    benchmark:
        "logs/benchmarks/plots/writer_cv/{model}/{size}.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m hccr.reporting.writer_cv figure --model {wildcards.model} --size {wildcards.size}"
        " --per-writer {input.per_writer:q} --predictions {input.predictions:q} --details {input.details:q}"
        " --images {input.images:q} --out {output.figure:q} --out-data {output.data:q} 2> {log:q}"
