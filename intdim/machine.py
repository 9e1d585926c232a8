"""What machine a result came from: benchmarks and the demo's table name it, so that a rerun
elsewhere is compared against the right thing."""

from __future__ import annotations

import platform


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
