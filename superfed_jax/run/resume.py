"""Resuming a run in its workdir: which config changes are allowed, and rewinding metrics.jsonl.

A resumed run must mean the same thing as the run that wrote the checkpoint. Fields that shape the state
or the sequence of rounds (space, model, data, clients, heuristic, schedule, client training, seed) must be
unchanged; fields that only say how long to run, how often to evaluate, log or checkpoint, how to report
cost, or how to lay the same computation out on the hardware may change. Which fields those are is
declared once, by `resumable=True` in `superfed_jax/config_schema.py`.
"""
import json
import os

from superfed_jax import _json_file
from superfed_jax import config_schema

# Dotted config prefixes that may differ between the run that saved a checkpoint and the one resuming it:
# the fields marked resumable in the schema, a whole section as 'section.' (derived, not a second list).
RESUMABLE_FIELDS = config_schema.resumable_prefixes()


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = list(value) if isinstance(value, tuple) else value
    return flat


def _resumable(field: str) -> bool:
    return any(field == p or (p.endswith(".") and field.startswith(p)) for p in RESUMABLE_FIELDS)


def _with_absent(flat: dict) -> dict:
    """`flat` with the fields it lacks that a config may lack (`config_schema.when_absent`) set to their
    `absent` value: what a run whose config predates such a field did."""
    return {**config_schema.when_absent(), **flat}


def config_differences(saved: dict, current: dict) -> list[str]:
    """'field: saved -> current' for every field that differs and may not change on resume.

    A field a config may lack counts as its `absent` value when missing, so a run saved before the field
    existed resumes under a config holding that value, and is refused under any other.
    """
    old, new = _with_absent(_flatten(saved)), _with_absent(_flatten(current))
    return [f"{field}: {old.get(field, '<absent>')!r} -> {new.get(field, '<absent>')!r}"
            for field in sorted(set(old) | set(new))
            if old.get(field) != new.get(field) and not _resumable(field)]


def check_resumable(saved: dict, current: dict, workdir: str) -> None:
    """Raises ValueError naming every field that differs from the checkpointed run's config."""
    differences = config_differences(saved, current)
    if differences:
        raise ValueError(
            f"{workdir} holds a run with a different config; these fields may not change on resume:\n  "
            + "\n  ".join(differences)
            + "\n(allowed to change: " + ", ".join(p.rstrip(".") for p in RESUMABLE_FIELDS)
            + "); use another --workdir for a new run")


def read_saved_config(workdir: str) -> dict | None:
    """The config.json a previous run wrote in `workdir`, or None when there is none.

    Raises:
      ValueError (`_json_file.JsonFileError`): config.json cannot be read, is not JSON or not a JSON
        object. The message names the file, what is wrong, and where the run keeps another copy of its
        config (every checkpoint's host JSON), so the user can repair it without losing the run.
    """
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return None
    return _json_file.read_object(path, saved_config_advice(workdir))


def saved_config_advice(workdir: str) -> str:
    """What to do about a damaged WORKDIR/config.json: where the checkpoints keep the run's config."""
    # The layout of checkpoint.host_json_path, spelt out here so this module stays free of orbax.
    steps = [name for name in os.listdir(os.path.join(workdir, "checkpoints"))
             if name.isdigit()] if os.path.isdir(os.path.join(workdir, "checkpoints")) else []
    if not steps:
        return ("nothing else in this workdir holds the run's config (no checkpoint): restore config.json "
                "from a copy, or use another --workdir")
    copy = os.path.join(workdir, "checkpoints", max(steps, key=int), "host", "metadata")
    return (f"the checkpoints keep the run's config (the 'config' entry of {copy}), so nothing is lost: "
            "delete config.json and rerun the training command to resume (it writes config.json again), "
            "or restore config.json from that entry")


class MetricsFileError(ValueError):
    """metrics.jsonl holds a line that is neither an evaluation record nor a torn last line."""


def read_metrics(path: str) -> list[dict]:
    """The evaluation records in the JSON-lines file at `path` ([] if there is none).

    Only the last line may be torn (a crash mid-write): it is dropped. Any other line that is blank, not
    JSON, or not a record with an integer `round` raises `MetricsFileError` naming the file and the line,
    so that no record after it is silently dropped.
    """
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline ending the last complete record
    records = []
    for number, raw in enumerate(lines, start=1):
        problem, record = _line_problem(raw)
        if problem is None:
            records.append(record)
        elif number == len(lines) and not raw.endswith(b"}"):
            break  # a torn write can only be the last line, and it never ends a complete record
        else:
            raise MetricsFileError(
                f"{path}, line {number}: {problem} (line starts {raw[:60]!r}); only the last line may be "
                "incomplete. Nothing was changed. Repair or remove that line by hand (each line is one "
                "JSON record with its 'round'), or use another --workdir")
    return records


def _line_problem(raw: bytes) -> tuple[str | None, dict | None]:
    """(what is wrong with one metrics line or None, the record)."""
    if not raw.strip():
        return "blank line", None
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"not JSON ({error})", None
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not a record", None
    if not isinstance(record.get("round"), int) or isinstance(record.get("round"), bool):
        return f"no integer 'round' (round={record.get('round')!r})", None
    return None, record


def rewind_metrics(path: str, last_round: int, write: bool = True) -> list[dict]:
    """Keeps the records of rounds <= `last_round` in the JSON-lines file at `path`; returns them.

    Records written after the checkpoint being resumed are dropped (they will be written again), so the
    file never holds a round twice. A torn last line (crash mid-write) is dropped too; any other bad line
    raises `MetricsFileError` before anything is written. The file is replaced atomically, and only if
    `write` (process 0 of a multi-host run).
    """
    records = [r for r in read_metrics(path) if r["round"] <= last_round]
    if not write:
        return records
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    os.replace(temporary, path)
    return records
