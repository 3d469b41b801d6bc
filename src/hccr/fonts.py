"""Find CJK fonts: one that can draw the classes in figures, or named ones for the glyph corpus.

Shared by the figures (hccr.reporting) and the glyph corpus (hccr.data.glyphs), so it imports
neither torch nor matplotlib at module level.

Named fonts (`named_font("ukai")`): the corpus renders from fonts Debian packages; `FONTS`
says which family and file each name is and which package installs it. fontconfig (`fc-list`)
finds the family; without fontconfig the usual folders are searched for the file. A missing
font is a DataError naming the package to install.

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
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hccr.classes import Classes
from hccr.errors import DataError

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
class FontSpec:
    family: str  # the fontconfig family of the face to draw with
    files: tuple[str, ...]  # the file names the package installs
    package: str  # the Debian package that installs it


# The corpus's fonts, by short name. ukai is a brush (Kai) style, the closest to handwriting.
FONTS: dict[str, FontSpec] = {
    "ukai": FontSpec("AR PL UKai CN", ("ukai.ttc",), "fonts-arphic-ukai"),
    "uming": FontSpec("AR PL UMing CN", ("uming.ttc",), "fonts-arphic-uming"),
    "microhei": FontSpec("WenQuanYi Micro Hei", ("wqy-microhei.ttc",), "fonts-wqy-microhei"),
    "zenhei": FontSpec("WenQuanYi Zen Hei", ("wqy-zenhei.ttc",), "fonts-wqy-zenhei"),
}


@dataclass(frozen=True)
class NamedFont:
    name: str  # the short name (a FONTS key, or the file's stem for a path)
    path: Path
    face: int  # the face inside a .ttc collection


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


def system_fonts() -> list[Path]:
    """Font files in the mplfonts wheel and the usual system folders (no matplotlib needed)."""
    paths: list[Path] = []
    try:  # the mplfonts wheel ships Noto Sans CJK inside the package
        import mplfonts  # type: ignore[import-not-found]

        paths += sorted(Path(mplfonts.__file__).parent.rglob("*"))
    except ImportError:
        pass
    for folder in SYSTEM_DIRS:
        root = Path(folder).expanduser()
        if root.is_dir():
            paths += sorted(root.rglob("*"))
    return [p for p in paths if p.suffix.lower() in FONT_SUFFIXES]


def candidate_fonts() -> list[Path]:
    """Font files, likely-CJK names first, then the rest; each once."""
    from matplotlib import font_manager

    paths = [Path(f.fname) for f in font_manager.fontManager.ttflist] + system_fonts()
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


def _fontconfig(family: str) -> NamedFont | None:
    """The file and face fontconfig has for exactly this family; None without fontconfig."""
    try:
        listing = subprocess.run(
            ["fc-list", "--format", "%{file}|%{index}|%{family}\\n", f":family={family}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in listing.splitlines():
        file, _, rest = line.partition("|")
        index, _, families = rest.partition("|")
        if family in families.split(",") and Path(file).is_file():
            return NamedFont(family, Path(file), int(index or 0))
    return None


def _face_of(path: Path, family: str) -> int | None:
    """The face of a font file (or collection) whose family name is `family`."""
    from fontTools.ttLib import TTCollection, TTFont

    try:
        fonts = (
            TTCollection(str(path), lazy=True).fonts
            if path.suffix.lower() in (".ttc", ".otc")
            else [TTFont(str(path), lazy=True)]
        )
    except Exception:  # unreadable: not this font
        return None
    for face, font in enumerate(fonts):
        if family in {str(record) for record in font["name"].names if record.nameID == 1}:
            return face
    return None


def named_font(name: str) -> NamedFont:
    """A corpus font by short name (FONTS) or by file path; DataError naming the package if absent."""
    path = Path(name).expanduser()
    if path.suffix.lower() in FONT_SUFFIXES:
        if not path.is_file():
            raise DataError(f"glyphs.fonts: font file {path} does not exist")
        return NamedFont(path.stem, path, 0)
    spec = FONTS.get(name)
    if spec is None:
        raise DataError(f"glyphs.fonts: unknown font {name!r}; known: {', '.join(FONTS)} (or a font file path)")
    found = _fontconfig(spec.family)
    if found is not None:
        return NamedFont(name, found.path, found.face)
    for candidate in system_fonts():
        if candidate.name in spec.files:
            face = _face_of(candidate, spec.family)
            if face is not None:
                return NamedFont(name, candidate, face)
    raise DataError(
        f"glyphs.fonts: font {name!r} ({spec.family}) is not installed; install the Debian package "
        f"{spec.package} (apt-get install {spec.package}) or drop it from glyphs.fonts"
    )


def missing_characters(font: NamedFont, characters: str) -> str:
    """The characters the font's face does not map (its cmap), in the order given."""
    from fontTools.ttLib import TTFont

    try:
        ttfont = TTFont(str(font.path), fontNumber=font.face, lazy=True)
        cmap = ttfont.getBestCmap() or {}
        ttfont.close()
    except Exception as exc:
        raise DataError(f"{font.path}: cannot read font: {type(exc).__name__}: {exc}") from exc
    return "".join(ch for ch in characters if ord(ch) not in cmap)
