"""Atomic artifact writes: write to a temporary file beside the target, then rename.

A step that is interrupted leaves either the old artifact or none, never half a file,
so rerunning it is always safe. Temporaries carry the host and process id in their name
(`.NAME.HOST.PID.RANDOM.tmp`): a SIGKILL leaves one behind, and the next write of the same
target on that host removes those whose process is gone (`sweep_stale`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def _tmp_prefix(target: Path) -> str:
    return f".{target.name}.{_host()}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep_stale(target: str | os.PathLike) -> list[Path]:
    """Remove temporaries of `target` left by killed writers on this host; return what went.

    Only names this module makes are touched (`.NAME.HOST.PID.*`, and `atomic_dir`'s
    `.NAME.old` once NAME is back), and only when HOST is this machine and PID is gone,
    so a live writer here or on another node sharing the folder keeps its temporary.
    """
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        return []
    pattern = re.compile(re.escape(f".{target.name}.{_host()}.") + r"(\d+)\.")
    removed = []
    for entry in parent.iterdir():
        match = pattern.match(entry.name)
        stale = match is not None and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1)))
        if entry.name == f".{target.name}.old" and target.exists():
            stale = True  # a swap killed after its second rename: the new output is in place
        if stale:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only on success.

    `suffix` defaults to the target's own suffix, so writers that infer the format from
    the name (np.save, torch.save, matplotlib) keep working.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(target)
    fd, tmp = tempfile.mkstemp(
        prefix=_tmp_prefix(target),
        suffix=suffix if suffix is not None else "".join(target.suffixes) + ".tmp",
        dir=target.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes 0600 files; give the artifact the permissions a plain open() would.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; it replaces `target` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(target)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(target), suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
        with _kill_signals_deferred():
            if target.exists():
                old = target.with_name(f".{target.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def _kill_signals_deferred() -> Iterator[None]:
    """SIGTERM and SIGINT wait until the block is done (then arrive as usual).

    A folder swap is two renames and the old folder's removal: a SIGTERM between them left
    `.NAME.old` behind, or no output at all between the renames. Held back, it finds the new
    output in place and nothing else. (SIGKILL cannot be held: `sweep_stale` covers it.)
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | os.PathLike, data: Any) -> None:
    write_text(target, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def write_csv(target: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame as CSV (no index), atomically."""
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False)
