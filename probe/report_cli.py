"""`intdim plot DIR` and `intdim table DIR`: thin wrappers over probe.report for intdim/cli.py.

DIR is a pretraining run dir (records under DIR/probe/), a probe output dir, or any dir holding
`records/`. A dir without records raises `UserError` (printed as one `error:` line, status 2).
"""

from __future__ import annotations

from pathlib import Path

from intdim.io import check_writable_dir
from probe.report import PLOTS_DIR, load_records, plot_records, table_markdown


def plot_command(dir: str) -> int:
    """Write the figures into DIR/plots/ and print each written path, then what was skipped."""
    records = load_records(dir)
    out = Path(dir) / PLOTS_DIR
    check_writable_dir(out, "the plots directory", "make it writable, or copy DIR (its records/ "
                       "or probe/records/) somewhere writable and plot that")  # fmt: skip
    report = plot_records(records, out)
    for path in report.written:
        print(path)
    for name, reason in report.skipped.items():
        print(f"skipped {name}: {reason}")
    return 0


def table_command(dir: str) -> int:
    """Print Table 1 (Markdown) of the records under DIR."""
    print(table_markdown(load_records(dir)))
    return 0
