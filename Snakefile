# hccr — the front door. The DAG: fetch -> index -> resize -> subset -> train -> evaluate ->
# plots -> report, and export of the best run (ONNX + model card). Every knob is in
# params.yaml; rules stay thin and call `python -m hccr.<step>`.
#
#   snakemake --cores all --config data_source=PATH      # everything
#   snakemake --profile workflow/profiles/quick           # CPU-sized settings
#   snakemake --cores all --resources gpu=4               # up to four 1-GPU jobs at once

from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/casia.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/glyphs.smk"
include: "workflow/rules/sweep.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/writer_cv.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/robustness.smk"


rule all:
    default_target: True
    input:
        rules.data.input,
        rules.train.input,
        rules.sweep.output,
        rules.evaluate.input,
        rules.report.input,
        rules.export.output,
        rules.robustness.input,


onsuccess:
    # dvc exp run checks outputs out as dvc.lock records them, deleting what it lacks: record
    # what this run brought up to date (a no-op under DVC or outside a DVC project; issue 12).
    from hccr.dvc_sync import record

    record(rule.name for rule in workflow.dag.targetrules)


onerror:
    from hccr.dvc_sync import warn_after_failure

    warn_after_failure()
