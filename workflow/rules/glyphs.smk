# Printed-glyph pretraining (docs/glyphs.md): render the corpus, split it (all characters, or
# without the target's classes for the ablation), and pretrain the network of each model block
# whose `pretrained` is a glyph start. hccr.training.train does the pretraining, so it resumes
# from last.pt like any run. Nothing here runs unless a listed model asks for a glyph start.

import re

GLYPH_IMAGES = f"{GLYPHS}/images_{PARAMS.glyphs.size}.npy"


rule glyph_corpus:
    output:
        images=GLYPH_IMAGES,
        index=f"{GLYPHS}/index.csv",
        summary=f"{GLYPHS}/corpus.json",
    log:
        "logs/glyphs/corpus.log",
    benchmark:
        "logs/benchmarks/glyphs/corpus.tsv"
    conda:
        CONDA_ENV
    threads: PARAMS.resources.train_threads
    params:
        fonts=" ".join(f"'{f}'" for f in PARAMS.glyphs.fonts),
        variants=PARAMS.glyphs.variants,
        size=PARAMS.glyphs.size,
        seed=PARAMS.glyphs.seed,
        characters=(
            f"--characters '{PARAMS.glyphs.characters}'"
            if PARAMS.glyphs.characters
            else ""
        ),
        spread=PARAMS.glyphs.count,
        augment=as_json(dict(PARAMS.glyphs.augment)),
        on_missing=PARAMS.glyphs.on_missing,
    shell:
        "python -m hccr.data.glyphs --fonts {params.fonts} --variants {params.variants}"
        " --size {params.size} --seed {params.seed} {params.characters} --count {params.spread}"
        " --augment-json {params.augment:q}"
        " --on-missing {params.on_missing} --workers {threads} --images {output.images:q}"
        " --index {output.index:q} --summary {output.summary:q} 2> {log:q}"


rule glyph_split:
    input:
        index=f"{GLYPHS}/index.csv",
        summary=f"{GLYPHS}/corpus.json",
        target=INDEX,
    output:
        split=f"{GLYPHS}/splits/{{which}}.csv",
        summary=f"{GLYPHS}/splits/{{which}}.json",
    log:
        "logs/glyphs/split_{which}.log",
    wildcard_constraints:
        which="all|excl",
    conda:
        CONDA_ENV
    params:
        val_fraction=PARAMS.glyphs.val_fraction,
        seed=PARAMS.seed,
    shell:
        "python -m hccr.data.glyphs_split --index {input.index:q} --summary {input.summary:q}"
        " --which {wildcards.which} --target-index {input.target:q}"
        " --val-fraction {params.val_fraction} --seed {params.seed}"
        " --out {output.split:q} --out-summary {output.summary:q} 2> {log:q}"


rule glyph_pretrain:
    input:
        images=GLYPH_IMAGES,
        index=f"{GLYPHS}/index.csv",
        split=lambda w: f"{GLYPHS}/splits/{GLYPH_STARTS[w.start].corpus_split}.csv",
        corpus=lambda w: f"{GLYPHS}/splits/{GLYPH_STARTS[w.start].corpus_split}.json",
    output:
        [f"models/pretrain/{{model}}/{{start}}/{name}" for name in TRAIN_OUTPUTS],
    log:
        "logs/glyphs/pretrain/{model}/{start}.log",
    benchmark:
        "logs/benchmarks/glyphs/pretrain/{model}/{start}.tsv"
    wildcard_constraints:
        start="|".join(re.escape(s) for s in GLYPH_STARTS),
    conda:
        CONDA_ENV
    threads: PARAMS.resources.train_threads
    resources:
        gpu=lambda w: PARAMS.model[w.model].gpus,
    params:
        cfg=lambda w: as_json(
            hccr_config.glyph_pretrain_config(
                config, w.model, GLYPH_STARTS[w.start].init
            )
        ),
        seed=PARAMS.seed,
        slots=PARAMS.resources.slots_per_gpu,
        gpus=lambda w: PARAMS.model[w.model].gpus,
        out=lambda w: f"models/pretrain/{w.model}/{w.start}",
    shell:
        "python -m hccr.training.launch --gpus {params.gpus} --slots-per-gpu {params.slots} --"
        " python -m hccr.training.train --model {wildcards.model} --size glyphs"
        " --images {input.images:q} --index {input.index:q} --split {input.split:q}"
        " --config-json {params.cfg:q} --seed {params.seed} --threads {threads}"
        " --corpus-json {input.corpus:q} --out {params.out:q} 2> {log:q}"
