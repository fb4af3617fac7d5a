"""A finished run's work directory read back: config, family, tracked archs, evaluation records, cost.

`read_run(workdir)` is what every report starts from; `select_best` picks the evaluation that reports
quote (the best mean validation value of the run's headline metric over the tracked archs: the highest
accuracy, or the lowest loss or perplexity; `eval.metric`, `superfed_jax.federated.metric`) and `arch_rows`
gives each tracked arch's size and metric there. Errors name the directory or file and the problem.
"""
import json
import math
import os
from typing import NamedTuple, Optional

import numpy as np

from superfed_jax import _json_file
from superfed_jax.federated import metric as metric_lib
from superfed_jax.supernet import archs as archs_lib
from superfed_jax.supernet import family as family_lib


class RunRecord(NamedTuple):
    """A finished run's work directory, read back."""

    workdir: str
    config: dict  # config.json
    family: family_lib.Family  # the run's family (`model.family`) on its space
    space_file: str  # 'space.json' or 'config.json': where the family's space came from
    tracked: dict  # name -> concrete arch, in the config's order
    records: list  # metrics.jsonl, one dict per evaluation
    cost: Optional[dict]  # cost.json, None when missing
    metric: metric_lib.Metric = metric_lib.ACCURACY  # the headline metric (config eval.metric, resolved)


# What to do about a damaged file of a finished run, by file name (appended to the message naming it).
_REPAIR = {
    "config.json": "the checkpoints keep the run's config (the 'config' entry of "
                   "checkpoints/STEP/host/metadata): restore config.json from there, or delete it and rerun "
                   "the training command in this workdir, which writes it again",
    "space.json": "delete it (the report then takes the space from config.json) or rerun the training "
                  "command in this workdir, which writes it again",
    "cost.json": "delete it (the report then leaves out the cost it gives) or rerun the training command in "
                 "this workdir, which writes it again",
}


def read_json(path: str) -> dict:
    """The JSON object in `path`; ValueError naming the file, the problem and what to do otherwise."""
    advice = _REPAIR.get(os.path.basename(path), "restore it from a copy of the run")
    return _json_file.read_object(path, advice)


def read_metrics(path: str) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = [(number, line) for number, line in enumerate(f, 1) if line.strip()]
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not text (byte {error.start} is not UTF-8): the file is damaged; "
                         "restore it from a copy of the run") from None
    records = []
    for number, line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}, line {number}: not valid JSON ({error})") from None
        if not isinstance(records[-1], dict) or "round" not in records[-1]:
            raise ValueError(f"{path}, line {number}: not an evaluation record (an object with 'round')")
    if not records:
        raise ValueError(f"{path}: no evaluation records")
    return records


def required_file(workdir: str, name: str) -> str:
    path = os.path.join(workdir, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{workdir}: no {name} here; is it the work directory of a finished run?")
    return path


def load_family(workdir: str, config: Optional[dict] = None) -> family_lib.Family:
    """The run's family (config.json's `model.family`, `model.conv_impl`, `model.dtype`; the defaults of
    a config without them) on its space: ``space.json`` (the final space, after the dataset's input shape
    and class count replaced the config's) if present, else the ``space`` fields of ``config.json``.

    `config` is the run's config.json when already read."""
    config_path = os.path.join(workdir, "config.json")
    if config is None and os.path.isfile(config_path):
        config = read_json(config_path)
    model = (config or {}).get("model") or {}
    try:
        family_class = family_lib.family_class(model.get("family", family_lib.DEFAULT_FAMILY))
    except ValueError as error:
        raise ValueError(f"{config_path}: {error}") from None
    path = os.path.join(workdir, "space.json")
    if os.path.isfile(path):
        fields = read_json(path)
    else:
        if config is None:
            config = read_json(required_file(workdir, "config.json"))
        fields, path = config.get("space"), config_path + " field 'space'"
    if not isinstance(fields, dict):
        raise ValueError(f"{path}: not the fields of the space of family {family_class.name!r} "
                         f"(a JSON object of them), but {fields!r}")
    try:
        return family_class.from_config(fields, conv_impl=model.get("conv_impl", "xla"),
                                        dtype=model.get("dtype", "float32"))
    except (TypeError, ValueError) as error:  # missing or unknown fields, a value the space rejects
        raise ValueError(f"{path}: {error}") from None


def space_text(family: family_lib.Family) -> str:
    """The family's name and space as one line of JSON: equal for runs on the same space (a report
    compares spaces, not how the runs computed: `conv_impl` and `dtype` may differ)."""
    return json.dumps({"family": family.name, "space": family.space_dict()}, sort_keys=True)


def setting(config: dict, dotted: str):
    """The value of a dotted field ('fl.rounds') of a config dict; None when missing."""
    for part in dotted.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def read_run(workdir: str) -> RunRecord:
    """Reads a work directory; FileNotFoundError / ValueError name the directory and the problem."""
    if not os.path.isdir(workdir):
        raise FileNotFoundError(f"{workdir}: no such directory")
    config = read_json(required_file(workdir, "config.json"))
    records = read_metrics(required_file(workdir, "metrics.jsonl"))
    family = load_family(workdir, config)
    try:
        tracked = archs_lib.tracked_archs(family, config.get("eval", {}).get("tracked", ""))
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{workdir}: config.json eval.tracked: {error}") from None
    try:
        metric = metric_lib.config_metric(config, family.metrics)
    except ValueError as error:
        raise ValueError(f"{workdir}: config.json {error}") from None
    cost_path = os.path.join(workdir, "cost.json")
    space_file = "space.json" if os.path.isfile(os.path.join(workdir, "space.json")) else "config.json"
    return RunRecord(workdir, config, family, space_file, tracked, records,
               read_json(cost_path) if os.path.isfile(cost_path) else None, metric)


# ---------------------------------------------------------------------------------------- selection


def select_best(records: list[dict], names, metric: metric_lib.Metric = metric_lib.ACCURACY) -> dict:
    """The record with the best mean validation ``metric`` over ``names`` (the first on ties): the highest
    accuracy, the lowest loss or perplexity.

    Records without every name's validation value do not compete; with none left (no validation
    split) the last record is returned. A NaN mean (a diverged evaluation) never wins.
    """
    keys = [metric.key(name, "val") for name in names]
    candidates = [r for r in records if all(k in r for k in keys)]
    if not candidates:
        return records[-1]

    def score(record):
        mean = metric.score(float(np.mean([record[k] for k in keys])))
        return -math.inf if math.isnan(mean) else mean

    return max(candidates, key=score)


def is_fedavg_baseline(config: dict) -> bool:
    """Whether a run's config is FedAvg of one arch (`config.fedavg_baseline`): a static one-arch pool."""
    fl = config.get("fl", {})
    if fl.get("heuristic") != "static" or not fl.get("pool"):
        return False
    try:
        pool = json.loads(fl["pool"])
    except json.JSONDecodeError:
        return False
    return isinstance(pool, list) and len(pool) == 1


def arch_key(family: family_lib.Family, arch) -> str:
    """A canonical string of an arch (equal for archs that are the same subnet)."""
    return archs_lib.arch_text(family, arch)


def _size(run: RunRecord, arch) -> tuple[int, int, str]:
    """(forward MACs of one image, params, where they come from) of one arch of a run.

    Without ``space.json`` the config's space may have the wrong input shape or class count (the data
    sets them), but ``cost.json`` holds the sizes of its baseline archs computed on the run's final space.
    """
    if run.space_file == "config.json" and run.cost:
        key = arch_key(run.family, arch)
        for entry in run.cost.get("baseline", {}).get("archs", []):
            if json.dumps(entry["arch"], sort_keys=True) == key:
                return int(entry["macs"]), int(entry["params"]), "cost.json"
    return run.family.macs(arch), run.family.params(arch), run.space_file


def arch_rows(run: RunRecord, best: Optional[dict] = None) -> list[dict]:
    """Per tracked arch: name, arch (JSON form), macs, params, round, and the run's metric on validation
    and test at ``best`` (``val_accuracy`` / ``test_accuracy``, or ``val_perplexity`` ...: `run.metric`).

    ``best`` defaults to `select_best` over the tracked archs; missing values are NaN.
    """
    metric = run.metric
    best = select_best(run.records, run.tracked, metric) if best is None else best
    rows = []
    for name, arch in run.tracked.items():
        macs, params, source = _size(run, arch)
        rows.append({"name": name, "arch": run.family.arch_to_json(arch), "macs": macs,
                     "params": params, "size_source": source, "round": int(best["round"]),
                     f"val_{metric.name}": float(best.get(metric.key(name, "val"), math.nan)),
                     f"test_{metric.name}": float(best.get(metric.key(name, "test"), math.nan))})
    return rows
