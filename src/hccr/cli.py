"""`hccr <command> ...`: one console script over the step modules' own CLIs."""

from __future__ import annotations

import importlib
import sys

# command -> module whose `main(argv) -> int` implements it
COMMANDS = {
    "fetch": "hccr.data.fetch",
    "index": "hccr.data.index",
    "resize": "hccr.data.resize",
    "subset": "hccr.data.subset",
    "glyphs": "hccr.data.glyphs",
    "glyphs-split": "hccr.data.glyphs_split",
    "casia": "hccr.data.casia_steps",
    "train": "hccr.training.train",
    "launch": "hccr.training.launch",
    "sweep": "hccr.evaluation.sweep",
    "writer-cv": "hccr.evaluation.writer_cv",
    "writer-cv-plots": "hccr.reporting.writer_cv",
    "evaluate": "hccr.evaluation.evaluate",
    "plots": "hccr.reporting.plots",
    "report": "hccr.reporting.report",
    "export": "hccr.serving.export",
    "predict": "hccr.serving.predict",
    "serve": "hccr.serving.serve",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print("usage: hccr <command> [args...]\n\ncommands:\n  " + "\n  ".join(COMMANDS))
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
