"""intdim/machine.py: the CPU's name, from /proc/cpuinfo or else platform."""

from __future__ import annotations

import builtins
import platform

from intdim import machine


def test_cpu_name_reads_the_model_name_line(monkeypatch, tmp_path):
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Test CPU 9000\nflags\t: a\n")
    real_open = builtins.open
    monkeypatch.setattr(
        builtins, "open", lambda p, *a, **k: real_open(fake if p == "/proc/cpuinfo" else p, *a, **k)
    )
    assert machine.cpu_name() == "Test CPU 9000"


def test_cpu_name_falls_back_to_platform_without_proc(monkeypatch):
    def no_proc(*a, **k):
        raise OSError("no /proc here")

    monkeypatch.setattr(builtins, "open", no_proc)
    assert machine.cpu_name() == (platform.processor() or platform.machine())
