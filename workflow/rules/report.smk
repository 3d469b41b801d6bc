# Figures (hccr.reporting.plots) and the assembled report (hccr.reporting.report). Figures are wrapped in
# report() so that `snakemake --report reports/snakemake_report.html` shows them with captions.


rule report:
    input:
        "reports/report.md",
        "reports/report.html",


rule plot_curves:
    input:
        "models/runs/{model}/{size}/history.csv",
    output:
        figure=report(
            f"{FIG}/curves/{{model}}/{{size}}.png",
            caption="../report/curves.rst",
            category="Training curves",
            subcategory="{model}",
        ),
        data="reports/plots/history/{model}_{size}.csv",
    log:
        "logs/plots/curves/{model}/{size}.log",
    benchmark:
        "logs/benchmarks/plots/curves/{model}/{size}.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m hccr.reporting.plots curves --history {input:q} --model {wildcards.model} --size {wildcards.size}"
        " --out {output.figure:q} --out-data {output.data:q} 2> {log:q}"


rule plot_sizes:
    input:
        lambda w: histories_of(w.model),
    output:
        report(
            f"{FIG}/sizes/{{model}}.png",
            caption="../report/sizes.rst",
            category="Training-set size",
        ),
    log:
        "logs/plots/sizes/{model}.log",
    benchmark:
        "logs/benchmarks/plots/sizes/{model}.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m hccr.reporting.plots sizes --model {wildcards.model} --history {input:q} --out {output:q} 2> {log:q}"


rule plot_starts:
    input:
        metrics=[f"reports/metrics/{m}/{s}.json" for m, s in RUNS],
        summaries=[f"models/runs/{m}/{s}/train.json" for m, s in RUNS],
    output:
        report(
            f"{FIG}/starts.png",
            caption="../report/starts.rst",
            category="Starting weights",
        ),
    log:
        "logs/plots/starts.log",
    benchmark:
        "logs/benchmarks/plots/starts.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m hccr.reporting.start_comparison --metrics-dir reports/metrics --models-dir models"
        " --evaluation-dir reports/evaluation --out {output:q} 2> {log:q}"


rule plot_sweep:
    input:
        "models/sweep/summary.csv",
    output:
        report(
            f"{FIG}/sweep/{{model}}_{{size}}.png",
            caption="../report/sweep.rst",
            category="Sweep",
        ),
    log:
        "logs/plots/sweep/{model}_{size}.log",
    benchmark:
        "logs/benchmarks/plots/sweep/{model}_{size}.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m hccr.reporting.plots sweep --summary {input:q} --model {wildcards.model} --size {wildcards.size}"
        " --out {output:q} 2> {log:q}"


rule plot_confusion:
    input:
        "reports/evaluation/{model}/{size}/details.json",
    output:
        report(
            f"{FIG}/confusion/{{model}}/{{size}}.png",
            caption="../report/confusion.rst",
            category="Confusion matrices",
            subcategory="{model}",
        ),
    log:
        "logs/plots/confusion/{model}/{size}.log",
    benchmark:
        "logs/benchmarks/plots/confusion/{model}/{size}.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m hccr.reporting.plots confusion --details {input:q} --out {output:q} 2> {log:q}"


rule plot_misclassified:
    input:
        predictions="reports/evaluation/{model}/{size}/predictions.csv",
        details="reports/evaluation/{model}/{size}/details.json",
        images=lambda w: images_for(w.model),
    output:
        report(
            f"{FIG}/misclassified/{{model}}/{{size}}.png",
            caption="../report/misclassified.rst",
            category="Misclassified images",
            subcategory="{model}",
        ),
    log:
        "logs/plots/misclassified/{model}/{size}.log",
    benchmark:
        "logs/benchmarks/plots/misclassified/{model}/{size}.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m hccr.reporting.plots misclassified --predictions {input.predictions:q} --details {input.details:q}"
        " --images {input.images:q}"
        " --out {output:q} 2> {log:q}"


# The efficiency table also reads the Snakemake benchmark TSVs under logs/benchmarks/ when they
# exist. They are deliberately not inputs: logs are safe to delete, and declaring them would
# make Snakemake retrain every model to regenerate a timing file.
rule assemble_report:
    input:
        metrics=[f"reports/metrics/{m}/{s}.json" for m, s in RUNS],
        evaluation=evaluation_files("details.json", "predictions.csv"),
        runs=run_files("train.json", "history.csv"),
        figures=report_figures(),
        sweep="models/sweep/summary.csv",
        pretrain=glyph_pretrain_summaries(),  # the glyph starts' pretraining cost (glyphs.smk)
        robustness=lambda w: ROBUSTNESS_OUTPUTS,  # empty when off (robustness.smk)
        writer_cv=writer_cv_report_inputs(),
        export="models/export/parity.json",  # the exported model's figures and cost (export.smk)
    output:
        md="reports/report.md",
        html="reports/report.html",
    log:
        "logs/report.log",
    benchmark:
        "logs/benchmarks/report.tsv"
    conda:
        CONDA_ENV
    params:
        config=as_json(config),
    shell:
        "python -m hccr.reporting.report --metrics-dir reports/metrics --evaluation-dir reports/evaluation"
        " --runs-dir models/runs --sweep-summary {input.sweep:q} --figures-dir reports/figures"
        " --benchmarks-dir logs/benchmarks --export-dir models/export"
        " --params-json {params.config:q} --out-md {output.md:q} --out-html {output.html:q} 2> {log:q}"
