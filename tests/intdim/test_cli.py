import subprocess
import sys

import pytest

import intdim
from intdim import demo
from intdim.cli import main, parse_args


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


def test_version_prints_intdims_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"intdim {intdim.__version__}"


@pytest.mark.parametrize(
    "argv, overrides",
    [(["pretrain", "c.yaml", "--executor", "slurm", "--probe", "p.yaml", "max_updates=30"],
      ["max_updates=30"]),
     (["pretrain", "c.yaml", "seed=2", "--cluster", "k.yaml", "max_updates=30", "--probe-set",
       "search.k=3", "optim.lr=1e-4"], ["seed=2", "max_updates=30", "optim.lr=1e-4"]),
     (["d90", "search.k=2", "--model", "m", "--task", "t", "--out", "o",
       "finetune.subspace_max_steps=5", "--seed", "3"],
      ["search.k=2", "finetune.subspace_max_steps=5"]),
     (["watch", "RUN", "--probe", "p.yaml", "--executor", "local", "search.k=2"], ["search.k=2"])],
)  # fmt: skip
def test_key_value_overrides_are_taken_anywhere_on_the_line(argv, overrides):
    args = parse_args(argv)
    assert args.overrides == overrides  # in the order given: the last of a key wins
    if argv[0] == "pretrain" and "--probe-set" in argv:
        assert args.probe_set == ["search.k=3"] and args.cluster == "k.yaml"


@pytest.mark.parametrize(
    "argv",
    [["pretrain", "c.yaml", "--executor", "slurm", "--frobnicate"],
     ["pretrain", "c.yaml", "--executor", "slurm", "--frobnicate=1", "max_updates=3"],
     ["pretrain", "c.yaml", "--executor", "slurm", "stray"],
     ["status", "OUT", "key=value"]],
)  # fmt: skip
def test_unknown_options_and_stray_words_stay_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_d90_help_shows_the_defaults_a_measurement_runs_with(capsys):
    from intdim.cli import main

    with pytest.raises(SystemExit) as e:
        main(["d90", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for shown in ("--d-min D", "(default: 100)", "(default: 4,000,000)",
                  "finetune.full_epochs=10", "finetune.subspace_epochs=20",
                  "search.lr_hints=previous", "search.full_lrs=[1e-05, 2e-05, 3e-05]"):  # fmt: skip
        assert shown in text
