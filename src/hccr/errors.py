"""Errors that reach the user: each message names the file, row or key at fault."""

import functools
import sys
from typing import Callable


class HccrError(Exception):
    """Base class: CLIs print `error: <message>` and exit with status 2."""


class DataError(HccrError):
    """The dataset (archive, CSV, images, splits) is missing, malformed or inconsistent."""


class ConfigError(HccrError):
    """params.yaml (or an override) names an unknown key or an impossible value."""


def reports_errors(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a CLI `main(argv) -> int`: an HccrError becomes `error: <message>` and status 2.

    Every step's CLI shares this contract, so it lives here once rather than in each main.
    """

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except HccrError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return wrapper
