"""A real single-node SLURM cluster for tests, brought up by slurm/dev-cluster/up.sh.

Tests that need it are marked ``@pytest.mark.slurm`` and take the session-scoped ``slurm_cluster``
fixture. The cluster lives in a base directory under pytest's temporary directory, so it never
touches a developer's own dev cluster (default /tmp/intdim-slurm), and it is torn down with
down.sh at the end of the session, also when a test or the start-up fails.

This machine must be able to run SLURM (root on Debian 12; up.sh installs the packages). If it
cannot, the fixture fails loudly instead of skipping: a skipped cluster test proves nothing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from dev_cluster import SlurmCluster, parse_exports, run_down, run_up


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slurm: needs the real single-node SLURM dev cluster (slurm/dev-cluster/up.sh; "
        "root on Debian 12)",
    )


def check_can_run_slurm() -> None:
    """Fail (not skip) with the reason this machine cannot host the dev cluster."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        pytest.fail("the SLURM dev cluster needs Linux (Debian 12)")
    if os.geteuid() != 0:
        pytest.fail(
            "the SLURM tests need root: slurm/dev-cluster/up.sh installs Debian packages and "
            "runs the SLURM daemons as root. Run them as root (CI does), or deselect them with "
            "-m 'not slurm'."
        )
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.fail("SLURM is not installed and there is no apt-get to install it (need Debian 12)")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    check_can_run_slurm()
    base_dir = tmp_path_factory.mktemp("slurm-cluster")
    try:
        proc = run_up(base_dir)
        if proc.returncode != 0:
            pytest.fail(
                f"slurm/dev-cluster/up.sh failed (exit {proc.returncode}); logs in "
                f"{base_dir / 'log'}\n--- stderr ---\n{proc.stderr[-4000:]}",
            )
        env = parse_exports(proc.stdout)
        with pytest.MonkeyPatch.context() as mp:
            for name, value in env.items():
                mp.setenv(name, value)
            yield SlurmCluster(base_dir=base_dir, env=env)
    finally:
        down = run_down(base_dir)
        if down.returncode != 0:
            # An error at teardown, so that a cluster left running does not go unnoticed.
            raise RuntimeError(
                f"slurm/dev-cluster/down.sh failed (exit {down.returncode}):\n{down.stderr}"
            )
