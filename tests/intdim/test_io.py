"""Atomic writes (intdim/io.py): all or nothing, and the permissions a plain open() would give."""

from __future__ import annotations

import os
import stat

import pytest

from intdim import io


def test_atomic_write_gives_open_permissions_not_mkstemp_ones(tmp_path):
    old = os.umask(0o027)
    try:
        assert io._current_umask() == 0o027  # reading the umask leaves it as it was
    finally:
        os.umask(old)
    assert 0o666 & ~old == io.FILE_MODE
    io.atomic_write_text(tmp_path / "a.txt", "x")
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == io.FILE_MODE
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what open() gives, with the same umask
    assert stat.S_IMODE(plain.stat().st_mode) == io.FILE_MODE


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    io.atomic_write_json(target, {"a": 1})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(io.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        io.atomic_write_json(target, {"a": 2})
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
