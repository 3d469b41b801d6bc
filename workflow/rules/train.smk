# Training: every model x size of the grid, and the study's sweep (Table 2). Each job goes
# through hccr.training.launch, which takes its own GPU slots (lock files) and sets
# CUDA_VISIBLE_DEVICES, and starts torchrun when the run asks for more than one GPU.
# The rank count comes from params, never from {resources.gpu}: Snakemake lowers a job's
# resources to the --resources total, which would silently turn a 4-GPU cell into a 1-GPU
# one. On a machine with fewer GPUs the launcher lets the ranks share devices instead.

TRAIN_OUTPUTS = ["checkpoint.pt", "history.csv", "train.json"]

TRAIN_CMD = (
    "python -m hccr.training.launch --gpus {params.gpus} --slots-per-gpu {params.slots}"
    " --"  # the lock folder is the machine's (hccr.training.launch), shared by every checkout
    " python -m hccr.training.train --model {params.model} --size {params.size}"
    " --images {input.images:q} --index {input.index:q} --split {input.split:q}"
    " --config-json {params.cfg:q} --seed {params.seed} --threads {threads}"
    " --resize-filter {params.filter} {params.train_args}"
    " --out {params.out:q} 2> {log:q}"
)


rule train:
    input:
        [f"{d}/{name}" for d in run_dirs() for name in TRAIN_OUTPUTS],


rule train_run:
    input:
        images=lambda w: images_for(w.model),
        index=INDEX,
        split=lambda w: split_for(w.model, w.size),
        start=lambda w: glyph_weights(w.model),  # a glyph start's pretraining (glyphs.smk)
        views=lambda w: views_for(w.model),  # predict-path views (data.smk)
    output:
        [f"models/runs/{{model}}/{{size}}/{name}" for name in TRAIN_OUTPUTS],
    log:
        "logs/train/{model}/{size}.log",
    benchmark:
        "logs/benchmarks/train/{model}/{size}.tsv"
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
        out=lambda w: f"models/runs/{w.model}/{w.size}",
        train_args=lambda w: train_args(w.model),
    shell:
        TRAIN_CMD


rule sweep_run:
    input:
        images=lambda w: images_for(w.model),
        index=INDEX,
        split=lambda w: split_for(w.model, w.size),
        start=lambda w: glyph_weights(w.model),
        views=lambda w: views_for(w.model),
    output:
        [f"models/sweep/{{model}}/{{size}}/{CELL}/{name}" for name in TRAIN_OUTPUTS],
    log:
        f"logs/train/sweep/{{model}}/{{size}}/{CELL}.log",
    benchmark:
        f"logs/benchmarks/train/sweep/{{model}}/{{size}}/{CELL}.tsv"
    conda:
        CONDA_ENV
    threads: PARAMS.resources.train_threads
    resources:
        gpu=lambda w: int(w.gpus),
    params:
        model=lambda w: w.model,
        size=lambda w: w.size,
        cfg=lambda w: as_json(
            hccr_config.train_config(
                config, w.model, w.size, gpus=w.gpus, lr=w.lr, batch=w.batch
            )
        ),
        seed=PARAMS.seed,
        filter=PARAMS.resize.filter,
        slots=PARAMS.resources.slots_per_gpu,
        gpus=lambda w: int(w.gpus),
        train_args=lambda w: train_args(w.model),
        out=lambda w: f"models/sweep/{w.model}/{w.size}/{CELL.format(gpus=w.gpus, lr=w.lr, batch=w.batch)}",
    shell:
        TRAIN_CMD
