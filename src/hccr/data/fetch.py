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

Fetch only ever replaces its own earlier output: an existing `--out` must be empty or hold just
the layout and a `SOURCE.json`; anything else (a user's `archive.zip`, other files) is refused
before anything is touched, and so is a source inside, or equal to, the output folder.
Archives are treated as hostile: entries that would land outside the target, links, encrypted
entries, more than `MAX_UNPACKED_BYTES` in all or an entry inflating more than `MAX_RATIO`
times are refused before a byte is written, and only the layout's own entries are unpacked.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import stat
import sys
import zipfile
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from hccr.atomic import atomic_dir, write_json
from hccr.data.layout import CSV_NAME, IMAGE_DIR, check_rows, decode_image, image_name, read_raw_csv
from hccr.data.workers import default_workers
from hccr.errors import DataError, reports_errors

KAGGLE_HANDLE = "gpreda/chinese-mnist"
SOURCE_NAME = "SOURCE.json"
# What fetch writes; an existing --out holding anything else is not fetch's to replace.
OWN_ENTRIES = frozenset({CSV_NAME, IMAGE_DIR.parts[0], SOURCE_NAME})
# Archive limits, checked on the declared sizes before unpacking (zipfile stops reading an
# entry at its declared size, so a lying header cannot inflate past them). The real
# archive unpacks to 8 MB, Kaggle's to about 20 MB; JPEGs barely compress (ratio ~1).
MAX_UNPACKED_BYTES = 1 << 30
MAX_RATIO = 100
RATIO_FLOOR_BYTES = 1 << 20  # tiny entries may compress well without being a bomb


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
    names = [image_name(s, n, c) for s, n, c in zip(frame["suite_id"], frame["sample_id"], frame["code"], strict=False)]
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


def layout_entries(archive: zipfile.ZipFile, archive_path: Path) -> tuple[str, list[zipfile.ZipInfo]]:
    """(root prefix, the CSV and data/data/ file entries under it): what the layout needs."""
    csvs = sorted(
        info.filename
        for info in archive.infolist()
        if PurePosixPath(info.filename).name == CSV_NAME and len(PurePosixPath(info.filename).parts) <= 2
    )
    if not csvs:
        raise DataError(f"{archive_path}: no {CSV_NAME} at the top or one folder down (expected the Kaggle layout)")
    if len(csvs) > 1:
        raise DataError(f"{archive_path}: several {CSV_NAME} ({', '.join(csvs)}); expected one")
    prefix = csvs[0][: -len(CSV_NAME)]
    images = f"{prefix}{IMAGE_DIR.as_posix()}/"
    wanted = [
        info
        for info in archive.infolist()
        if info.filename == csvs[0] or (info.filename.startswith(images) and not info.is_dir())
    ]
    return prefix, wanted


def check_entry_sizes(entries: list[zipfile.ZipInfo], archive_path: Path, max_bytes: int, max_ratio: float) -> None:
    """Refuse encrypted entries, zip bombs and oversized archives before anything is written."""
    total = 0
    for info in entries:
        where = f"{archive_path}:{info.filename}"
        if info.flag_bits & 0x1:
            raise DataError(f"{where}: entry is encrypted; hccr unpacks only plain archives")
        if info.file_size > RATIO_FLOOR_BYTES and info.file_size > max_ratio * max(info.compress_size, 1):
            raise DataError(
                f"{where}: entry would inflate {info.file_size / max(info.compress_size, 1):.0f} times "
                f"({info.file_size} bytes from {info.compress_size}; limit {max_ratio:g}x): refusing a zip bomb"
            )
        total += info.file_size
        if total > max_bytes:
            raise DataError(
                f"{archive_path}: the dataset entries unpack to more than {max_bytes} bytes "
                f"(reached at {info.filename!r}); refusing to unpack"
            )


def unpack_zip(
    archive_path: Path,
    target: Path,
    progress: bool = True,
    max_bytes: int | None = None,
    max_ratio: float | None = None,
) -> str:
    """Unpack the layout's entries into `target`, after checking every entry; return their prefix."""
    max_bytes = MAX_UNPACKED_BYTES if max_bytes is None else max_bytes
    max_ratio = MAX_RATIO if max_ratio is None else max_ratio
    try:
        with zipfile.ZipFile(archive_path) as archive:
            check_archive_members(archive, archive_path)
            prefix, members = layout_entries(archive, archive_path)
            check_entry_sizes(members, archive_path, max_bytes, max_ratio)
            for info in tqdm(
                members, desc="unpack", unit="file", file=sys.stderr, disable=not progress or len(members) < 2000
            ):
                dest = target / PurePosixPath(info.filename.replace("\\", "/"))
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with archive.open(info) as source, open(dest, "wb") as sink:
                        shutil.copyfileobj(source, sink, 1 << 20)
                except (RuntimeError, NotImplementedError, zlib.error, zipfile.BadZipFile, EOFError) as exc:
                    # zipfile's errors for encrypted data, unknown methods, bad deflate data and CRCs.
                    raise DataError(
                        f"{archive_path}:{info.filename}: cannot be unpacked ({type(exc).__name__}: {exc})"
                    ) from None
    except zipfile.BadZipFile as exc:
        raise DataError(f"{archive_path}: not a valid zip archive ({exc})") from exc
    return prefix


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


def check_source_outside(source: str | os.PathLike, out: str | os.PathLike) -> None:
    """Refuse a source inside, equal to, or holding the output folder: the step replaces `out`
    (and Snakemake deletes it before rerunning the step), which would destroy the source."""
    if str(source) in ("kaggle", "synthetic"):
        return
    src = Path(source).expanduser().resolve()
    dest = Path(out).expanduser().resolve()
    if src == dest or dest in src.parents:
        raise DataError(
            f"data source {source!r} lies inside the fetch output folder {out}, which fetch replaces "
            f"(and Snakemake deletes before rerunning fetch); move the source elsewhere, e.g. data/archive.zip, "
            f"and point data_source there"
        )
    if src.is_dir() and src in dest.parents:
        raise DataError(
            f"data source folder {source!r} holds the fetch output folder {out}; fetch would read its own "
            f"output as the dataset: point data_source at the dataset folder itself or move it elsewhere"
        )


def check_replaceable(out: Path) -> None:
    """An existing `out` must be fetch's own earlier output (the layout + SOURCE.json) or empty."""
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise DataError(f"--out {out}: exists and is not a folder; fetch writes a folder there, choose another --out")
    names = sorted(entry.name for entry in os.scandir(out))
    if not names:
        return
    foreign = [name for name in names if name not in OWN_ENTRIES]
    own = (out / SOURCE_NAME).is_file() and not foreign
    if not own:
        listed = ", ".join((foreign or names)[:5]) + (" ..." if len(foreign or names) > 5 else "")
        raise DataError(
            f"--out {out}: holds files fetch did not make ({listed}); fetch replaces only its own earlier "
            f"output (a folder with {SOURCE_NAME}). Choose an output folder of its own, e.g. {out / 'chinese-mnist'}, "
            f"or move those files away"
        )


def _name_source(exc: DataError, tmp: Path, origin: str) -> DataError:
    """The same error with the temporary folder's paths replaced by where the file came from."""
    return DataError(str(exc).replace(f"{tmp}{os.sep}", origin))


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
    check_replaceable(out)
    check_source_outside(source, out)
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
                f"data source {source!r} does not exist (give `kaggle`, `synthetic`, a .zip archive or an "
                "unpacked folder)"
            )
        source_path = source_path.resolve()
        if source_path.is_file():
            if not zipfile.is_zipfile(source_path):
                raise DataError(
                    f"{source_path}: not a zip archive (expected Kaggle's archive.zip or an unpacked folder)"
                )
            provenance = {"kind": "archive", "source": str(source_path), "sha256": sha256_of(source_path)}
        else:
            provenance = {"kind": "folder", "source": str(source_path)}

    with atomic_dir(out) as tmp:
        if provenance["kind"] == "synthetic":
            from hccr.data.synthetic import generate

            generate(tmp, writers=synthetic_writers, samples_per_writer=synthetic_samples, seed=seed, progress=progress)
            origin = f"{out}{os.sep}"
        elif provenance["kind"] == "archive":
            staging = tmp / ".unpack"
            prefix = unpack_zip(source_path, staging, progress=progress)
            copy_layout(find_dataset_root(staging), tmp, move=True, progress=progress)
            shutil.rmtree(staging)
            origin = f"{source_path}:{prefix}"
        else:
            root = find_dataset_root(source_path)
            copy_layout(root, tmp, progress=progress)
            origin = f"{root}{os.sep}"
        try:
            provenance["counts"] = verify_dataset(tmp, workers=workers, progress=progress)
        except DataError as exc:  # name the archive entry or source file, not a deleted temporary
            raise _name_source(exc, tmp, origin) from None
        write_json(tmp / SOURCE_NAME, provenance)
    return provenance


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hccr fetch", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source", required=True, help="kaggle | synthetic | path to a .zip archive or unpacked folder"
    )
    parser.add_argument("--out", required=True, help="output folder (Kaggle layout + SOURCE.json)")
    parser.add_argument("--seed", type=int, default=42, help="generator seed (synthetic only)")
    parser.add_argument("--synthetic-writers", type=int, default=100)
    parser.add_argument("--synthetic-samples", type=int, default=10, help="samples per writer per character")
    parser.add_argument(
        "--workers", type=int, default=None, help="decode processes for verification (default: up to 2)"
    )
    args = parser.parse_args(argv)
    result = fetch(
        args.source,
        args.out,
        seed=args.seed,
        synthetic_writers=args.synthetic_writers,
        synthetic_samples=args.synthetic_samples,
        workers=args.workers,
    )
    counts = result["counts"]
    print(
        f"{args.out}: {counts['images']} images, {counts['writers']} writers, {counts['classes']} classes "
        f"({result['kind']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
