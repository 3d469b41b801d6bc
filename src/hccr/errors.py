"""Errors that reach the user: each message names the file, row or key at fault."""

import functools
import signal
import sys
import threading
from collections.abc import Callable


class HccrError(Exception):
    """Base class: CLIs print `error: <message>` and exit with status 2."""


class DataError(HccrError):
    """The dataset (archive, CSV, images, splits) is missing, malformed or inconsistent."""


class ConfigError(HccrError):
    """params.yaml (or an override) names an unknown key or an impossible value."""


def _terminate(signum: int, _frame) -> None:
    raise SystemExit(128 + signum)


def reports_errors(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a CLI `main(argv) -> int`: an HccrError becomes `error: <message>` and status 2.

    SIGTERM (what Snakemake, SLURM and `kill` send) becomes SystemExit(143) while `main` runs,
    so `finally` blocks and hccr.atomic remove their temporaries instead of leaving them.
    Every step's CLI shares this contract, so it lives here once rather than in each main.
    """

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        previous = None
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            return main(argv)
        except HccrError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper
