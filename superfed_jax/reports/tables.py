"""The reports' tables as CSV files beside report.md, and the Markdown lines that link the files.

A report's Markdown table rounds its numbers for reading; its CSV holds the same rows and columns at full
precision, in the same units (accuracies in %, MACs and params as counts), so a paper's table or a
spreadsheet starts from the numbers themselves.
"""
import csv
import math
import os

__all__ = ["write_csv", "csv_value", "files_line"]


def csv_value(value):
    """A cell: NaN and None as empty, floats at full precision (repr), anything else as str."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(value) if isinstance(value, float) else value


def write_csv(path: str, header: list[str], rows: list[list]) -> str:
    """Writes ``header`` and ``rows`` to ``path`` (comma-separated, RFC 4180 quoting); returns the path."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([csv_value(v) for v in row] for row in rows)
    return path


def files_line(out: str, paths: list[str]) -> str:
    """'Files: [a.csv](a.csv), [b.svg](b.svg).' with the paths relative to ``out`` (report.md's folder)."""
    names = [os.path.relpath(p, out) for p in paths]
    return "Files: " + ", ".join(f"[{n}]({n})" for n in names) + "."
