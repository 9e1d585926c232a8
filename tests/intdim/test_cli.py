import subprocess
import sys

import pytest

from intdim import demo
from intdim.cli import main


def test_demo_runs_and_reports_d90(capsys):
    results = demo.run(demo.DemoConfig(dims=(8, 512), steps=60, n_train=500, n_eval=500))
    out = capsys.readouterr().out
    assert "full fine-tuning accuracy" in out and "d90 (SAID)" in out
    assert set(results) == {"did", "said"} and set(results["did"]) == {8, 512}
    # more dimensions fit the task at least as well as very few
    assert results["said"][512] > results["said"][8]


def test_unknown_command_exits_nonzero():
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2


def test_console_entry_point_runs_as_module():
    r = subprocess.run(
        [sys.executable, "-m", "intdim.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0 and "demo" in r.stdout
