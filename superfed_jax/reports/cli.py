"""Command line of the reports: one RUN_DIR gives its run report, several give the combined report.

    python -m superfed_jax.reports.cli RUN_DIR [RUN_DIR ...] [--out DIR] [--style {default,paper}]
                                       [--width INCHES] [--height INCHES]

``--style=paper`` draws every figure for a paper (`plot.PAPER`: no title, column widths, 8 pt text, shared
y axes, 300 dpi PNG); ``--width`` / ``--height`` set every figure's size in inches, in either style.
Exit status 2 and one ``error: ...`` line on bad input (an unknown style included).
"""
import argparse
import sys
from typing import Optional

from superfed_jax import _console
from superfed_jax.reports import compare
from superfed_jax.reports import plot
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
    # A plain string, checked by plot.style_named: argparse's `choices` would print a usage block and a
    # second line, where every other bad input here is one `error:` line.
    parser.add_argument("--style", default="default",
                        help="how the figures look: 'default' (titles, sized for a screen) or 'paper' (no "
                             f"title, {plot.PAPER_SINGLE} in wide for one axes and {plot.PAPER_DOUBLE} in for "
                             "several, 8 pt text, panels of one metric on one y axis, 300 dpi PNG)")
    parser.add_argument("--width", default=None, help="every figure's width in inches")
    parser.add_argument("--height", default=None,
                        help="every figure's height in inches (default: the style's, scaled with --width)")
    args = parser.parse_args(argv)
    try:
        style = plot.style_named(args.style, _inches("width", args.width), _inches("height", args.height))
        if len(args.run_dirs) == 1:
            result = run_report.write_run_report(args.run_dirs[0], args.out, style=style)
        else:
            result = compare.write_combined_report(args.run_dirs, args.out or args.run_dirs[0], style)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a report file that cannot be written: a directory in its place, no permission
        print(f"error: {os_error_message(error)}", file=sys.stderr)
        return 2
    print(f"wrote {result['report']} and {result['plot']}")
    return 0


def _inches(flag: str, text: Optional[str]) -> Optional[float]:
    """A --width / --height value as a float (None when not given); ValueError, one line, when it is not
    a number. `plot.style_named` checks that it is a sensible size."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--{flag}={text}: not a number of inches") from None


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
