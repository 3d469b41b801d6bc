"""Render the printed-glyph corpus: GB2312 level 1 x fonts x variants, one uint8 array + an index.

    python -m hccr.data.glyphs --fonts ukai uming microhei zenhei --variants 2 --size 64 \
        --seed 0 --images data/glyphs/images_64.npy --index data/glyphs/index.csv \
        --summary data/glyphs/corpus.json [--characters TEXT] [--count N] [--on-missing error|skip] [--workers 2]

The characters are GB2312's level 1 (rows 0xB0-0xD7), decoded with Python's `gb2312` codec in
code order: 3,755 classes, labels 0..N-1 in that order (`--characters` renders a given set
instead, in its order: tests). Each (character, font, variant) is one image: the glyph drawn light-on-black (as
Chinese MNIST is) at a fixed em size, centred on its ink, then made handwriting-like by
hccr.data.glyphs_augment with a generator seeded by (seed, font, variant, code point), so the
corpus does not depend on how the work is split over processes.

The index has the columns every step reads (hccr.data.index.INDEX_COLUMNS: `writer` is the
font's number, `sample` the variant, `code` the code point, `path` the font file) plus
`font` and `variant`, so training reads the corpus exactly as it reads Chinese MNIST.
A character a font does not map (its cmap) is an error naming the font and the characters;
with `--on-missing skip` those images are left out and listed in the summary. A glyph that
draws no ink is always an error.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from hccr.atomic import atomic_path, write_csv, write_json
from hccr.data.glyphs_augment import SUPERSAMPLE, GlyphAugment, augment
from hccr.data.workers import default_workers, process_pool
from hccr.errors import DataError, reports_errors
from hccr.fonts import FONTS, NamedFont, missing_characters, named_font

LEVEL1_ROWS = range(0xB0, 0xD8)  # GB2312 level 1: the 3,755 most frequent characters
CELLS = range(0xA1, 0xFF)
EM = 0.8  # the font size, as a share of the side: room for the affine and elastic warps
CHUNK = 400  # images per job (CHUNK // variants characters x every variant)


def gb2312_level1() -> str:
    """The 3,755 level-1 characters in GB2312 code order, from Python's codec (no pasted table)."""
    characters = []
    for row in LEVEL1_ROWS:
        for cell in CELLS:
            try:
                characters.append(bytes((row, cell)).decode("gb2312"))
            except UnicodeDecodeError:  # row 0xD7 ends at 0xF9
                continue
    return "".join(characters)


def spread(characters: str, count: int) -> str:
    """An even spread of `count` of `characters` (every (len / count)-th, in order); all if count is 0.

    The CPU setting: fewer classes with more variants each learn in minutes on 2 cores, where
    all 3,755 with 2 variants each did not move off chance in 3 epochs (docs/glyphs.md).
    """
    if count <= 0 or count >= len(characters):
        return characters
    if count < 2:
        raise DataError(f"glyphs.count: {count} gives fewer than 2 characters to tell apart")
    picks = np.linspace(0, len(characters), count, endpoint=False).astype(int)
    return "".join(characters[i] for i in picks)


def unique_characters(text: str) -> str:
    """`text` without whitespace or repeats, in order; DataError if fewer than 2 remain."""
    characters = "".join(dict.fromkeys(ch for ch in text if not ch.isspace()))
    if len(characters) < 2:
        raise DataError(f"glyphs.characters: {text!r} gives fewer than 2 characters to tell apart")
    return characters


@dataclass(frozen=True)
class Job:
    """Some characters of one font in every variant: each glyph is drawn once, augmented per variant."""

    font: NamedFont
    font_number: int
    variants: tuple[int, ...]
    codes: tuple[int, ...]
    first_rows: tuple[int, ...]  # per variant, the index row of `codes[0]`
    size: int
    seed: int
    aug: GlyphAugment


@cache
def _pil_font(path: str, face: int, pixels: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, pixels, index=face)


def draw_glyph(font: NamedFont, character: str, size: int) -> Image.Image:
    """The glyph light-on-black at SUPERSAMPLE * size, centred on its ink; DataError if it draws nothing."""
    side = size * SUPERSAMPLE
    pil_font = _pil_font(str(font.path), font.face, round(EM * side))
    box = pil_font.getbbox(character)
    image = Image.new("L", (side, side), 0)
    if box[2] > box[0] and box[3] > box[1]:
        x = (side - (box[2] - box[0])) / 2 - box[0]
        y = (side - (box[3] - box[1])) / 2 - box[1]
        ImageDraw.Draw(image).text((x, y), character, fill=255, font=pil_font)
    if image.getbbox() is None:
        raise DataError(f"{font.path}: font {font.name!r} draws nothing for {character!r} (U+{ord(character):04X})")
    return image


def render_job(job: Job) -> np.ndarray:
    """(variants, codes, size, size); each image's randomness comes from (seed, font, variant, code) alone."""
    out = np.empty((len(job.variants), len(job.codes), job.size, job.size), dtype=np.uint8)
    for i, code in enumerate(job.codes):
        glyph = draw_glyph(job.font, chr(code), job.size)
        for v, variant in enumerate(job.variants):
            rng = np.random.default_rng((job.seed, job.font_number, variant, code))
            out[v, i] = augment(glyph, job.size, job.aug, rng)
            if not out[v, i].any():
                raise DataError(f"{job.font.path}: variant {variant} of {chr(code)!r} came out empty")
    return out


def plan(
    fonts: list[NamedFont], characters: str, variants: int, on_missing: str
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The index rows (before ids) and, per font, the characters it lacks."""
    missing = {font.name: missing_characters(font, characters) for font in fonts}
    lacking = {name: chars for name, chars in missing.items() if chars}
    if lacking and on_missing != "skip":
        name, chars = next(iter(lacking.items()))
        font = next(f for f in fonts if f.name == name)
        raise DataError(
            f"{font.path}: font {name!r} has no glyph for {len(chars)} of the {len(characters)} characters "
            f"(first: {' '.join(chars[:10])}); drop the font or set glyphs.on_missing: skip"
        )
    orphans = [ch for ch in characters if all(ch in missing[f.name] for f in fonts)]
    if orphans:
        raise DataError(f"glyphs.fonts: no font has {' '.join(orphans[:10])} ({len(orphans)} characters)")
    label = {ch: i for i, ch in enumerate(characters)}
    rows = [
        (number, variant, ord(ch), ch, label[ch], str(font.path), font.name)
        for number, font in enumerate(fonts)
        for variant in range(variants)
        for ch in characters
        if ch not in missing[font.name]
    ]
    table = pd.DataFrame(rows, columns=["writer", "sample", "code", "character", "label", "path", "font"])
    table.insert(0, "id", np.arange(len(table)))
    table.insert(4, "value", pd.array([pd.NA] * len(table), dtype="Int64"))
    table["variant"] = table["sample"]
    return table, lacking


def jobs_for(table: pd.DataFrame, fonts: list[NamedFont], size: int, seed: int, aug: GlyphAugment) -> list[Job]:
    """Jobs of about CHUNK images: a run of one font's characters in all of its variants."""
    jobs = []
    for number, rows in table.groupby("writer", sort=True):
        per_variant = {int(v): group for v, group in rows.groupby("sample", sort=True)}
        variants = tuple(per_variant)
        codes = per_variant[variants[0]]["code"].tolist()  # a font lacks the same characters in every variant
        step = max(1, CHUNK // len(variants))
        for start in range(0, len(codes), step):
            first_rows = tuple(int(per_variant[v]["id"].iloc[start]) for v in variants)
            chunk = tuple(codes[start : start + step])
            jobs.append(Job(fonts[number], int(number), variants, chunk, first_rows, size, seed, aug))
    return jobs


def render_corpus(
    fonts: list[NamedFont],
    characters: str,
    variants: int,
    size: int,
    seed: int,
    aug: GlyphAugment,
    workers: int | None = None,
    on_missing: str = "error",
    progress: bool = True,
) -> tuple[np.ndarray, pd.DataFrame, dict[str, str]]:
    """(images (N, size, size) uint8, index table, missing characters per font)."""
    if variants < 1:
        raise DataError(f"glyphs.variants: {variants} must be at least 1")
    if not fonts:
        raise DataError("glyphs.fonts: no fonts given")
    table, lacking = plan(fonts, characters, variants, on_missing)
    jobs = jobs_for(table, fonts, size, seed, aug)
    images = np.empty((len(table), size, size), dtype=np.uint8)
    workers = default_workers() if workers is None else max(1, workers)
    bar = tqdm(total=len(table), desc="render glyphs", unit="img", file=sys.stderr, disable=not progress)
    with process_pool(workers) as pool:
        for job, part in zip(jobs, pool.map(render_job, jobs), strict=True):
            for first, images_of_variant in zip(job.first_rows, part, strict=True):
                images[first : first + len(job.codes)] = images_of_variant
            bar.update(part.shape[0] * part.shape[1])
    bar.close()
    return images, table, lacking


def corpus_summary(table: pd.DataFrame, fonts: list[NamedFont], variants: int, size: int, seed: int, **extra) -> dict:
    return {
        "classes": int(table["label"].nunique()),
        "images": len(table),
        "fonts": [
            {
                "name": f.name,
                "path": str(f.path),
                "face": f.face,
                "package": FONTS[f.name].package if f.name in FONTS else None,
            }
            for f in fonts
        ],
        "variants": variants,
        "size": size,
        "seed": seed,
        **extra,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hccr glyphs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--fonts", nargs="+", required=True, help=f"font names ({', '.join(FONTS)}) or font files")
    parser.add_argument("--variants", type=int, default=2, help="augmented images per character and font")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--characters", default="", help="render these characters instead of GB2312 level 1")
    parser.add_argument("--count", type=int, default=0, help="an even spread of this many of them (0: all)")
    parser.add_argument("--augment-json", default=None, help="glyphs.augment as JSON (default: GlyphAugment())")
    parser.add_argument("--on-missing", choices=("error", "skip"), default="error")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")
    parser.add_argument("--images", required=True, help="output .npy (N, size, size) uint8")
    parser.add_argument("--index", required=True, help="output index CSV")
    parser.add_argument("--summary", required=True, help="output JSON: classes, fonts, variants, seed, missing glyphs")
    return parser


@reports_errors
def main(argv: list[str] | None = None) -> int:
    import json

    args = _parser().parse_args(argv)
    characters = spread(unique_characters(args.characters) if args.characters else gb2312_level1(), args.count)
    aug = GlyphAugment.from_dict(json.loads(args.augment_json) if args.augment_json else None)
    fonts = [named_font(name) for name in args.fonts]
    began = time.perf_counter()
    images, table, lacking = render_corpus(
        fonts, characters, args.variants, args.size, args.seed, aug, args.workers, args.on_missing
    )
    with atomic_path(args.images, suffix=".npy") as tmp:
        np.save(tmp, images)
    write_csv(args.index, table)
    summary = corpus_summary(
        table, fonts, args.variants, args.size, args.seed, missing=lacking, seconds=time.perf_counter() - began
    )
    write_json(args.summary, summary)
    print(f"{args.images}: {images.shape} from {len(fonts)} fonts, {summary['classes']} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
