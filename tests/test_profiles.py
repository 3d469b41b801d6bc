"""Dry runs of the shipped profiles: the grid, the sweep, and SLURM's GPU requests."""

import json
import re
from types import SimpleNamespace

import pytest
from snakemake_executor_plugin_slurm.utils import set_gres_string

from helpers_workflow import describe, make_project, snakemake

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("project"))


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:", 1)[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_default_params_expand_the_study_and_the_sweep(project):
    proc = snakemake(project, "-n", "--quiet", "rules")
    assert proc.returncode == 0, describe(proc)
    counts = job_counts(proc.stdout)
    assert counts["sweep_run"] == 18  # Table 2: 2 GPU counts x 3 learning rates x 3 batches
    assert counts["train_run"] == 3 * 4  # three models x small/medium/large/full
    assert counts["resize"] == 2  # native 64 and InceptionV3's 299


def test_quick_profile_runs_both_heads_from_imagenet_and_a_scratch_counterpart(project):
    proc = snakemake(project, "-n", "--printshellcmds", "--profile", str(project / "workflow/profiles/quick"), "train")
    assert proc.returncode == 0, describe(proc)
    counts = job_counts(proc.stdout)
    assert counts["train_run"] == 2 * 3 + 1 + 2  # two heads at three sizes, scratch at small, cnn small/full
    assert "sweep_run" not in counts
    starts, epochs = {}, {}
    for model, size, cfg in re.findall(r"--model (\w+) --size (\w+) .*?--config-json '(\{.*?\})'", proc.stdout):
        block = json.loads(cfg)
        starts[(model, size)] = (block.get("network", model), block["arch"], block["pretrained"])
        phases = block["scratch_phases"] if block["pretrained"] == "none" else block["phases"]
        epochs[(model, size)] = sum(p["epochs"] for p in phases)  # per-size tables arrive resolved
    # smaller sets get more passes; the scratch counterpart as many epochs as the ImageNet run
    assert epochs[("efficientnet", "small")] > epochs[("efficientnet", "medium")] > epochs[("efficientnet", "large")]
    assert epochs[("efficientnet_scratch", "small")] == epochs[("efficientnet", "small")]
    assert starts[("cnn", "full")][2] == "none"
    for size in ("small", "medium", "large"):
        assert starts[("efficientnet", size)] == ("efficientnet", "tf_efficientnet_lite0", "imagenet")
        assert starts[("inception_gru", size)] == ("inception_gru", "tf_efficientnet_lite0", "imagenet")
    assert starts[("efficientnet_scratch", "small")] == ("efficientnet", "tf_efficientnet_lite0", "none")
    assert ("efficientnet_scratch", "large") not in starts
    assert starts[("cnn", "small")][2] == "none"
    # the exported model's recipe trains on predict-path views; the Lite0 runs do not
    assert counts["views"] == 1
    lines = re.findall(r"hccr\.training\.train --model \w+ --size \w+ .*", proc.stdout)
    assert len(lines) == counts["train_run"]
    for line in lines:
        assert ("--views data/processed/views_64.npy" in line) == line.startswith("hccr.training.train --model cnn ")


def test_study_cpu_profile_runs_every_start_at_every_size(project):
    proc = snakemake(project, "-n", "--quiet", "rules", "--profile", str(project / "workflow/profiles/study-cpu"))
    assert proc.returncode == 0, describe(proc)
    counts = job_counts(proc.stdout)
    # Lite0 (ImageNet, scratch) and the cnn at tiny..full; the three GRU blocks at small..full (the
    # fraction scheme has no tiny); the glyph starts (docs/glyphs.md) at tiny/small/medium.
    assert counts["train_run"] == 3 * 5 + 3 * 4 + (3 + 3) + 3
    assert counts["glyph_pretrain"] == 3 and counts["glyph_corpus"] == 1
    assert counts["cv_train_run"] == 10  # writer_cv: the cnn at full, once per writer fold


def test_glyphs_cpu_profile_compares_the_starts_at_10_and_70_per_class(project):
    profile = project / "workflow/profiles/glyphs-cpu"
    proc = snakemake(project, "-n", "--printshellcmds", "--profile", str(profile))
    assert proc.returncode == 0, describe(proc)
    counts = job_counts(proc.stdout)
    assert counts["train_run"] == 6 * 2  # cnn, cnn_glyphs, Lite0 from ImageNet / scratch / glyphs / ImageNet+glyphs
    assert counts["glyph_pretrain"] == 3 and counts["glyph_corpus"] == 1
    assert re.search(r"hccr\.data\.glyphs .*--variants 8 .*--count 500 ", proc.stdout)
    # Lite0 pretrains without dropout or stochastic depth (params glyphs.pretrain) and fine-tunes with its own.
    command = r"--model (\w+) --size (\w+) .*?--config-json '(\{.*?\})'"
    blocks = {(m[1], m[2]): json.loads(m[3]) for m in re.finditer(command, proc.stdout)}
    pretrain, finetune = blocks[("efficientnet_glyphs", "glyphs")], blocks[("efficientnet_glyphs", "small")]
    assert (pretrain["drop_path_rate"], pretrain["head"]["dropout"]) == (0.0, 0.0)
    assert (finetune["drop_path_rate"], finetune["head"]["dropout"]) == (0.2, 0.5)
    assert blocks[("cnn_glyphs", "glyphs")]["dropout"] == 0.0 and blocks[("cnn_glyphs", "small")]["dropout"] == 0.1
    starts = dict(re.findall(r"--model (\w+) --size tiny .*?--start-weights (\S+)", proc.stdout))
    assert starts == {
        "cnn_glyphs": "models/pretrain/cnn_glyphs/glyphs/checkpoint.pt",
        "efficientnet_glyphs": "models/pretrain/efficientnet_glyphs/glyphs/checkpoint.pt",
        "efficientnet_imagenet_glyphs": "models/pretrain/efficientnet_imagenet_glyphs/imagenet+glyphs/checkpoint.pt",
    }


def test_unknown_override_key_fails_before_any_job(project):
    proc = snakemake(project, "-n", "--config", "sead=1")
    assert proc.returncode != 0
    assert "'sead'" in proc.stdout + proc.stderr


def test_slurm_profile_maps_each_runs_gpus_to_the_plugin_request(project):
    proc = snakemake(project, "-n", "--profile", str(project / "workflow/profiles/slurm"), "sweep")
    assert proc.returncode == 0, describe(proc)
    blocks = re.findall(r"rule sweep_run:.*?resources: ([^\n]*)", proc.stdout, re.S)
    assert len(blocks) == 18
    gpu_counts = []
    for line in blocks:
        resources = dict(item.split("=", 1) for item in line.split(", "))
        assert resources["slurm_partition"] == "gpu"
        job = SimpleNamespace(resources=resources)
        gres = set_gres_string(job)
        gpu_counts.append(int(re.search(r"--gpus=(\d+)", gres)[1]))
    assert sorted(set(gpu_counts)) == [1, 4]
    assert gpu_counts.count(4) == 9


def test_four_gpu_cells_keep_four_ranks_on_a_one_gpu_machine(project):
    # Snakemake lowers a job's gpu resource to the --resources total (4 -> 1 here); the rank
    # count the launcher gets must still be the cell's own.
    proc = snakemake(project, "sweep", "-n", "--printshellcmds", "--resources", "gpu=1")
    assert proc.returncode == 0, describe(proc)
    launches = re.findall(r"hccr\.training\.launch --gpus (\d+) .*?--out (\S+)", proc.stdout)
    assert len(launches) == 18
    for ranks, out in launches:
        assert f"/g{ranks}-lr" in out, (ranks, out)
    assert sorted(r for r, _ in launches).count("4") == 9


def test_nested_config_override_reaches_the_jobs_with_its_type(project):
    # Snakemake leaves nested --config leaves as strings ('64'); the job must get the number.
    proc = snakemake(
        project,
        "models/runs/cnn/small/train.json",
        "-n",
        "--printshellcmds",
        "--config",
        'model={"cnn": {"batch_size": 64}}',
    )
    assert proc.returncode == 0, describe(proc)
    assert '"batch_size": 64' in proc.stdout
    assert '"batch_size": "64"' not in proc.stdout
