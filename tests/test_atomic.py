"""hccr.atomic: artifacts appear whole or not at all, with ordinary permissions."""

import os
import stat

import pytest

from hccr import atomic


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "out" / "a.json"
    atomic.write_json(target, {"x": 1})
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text().strip().startswith("{")
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]  # no temp left


def test_atomic_dir_replaces_whole_folder(tmp_path):
    target = tmp_path / "d"
    with atomic.atomic_dir(target) as tmp:
        (tmp / "one").write_text("1")
    with pytest.raises(ValueError):
        with atomic.atomic_dir(target) as tmp:
            (tmp / "two").write_text("2")
            raise ValueError
    assert [p.name for p in target.iterdir()] == ["one"]
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "f.txt", "x")
        with atomic.atomic_dir(tmp_path / "d"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
