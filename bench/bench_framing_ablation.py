"""Framing ablation (issue 14): which step of the prediction path costs accuracy on user-style images.

    python bench/bench_framing_ablation.py --model models/export/model.onnx \
        --images data/processed/images_64.npy --index data/interim/index.csv \
        --split data/processed/splits/holdout/full.csv [--limit 600] [--threads 2] [--role val] \
        [--ink 0.6]

The test writers' images are transformed as a user would bring them (as they are; inverted;
inverted and enlarged to 300 px RGB; by default also JPEG and textured paper) and scored
through `hccr predict`'s own path (`hccr.evaluation.robustness.score`), once per framing
variant: the prediction path as it is, then with one step of `canonical_glyph` switched
(`hccr.serving.preprocess.Framing`): no native shortcut, no polarity detection, the old
global median instead of the local background, no background removal, the old framed range,
always framed / always reframed, another frame filter, no stroke-peak scaling, the 3x3 median
that smoothed the polarity and ink steps before. `shifted far` and `textured dark` are harder
than the robustness rule's settings; `--ink` scales every glyph's strokes first (0.6: a faint
writer), so that settings for faint ink can be chosen on validation writers.
Prints one accuracy per variant and transform; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, set_threads  # noqa: E402
from hccr.evaluation.robustness import read_test_set, score  # noqa: E402
from hccr.evaluation.transforms import make_transform  # noqa: E402
from hccr.serving.predict import load_predictor  # noqa: E402
from hccr.serving.preprocess import DEFAULT_FRAMING  # noqa: E402

VARIANTS = {
    "predict (all steps)": {},
    "predict before issue 14": {"background": "median", "framed_side": (9.0, 43.0)},
    "no native shortcut": {"native_shortcut": False},
    "no polarity step": {"invert": False},
    "background: global median (before issue 14)": {"background": "median"},
    "background: none": {"background": "none"},
    "framed range 9-43 px (before issue 14)": {"framed_side": (9.0, 43.0)},
    "always framed": {"frame": "framed"},
    "always reframed": {"frame": "reframed"},
    "frame filter bilinear": {"frame_filter": "bilinear"},
    "frame filter bicubic": {"frame_filter": "bicubic"},
    "no stroke-peak scaling": {"stroke_peak": False},
    # the paper's grain subtracted this many times (GRAIN_FACTOR): pick it with --role val
    **{f"grain factor {factor:g}": {"grain_factor": factor} for factor in (1.0, 2.0, 3.0, 4.0)},
    # steps 3 and 5 before: a 3x3 median (erases one-pixel strokes), with the framed range it was measured with
    "ink smoothing: 3x3 median (before)": {"smoothing": "median", "framed_side": (4.0, 60.0)},
}
# name -> settings; a name's first word is its function in hccr.evaluation.transforms
TRANSFORMS = {
    "original": {},
    "inverted": {},
    "enlarged": {"size": 300, "invert": True, "filter": "bicubic"},
    "shifted": {"pad": 16, "shift": (8, -6)},
    "shifted far": {"pad": 24, "shift": (12, -9)},
    "jpeg": {"quality": 50},
    "textured": {"level": 215, "amplitude": 20, "grain": 8},
    "textured dark": {"level": 190, "amplitude": 30, "grain": 8},
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--index", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--limit", type=int, default=0, help="score an even spread of this many test images (0: all)")
    p.add_argument("--transforms", nargs="+", default=list(TRANSFORMS), choices=list(TRANSFORMS))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--ink", type=float, default=1.0, help="scale every glyph's strokes by this first (0.6: faint ink)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--role", choices=("test", "val"), default="test", help="score the validation writers (to choose a setting)"
    )
    args = p.parse_args()
    threads = set_threads(args.threads)
    test = read_test_set(args.images, args.index, args.split, args.limit, args.role)
    if args.ink != 1.0:
        test = replace(test, glyphs=np.clip(np.rint(test.glyphs * args.ink), 0, 255).astype(np.uint8))
    predictor = load_predictor(args.model, args.threads)
    header(
        "framing ablation: accuracy (%) through hccr predict's path, per framing variant and transform",
        {
            "model": args.model,
            f"{args.role} images": str(len(test.ids)),
            "ink": f"{args.ink:g}",
            "threads": str(threads),
        },
    )
    transforms = {name: make_transform(name.split()[0], TRANSFORMS[name]) for name in args.transforms}
    print("| variant | " + " | ".join(args.transforms) + " | s |")
    print("| --- |" + " --- |" * (len(args.transforms) + 1))
    for variant in args.variants:
        predictor.framings = (replace(DEFAULT_FRAMING, **VARIANTS[variant]),)
        started = time.perf_counter()
        cells = []
        for name, transform in transforms.items():
            correct, refused = score(predictor, test, transform, f"{variant}/{name}")
            cells.append(f"{100 * correct.mean():.2f}" + (f" ({refused} refused)" if refused else ""))
        print(f"| {variant} | " + " | ".join(cells) + f" | {time.perf_counter() - started:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
