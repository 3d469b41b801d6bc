"""Recognise handwritten Chinese numerals in image files with a trained or exported model.

`hccr predict PATH... --model FILE [--top-k 3] [--format text|csv|json] [--batch-size 64]
[--resize-filter NAME]`

- PATH: an image file, a folder (searched recursively for image extensions) or a `.zip`
  archive (its image entries are read in memory, never extracted). A file named explicitly
  is always tried, whatever its extension.
- FILE: a `.pt` checkpoint (loaded with `weights_only=True` through `hccr.models.checkpoint`) or
  an exported `.onnx` model (onnxruntime; input size, normalisation and characters come
  from the metadata that `hccr.serving.export` embeds in the ONNX file).
- Images are prepared by `hccr.serving.preprocess` (any size, colour or polarity), framed
  as the model was trained (its framing travels in the checkpoint and the ONNX metadata; an
  exported ensemble gets one framing per member, stacked as input channels).

Each image gets its character, numeric value and top-k confidences. A file that cannot be
read (not an image, truncated, empty, over 50 megapixels, no ink) gets its own error and the
rest of the batch still runs. Exit status: 0 all files recognised, 1 some file failed,
2 usage error or unreadable model.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hccr.classes import Classes
from hccr.errors import DataError, HccrError, reports_errors
from hccr.normalization import check_stats, normalize
from hccr.serving.preprocess import (
    MAX_PIXELS,
    Framing,
    canonical_glyph,
    framing_named,
    glyph_to_size,
    open_image,
    resample_filter,
)

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".pnm"}
)
# Files and zip entries are read into memory whole; refuse anything larger than this.
MAX_ENTRY_BYTES = 256 * 1024 * 1024
FORMATS = ("text", "csv", "json")
COLUMNS = ("path", "character", "value", "confidence", "top_k", "error")


@dataclass
class Source:
    """One image to recognise: a printable label and a way to get its bytes (or an error)."""

    label: str
    read: Callable[[], bytes] | None = None
    error: str | None = None


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None
    classes: Classes | None = None  # the model's label set: gives each character its value

    @property
    def character(self) -> str:
        return self.top[0][0] if self.top else ""

    @property
    def value(self) -> int | None:
        return self.value_of(self.character) if self.top else None

    def value_of(self, character: str) -> int | None:
        return self.classes.value_of(character) if self.classes is not None else None

    @property
    def confidence(self) -> float | None:
        return self.top[0][1] if self.top else None

    def top_k_text(self) -> str:
        return ";".join(f"{char}:{prob:.4f}" for char, prob in self.top)

    def record(self) -> dict:
        return {
            "path": self.path,
            "character": self.character or None,
            "value": self.value,
            "confidence": self.confidence,
            "top_k": [{"character": c, "value": self.value_of(c), "confidence": p} for c, p in self.top],
            "error": self.error,
        }


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _zip_sources(path: Path) -> Iterator[Source]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        yield Source(str(path), error=f"{path}: not a readable zip archive ({exc})")
        return
    with archive:
        entries = [info for info in archive.infolist() if not info.is_dir() and is_image_name(info.filename)]
        if not entries:
            yield Source(str(path), error=f"{path}: zip archive holds no images")
        for info in entries:
            label = f"{path}:{info.filename}"
            if info.file_size > MAX_ENTRY_BYTES:
                yield Source(label, error=f"{label}: entry too large ({info.file_size} bytes uncompressed)")
                continue

            def read(info=info, label=label) -> bytes:
                try:
                    return archive.read(info)
                except (zipfile.BadZipFile, RuntimeError, OSError, ValueError) as exc:
                    raise DataError(f"{label}: cannot read zip entry ({exc})") from None

            # Consumed at once by the caller, while the archive is still open.
            yield Source(label, read=read)


def _file_source(path: Path) -> Source:
    size = path.stat().st_size
    if size > MAX_ENTRY_BYTES:
        return Source(str(path), error=f"{path}: file too large ({size} bytes; limit {MAX_ENTRY_BYTES})")
    return Source(str(path), read=path.read_bytes)


def iter_sources(paths: Iterable[str]) -> Iterator[Source]:
    """Every image named by `paths` (files, folders searched recursively, zip archives), in order."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and is_image_name(p.name))
            if not files:
                yield Source(str(path), error=f"{path}: folder holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            for file in files:
                yield _file_source(file)
        elif path.is_file() and path.suffix.lower() == ".zip":
            yield from _zip_sources(path)
        elif path.is_file():
            yield _file_source(path)
        else:
            yield Source(str(path), error=f"{path}: no such file or folder")


class Predictor:
    """A loaded model with the metadata needed to prepare its input.

    `prepare` (image bytes -> glyph) and `top_k` (glyphs -> ranked characters) are the one
    code path that `hccr predict` and `hccr serve` share, so a file and a drawing get the
    same answer.
    """

    def __init__(
        self,
        path: Path,
        input_size: int,
        mean: float,
        std: float,
        classes: Classes,
        resize_filter: str,
        meta: dict | None = None,
        framings: list[str] | tuple[str, ...] = ("cell",),
    ):
        self.path = path
        self.input_size = int(input_size)
        self.mean, self.std = check_stats(mean, std, str(path))
        self.classes = classes
        self.characters = classes.characters
        self.resize_filter = resize_filter
        self.meta = dict(meta or {})  # the model file's own metadata (checkpoint fields or ONNX hccr.*)
        if not framings:
            raise DataError(f"{path}: the model declares no input framing")
        self.framing_names = tuple(str(name) for name in framings)
        # One per input channel; the framing ablation (bench/) swaps them for variants.
        self.framings: tuple[Framing, ...] = tuple(
            framing_named(name, f"{path}: framing") for name in self.framing_names
        )
        resample_filter(resize_filter)
        # A model file may come from elsewhere (ONNX metadata too): refuse what would allocate
        # S x S per image without bound (issue 12).
        from hccr.models.checkpoint import INPUT_SIZE_RANGE

        if not INPUT_SIZE_RANGE[0] <= self.input_size <= INPUT_SIZE_RANGE[1]:
            raise DataError(f"{path}: input_size {input_size} is outside {INPUT_SIZE_RANGE[0]}..{INPUT_SIZE_RANGE[1]}")

    def probabilities(self, batch) -> np.ndarray:  # (B, 1, S, S) tensor -> (B, C) array
        raise NotImplementedError

    def prepare(self, data: bytes, label: str, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, np.ndarray]:
        """Image bytes -> (64x64 glyph of the first framing, the model's input (M, S, S)), both uint8.

        M is the number of framings (1, or one per ensemble member).
        """
        image = open_image(data, label, max_pixels)
        glyphs = [canonical_glyph(image, label, framing) for framing in self.framings]
        sized = np.stack([glyph_to_size(glyph, self.input_size, self.resize_filter) for glyph in glyphs])
        return glyphs[0], sized

    def class_probabilities(self, sized: np.ndarray) -> np.ndarray:
        """uint8 (B, M, S, S) inputs (or (B, S, S) for one framing) -> (B, classes) probabilities."""
        # A writable copy: torch warns about read-only arrays (PIL's are), and this one is small.
        sized = np.array(sized, dtype=np.uint8)
        if sized.ndim == 3:
            sized = sized[:, None]
        if sized.ndim != 4 or sized.shape[1] != len(self.framings):
            raise DataError(
                f"{self.path}: expected inputs (B, {len(self.framings)}, S, S), one per framing, got {sized.shape}"
            )
        return self.probabilities(normalize(sized, self.mean, self.std))

    def top_k(self, sized: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """uint8 (B, M, S, S) inputs -> for each, the k most probable (character, probability), best first."""
        k = max(1, min(k, len(self.characters)))
        probs = self.class_probabilities(sized)
        ranked = []
        for p in probs:
            order = np.argsort(-p, kind="stable")[:k]
            ranked.append([(self.characters[i], float(p[i])) for i in order])
        return ranked


class TorchPredictor(Predictor):
    def __init__(self, path: Path):
        from hccr.models.checkpoint import load_model
        from hccr.models.ensemble import member_framings

        try:
            model, meta = load_model(path, map_location="cpu")
        except HccrError:
            raise
        except Exception as exc:  # torch raises many kinds for a corrupt or foreign file
            raise HccrError(f"{path}: cannot load checkpoint ({type(exc).__name__}: {exc})") from None
        normalize_meta = meta.get("normalize") or {}
        super().__init__(
            path,
            meta["input_size"],
            normalize_meta.get("mean", 0.0),
            normalize_meta.get("std", 1.0),
            Classes.from_meta(meta, str(path)),
            meta.get("resize_filter", "bilinear"),
            meta={k: v for k, v in meta.items() if k != "state_dict"},
            framings=member_framings(meta),
        )
        self.model = model.eval()

    def probabilities(self, batch) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return torch.softmax(self.model(batch).float(), dim=1).numpy()


class OnnxPredictor(Predictor):
    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime

        from hccr.serving.onnx_meta import META_PREFIX, metadata_from_props

        options = onnxruntime.SessionOptions()
        if threads:
            # A fixed pool that sleeps when idle: concurrent requests (hccr serve) must not
            # oversubscribe the cores with spinning threads.
            options.intra_op_num_threads = threads
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise HccrError(f"{path}: cannot load ONNX model ({type(exc).__name__}: {exc})") from None
        props = self.session.get_modelmeta().custom_metadata_map
        meta = metadata_from_props(props, str(path))
        # The other hccr.* entries (epoch, val_accuracy, ...) as strings, under the parsed ones.
        meta = {**{k[len(META_PREFIX) :]: v for k, v in props.items() if k.startswith(META_PREFIX)}, **meta}
        super().__init__(
            path,
            meta["input_size"],
            meta["mean"],
            meta["std"],
            meta["classes"],
            meta.get("resize_filter", "bilinear"),
            meta=meta,
            framings=meta["framings"],
        )
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        # The metadata and the graph must agree on the channels (one per framing) before any file is read.
        channels = model_input.shape[1] if len(model_input.shape) == 4 else None
        if isinstance(channels, int) and channels != len(self.framings):
            raise HccrError(
                f"{path}: the model reads {channels} input channel(s) but its metadata names "
                f"{len(self.framings)} framing(s) ({', '.join(self.framing_names)})"
            )
        self.outputs_probabilities = meta.get("output", "probabilities") == "probabilities"

    def probabilities(self, batch) -> np.ndarray:
        (out,) = self.session.run(None, {self.input_name: batch.numpy()})
        if self.outputs_probabilities:
            return out
        shifted = np.exp(out - out.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)


def load_predictor(path: str | Path, threads: int | None = None) -> Predictor:
    """A predictor for a `.pt` checkpoint or an `.onnx` export (chosen by the file's suffix).

    `threads`: onnxruntime's intra-op threads (PyTorch's are set with torch.set_num_threads).
    """
    path = Path(path)
    if not path.is_file():
        raise HccrError(f"{path}: model file not found")
    if path.suffix.lower() == ".onnx":
        return OnnxPredictor(path, threads)
    return TorchPredictor(path)


def predict_sources(
    predictor: Predictor, sources: Iterable[Source], top_k: int = 3, batch_size: int = 64, progress: bool = False
) -> Iterator[Prediction]:
    """Predictions in source order; a source that fails yields a Prediction with `error` set."""
    pending: list[tuple[int, str, np.ndarray | None, str | None]] = []
    bar = tqdm(desc="predict", unit="img", file=sys.stderr, disable=not progress)

    def flush() -> Iterator[Prediction]:
        good = [glyph for _, _, glyph, _ in pending if glyph is not None]
        ranked = iter(predictor.top_k(np.stack(good), top_k) if good else [])
        for _, label, glyph, error in pending:
            if glyph is None:
                yield Prediction(label, error=error)
            else:
                yield Prediction(label, top=next(ranked), classes=predictor.classes)
        bar.update(len(pending))
        pending.clear()

    for number, source in enumerate(sources):
        glyph, error = None, source.error
        if error is None:
            try:
                _, glyph = predictor.prepare(source.read(), source.label)
            except HccrError as exc:
                error = str(exc)
            except (OSError, ValueError) as exc:
                error = f"{source.label}: {exc}"
        pending.append((number, source.label, glyph, error))
        if len(pending) >= batch_size:
            yield from flush()
    if pending:
        yield from flush()
    bar.close()


def write_predictions(predictions: list[Prediction], fmt: str, stream) -> None:
    if fmt == "json":
        json.dump([p.record() for p in predictions], stream, ensure_ascii=False, indent=2)
        stream.write("\n")
    elif fmt == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(COLUMNS)
        for p in predictions:
            confidence = "" if p.confidence is None else f"{p.confidence:.6f}"
            value = "" if p.value is None else p.value
            writer.writerow([p.path, p.character, value, confidence, p.top_k_text(), p.error or ""])
    else:
        for p in predictions:
            if p.error:
                stream.write(f"{p.path}\terror: {p.error}\n")
            else:
                others = ", ".join(f"{c} {prob:.3f}" for c, prob in p.top)
                stream.write(f"{p.path}\t{p.character}\t{p.value}\t{p.confidence:.3f}\t[{others}]\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hccr predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or .zip archives")
    parser.add_argument("--model", required=True, metavar="FILE", help="checkpoint (.pt) or exported model (.onnx)")
    parser.add_argument("--top-k", type=int, default=3, help="how many classes to list per image (default 3)")
    parser.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument(
        "--resize-filter",
        default=None,
        help="filter from 64 px to the model's input size; default: the model's metadata, else bilinear",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads for PyTorch or onnxruntime (default: their own)"
    )
    return parser


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors (0 for --help)
        return int(exc.code or 0)
    if args.top_k < 1 or args.batch_size < 1:
        print("error: --top-k and --batch-size must be positive", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    predictor = load_predictor(args.model, args.threads)
    if args.resize_filter:
        resample_filter(args.resize_filter)
        predictor.resize_filter = args.resize_filter
    predictions = list(
        predict_sources(predictor, iter_sources(args.paths), args.top_k, args.batch_size, progress=sys.stderr.isatty())
    )
    write_predictions(predictions, args.format, sys.stdout)
    sys.stdout.flush()
    failed = [p for p in predictions if p.error]
    if failed:
        print(f"{len(failed)} of {len(predictions)} files failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
