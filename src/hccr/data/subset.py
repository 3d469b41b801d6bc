"""Draw the train/val/test split files of every scheme and subset size.

`python -m hccr.data.subset --index data/interim/index.csv --config-json JSON --seed N
--out-dir data/processed/splits`

JSON (a JSON string or a path to a JSON file) is params.yaml's `subsets` block:
`protocol` (paper | writer | writer_cv | official), `test_writers`, `val_writers`, `folds`, and `schemes` with
`holdout: {val_per_class, train_per_class: {size: n | all}}` and
`fraction: {per_class: {size: n | all}, train_fraction}`.

Writes `{out_dir}/{scheme}/{size}.csv` (columns `id,role`, role train|val|test, sorted by id)
and `{out_dir}/summary.json` (counts per scheme, size, role and class). The whole folder is
written through `atomic_dir`: on any error nothing is written.

Protocols:
- `paper` (the study; no test role). holdout: val = `val_per_class` random images per class,
  train = the first n per class of the rest (`all` = every remaining image). fraction: take
  N per class at random (`all` = every image), then per class round(train_fraction * N) train and
  the rest val.
- `writer` (held-out writers). Writers are permuted with the seed: test writers =
  round(test_writers * W) (>= 1), val writers = round(val_writers * remaining) (>= 1), the rest
  train. Test = every image of the test writers, identical in every file. holdout: val =
  `val_per_class` per class from val writers; train = n per class from train writers. fraction:
  train = round(train_fraction * N) per class from train writers, val = N - that from val
  writers (`all`: every train-writer / val-writer image). No writer is in two roles.
- `writer_cv` (writer cross-validation): the single split exactly as under `writer` (the runs of
  the grid train on it), plus `folds` (k) fold splits: the writers, permuted with the seed, are
  cut into k groups of sizes differing by at most one; fold i tests on group i, draws
  round(val_writers * rest) (>= 1) val writers from the other groups with the seed and the fold,
  and trains on the remaining writers, with the same schemes and sizes. Written as
  `{out_dir}/cv/fold{i}/{scheme}/{size}.csv` (i = 0..k-1); summary.json's `folds` lists each
  fold's writers and counts. More folds than writers is an error naming `subsets.folds`.
- `official` (CASIA-HWDB's own writer split): test = the writers 1241-1300 present in the index;
  val writers = round(val_writers * remaining) (>= 1) of the others, drawn with the seed; the
  rest train (1001-1240, and any other writer, e.g. HWDB1.0's). Schemes as under `writer`.

Draws use one seeded permutation per class (and scheme), and sizes take prefixes of it, so the
ladders are nested: small ⊂ medium ⊂ large ⊂ full for train. Rounding is half-up.
"""

from __future__ import annotations

import argparse
import math
import sys
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from hccr.atomic import atomic_dir, write_csv, write_json
from hccr.classes import Classes
from hccr.config import checked_part, json_object_arg
from hccr.data.casia import OFFICIAL_TEST_WRITERS
from hccr.data.index import read_index
from hccr.errors import DataError, reports_errors

WRITER_PROTOCOLS = ("writer", "writer_cv", "official")  # whole writers per role, a test role
ROLES = ("train", "val", "test")
ALL = "all"


def round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


# ---------------------------------------------------------------------------- config checks


def check_config(cfg: dict) -> dict:
    """The `subsets` block, checked against the params schema (errors name the key), normalised."""
    checked = checked_part("subsets", cfg, "subsets")
    out: dict = {"protocol": checked["protocol"], "schemes": {}}
    if checked["protocol"] in ("writer", "writer_cv"):
        out["test_writers"] = float(checked["test_writers"])
    if checked["protocol"] == "writer_cv":
        out["folds"] = int(checked["folds"])
    if checked["protocol"] in WRITER_PROTOCOLS:
        out["val_writers"] = float(checked["val_writers"])
    for name, scheme in checked["schemes"].items():  # in params' order
        if name == "holdout":
            out["schemes"][name] = {"val_per_class": scheme["val_per_class"], "ladder": dict(scheme["train_per_class"])}
        else:
            out["schemes"][name] = {
                "train_fraction": float(scheme["train_fraction"]),
                "ladder": dict(scheme["per_class"]),
            }
    return out


# ---------------------------------------------------------------------------- drawing


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *keys])


def _scheme_key(scheme: str) -> int:
    return zlib.crc32(scheme.encode("utf-8"))


def split_writers(writers: np.ndarray, cfg: dict, seed: int) -> dict[str, list[int]]:
    """Permute the writers with the seed and cut them into test, val and train groups."""
    writers = np.sort(np.unique(writers))
    if cfg["protocol"] == "official":
        return _official_writers(writers, cfg, seed)
    order = _rng(seed, 0).permutation(writers)
    n = len(order)
    n_test = max(1, round_half_up(cfg["test_writers"] * n))
    n_val = max(1, round_half_up(cfg["val_writers"] * (n - n_test)))
    if n_test + n_val >= n:
        raise DataError(
            f"writer protocol needs at least one train writer: {n} writer(s) in the index, "
            f"{n_test} for test (test_writers={cfg['test_writers']}) and {n_val} for val "
            f"(val_writers={cfg['val_writers']})"
        )
    return {
        "test": sorted(int(w) for w in order[:n_test]),
        "val": sorted(int(w) for w in order[n_test : n_test + n_val]),
        "train": sorted(int(w) for w in order[n_test + n_val :]),
    }


def _official_writers(writers: np.ndarray, cfg: dict, seed: int) -> dict[str, list[int]]:
    """CASIA-HWDB's split: writers 1241-1300 test; val drawn with the seed from the others."""
    in_test = np.isin(writers, np.asarray(OFFICIAL_TEST_WRITERS))
    test, rest = writers[in_test], _rng(seed, 0).permutation(writers[~in_test])
    n_val = max(1, round_half_up(cfg["val_writers"] * len(rest)))
    if not len(test) or n_val >= len(rest):
        raise DataError(
            f"official protocol: {len(test)} test writer(s) (1241-1300) and {len(rest)} other writer(s) in the "
            f"index; it needs at least one test writer, and train writers left after {n_val} for val "
            f"(val_writers={cfg['val_writers']})"
        )
    return {
        "test": sorted(int(w) for w in test),
        "val": sorted(int(w) for w in rest[:n_val]),
        "train": sorted(int(w) for w in rest[n_val:]),
    }


def _take(pool: np.ndarray, n: int | str, what: str) -> np.ndarray:
    """The first n ids of a permuted pool (`all` = every id); DataError if fewer are available."""
    if n == ALL:
        return pool
    if n > len(pool):
        raise DataError(f"{what}: asked for {n} images, only {len(pool)} available")
    return pool[:n]


def _class_pools(frame: pd.DataFrame, seed: int, scheme: str, stream: int, n_classes: int) -> dict[int, np.ndarray]:
    """For each label, the frame's ids in one seeded random order (the prefix source for the ladder)."""
    # One groupby, not a scan of the frame per class (3,755 scans of a million rows for CASIA).
    groups = {int(k): np.sort(v.to_numpy()) for k, v in frame.groupby("label")["id"]}
    empty = np.zeros(0, dtype=np.int64)
    # The stream key is label + 1 (Chinese MNIST's code), so splits stay as they were drawn before.
    return {
        label: _rng(seed, 1, _scheme_key(scheme), stream, label + 1).permutation(groups.get(label, empty))
        for label in range(n_classes)
    }


def make_splits(index: pd.DataFrame, subsets_cfg: dict, seed: int) -> dict[tuple[str, str], pd.DataFrame]:
    """Every (scheme, size) split as a DataFrame `id,role` sorted by id. Raises before returning anything."""
    cfg = check_config(subsets_cfg)
    groups = split_writers(index["writer"].to_numpy(), cfg, seed) if cfg["protocol"] in WRITER_PROTOCOLS else None
    return draw_splits(index, cfg, seed, groups)


def make_fold_splits(
    index: pd.DataFrame, subsets_cfg: dict, seed: int
) -> dict[int, dict[tuple[str, str], pd.DataFrame]]:
    """Under `writer_cv`, fold -> every (scheme, size) split of that fold (empty for other protocols)."""
    cfg = check_config(subsets_cfg)
    if cfg["protocol"] != "writer_cv":
        return {}
    folds = fold_writers(index["writer"].to_numpy(), cfg, seed)
    check_folds(folds, index["writer"].to_numpy())
    # Each fold draws the whole ladder again: seconds per fold on CASIA's million images.
    return {
        i: draw_splits(index, cfg, seed, groups)
        for i, groups in enumerate(tqdm(folds, desc="writer folds", unit="fold", file=sys.stderr))
    }


def fold_writers(writers: np.ndarray, cfg: dict, seed: int) -> list[dict[str, list[int]]]:
    """The writer groups of every fold: test = group i of k, val drawn from the rest, train the others."""
    writers = np.sort(np.unique(writers))
    k = cfg["folds"]
    if k > len(writers):
        raise DataError(
            f"subsets.folds: {k} folds but only {len(writers)} writer(s) in the index; every fold needs "
            f"at least one test writer (set subsets.folds <= {len(writers)})"
        )
    # A stream of its own (3), so the folds do not depend on the single split's draw (stream 0).
    groups = np.array_split(_rng(seed, 3).permutation(writers), k)
    folds = []
    for i, test in enumerate(groups):
        rest = np.concatenate([g for j, g in enumerate(groups) if j != i])
        rest = _rng(seed, 4, i).permutation(np.sort(rest))
        n_val = max(1, round_half_up(cfg["val_writers"] * len(rest)))
        if n_val >= len(rest):
            raise DataError(
                f"subsets.folds: fold {i} leaves {len(rest)} writer(s) outside its test group, {n_val} of them "
                f"for val (subsets.val_writers={cfg['val_writers']}): no train writer is left"
            )
        folds.append(
            {
                "test": sorted(int(w) for w in test),
                "val": sorted(int(w) for w in rest[:n_val]),
                "train": sorted(int(w) for w in rest[n_val:]),
            }
        )
    return folds


def check_folds(folds: list[dict[str, list[int]]], writers: np.ndarray) -> None:
    """Every writer is in exactly one test fold, and in one role only within each fold."""
    everyone = set(np.unique(writers).tolist())
    tested = Counter(w for groups in folds for w in groups["test"])
    twice = sorted(w for w, n in tested.items() if n > 1)
    if twice:
        raise DataError(f"writer cross-validation: writer(s) {twice} are in more than one test fold")
    if set(tested) != everyone:
        raise DataError(f"writer cross-validation: writer(s) {sorted(everyone - set(tested))} are in no test fold")
    for i, groups in enumerate(folds):
        seen: dict[int, str] = {}
        for role in ROLES:
            for w in groups[role]:
                if w in seen:
                    raise DataError(f"writer cross-validation: fold {i}: writer {w} is both {seen[w]} and {role}")
                seen[w] = role
        if set(seen) != everyone:
            raise DataError(f"writer cross-validation: fold {i}: writer(s) {sorted(everyone - set(seen))} have no role")


def draw_splits(
    index: pd.DataFrame, cfg: dict, seed: int, groups: dict[str, list[int]] | None
) -> dict[tuple[str, str], pd.DataFrame]:
    """Every (scheme, size) split for one set of writer groups (None: the `paper` protocol)."""
    classes = Classes.from_index(index, "index")
    index = index[["id", "writer", "label"]]
    splits: dict[tuple[str, str], pd.DataFrame] = {}
    # Lookups by id as arrays (a dict per row would be slow at a million rows).
    ids = index["id"].to_numpy()
    writer_of = np.zeros(int(ids.max()) + 1, dtype=np.int64)
    label_of = np.zeros(int(ids.max()) + 1, dtype=np.int64)
    writer_of[ids], label_of[ids] = index["writer"].to_numpy(), index["label"].to_numpy()

    if groups is not None:
        test_ids = np.sort(index.loc[index["writer"].isin(groups["test"]), "id"].to_numpy())
        train_frame = index[index["writer"].isin(groups["train"])]
        val_frame = index[index["writer"].isin(groups["val"])]
    else:
        test_ids = np.zeros(0, dtype=np.int64)

    for scheme, spec in cfg["schemes"].items():
        # One permutation per class and scheme; every size takes prefixes of it (nested ladders).
        if groups is None:
            pools = _class_pools(index, seed, scheme, 0, len(classes))
        else:
            train_pools = _class_pools(train_frame, seed, scheme, 1, len(classes))
            val_pools = _class_pools(val_frame, seed, scheme, 2, len(classes))
        for size, n in spec["ladder"].items():
            roles: dict[str, list[np.ndarray]] = {"train": [], "val": []}
            wanted: dict[str, dict[int, int]] = {"train": {}, "val": {}}
            for label, character in enumerate(classes.characters):
                where = f"scheme {scheme}, size {size}, class {label + 1} ({character})"
                if scheme == "holdout":
                    v = spec["val_per_class"]
                    if groups is None:
                        val = _take(pools[label], v, f"{where}, role val")
                        train = _take(pools[label][v:], n, f"{where}, role train")
                    else:
                        val = _take(val_pools[label], v, f"{where}, role val (val writers)")
                        train = _take(train_pools[label], n, f"{where}, role train (train writers)")
                else:
                    frac = spec["train_fraction"]
                    if groups is None:
                        chosen = _take(pools[label], n, f"{where}, roles train+val")
                        n_train = round_half_up(frac * len(chosen))
                        train, val = chosen[:n_train], chosen[n_train:]
                    elif n == ALL:
                        train, val = train_pools[label], val_pools[label]
                    else:
                        n_train = round_half_up(frac * n)
                        train = _take(train_pools[label], n_train, f"{where}, role train (train writers)")
                        val = _take(val_pools[label], n - n_train, f"{where}, role val (val writers)")
                roles["train"].append(train)
                roles["val"].append(val)
                wanted["train"][label] = len(train)
                wanted["val"][label] = len(val)
            parts = [pd.DataFrame({"id": np.concatenate(roles[r]), "role": r}) for r in ("train", "val")]
            if len(test_ids):
                parts.append(pd.DataFrame({"id": test_ids, "role": "test"}))
            table = pd.concat(parts, ignore_index=True).sort_values("id", kind="stable").reset_index(drop=True)
            _check_split(table, wanted, writer_of, label_of, groups, f"scheme {scheme}, size {size}")
            splits[(scheme, size)] = table
    return splits


def _check_split(table, wanted, writer_of, label_of, groups, where: str) -> None:
    """Counts per class and role as drawn; no id twice; under `writer`, each role within its writers."""
    if table["id"].duplicated().any():
        raise DataError(f"{where}: image id {int(table.loc[table['id'].duplicated(), 'id'].iloc[0])} drawn twice")
    ids, roles = table["id"].to_numpy(), table["role"].to_numpy()
    for role, per_class in wanted.items():
        got = np.bincount(label_of[ids[roles == role]], minlength=len(per_class))
        for label, n in per_class.items():
            if int(got[label]) != n:
                raise DataError(f"{where}: class {label} role {role} has {int(got[label])} images, drew {n}")
    if groups is not None:
        writers = writer_of[ids]
        for role in ROLES:
            stray = set(np.unique(writers[roles == role]).tolist()) - set(groups[role])
            if stray:
                raise DataError(f"{where}: role {role} holds images of writer(s) {sorted(stray)} outside its group")


def summarize(splits: dict[tuple[str, str], pd.DataFrame], index: pd.DataFrame, subsets_cfg: dict, seed: int) -> dict:
    """Counts per scheme/size/role, per class (by character), and the writer groups."""
    cfg = check_config(subsets_cfg)
    classes = Classes.from_index(index, "index")
    character_of = dict(zip(index["id"], index["character"], strict=False))
    writer_of = dict(zip(index["id"], index["writer"], strict=False))
    summary: dict = {"protocol": cfg["protocol"], "seed": int(seed), "images": int(len(index)), "schemes": {}}
    if cfg["protocol"] in WRITER_PROTOCOLS:
        summary["writers"] = split_writers(index["writer"].to_numpy(), cfg, seed)
    for (scheme, size), table in splits.items():
        entry: dict = {"counts": {}, "per_class": {}, "writers": {}}
        for role in ROLES:
            ids = table.loc[table["role"] == role, "id"]
            if not len(ids) and role == "test":
                continue
            entry["counts"][role] = int(len(ids))
            per_class = ids.map(character_of).value_counts()
            entry["per_class"][role] = {ch: int(per_class.get(ch, 0)) for ch in classes.characters}
            entry["writers"][role] = int(ids.map(writer_of).nunique())
        summary["schemes"].setdefault(scheme, {})[size] = entry
    return summary


def summarize_folds(
    fold_splits: dict[int, dict[tuple[str, str], pd.DataFrame]], index: pd.DataFrame, subsets_cfg: dict, seed: int
) -> list[dict]:
    """Per fold: its writer groups, and images and writers per scheme/size/role."""
    cfg = check_config(subsets_cfg)
    if not fold_splits:
        return []
    groups = fold_writers(index["writer"].to_numpy(), cfg, seed)
    writer_of = index.set_index("id")["writer"]
    out = []
    for i, splits in fold_splits.items():
        counts: dict = {}
        for (scheme, size), table in splits.items():
            writers = table["id"].map(writer_of)
            counts.setdefault(scheme, {})[size] = {
                role: {
                    "images": int((table["role"] == role).sum()),
                    "writers": int(writers[table["role"] == role].nunique()),
                }
                for role in ROLES
            }
        out.append({"fold": i, "writers": groups[i], "counts": counts})
    return out


def write_splits(
    splits: dict[tuple[str, str], pd.DataFrame],
    summary: dict,
    out_dir: str | Path,
    fold_splits: dict[int, dict[tuple[str, str], pd.DataFrame]] | None = None,
) -> None:
    """Write every split file (and every fold's, under cv/fold{i}/) and summary.json into `out_dir`, all or nothing."""
    with atomic_dir(out_dir) as tmp:
        for (scheme, size), table in splits.items():
            write_csv(tmp / scheme / f"{size}.csv", table[["id", "role"]])
        for fold, tables in (fold_splits or {}).items():
            for (scheme, size), table in tables.items():
                write_csv(tmp / "cv" / f"fold{fold}" / scheme / f"{size}.csv", table[["id", "role"]])
        write_json(tmp / "summary.json", summary)


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hccr subset", description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", required=True, help="index CSV (hccr index)")
    parser.add_argument("--config-json", required=True, help="params.yaml `subsets` block as JSON (string or file)")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out-dir", required=True, help="folder for {scheme}/{size}.csv and summary.json")
    args = parser.parse_args(argv)
    cfg = json_object_arg(args.config_json, "--config-json")
    index = read_index(args.index)
    splits = make_splits(index, cfg, args.seed)
    fold_splits = make_fold_splits(index, cfg, args.seed)
    summary = summarize(splits, index, cfg, args.seed)
    if fold_splits:
        summary["folds"] = summarize_folds(fold_splits, index, cfg, args.seed)
    write_splits(splits, summary, args.out_dir, fold_splits)
    for (scheme, size), table in splits.items():
        counts = table["role"].value_counts()
        print(f"{scheme}/{size}: " + ", ".join(f"{r} {int(counts.get(r, 0))}" for r in ROLES if r in counts))
    for entry in summary.get("folds", []):
        print(f"fold {entry['fold']}: " + ", ".join(f"{r} {len(entry['writers'][r])} writers" for r in ROLES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
