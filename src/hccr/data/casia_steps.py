"""The data steps of the DAG for a CASIA-HWDB source (`data_source: casia-hwdb:PATH`).

    python -m hccr.data.casia_steps fetch --source PATH --out data/raw/casia-hwdb
    python -m hccr.data.casia_steps index --raw data/raw/casia-hwdb --label-set level1 --out data/interim/index.csv
    python -m hccr.data.casia_steps resize --raw data/raw/casia-hwdb --index data/interim/index.csv --size S \
        --filter bilinear --margin 0.0625 --out data/processed/images_S.npy [--workers 2]

- fetch: reads every record of every `.gnt` file of the source (the format checks of
  hccr.data.casia) and writes `SOURCE.json` (the source's path, each file's writer, bytes and
  records, each file's or archive's sha256). The multi-GB corpus is not copied: later steps
  read it where it is.
- index: `data/interim/index.csv` as for Chinese MNIST (`id, writer, sample, code, value,
  character, label, path`) plus `offset, width, height`. `code` is the GBK tag code (0xB0A1 =
  45217 for 啊), `value` is empty, `sample` counts a writer's samples of one character, `path`
  is the source file (`archive.zip!member.gnt` inside a zip), `offset` the record's byte offset.
  Rows are in file order; only characters of the label set are kept; labels are dense 0..K-1
  in the order of hccr.data.casia.class_list.
- resize: one (N, S, S) uint8 array per size, streamed (hccr.data.casia_images), written
  under a temporary name and renamed on success.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from array import array
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from hccr.atomic import atomic_dir, atomic_path, write_csv, write_json
from hccr.data import casia
from hccr.data.casia_images import FileJob, margin_pixels, write_images
from hccr.data.index import INDEX_COLUMNS
from hccr.data.resize import resampling
from hccr.data.workers import default_workers
from hccr.errors import DataError, reports_errors
from hccr.files import read_json_object

KIND = "casia-hwdb"
EXTRA_COLUMNS = ("offset", "width", "height")


# ---------------------------------------------------------------------------- fetch


def scan_headers(file: casia.GntFile) -> dict[str, np.ndarray]:
    """Offsets, tag codes, widths and heights of every record of one file (pixels skipped)."""
    offsets, codes, widths, heights = array("q"), array("H"), array("H"), array("H")
    for record in file.records(pixels=False):
        offsets.append(record.offset)
        codes.append(casia.tag_code(record.tag))
        widths.append(record.width)
        heights.append(record.height)
    return {
        "offset": np.frombuffer(offsets, dtype=np.int64),
        "code": np.frombuffer(codes, dtype=np.uint16),
        "width": np.frombuffer(widths, dtype=np.uint16),
        "height": np.frombuffer(heights, dtype=np.uint16),
    }


def fetch(source: str | os.PathLike, out: str | os.PathLike, progress: bool = True) -> dict:
    """Check every record of the source and write `out/SOURCE.json`; return what it holds."""
    root = Path(source).expanduser().resolve()
    files = casia.list_files(root)
    entries, records = [], 0
    for file in tqdm(files, desc="check .gnt", unit="file", file=sys.stderr, disable=not progress):
        count = len(scan_headers(file)["offset"])
        entries.append({"name": file.name, "writer": file.writer, "bytes": file.size, "records": count})
        records += count
    digests = {}
    for path in sorted({f.path for f in files}):
        with open(path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        digests[path.relative_to(root).as_posix() if path != root else path.name] = digest
    provenance = {
        "kind": KIND,
        "source": str(root),
        "files": entries,
        "sha256": digests,
        "counts": {"records": records, "files": len(files), "writers": len({f.writer for f in files})},
    }
    with atomic_dir(out) as tmp:
        write_json(tmp / "SOURCE.json", provenance)
    return provenance


def read_source(raw: str | os.PathLike) -> tuple[dict, list[casia.GntFile]]:
    """SOURCE.json of a CASIA raw folder and the source's files, checked against it."""
    path = Path(raw) / "SOURCE.json"
    provenance = read_json_object(path, "CASIA-HWDB source record")
    if provenance.get("kind") != KIND:
        raise DataError(f"{path}: kind {provenance.get('kind')!r}, expected {KIND!r} (run the casia fetch step)")
    files = casia.list_files(provenance["source"])
    listed = {entry["name"]: entry for entry in provenance.get("files", [])}
    for file in files:
        entry = listed.pop(file.name, None)
        if entry is None or entry["bytes"] != file.size:
            raise DataError(f"{file.name}: not as {path} recorded it (new or resized); rerun the fetch step")
    if listed:
        raise DataError(f"{next(iter(listed))}: listed in {path} but gone from {provenance['source']}; rerun fetch")
    return provenance, files


# ---------------------------------------------------------------------------- index


def build_index(raw: str | os.PathLike, label_set: str = "level1", progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """The index table of a CASIA raw folder, and counts of what the label set kept and dropped.

    Numbers stay numpy arrays and the text columns (path, character) categoricals until the CSV
    is written, so a million rows take tens of MB, not a Python string per cell."""
    _, files = read_source(raw)
    parts = []
    for number, file in enumerate(tqdm(files, desc="index .gnt", unit="file", file=sys.stderr, disable=not progress)):
        headers = scan_headers(file)
        headers["file"] = np.full(len(headers["offset"]), number, dtype=np.int32)
        parts.append(headers)
    columns = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    codes = np.unique(columns["code"])
    character_of = {int(code): casia.tag_character(int(code).to_bytes(2, "big")) for code in codes}
    classes = casia.class_list(set(character_of.values()), label_set)
    if not classes:
        raise DataError(f"{raw}: no record is a character of label set {label_set!r}")
    label_of_code = np.full(1 << 16, -1, dtype=np.int64)  # tag code -> label (-1: outside the label set)
    label_of = {ch: label for label, ch in enumerate(classes)}
    for code, ch in character_of.items():
        label_of_code[code] = label_of.get(ch, -1)
    labels = label_of_code[columns["code"]]
    kept = labels >= 0
    writers = np.array([f.writer for f in files], dtype=np.int64)[columns["file"]]
    counts = {
        "records": int(len(labels)),
        "kept": int(kept.sum()),
        "dropped": int((~kept).sum()),
        "dropped_characters": int(np.unique(columns["code"][~kept]).size),
        "classes": len(classes),
        "writers": int(np.unique(writers[kept]).size),
    }
    table = pd.DataFrame(
        {
            "id": np.arange(int(kept.sum())),
            "writer": writers[kept],
            "sample": 0,
            "code": columns["code"][kept].astype(np.int64),
            "value": np.nan,  # no numeric value (Chinese MNIST has one per class)
            "character": pd.Categorical.from_codes(labels[kept], categories=classes),
            "label": labels[kept],
            "path": pd.Categorical.from_codes(columns["file"][kept], categories=[f.name for f in files]),
            "offset": columns["offset"][kept],
            "width": columns["width"][kept].astype(np.int64),
            "height": columns["height"][kept].astype(np.int64),
        }
    )
    table["sample"] = table.groupby(["writer", "label"]).cumcount() + 1
    return table[[*INDEX_COLUMNS, *EXTRA_COLUMNS]], counts


# ---------------------------------------------------------------------------- images


FIT_COLUMNS = {
    "id": np.int64,
    "path": "category",
    "code": np.int64,
    "offset": np.int64,
    "width": np.int64,
    "height": np.int64,
}


def read_fit_rows(path: str | os.PathLike) -> pd.DataFrame:
    """The index columns the resize step needs, and only those (a million rows stay ~50 MB)."""
    path = Path(path)
    try:
        header = pd.read_csv(path, nrows=0, encoding="utf-8").columns
    except FileNotFoundError:
        raise DataError(f"{path}: index file missing (run the index step first)") from None
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as an index CSV ({exc})") from exc
    missing = [c for c in FIT_COLUMNS if c not in header]
    if missing:
        raise DataError(f"{path}: missing column {missing[0]!r}: not a CASIA-HWDB index (rerun index)")
    try:
        rows = pd.read_csv(path, usecols=list(FIT_COLUMNS), dtype=FIT_COLUMNS, encoding="utf-8")
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot be read as a CASIA-HWDB index ({exc})") from exc
    if not np.array_equal(rows["id"].to_numpy(), np.arange(len(rows))):
        raise DataError(f"{path}: column 'id' must be the row number 0..{len(rows) - 1}")
    return rows


def file_jobs(index: pd.DataFrame, files: list[casia.GntFile], index_path: str | os.PathLike) -> list[FileJob]:
    """One job per source file, holding its index rows in offset order."""
    by_name = {f.name: f for f in files}
    jobs = []
    for name, rows in index.groupby("path", sort=False, observed=True):
        if name not in by_name:
            raise DataError(f"{index_path}: row {int(rows.index[0]) + 2}: source file {name!r} is not in the source")
        rows = rows.sort_values("offset")
        jobs.append(
            FileJob(
                by_name[name],
                rows["id"].to_numpy(np.int64),
                rows["offset"].to_numpy(np.int64),
                rows["width"].to_numpy(),
                rows["height"].to_numpy(),
                rows["code"].to_numpy(),
            )
        )
    return jobs


def make_images(
    raw: str | os.PathLike,
    index: str | os.PathLike,
    size: int,
    filter_name: str,
    margin: float,
    out: str | os.PathLike,
    workers: int | None = None,
    progress: bool = True,
) -> tuple[int, int, int]:
    """Fit every indexed record into (size, size) and write the array atomically; return its shape."""
    resample = resampling(filter_name)
    pad = margin_pixels(size, margin)
    workers = default_workers() if workers is None else max(1, workers)
    _, files = read_source(raw)
    table = read_fit_rows(index)
    jobs = file_jobs(table, files, index)
    with atomic_path(out, suffix=".npy") as tmp:
        write_images(jobs, len(table), size, pad, resample, tmp, workers=workers, progress=progress)
    return (len(table), size, size)


# ---------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hccr casia", description=__doc__.split("\n\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    f = steps.add_parser("fetch", help="check the .gnt files and record the source")
    f.add_argument("--source", required=True, help="folder of .gnt files / zip archives, or one zip (casia-hwdb:PATH)")
    f.add_argument("--out", required=True, help="raw folder to write SOURCE.json into")
    i = steps.add_parser("index", help="one index row per record of the label set")
    i.add_argument("--raw", required=True)
    i.add_argument("--label-set", default="level1", choices=casia.LABEL_SETS)
    i.add_argument("--out", required=True)
    r = steps.add_parser("resize", help="fit every record into an S x S square, one .npy per size")
    r.add_argument("--raw", required=True)
    r.add_argument("--index", required=True)
    r.add_argument("--size", required=True, type=int)
    r.add_argument("--filter", default="bilinear")
    r.add_argument("--margin", type=float, default=0.0625, help="share of the side left blank on each edge")
    r.add_argument("--out", required=True)
    r.add_argument("--workers", type=int, default=None)
    return parser


@reports_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.step == "fetch":
        source = casia.source_path(args.source) or Path(args.source)
        result = fetch(source, args.out)
        counts = result["counts"]
        print(f"{args.out}: {counts['records']} records in {counts['files']} files, {counts['writers']} writers")
    elif args.step == "index":
        table, counts = build_index(args.raw, args.label_set)
        write_csv(args.out, table)
        print(
            f"{args.out}: {counts['kept']} records, {counts['classes']} classes ({args.label_set}), "
            f"{counts['writers']} writers; {counts['dropped']} records of {counts['dropped_characters']} "
            "characters outside the label set left out"
        )
    else:
        shape = make_images(args.raw, args.index, args.size, args.filter, args.margin, args.out, workers=args.workers)
        print(f"{args.out}: uint8 {shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
