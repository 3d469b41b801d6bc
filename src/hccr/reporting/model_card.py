"""The model card written next to the exported model (`models/export/model_card.md`).

`render_model_card(meta, metrics, ...)` turns the checkpoint's metadata, the run's metrics
(and, when present, its evaluation details and train.json) into Markdown: what the model is,
whether its weights started from ImageNet or from scratch, the data and protocol, training
settings, validation and test accuracy with 95 % intervals, export parity, known limits,
intended use and how to run it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hccr.classes import Classes
from hccr.reporting.formatting import DASH, PROTOCOLS, general, pct
from hccr.starts import GLYPH_STARTS, describe_start, start_label


def _interval(scalars: Mapping[str, Any], details: Mapping[str, Any] | None) -> str:
    low, high = scalars.get("accuracy_ci_low"), scalars.get("accuracy_ci_high")
    if (low is None or high is None) and details:
        ci = details.get("accuracy_ci") or {}
        low, high = ci.get("low"), ci.get("high")
    if low is None or high is None:
        return DASH
    return f"{pct(low)} – {pct(high)}"


def _start_banner(start: str, source: str, config: Mapping[str, Any]) -> str:
    arch = config.get("arch", "?")
    if start == "imagenet":
        where = f" ({source})" if source else ""
        return (
            f"> **Weights: fine-tuned from ImageNet-pretrained `{arch}`**{where} (transfer learning, as in the study)."
        )
    if start in GLYPH_STARTS:  # docs/glyphs.md
        # The source (hccr.starts.glyph_source) says whether the corpus printed the target's characters.
        return (
            f"> **Weights: `{arch}` pretrained on printed Chinese glyphs, then fine-tuned on Chinese MNIST** — "
            f"{start_label(start)}: `{describe_start(start, source)}`."
        )
    if start.startswith("file:"):
        return f"> **Weights: started from a local weights file** (`{start[5:]}`), then trained on Chinese MNIST."
    if config.get("pretrained", "none") == "none" and not source:
        return (
            f"> **Weights: trained from scratch, by choice** (`pretrained: none`): `{arch}` learned from "
            "Chinese MNIST alone."
        )
    why = f" ({source})" if source else ""
    return (
        f"> **Weights: trained from scratch — no ImageNet pretraining.** `pretrained: {config.get('pretrained')}` was "
        f"asked for, but no weights could be had{why}, so `{arch}` learned from Chinese MNIST alone."
    )


def _augmentation(augment: dict) -> str:
    """The affine's state, and the share of predict-path views (hccr.data.views) when there are any."""
    text = "on" if augment.get("enabled") else "off"
    if augment.get("views"):
        text += f"; predict-path views for {100 * augment['views']:.0f} % of the images each epoch"
    return text


def _members_section(members: list[Mapping[str, Any]] | None) -> list[str]:
    """The ensemble's runs, each with its framing and its own accuracies (nothing for one run)."""
    if not members:
        return []
    rows = [
        "## Ensemble",
        "",
        f"The exported model averages the class probabilities of {len(members)} runs. Each reads the "
        "file framed as it was trained: `cell` frames it as a dataset cell, `ink_box` crops it to its "
        'ink box (docs/robustness.md, "Two framings"). The training section describes the first run.',
        "",
        "| run | framing | architecture | val accuracy (alone) | test accuracy (alone) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for member in members:
        rows.append(
            f"| `{member['run']}` | {member.get('framing', 'cell')} | `{member.get('arch') or '?'}` | "
            f"{pct(member.get('val_accuracy'))} | {pct(member.get('test_accuracy'))} |"
        )
    return rows + [""]


def _phases(config: Mapping[str, Any], start: str, train_summary: Mapping[str, Any] | None) -> list[str]:
    rows = ["| phase | epochs | learning rate | frozen |", "| --- | --- | --- | --- |"]
    if train_summary and train_summary.get("phases"):
        for phase in train_summary["phases"]:
            epochs = phase.get("epochs_run", phase.get("epochs_planned"))
            planned = phase.get("epochs_planned")
            shown = f"{epochs} of {planned}" if planned is not None and epochs != planned else str(epochs)
            rows.append(f"| {phase.get('name')} | {shown} | {general(phase.get('lr'))} | {phase.get('freeze')} |")
        return rows
    key = "scratch_phases" if start == "scratch" and config.get("scratch_phases") else "phases"
    for phase in config.get(key) or []:
        rows.append(
            f"| {phase.get('name')} | {phase.get('epochs')} | {general(phase.get('lr'))} | {phase.get('freeze')} |"
        )
    return rows


def _classes_section(classes: Classes) -> list[str]:
    """The label set, as a table of characters (and values) when it is small enough to read."""
    lines = [f"Recognises one handwritten Chinese character per image, one of {len(classes)} classes:", ""]
    if len(classes) > 60:
        return lines + [f"`{classes.text[:60]}…` (the full list is in the checkpoint's `characters`)", ""]
    lines += ["| " + " | ".join(classes.characters) + " |", "|" + " --- |" * len(classes)]
    if any(v is not None for v in classes.values):
        lines.append("| " + " | ".join("" if v is None else str(v) for v in classes.values) + " |")
    return lines + [""]


def render_model_card(
    meta: Mapping[str, Any],
    metrics: Mapping[str, Any],
    *,
    parameters: int,
    split_counts: Mapping[str, Mapping[str, int]] | None = None,
    details: Mapping[str, Any] | None = None,
    train_summary: Mapping[str, Any] | None = None,
    parity: Mapping[str, Any] | None = None,
    selection: Mapping[str, Any] | None = None,
    resize_filter: str = "bilinear",
    total_writers: int | None = None,
    members: list[Mapping[str, Any]] | None = None,
) -> str:
    """Markdown model card for an exported run; with `members`, for the ensemble of those runs
    (`meta` and `train_summary` then describe the first member's recipe)."""
    config = meta.get("config") or {}
    model = meta.get("model", metrics.get("model", "?"))
    size = metrics.get("size") or meta.get("size") or "?"
    start = str(meta.get("start") or metrics.get("start") or "scratch")
    source = str(meta.get("start_source") or metrics.get("start_source") or "")
    input_size = int(meta["input_size"])
    mean, std = meta["normalize"]["mean"], meta["normalize"]["std"]
    protocol = metrics.get("protocol", "?")
    train = metrics.get("train") or {}
    title = f"`{model}` ({config.get('arch', model)}), subset `{size}`"
    channels = 1
    if members:
        title = "ensemble of " + " + ".join(f"`{member['run']}`" for member in members)
        channels = len(members)
    lines = [
        f"# Model card: hccr {title}",
        "",
        _start_banner(start, source, config),
        "",
        *_classes_section(Classes.from_meta(meta, "checkpoint")),
        "## The model",
        "",
        "| | |",
        "| --- | --- |",
        f"| model | `{'ensemble' if members else model}` (architecture `{config.get('arch', '?')}`) |",
        f"| parameters | {parameters:,} |",
        f"| input | {channels} x {input_size} x {input_size} grayscale, light strokes on black, "
        f"`((pixel / 255) - {mean:.4f}) / {std:.4f}`"
        + (" (channel m: the file framed as member m was trained)" if members else "")
        + " |",
        f"| from the 64 x 64 glyph to {input_size} px | PIL `{resize_filter}` |",
        f"| output | {len(Classes.from_meta(meta, 'checkpoint'))} class probabilities (`model.onnx`: softmax "
        "included) |",
        f"| weights start | `{describe_start(start, source)}` |",
        f"| checkpoint epoch | {meta.get('epoch', '?')} (best validation accuracy) |",
        "| files | `checkpoint.pt` (PyTorch, loads with `weights_only=True`), `model.onnx` "
        "(metadata `hccr.*`: input size, mean, std, characters, framings), `parity.json` |",
        "",
        *_members_section(members),
        "## Data and protocol",
        "",
        "Chinese MNIST (Kaggle `gpreda/chinese-mnist`): 64 x 64 grayscale scans of the 15 numerals, "
        "each written 10 times by each volunteer of a study at Newcastle University "
        "(Dr K. Nazarpour, Dr M. Chen)" + (f"; this copy holds {total_writers} writers." if total_writers else "."),
        "",
        PROTOCOLS.get(protocol, f"protocol `{protocol}`."),
        "",
    ]
    if split_counts:
        lines += ["| role | images | writers |", "| --- | --- | --- |"]
        for role in ("train", "val", "test"):
            if role in split_counts:
                entry = split_counts[role]
                lines.append(f"| {role} | {entry.get('images', 'n/a')} | {entry.get('writers', 'n/a')} |")
        lines.append("")
    lines += [
        "## Training",
        "",
        *_phases(config, start, train_summary),
        "",
        f"- batch size {config.get('batch_size', '?')} per process, GPUs {config.get('gpus', 1)}; "
        f"optimizer {(config.get('optimizer') or {}).get('name', '?')} "
        f"(weight decay {(config.get('optimizer') or {}).get('weight_decay', 0)}); "
        f"schedule {config.get('schedule', 'n/a')}; label smoothing {config.get('label_smoothing', 0)}",
        f"- augmentation: {_augmentation(config.get('augment') or {})}; "
        f"early stopping: {'on' if (config.get('early_stopping') or {}).get('enabled') else 'off'}",
        f"- epochs run {train.get('epochs') or 'n/a'}, best epoch "
        f"{train.get('best_epoch') or meta.get('epoch', 'n/a')}, "
        f"training time {general(train.get('seconds_total'), 4)}"
        + (" s" if isinstance(train.get("seconds_total"), (int, float)) else ""),
        "",
        "## Results",
        "",
        "| split | accuracy | 95 % CI (Wilson) | macro F1 | loss | ECE | images |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for role in ("val", "test"):
        scalars = metrics.get(role)
        if isinstance(scalars, dict):
            lines.append(
                f"| {role} | {pct(scalars.get('accuracy'))} | {_interval(scalars, (details or {}).get(role))} | "
                f"{general(scalars.get('macro_f1'))} | {general(scalars.get('loss'))} | "
                f"{general(scalars.get('ece'))} | "
                f"{scalars.get('n', 'n/a')} |"
            )
    if not isinstance(metrics.get("test"), dict):
        lines += ["", "No test set under this protocol: the validation accuracy also chose the checkpoint."]
    if selection:
        lines += [
            "",
            f"Chosen for export as the best of {len(selection.get('candidates', []))} runs by "
            f"`{selection.get('metric')}` ({general(selection.get('value'))}).",
        ]
    if parity:
        lines += [
            "",
            f"ONNX parity ({parity.get('exporter')} exporter): {parity.get('n_images')} {parity.get('role')} images, "
            f"max |p_onnx − p_torch| = {float(parity.get('max_abs_diff', math.nan)):.2e} "
            f"(tolerance {parity.get('tolerance')}), same top-1 on "
            f"{parity.get('top1_agree')}/{parity.get('n_images')}.",
        ]
    lines += [
        "",
        "## Known limits",
        "",
        "- Only the 15 numerals above: any other character, letter or drawing is still forced into "
        "one of them — there is no rejection of non-characters, and confidences are not a "
        "reliable out-of-distribution signal.",
        "- The writers are the volunteers of one university study: other ages, scripts, pens and "
        "writing habits are not represented.",
        "- Trained on 64 x 64 preprocessed glyphs (one character per cell, light strokes on black). "
        "`hccr predict` maps other images onto that format (polarity, contrast, framing), "
        "but photos with several characters, clutter, shadows or strong perspective are out of scope.",
        "- One character per image; no segmentation of lines or pages.",
        "",
        "## Intended use",
        "",
        "Research and teaching: reproducing and extending the study, experimenting with handwriting "
        "recognition. Not for reading documents, amounts or forms where a wrong digit matters.",
        "",
        "## How to run",
        "",
        "```",
        "hccr predict IMAGE_OR_FOLDER_OR_ZIP... --model models/export/model.onnx --top-k 3",
        "hccr predict scans/ --model models/export/checkpoint.pt --format csv > predictions.csv",
        "```",
        "",
        "Any image size or colour works, dark ink on paper as well as Chinese MNIST's light strokes "
        "on black. Exit status 0: all files recognised; 1: some file failed (listed with its error); "
        "2: usage error or unreadable model.",
        "",
    ]
    return "\n".join(lines)
