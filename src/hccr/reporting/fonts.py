"""Find a font that can draw the 15 Chinese MNIST glyphs, or say that none is installed.

matplotlib's bundled DejaVu fonts have no CJK glyphs, so labels would come out as boxes.
`cjk_font()` looks through the fonts matplotlib knows and the usual system folders
(Debian's fonts-wqy-microhei, Noto CJK, Source Han, the `mplfonts` wheel) and keeps the first
whose character map covers every glyph — checked with fontTools, not guessed from the name.
`class_labels(font)` then gives the glyphs, or the numeric values when no font was found.

Environment: `HCCR_CJK_FONT=none` forces the numeric fallback; `HCCR_CJK_FONT=/path/font.ttf`
uses that file (it must cover the glyphs too).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from hccr.classes import Classes

ENV = "HCCR_CJK_FONT"
FONT_SUFFIXES = (".ttf", ".ttc", ".otf", ".otc")
SYSTEM_DIRS = (
    "/usr/share/fonts",
    "/usr/local/share/fonts",
    "~/.fonts",
    "~/.local/share/fonts",
    "/Library/Fonts",
    "/System/Library/Fonts",
    "C:/Windows/Fonts",
)
# Names that usually mean CJK coverage; they are checked first so the scan stays short.
LIKELY = (
    "wqy",
    "wenquanyi",
    "notosanscjk",
    "notoserifcjk",
    "noto sans cjk",
    "sourcehan",
    "droidsansfallback",
    "simhei",
    "simsun",
    "msyh",
    "pingfang",
    "hiragino",
    "ukai",
    "uming",
    "arphic",
)


@dataclass(frozen=True)
class CjkFont:
    path: Path
    family: str  # the family name matplotlib registered for it


def covers(path: str | os.PathLike, characters: str) -> bool:
    """Whether the font's first face (the one matplotlib draws with) maps every character."""
    from fontTools.ttLib import TTFont

    try:
        font = TTFont(str(path), fontNumber=0, lazy=True)
        cmap = font.getBestCmap() or {}
        font.close()
    except Exception:  # unreadable or unsupported font file: not a candidate
        return False
    return all(ord(ch) in cmap for ch in characters)


def candidate_fonts() -> list[Path]:
    """Font files, likely-CJK names first, then the rest; each once."""
    from matplotlib import font_manager

    paths: list[Path] = [Path(f.fname) for f in font_manager.fontManager.ttflist]
    try:  # the mplfonts wheel ships Noto Sans CJK inside the package
        import mplfonts  # type: ignore[import-not-found]

        paths += sorted(Path(mplfonts.__file__).parent.rglob("*"))
    except ImportError:
        pass
    for folder in SYSTEM_DIRS:
        root = Path(folder).expanduser()
        if root.is_dir():
            paths += sorted(root.rglob("*"))
    seen, ordered = set(), []
    for path in paths:
        if path.suffix.lower() in FONT_SUFFIXES and path not in seen and path.is_file():
            seen.add(path)
            ordered.append(path)

    def likely(path: Path) -> bool:
        name = path.name.lower().replace("-", "").replace("_", "")
        return any(key.replace(" ", "") in name for key in LIKELY)

    return [p for p in ordered if likely(p)] + [p for p in ordered if not likely(p)]


@functools.cache
def _find(characters: str) -> Path | None:
    for path in candidate_fonts():
        if covers(path, characters):
            return path
    return None


def _register(path: Path) -> CjkFont:
    from matplotlib import font_manager

    font_manager.fontManager.addfont(str(path))
    return CjkFont(path=path, family=font_manager.FontProperties(fname=str(path)).get_name())


def cjk_font(characters: str, *, disable: bool | None = None) -> CjkFont | None:
    """An installed font covering `characters`, registered with matplotlib; None if there is none.

    `disable=True` (or HCCR_CJK_FONT=none) returns None, for the numeric fallback.
    """
    setting = os.environ.get(ENV, "").strip()
    if disable or (disable is None and setting.lower() in {"none", "0", "off", "false"}):
        return None
    if setting and setting.lower() not in {"none", "0", "off", "false", "auto"}:
        path = Path(setting).expanduser()
        return _register(path) if path.is_file() and covers(path, characters) else None
    path = _find(characters)
    return _register(path) if path else None


def class_labels(font: CjkFont | None, classes: Classes) -> list[str]:
    """Tick/title text per class: the glyph when a font can draw it, else its numeric value (or label)."""
    if font:
        return list(classes.characters)
    return [str(label if value is None else value) for label, value in enumerate(classes.values)]


def font_family(font: CjkFont | None) -> list[str]:
    """matplotlib family list: the CJK font first, DejaVu Sans behind it for Latin and arrows."""
    return [font.family, "DejaVu Sans"] if font else ["DejaVu Sans"]
