"""Helpers to drive slurm/dev-cluster/up.sh and down.sh from Python (used by conftest.py and the
tests; a plain module because tests/ has no packages and two conftest modules would collide)."""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEV_CLUSTER = REPO / "slurm" / "dev-cluster"
UP = DEV_CLUSTER / "up.sh"
DOWN = DEV_CLUSTER / "down.sh"
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")
# Generous: on a fresh CI machine up.sh first installs the Debian packages.
UP_TIMEOUT_S = 900
DOWN_TIMEOUT_S = 180


@dataclass(frozen=True)
class SlurmCluster:
    """What a test needs to know about the running cluster."""

    base_dir: Path
    env: dict[str, str]  # the variables up.sh exported (SLURM_CONF, ...), already in os.environ

    @property
    def log_dir(self) -> Path:
        return self.base_dir / "log"


def parse_exports(stdout: str) -> dict[str, str]:
    """Parse up.sh's stdout, which must consist of `export NAME=value` lines only."""
    env = {}
    for line in stdout.splitlines():
        if not line.strip():
            continue
        words = shlex.split(line)
        if len(words) != 2 or words[0] != "export" or "=" not in words[1]:
            raise ValueError(f"up.sh printed a line that is not an export: {line!r}")
        name, value = words[1].split("=", 1)
        env[name] = value
    return env


def run_up(base_dir: Path, timeout: float = UP_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(UP)],
        env={**os.environ, "INTDIM_SLURM_DIR": str(base_dir)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_down(base_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DOWN), *args],
        env={**os.environ, "INTDIM_SLURM_DIR": str(base_dir)},
        capture_output=True,
        text=True,
        timeout=DOWN_TIMEOUT_S,
        check=False,
    )
