"""The report's robustness section: the exported model on user-style test images (issue 14).

Reads what `hccr.evaluation.robustness` wrote (reports/robustness/robustness.json and
examples.png, beside reports/figures/); says so when the step is off or has not run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hccr.files import read_json_object
from hccr.reporting import report_render as rr
from hccr.reporting.formatting import pct

HEADING = "Robustness: the test writers' images as users bring them"
SIGNIFICANCE = 0.05
TARGET_POINTS = 0.3  # issue 14: every transform within 0.3 points of the untransformed images


def describe(name: str, settings: dict[str, Any]) -> str:
    """A transform's parameters in words (from the settings the step recorded)."""
    block = (settings.get("transforms") or {}).get(name, {})
    if name == "original":
        return "the archive's 64 px glyph, lossless PNG"
    if name == "inverted":
        return "dark ink on white, 64 px"
    if name == "enlarged":
        polarity = "inverted, " if block.get("invert", True) else ""
        return f"{polarity}{block.get('size', 300)} px RGB ({block.get('filter', 'bicubic')})"
    if name == "shifted":
        dx, dy = block.get("shift", [8, -6])
        return f"{block.get('pad', 16)} px black border, glyph moved ({dx:+d}, {dy:+d}) px"
    if name == "jpeg":
        return f"JPEG, quality {block.get('quality', 50)}"
    if name == "textured":
        return (
            f"dark ink on paper of tone {block.get('level', 215):g} ± {block.get('amplitude', 20):g} "
            f"(blotches of {block.get('grain', 8)} px)"
        )
    return ""


def section(doc: rr.Document, reports_dir: Path) -> None:
    """Table (accuracy, change, discordant pairs, McNemar p) and the example figure."""
    folder = Path(reports_dir) / "robustness"
    data = read_json_object(folder / "robustness.json", "robustness results", missing_ok=True)
    doc.add(rr.Heading(2, HEADING))
    if not data:
        doc.add(rr.Para("Not run (params `robustness.enabled` is false, or the protocol has no test writers)."))
        return
    results, settings = data.get("results", {}), data.get("settings", {})
    doc.add(
        rr.Para(
            f"The exported model (`{data.get('model', '?')}`) on {data.get('n', '?')} test images, each transformed "
            "as a user might bring it and read back through `hccr predict`'s own path (decode, framing, resize). "
            f"Paired test: {data.get('test', 'McNemar exact')}; a transform passes the issue's target when it is "
            f"within {TARGET_POINTS} points of the untransformed images and p ≥ {SIGNIFICANCE}."
        )
    )
    rows = []
    for name, r in results.items():
        passed = abs(r["delta_points"]) <= TARGET_POINTS and r["mcnemar_p"] >= SIGNIFICANCE
        rows.append(
            [
                name,
                describe(name, settings),
                pct(r["accuracy"]),
                "—" if name == data.get("baseline") else f"{r['delta_points']:+.2f}",
                f"{r['only_original_right']} / {r['only_transformed_right']}",
                "—" if name == data.get("baseline") else f"{r['mcnemar_p']:.3g}",
                str(r.get("refused", 0)),
                "—" if name == data.get("baseline") else ("yes" if passed else "no"),
            ]
        )
    doc.add(
        rr.Table(
            [
                "transform",
                "parameters",
                "accuracy",
                "Δ points",
                "only original / only transformed right",
                "McNemar p",
                "refused",
                "target met",
            ],
            rows,
        )
    )
    figure = folder / "examples.png"
    if figure.is_file():
        doc.add(
            rr.Figure(figure, "Each row a transform: the file as given (left) and the glyph predict framed (right).")
        )
