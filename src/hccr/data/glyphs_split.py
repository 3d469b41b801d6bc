"""The glyph corpus's train/val split, with every character or without the target's (ablation).

    python -m hccr.data.glyphs_split --index data/glyphs/index.csv --summary data/glyphs/corpus.json \
        --which all|excl --target-index data/interim/index.csv --val-fraction 0.05 --seed 42 \
        --out data/glyphs/splits/all.csv --out-summary data/glyphs/splits/all.json

`all`: every image, a seeded `val_fraction` of them for validation. `excl`: the same, minus
every image of a character the target index has as a class (Chinese MNIST's 15 numerals,
which GB2312 level 1 contains): those rows are in neither role, so the ablation's backbone
never sees them, while the label set (and so the checkpoint's class list) stays the corpus's.
The summary is the corpus summary plus `split` and `excluded_characters`; the pretraining
keeps it in its checkpoint, and the glyph starts check it (hccr.models.glyph_start).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from hccr.atomic import write_csv, write_json
from hccr.classes import Classes
from hccr.data.index import read_index
from hccr.errors import DataError, reports_errors
from hccr.files import read_json_object

WHICH = ("all", "excl")


def glyph_split(index: pd.DataFrame, excluded: str, val_fraction: float, seed: int) -> pd.DataFrame:
    """Columns id, role (train|val), sorted by id; rows of `excluded` characters left out."""
    if not 0 < val_fraction < 1:
        raise DataError(f"glyphs.val_fraction: {val_fraction} must be between 0 and 1")
    kept = index.loc[~index["character"].isin(set(excluded)), "id"].to_numpy()
    if kept.size < 2:
        raise DataError("glyph split: fewer than 2 images left after excluding the target's characters")
    rng = np.random.default_rng(seed)
    n_val = max(1, round(val_fraction * kept.size))
    val = set(rng.choice(kept, size=n_val, replace=False).tolist())
    roles = ["val" if i in val else "train" for i in kept]
    return pd.DataFrame({"id": kept, "role": roles})


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hccr glyphs-split", description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", required=True, help="the glyph corpus's index CSV")
    parser.add_argument("--summary", required=True, help="the glyph corpus's summary JSON")
    parser.add_argument("--which", choices=WHICH, required=True)
    parser.add_argument("--target-index", required=True, help="the fine-tuning data's index (its classes)")
    parser.add_argument("--val-fraction", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", required=True, help="split CSV (id,role)")
    parser.add_argument("--out-summary", required=True, help="corpus summary + split, excluded_characters")
    args = parser.parse_args(argv)
    index = read_index(args.index)
    summary = read_json_object(args.summary, "glyph corpus summary")
    target = Classes.from_index(read_index(args.target_index), args.target_index)
    corpus_characters = set(index["character"])
    excluded = "".join(ch for ch in target.characters if ch in corpus_characters) if args.which == "excl" else ""
    split = glyph_split(index, excluded, args.val_fraction, args.seed)
    write_csv(args.out, split)
    shared = sum(ch in corpus_characters for ch in target.characters)
    write_json(
        args.out_summary,
        {
            **summary,
            "split": args.which,
            "excluded_characters": excluded,
            # How many of the target's classes the corpus prints (all 15 numerals for Chinese MNIST).
            "target_characters_in_corpus": shared,
            "train_images": int((split["role"] == "train").sum()),
            "val_images": int((split["role"] == "val").sum()),
        },
    )
    print(f"{args.out}: {len(split)} images ({args.which}; {len(excluded)} target characters left out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
