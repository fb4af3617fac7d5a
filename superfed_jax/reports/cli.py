"""Command line of the reports: one RUN_DIR gives its run report, several give the combined report.

    python -m superfed_jax.reports.cli RUN_DIR [RUN_DIR ...] [--out DIR]

Exit status 2 and ``error: ...`` on bad input.
"""
import argparse
import sys
from typing import Optional

from superfed_jax import _console
from superfed_jax.reports import compare
from superfed_jax.reports import run_report


def main(argv: Optional[list] = None) -> int:
    """The command line; returns the exit status (2 on bad input, with ``error: ...`` on stderr)."""
    parser = argparse.ArgumentParser(
        prog="python -m superfed_jax.reports.cli",
        description="One RUN_DIR: its report. Several: weight-shared runs (one per seed) combined with "
                    "FedAvg runs of single archs (configs/X.py:fedavg=ARCH, one per arch and seed) into one "
                    "report with tables (also as CSV) and figures (PNG and SVG).")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="work directories of finished runs")
    parser.add_argument("--out", default=None, help="where report.md and its figures and CSV files go "
                                                   "(default: the first RUN_DIR)")
    args = parser.parse_args(argv)
    try:
        if len(args.run_dirs) == 1:
            result = run_report.write_run_report(args.run_dirs[0], args.out)
        else:
            result = compare.write_combined_report(args.run_dirs, args.out or args.run_dirs[0])
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a report file that cannot be written: a directory in its place, no permission
        print(f"error: {os_error_message(error)}", file=sys.stderr)
        return 2
    print(f"wrote {result['report']} and {result['plot']}")
    return 0


def os_error_message(error: OSError) -> str:
    """One line for a file the report cannot read or write: the path, why, and what to do."""
    path = error.filename or "a report file"
    reason = error.strerror or str(error)
    if isinstance(error, IsADirectoryError):
        return (f"cannot write {path}: it is a directory; the report writes a file there. Move or remove "
                "that directory, or give --out=DIR to write the report elsewhere")
    return f"cannot read or write {path}: {reason}; fix that, or give --out=DIR to write the report elsewhere"


def console() -> None:
    """The `superfed-report` command: the same as `python -m superfed_jax.reports.cli`."""
    _console.quiet_backend_probe()
    sys.exit(main())


if __name__ == "__main__":
    console()
