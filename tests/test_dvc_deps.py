"""dvc.yaml's code dependencies cover every module a stage's steps import, so `dvc status` sees code changes.

The import graph is read from the source (every `import hccr...` / `from hccr... import`,
function-level imports included), starting from the modules the stage's Snakemake rules run.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
RULE_FILES = {
    "data": ["data.smk", "casia.smk"],
    "train": ["train.smk", "glyphs.smk"],
    "sweep": ["train.smk", "sweep.smk", "glyphs.smk"],
    "writer_cv": ["train.smk", "writer_cv.smk", "glyphs.smk"],
    "report": ["evaluate.smk", "report.smk"],
    "export": ["export.smk"],
    "robustness": ["robustness.smk"],
}


def module_path(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def imported_modules(path: Path) -> set[str]:
    """hccr modules `path` imports (a `from hccr.x import y` counts y when y is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "hccr"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "hccr":
            found.add(node.module)
            found |= {
                f"{node.module}.{alias.name}" for alias in node.names if module_path(f"{node.module}.{alias.name}")
            }
    # a package's __init__ runs before any of its modules
    parents = {".".join(name.split(".")[:i]) for name in found for i in range(1, name.count(".") + 1)}
    return {name for name in found | parents if module_path(name)}


def closure(entries: set[str]) -> set[Path]:
    seen, todo = set(), list(entries)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += imported_modules(module_path(name))
    return {module_path(name) for name in seen}


def stage_entry_modules(stage: str) -> set[str]:
    """The modules the stage's rules run (`python -m hccr....`)."""
    text = "".join((ROOT / "workflow" / "rules" / name).read_text(encoding="utf-8") for name in RULE_FILES[stage])
    return set(re.findall(r"python -m (hccr(?:\.\w+)+)", text))


@pytest.mark.parametrize("stage", sorted(RULE_FILES))
def test_stage_deps_cover_every_module_its_steps_import(stage):
    entries = stage_entry_modules(stage)
    assert entries, f"no `python -m hccr...` found in the rules of stage {stage}"
    deps = [ROOT / dep for dep in DVC["stages"][stage]["deps"]]
    uncovered = sorted(
        str(path.relative_to(ROOT))
        for path in closure(entries)
        if not any(path == d or d in path.parents for d in deps)
    )
    assert not uncovered, f"dvc.yaml stage {stage!r} does not depend on {uncovered}"


def test_every_rule_module_belongs_to_a_stage():
    every = set()
    for path in (ROOT / "workflow" / "rules").glob("*.smk"):
        every |= set(re.findall(r"python -m (hccr(?:\.\w+)+)", path.read_text(encoding="utf-8")))
    staged = set().union(*(stage_entry_modules(stage) for stage in RULE_FILES))
    assert every - staged == set()
    assert set(DVC["stages"]) == set(RULE_FILES)


def test_the_import_reader_sees_function_level_imports():
    # hccr.serving.export imports the model card inside a function: it must still count.
    names = {p.relative_to(SRC).as_posix() for p in closure({"hccr.serving.export"})}
    assert "hccr/reporting/model_card.py" in names and "hccr/models/checkpoint.py" in names
