"""A run's metrics read back for analysis: `load_run(workdir)`.

    from superfed_jax import load_run
    run = load_run("workdirs/digits_smoke")
    run.rounds        # one row per round (rounds.jsonl): round, beta, train_loss, seconds, ...
    run.evaluations   # one record per evaluation (metrics.jsonl): round, <arch>/val_accuracy, ...
    run.config        # config.json as a nested dict

The tables are pandas DataFrames when pandas is installed, else lists of dicts (pandas is not a dependency
of the package). It reads a run in progress too: a torn last line (a write the run is still making, or a
killed run's) is left out. Unlike `run_record.read_run` it needs no family, tracked archs or cost.json.
"""
import importlib
import importlib.util
import json
import os
from typing import Any, NamedTuple, Optional

from superfed_jax.reports import run_record

__all__ = ["RunLog", "load_run", "read_json_lines"]


class RunLog(NamedTuple):
    """What `load_run` returns: DataFrames with pandas (as_frames), else lists of dicts."""

    workdir: str
    config: dict  # config.json
    rounds: Any  # rounds.jsonl: one row per round
    evaluations: Any  # metrics.jsonl: one record per evaluation


def read_json_lines(path: str) -> list[dict]:
    """The JSON objects of a JSON-lines file, one per line ([] when the file is missing).

    Only the last line may be incomplete (the run is writing it, or was killed while writing it): it is
    left out. Any other bad line is a ValueError naming the file and the line.
    """
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline after the last complete line
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):
                break  # a torn last line
            raise ValueError(f"{path}, line {number}: not valid JSON ({error})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {number}: a JSON {type(row).__name__}, not an object")
        rows.append(row)
    return rows


def _use_frames(as_frames: Optional[bool]) -> bool:
    """Whether to return DataFrames: as asked, or (None) whenever pandas is installed."""
    if as_frames is None:
        return importlib.util.find_spec("pandas") is not None
    return as_frames


def _frame(rows: list[dict]):
    """The rows as a DataFrame, one column per field (a field a row lacks reads NaN)."""
    pandas = importlib.import_module("pandas")  # asked for explicitly or found installed
    return pandas.DataFrame.from_records(rows)


def load_run(workdir: str, as_frames: Optional[bool] = None) -> RunLog:
    """The per-round rows, the per-evaluation records and the config of the run in `workdir`.

    Args:
      workdir: a run's work directory (it holds config.json, rounds.jsonl and metrics.jsonl).
      as_frames: True for pandas DataFrames (ImportError without pandas), False for lists of dicts; None
        (default) for DataFrames when pandas is installed.

    Returns:
      A `RunLog(workdir, config, rounds, evaluations)`; rounds and evaluations in the files' order (by
      round). A run started by a version without rounds.jsonl has no rows.

    Raises:
      FileNotFoundError: `workdir` or its config.json does not exist (not a run directory).
      ValueError: a damaged file (named, with the line).
    """
    if not os.path.isdir(workdir):
        raise FileNotFoundError(f"{workdir}: no such run directory")
    config_path = os.path.join(workdir, "config.json")
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"{workdir}: no config.json, so not a run's work directory (or the run has "
                                "not started yet)")
    config = run_record.read_json(config_path)
    rounds = read_json_lines(os.path.join(workdir, "rounds.jsonl"))
    evaluations = read_json_lines(os.path.join(workdir, "metrics.jsonl"))
    if _use_frames(as_frames):
        rounds, evaluations = _frame(rounds), _frame(evaluations)
    return RunLog(workdir, config, rounds, evaluations)
