"""The printed-glyph starts in the report: who wins where, by how much, at what cost, and honestly.

Hooked into the start comparison (hccr.reporting.report.section_starts) by one call,
`add_section`; it adds nothing unless some run started from glyphs. What it says:

* the honesty note, from what each pretraining's corpus held (`target_characters_in_corpus`):
  the full corpus prints every GB2312 level-1 character, the target's classes (Chinese MNIST's
  15 numerals) among them, so a glyph start has seen those shapes in print, the `glyphs-excl`
  ablation pretrains without them, and `glyphs` against `glyphs-excl` is the share of the gain
  that came from having seen them; a corpus that holds none of them (the CPU setting's spread
  of 500) makes every glyph start's gain transfer, and the note says that instead;
* the pairwise duels (glyphs vs scratch, glyphs vs ImageNet, ImageNet+glyphs vs ImageNet,
  glyphs vs the ablation) per family and size, with whether the 95 % intervals separate them;
* the winner at each size, and what each glyph pretraining cost (its `train.json`, from the
  pretrain folder beside the runs folder: `models/pretrain/{model}/{start}/`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from hccr.reporting import report_render as rr
from hccr.reporting import start_comparison as sc
from hccr.reporting.formatting import integer, pct, pp, seconds
from hccr.reporting.report_data import size_key
from hccr.starts import GLYPH_STARTS, start_kind, start_label

PAIRS = [
    ("glyphs", "scratch"),
    ("glyphs", "imagenet"),
    ("imagenet+glyphs", "imagenet"),
    ("imagenet+glyphs", "glyphs"),
    ("glyphs", "glyphs-excl"),
]


def read_pretrainings(pretrain_dir: Path) -> pd.DataFrame:
    """One row per glyph pretraining found under `pretrain_dir` ({model}/{start}/train.json)."""
    rows = []
    for path in sorted(Path(pretrain_dir).glob("*/*/train.json")):
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue  # a half-written or foreign file: the report is not the place to fail
        corpus = summary.get("corpus") or {}
        rows.append(
            {
                "model": path.parent.parent.name,
                "start": path.parent.name,
                "classes": corpus.get("classes"),
                "fonts": len(corpus.get("fonts", [])),
                "excluded": corpus.get("excluded_characters", ""),
                "n_train": summary.get("n_train"),
                "epochs": summary.get("epochs"),
                "seconds": summary.get("seconds_total"),
                "val_accuracy": summary.get("best_val_accuracy"),
                "target_in_corpus": corpus.get("target_characters_in_corpus"),
                "regularization": regularization(summary.get("config") or {}),
            }
        )
    columns = [
        "model",
        "start",
        "classes",
        "fonts",
        "excluded",
        "n_train",
        "epochs",
        "seconds",
        "val_accuracy",
        "target_in_corpus",
        "regularization",
    ]
    return pd.DataFrame(rows, columns=columns)


def regularization(block: dict) -> str:
    """A pretraining's dropout and stochastic depth, as its recorded block says ("" if not recorded)."""
    dropout = block.get("dropout", (block.get("head") or {}).get("dropout"))
    parts = [f"dropout {dropout:g}"] if dropout is not None else []
    if block.get("drop_path_rate") is not None:
        parts.append(f"stochastic depth {block['drop_path_rate']:g}")
    return ", ".join(parts)


def duels(table: pd.DataFrame) -> list[dict]:
    """Every pair of PAIRS that some family and size has both of."""
    out = []
    for better, baseline in PAIRS:
        for row in sc.versus(table, better, baseline).to_dict("records"):
            out.append({**row, "better": better, "baseline": baseline, "a": row[better], "b": row[baseline]})
    return out


def winners(table: pd.DataFrame) -> list[str]:
    """Per family and size with two or more starts: the best start and its margin over the next."""
    lines = []
    for (family, size), group in table.groupby(["family", "size"], sort=False):
        if group["start"].map(start_kind).nunique() < 2:
            continue
        ranked = group.sort_values("accuracy", ascending=False)
        top, second = ranked.iloc[0], ranked.iloc[1]
        separated = top["ci_low"] > second["ci_high"]
        lines.append(
            f"{family}, `{size}` ({integer(top['n_train'])} training images): **{start_label(top['start'])}** "
            f"wins with {pct(top['accuracy'])}, {pp(top['accuracy'] - second['accuracy'])} over "
            f"{start_label(second['start'])}"
            + ("" if separated else " — the 95 % intervals overlap, so this is not a clear win")
            + "."
        )
    return sorted(lines, key=lambda line: size_key(line.split("`")[1]))


def honesty_note(pretrainings: pd.DataFrame) -> str:
    """What the glyph starts saw of the target's classes, from the pretrainings' corpus records."""
    seen = pd.to_numeric(pretrainings["target_in_corpus"], errors="coerce")
    if not seen.empty and (seen == 0).all():  # a missing record (NaN) is not 0: the general note
        classes = ", ".join(sorted({integer(c) for c in pretrainings["classes"]}))
        return (
            f"The glyph corpus of these runs ({classes} of GB2312 level 1's 3,755 characters) holds none of Chinese "
            "MNIST's 15 numerals: no glyph start has seen the target's shapes, even in print, so every gain a glyph "
            "start shows here is transfer. The full corpus (params.yaml, for GPUs) holds them, and its ablation "
            "start, " + start_label("glyphs-excl") + ", pretrains without them."
        )
    return (
        "The glyph corpus prints the 3,755 characters of GB2312 level 1, and Chinese MNIST's 15 numerals are among "
        "them: a backbone pretrained on it has seen these classes' printed forms (from fonts, not anyone's "
        "handwriting). The ablation start, " + start_label("glyphs-excl") + ", pretrains on the same corpus "
        "without those characters; the gap between the two is what having seen the shapes is worth, and the "
        "ablation's gain over scratch is transfer."
    )


def add_section(doc: rr.Document, table: pd.DataFrame, runs_dir: Path) -> None:
    """The glyph part of the start comparison; nothing when no run started from glyphs."""
    if table.empty or not table["start"].isin(list(GLYPH_STARTS)).any():
        return
    doc.add(rr.Heading(3, "Printed-glyph pretraining"))
    pretrainings = read_pretrainings(Path(runs_dir).parent / "pretrain")
    doc.add(rr.Note(honesty_note(pretrainings)))
    rows = [
        [
            d["family"],
            d["size"],
            start_label(d["better"]),
            start_label(d["baseline"]),
            pct(d["a"]),
            pct(d["b"]),
            pp(d["difference"]),
            "yes" if d["better_wins"] else ("**no: worse**" if d["b"] > d["a"] and d["intervals_disjoint"] else "no"),
        ]
        for d in duels(table)
    ]
    if rows:
        doc.add(
            rr.Table(
                ["family", "size", "start", "against", "accuracy", "against's", "difference", "better, disjoint CIs"],
                rows,
                "Each glyph start against the start it builds on or replaces; a difference counts only where "
                "the 95 % intervals do not overlap.",
            )
        )
    lines = winners(table)
    if lines:
        doc.add(rr.Para("Which start wins where:"), rr.Bullets(lines))
    if not pretrainings.empty:
        doc.add(
            rr.Table(
                [
                    "model",
                    "start",
                    "classes",
                    "fonts",
                    "left out",
                    "glyph images",
                    "epochs",
                    "dropout",
                    "time",
                    "glyph val acc",
                ],
                [
                    [
                        r.model,
                        start_label(r.start),
                        integer(r.classes),
                        integer(r.fonts),
                        r.excluded or "—",
                        integer(r.n_train),
                        integer(r.epochs),
                        r.regularization or "—",
                        seconds(r.seconds),
                        pct(r.val_accuracy),
                    ]
                    for r in pretrainings.itertuples()
                ],
                "What each glyph pretraining cost, paid once per model and start before any fine-tuning (the "
                "fine-tuning itself runs the same schedule as the ImageNet start).",
            )
        )
