"""Obtain Chinese MNIST in the exact Kaggle layout, verify it, and record where it came from.

`python -m hccr.data.fetch --source SRC --out data/raw/chinese-mnist [--seed 42]
[--synthetic-writers 100] [--synthetic-samples 10]`

SRC is, in order of precedence:

- `kaggle`: `kagglehub.dataset_download("gpreda/chinese-mnist")`, then treated as a folder;
- `synthetic`: the built-in generator (`hccr.data.synthetic.generate`), offline;
- a path to a `.zip` archive (Kaggle's `archive.zip` or the shared `chinese-mnist.zip`) or to an
  unpacked folder holding `chinese_mnist.csv` and `data/data/*.jpg` (also one level down).

The output folder holds `chinese_mnist.csv`, `data/data/input_{suite}_{sample}_{code}.jpg` and
`SOURCE.json` (kind, source, archive sha256, counts). It is written through `atomic_dir`, so a
failure (bad archive entry, missing image, truncated JPEG...) leaves nothing behind.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import stat
import sys
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from hccr.atomic import atomic_dir, write_json
from hccr.data.layout import CSV_NAME, IMAGE_DIR, check_rows, decode_image, image_name, read_raw_csv
from hccr.data.workers import default_workers
from hccr.errors import DataError, reports_errors

KAGGLE_HANDLE = "gpreda/chinese-mnist"


# ---------------------------------------------------------------------------- verification


def _check_chunk(paths: list[str]) -> tuple[int, str] | None:
    """Decode a chunk; return (position, message) of the first bad image, if any."""
    for position, path in enumerate(paths):
        try:
            decode_image(path)
        except DataError as exc:
            return position, str(exc)
    return None


def check_images(paths: list[Path], workers: int | None = None, progress: bool = True) -> None:
    """Decode every image; DataError naming the first bad one (in the given order)."""
    workers = default_workers() if workers is None else max(1, workers)
    strings = [str(p) for p in paths]
    chunk = 1000
    chunks = [strings[i : i + chunk] for i in range(0, len(strings), chunk)]
    bar = tqdm(total=len(strings), desc="verify images", unit="img", disable=not progress, file=sys.stderr)
    try:
        if workers == 1 or len(chunks) == 1:
            results = map(_check_chunk, chunks)
            for index, result in enumerate(results):
                bar.update(len(chunks[index]))
                if result is not None:
                    raise DataError(result[1])
        else:
            with ProcessPoolExecutor(workers) as pool:
                for index, result in enumerate(pool.map(_check_chunk, chunks)):
                    bar.update(len(chunks[index]))
                    if result is not None:
                        raise DataError(result[1])
    finally:
        bar.close()


def verify_dataset(folder: str | os.PathLike, workers: int | None = None, progress: bool = True) -> dict:
    """Check a raw folder in the Kaggle layout; return counts, or raise DataError naming the culprit.

    Checks: the CSV has its columns; codes 1..15 with matching value/character; every row has
    its image and every image its row; every image decodes fully as 64x64 grayscale.
    """
    folder = Path(folder)
    csv_path = folder / CSV_NAME
    frame = read_raw_csv(folder)
    check_rows(frame, csv_path)
    image_dir = folder / IMAGE_DIR
    if not image_dir.is_dir():
        raise DataError(f"{image_dir}: missing (expected the images folder data/data/)")
    on_disk = {entry.name for entry in os.scandir(image_dir) if entry.is_file() or entry.is_symlink()}
    names = [image_name(s, n, c) for s, n, c in zip(frame["suite_id"], frame["sample_id"], frame["code"])]
    for row, name in enumerate(names):
        if name not in on_disk:
            raise DataError(f"{csv_path}: line {row + 2} has no image {image_dir / name}")
    extra = sorted(on_disk.difference(names))
    if extra:
        raise DataError(f"{image_dir / extra[0]}: image has no row in {csv_path} ({len(extra)} such file(s))")
    check_images([image_dir / name for name in names], workers=workers, progress=progress)
    return {
        "images": int(len(frame)),
        "writers": int(frame["suite_id"].nunique()),
        "classes": int(frame["code"].nunique()),
        "samples_per_writer": int(frame["sample_id"].nunique()),
    }


# ---------------------------------------------------------------------------- sources


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_archive_members(archive: zipfile.ZipFile, archive_path: Path) -> None:
    """Refuse entries that could land outside the target: `..`, absolute paths, links."""
    for info in archive.infolist():
        name = info.filename
        pure = PurePosixPath(name.replace("\\", "/"))
        if pure.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
            raise DataError(f"{archive_path}: entry {name!r} is an absolute path; refusing to unpack")
        if ".." in pure.parts:
            raise DataError(f"{archive_path}: entry {name!r} escapes the target folder; refusing to unpack")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise DataError(f"{archive_path}: entry {name!r} is a symbolic link; refusing to unpack")


def unpack_zip(archive_path: Path, target: Path, progress: bool = True) -> None:
    """Unpack a zip archive into `target`, after checking every entry first."""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            check_archive_members(archive, archive_path)
            members = archive.infolist()
            for info in tqdm(members, desc="unpack", unit="file", file=sys.stderr, disable=not progress or len(members) < 2000):
                archive.extract(info, target)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{archive_path}: not a valid zip archive ({exc})") from exc


def find_dataset_root(folder: Path) -> Path:
    """The folder holding chinese_mnist.csv and data/data: `folder` itself or one level down."""
    if (folder / CSV_NAME).is_file():
        return folder
    nested = sorted(p.parent for p in folder.glob(f"*/{CSV_NAME}"))
    if len(nested) == 1:
        return nested[0]
    if len(nested) > 1:
        raise DataError(f"{folder}: several {CSV_NAME} one level down ({', '.join(map(str, nested))}); point at one")
    raise DataError(f"{folder}: no {CSV_NAME} here or one folder level down (expected the Kaggle chinese-mnist layout)")


def copy_layout(root: Path, target: Path, move: bool = False, progress: bool = True) -> None:
    """Copy (or move) the CSV and data/data/*.jpg of a dataset root into `target`."""
    image_dir = root / IMAGE_DIR
    if not image_dir.is_dir():
        raise DataError(f"{image_dir}: missing (expected the images folder data/data/ beside {CSV_NAME})")
    transfer = shutil.move if move else shutil.copyfile
    transfer(str(root / CSV_NAME), str(target / CSV_NAME))
    out_images = target / IMAGE_DIR
    if move:
        out_images.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(image_dir), str(out_images))
        return
    out_images.mkdir(parents=True, exist_ok=True)
    entries = [e for e in os.scandir(image_dir) if e.is_file()]
    for entry in tqdm(entries, desc="copy", unit="file", file=sys.stderr, disable=not progress or len(entries) < 2000):
        shutil.copyfile(entry.path, out_images / entry.name)


def download_kaggle() -> Path:
    """kagglehub's download of gpreda/chinese-mnist; DataError with the ways out if unreachable."""
    try:
        import kagglehub

        return Path(kagglehub.dataset_download(KAGGLE_HANDLE))
    except Exception as exc:  # kagglehub raises many kinds (ConnectionError, auth, HTTP errors)
        raise DataError(
            f"cannot download Kaggle dataset {KAGGLE_HANDLE} ({type(exc).__name__}: {exc}). Ways out: "
            "point data_source at a downloaded archive.zip or unpacked folder "
            "(`snakemake --config data_source=PATH` or `dvc exp run -S data_source=PATH`); "
            "use `data_source: synthetic` for the offline generator; or set Kaggle credentials "
            "(~/.kaggle/kaggle.json, or KAGGLE_USERNAME and KAGGLE_KEY) on a machine with internet."
        ) from exc


def fetch(
    source: str,
    out: str | os.PathLike,
    seed: int = 42,
    synthetic_writers: int = 100,
    synthetic_samples: int = 10,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Fill `out` with the dataset from `source` (kaggle | synthetic | archive | folder); return SOURCE.json."""
    out = Path(out)
    source = str(source)
    provenance: dict = {}
    # Resolve the source before touching `out`, so a bad source leaves the old output alone.
    if source == "kaggle":
        folder = download_kaggle()
        provenance = {"kind": "kaggle", "source": KAGGLE_HANDLE, "downloaded_to": str(folder)}
        source_path: Path | None = folder
    elif source == "synthetic":
        source_path = None
        provenance = {
            "kind": "synthetic",
            "source": "hccr.data.synthetic",
            "seed": int(seed),
            "writers": int(synthetic_writers),
            "samples_per_writer": int(synthetic_samples),
        }
    else:
        source_path = Path(source).expanduser()
        if not source_path.exists():
            raise DataError(
                f"data source {source!r} does not exist (give `kaggle`, `synthetic`, a .zip archive or an unpacked folder)"
            )
        source_path = source_path.resolve()
        if source_path.is_file():
            if not zipfile.is_zipfile(source_path):
                raise DataError(f"{source_path}: not a zip archive (expected Kaggle's archive.zip or an unpacked folder)")
            provenance = {"kind": "archive", "source": str(source_path), "sha256": sha256_of(source_path)}
        else:
            provenance = {"kind": "folder", "source": str(source_path)}

    with atomic_dir(out) as tmp:
        if provenance["kind"] == "synthetic":
            from hccr.data.synthetic import generate

            generate(tmp, writers=synthetic_writers, samples_per_writer=synthetic_samples, seed=seed, progress=progress)
        elif provenance["kind"] == "archive":
            staging = tmp / ".unpack"
            unpack_zip(source_path, staging, progress=progress)
            copy_layout(find_dataset_root(staging), tmp, move=True, progress=progress)
            shutil.rmtree(staging)
        else:
            copy_layout(find_dataset_root(source_path), tmp, progress=progress)
        provenance["counts"] = verify_dataset(tmp, workers=workers, progress=progress)
        write_json(tmp / "SOURCE.json", provenance)
    return provenance


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hccr fetch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="kaggle | synthetic | path to a .zip archive or unpacked folder")
    parser.add_argument("--out", required=True, help="output folder (Kaggle layout + SOURCE.json)")
    parser.add_argument("--seed", type=int, default=42, help="generator seed (synthetic only)")
    parser.add_argument("--synthetic-writers", type=int, default=100)
    parser.add_argument("--synthetic-samples", type=int, default=10, help="samples per writer per character")
    parser.add_argument("--workers", type=int, default=None, help="decode processes for verification (default: up to 2)")
    args = parser.parse_args(argv)
    result = fetch(
        args.source, args.out, seed=args.seed, synthetic_writers=args.synthetic_writers,
        synthetic_samples=args.synthetic_samples, workers=args.workers,
    )
    counts = result["counts"]
    print(f"{args.out}: {counts['images']} images, {counts['writers']} writers, {counts['classes']} classes ({result['kind']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
