"""Command line of the reports: one RUN_DIR gives its run report, several give the combined report.

    superfed-report RUN_DIR [RUN_DIR ...] [--out=DIR] [--style=default|paper] [--width=INCHES]
                    [--height=INCHES] [--json]
    python -m superfed_jax.reports.cli RUN_DIR ...      # the same

absl flags, as every command of the package (`--out DIR` works too, and flags may come before or after the
RUN_DIRs). It prints the report's and its first figure's paths, relative to the current directory when
under it (`--json`: one JSON object with absolute paths).

``--style=paper`` draws every figure for a paper (`plot.PAPER`: no title, column widths, 8 pt text, shared
y axes, 300 dpi PNG); ``--width`` / ``--height`` set every figure's size in inches, in either style.
Exit status 2 and one ``error: ...`` line on bad input (an unknown style included).
"""
import os
import sys
from typing import Optional, Sequence

from absl import flags

from superfed_jax import _cli
from superfed_jax import _console
from superfed_jax import _readable
from superfed_jax.reports import compare
from superfed_jax.reports import plot
from superfed_jax.reports import run_report

PROGRAM = "superfed-report"
ABOUT = (f"{PROGRAM}: one RUN_DIR gives its report; several combine weight-shared runs (one per seed) with "
         "FedAvg runs of single archs (configs/X.py:fedavg=ARCH, one per arch and seed) into one report with "
         "tables (also as CSV) and figures (PNG and SVG).\n\n"
         f"usage: {PROGRAM} RUN_DIR [RUN_DIR ...] [--out=DIR] [--style=default|paper] [--width=INCHES] "
         "[--height=INCHES] [--json]")


def _main(argv: Sequence[str]) -> None:
    """Writes the report of the RUN_DIRs in `argv[1:]` (absl's main: program name first)."""
    run_dirs, values = list(argv[1:]), flags.FLAGS
    if not run_dirs:
        _cli.fail("no RUN_DIR given: name the work directory of a finished run (several: a combined report)")
    try:
        style = plot.style_named(values.style, _inches("width", values.width),
                                 _inches("height", values.height))
        if len(run_dirs) == 1:
            result = run_report.write_run_report(run_dirs[0], values.out, style=style)
        else:
            result = compare.write_combined_report(run_dirs, values.out or run_dirs[0], style)
    except (ValueError, FileNotFoundError) as error:
        if _cli.debugging():
            raise
        _cli.fail(str(error))
    except OSError as error:  # a report file that cannot be written: a directory in its place, no permission
        if _cli.debugging():
            raise
        _cli.fail(os_error_message(error))
    if values.json:
        print(_readable.json_line({"report": os.path.abspath(result["report"]),
                                   "plot": os.path.abspath(result["plot"])}))
    else:
        print(f"wrote {_readable.path(result['report'])} and {_readable.path(result['plot'])}")


def _define_flags() -> None:
    # Only when run as a program, so that importing this module defines no flags (see arch_size.py).
    flags.DEFINE_string("out", None, "Where report.md and its figures and CSV files go (default: the first "
                        "RUN_DIR).")
    # A plain string, checked by plot.style_named (whose message names the allowed styles), as before.
    flags.DEFINE_string("style", "default", "How the figures look: 'default' (titles, sized for a screen) "
                        f"or 'paper' (no title, {plot.PAPER_SINGLE} in wide for one axes and "
                        f"{plot.PAPER_DOUBLE} in for several, 8 pt text, panels of one metric on one y axis, "
                        "300 dpi PNG).")
    flags.DEFINE_string("width", None, "Every figure's width in inches.")
    flags.DEFINE_string("height", None, "Every figure's height in inches (default: the style's, scaled with "
                        "--width).")
    _cli.define_json_flag()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command for `argv` (the arguments after the program name; default: `sys.argv[1:]`); returns the
    exit status: 0, or 2 with one `error: ...` line on stderr."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        _cli.run(_main, _define_flags, argv=[PROGRAM, *argv], about=ABOUT, positional=True)
    except SystemExit as exit_:  # absl's app.run ends every command with sys.exit
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
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
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    console()
