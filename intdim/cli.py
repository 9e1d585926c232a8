"""The `intdim` command. It only parses arguments and hands off to a stage's entry point.

Stages are imported lazily, inside their subcommand, so `intdim` (the core) imports neither
`pretrain` nor `probe`. Bad input raises `UserError`; it is printed as one `error:` line and the
command exits with status 2.
"""

from __future__ import annotations

import argparse
import sys

from intdim.errors import UserError


def _demo(args: argparse.Namespace) -> int:
    from intdim.demo import main

    return main()


def _pretrain(args: argparse.Namespace) -> int:
    from pretrain.cli import run

    return run(args.config, args.overrides)


def _plot(args: argparse.Namespace) -> int:
    from probe.report_cli import plot_command

    return plot_command(args.dir)


def _table(args: argparse.Namespace) -> int:
    from probe.report_cli import table_command

    return table_command(args.dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="intdim",
        description="Intrinsic dimension (d90) of fine-tuning, measured while a model pretrains.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="a small model tuned in subspaces of several sizes (CPU)")
    demo.set_defaults(func=_demo)
    pre = sub.add_parser("pretrain", help="masked-LM pretraining with checkpoints (resumes)")
    pre.add_argument("config", help="a YAML file, e.g. configs/pretrain/tiny.yaml")
    pre.add_argument("overrides", nargs="*", metavar="key=value", help="override config fields")
    pre.set_defaults(func=_pretrain)
    plot = sub.add_parser("plot", help="the paper's figures (PNG and PDF) from a run's records")
    plot.add_argument("dir", help="a run dir, a probe output dir, or any dir holding records/")
    plot.set_defaults(func=_plot)
    table = sub.add_parser("table", help="Table 1 (model x task, SAID and DID d90) as Markdown")
    table.add_argument("dir", help="a dir holding records/ (or RUN_DIR with probe/records/)")
    table.set_defaults(func=_table)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
