# CASIA-HWDB source (data_source: casia-hwdb:PATH): fetch, index and resize read the .gnt
# corpus where it lies (hccr.data.casia_steps) and produce what data.smk's rules produce for
# Chinese MNIST, so subset, train, evaluate and report run unchanged. Nothing is defined for
# any other source.

if CASIA:

    ruleorder: casia_fetch > fetch
    ruleorder: casia_index > index
    ruleorder: casia_resize > resize

    rule casia_fetch:
        output:
            directory(RAW),
        log:
            "logs/casia/fetch.log",
        benchmark:
            "logs/benchmarks/casia/fetch.tsv"
        conda:
            CONDA_ENV
        params:
            source=str(CASIA),
        shell:
            "python -m hccr.data.casia_steps fetch --source {params.source:q} --out {output:q} 2> {log:q}"

    rule casia_index:
        input:
            RAW,
        output:
            INDEX,
        log:
            "logs/casia/index.log",
        benchmark:
            "logs/benchmarks/casia/index.tsv"
        conda:
            CONDA_ENV
        params:
            label_set=config.get("casia", {}).get("label_set", "level1"),
        shell:
            "python -m hccr.data.casia_steps index --raw {input:q} --label-set {params.label_set:q}"
            " --out {output:q} 2> {log:q}"

    rule casia_resize:
        input:
            raw=RAW,
            index=INDEX,
        output:
            "data/processed/images_{res}.npy",
        log:
            "logs/casia/resize/{res}.log",
        benchmark:
            "logs/benchmarks/casia/resize/{res}.tsv"
        conda:
            CONDA_ENV
        threads: 2
        params:
            filter=config["resize"]["filter"],
            margin=config.get("casia", {}).get("margin", 0.0625),
        shell:
            "python -m hccr.data.casia_steps resize --raw {input.raw:q} --index {input.index:q} --size {wildcards.res}"
            " --filter {params.filter} --margin {params.margin} --workers {threads} --out {output:q} 2> {log:q}"
