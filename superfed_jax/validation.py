"""Up-front validation of an experiment config, before any data is loaded or anything is compiled.

Two entry points, both pure Python (no data reads, no tracing, no compilation):

* `check_config(config)` checks the config alone: every field of the base config
  (`superfed_jax/config.py`), the search space, the arch lists and the data files it names.
* `check_against_data(config, num_train_examples, image_shape, natural)` checks what needs the data:
  that the partition over clients can be made at all from the training set (after the validation
  hold-out), that a natural partition's client count is fl.num_clients, and that the random crop's
  padding and the Cutout square fit the images.

The rule of each single field (kind, range, allowed values) is its entry in `superfed_jax.config_schema`;
this module adds the checks that involve several fields (chunk_size divides clients_per_round, the decay
lasts a round, a pool for 'static'/'dynamic', process_id < num_processes, noise needs a clip norm) and the
files, archs and the optional package that accounts differential privacy.

Both collect *every* problem they find and raise one `ValueError` whose message has one line per
problem, in the order of the base config's sections. Each line names the dotted field, its bad value
and what is allowed, in the style of the base config's documentation, e.g.

    fl.clients_per_round=9: must be between 1 and fl.num_clients=8

A check whose inputs are themselves bad is skipped, so that one mistake gives one line.
"""
import importlib.util
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Optional

import ml_collections
import numpy as np

from superfed_jax import _compilation_cache
from superfed_jax import _extras
from superfed_jax import config as config_lib
from superfed_jax import config_schema as schema
from superfed_jax.data import load as data_load
from superfed_jax.data import partition as partition_lib
from superfed_jax.federated import client_optimizer
from superfed_jax.federated.heuristics import POOL_HEURISTICS
from superfed_jax.federated import metric as metric_lib
from superfed_jax.federated.schedules import DECAYING_SCHEDULES
from superfed_jax.federated import server_optimizer
from superfed_jax.supernet import archs
from superfed_jax.supernet import family as family_lib
from superfed_jax.supernet.family import DEFAULT_FAMILY

__all__ = ["check_config", "check_against_data", "config_file_problem", "unknown_field"]

_MISSING = object()


# ------------------------------------------------------------------------------------------ helpers


def _is_int(value) -> bool:
    """Whether `value` is an integer (Python or NumPy), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value) -> bool:
    """Whether `value` is a finite int or float (Python or NumPy), not a bool."""
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_)) and math.isfinite(value))


def _divisors(n: int) -> list[int]:
    """The positive divisors of `n`, increasing."""
    return [d for d in range(1, n + 1) if n % d == 0]


def _as_dict(config) -> dict:
    """The config as nested plain dicts (references resolved)."""
    if isinstance(config, ml_collections.ConfigDict):
        return config.to_dict()
    if isinstance(config, Mapping):
        return ml_collections.ConfigDict(config).to_dict()
    raise ValueError(f"config of type {type(config).__name__}: need an ml_collections.ConfigDict "
                     "built from superfed_jax.config.base_config()")


class _Report:
    """Reads fields of a config (as nested dicts), checks them against the schema, collects problems."""

    def __init__(self, values: dict, family: str = DEFAULT_FAMILY):
        self.values = values
        self.family = family  # the `model.family` whose schema (space fields) applies
        self.problems: list[str] = []
        self.seen: set[str] = set()  # fields already checked (or deliberately skipped)

    def add(self, message: str) -> None:
        """Records a problem once (a field read by two checks is reported once)."""
        if message not in self.problems:
            self.problems.append(message)

    def has_problem(self, prefix: str) -> bool:
        """Whether a problem about a field starting with `prefix` was already reported."""
        return any(p.startswith(prefix) for p in self.problems)

    def raise_if_any(self) -> None:
        """Raises one ValueError listing every problem, one a line, if there are any."""
        if self.problems:
            raise ValueError("\n".join(self.problems))

    def skip(self, field: str) -> None:
        """Marks `field` as deliberately unchecked (e.g. data.alpha when no Dirichlet split reads it)."""
        self.seen.add(field)

    def get(self, field: str):
        """The value of dotted `field`; reports a missing required field and returns `_MISSING`."""
        self.seen.add(field)
        node = self.values
        for key in field.split("."):
            if not isinstance(node, Mapping) or key not in node:
                absent = schema.when_absent(self.family)
                if field in absent:
                    return absent[field]
                self.add(f"{field}: missing; every field of superfed_jax/config.py's base_config() "
                         "is needed")
                return _MISSING
            node = node[key]
        return node

    def check(self, field: str):
        """The value of `field` if it passes its schema check (kind and range or allowed values), else
        None (reported)."""
        value = self.get(field)
        if value is _MISSING:
            return None
        entry = schema.field(field, self.family)
        valid, suffix = _KIND_CHECKS[entry.kind](value, entry.allowed)
        if not valid:
            self.add(entry.problem(value) + suffix)
            return None
        return value


def _integer_in(value, allowed) -> tuple[bool, str]:
    """(valid, what to add to the message): an int, not a bool, in `allowed`."""
    if not _is_int(value):
        return False, f", not a {type(value).__name__}"
    return value in allowed, ""


def _number_in(value, allowed) -> tuple[bool, str]:
    """(valid, '') for a finite number in `allowed`."""
    return _is_number(value) and value in allowed, ""


_KIND_CHECKS = {
    "int": _integer_in,
    "number": _number_in,
    "flag": lambda value, allowed: (isinstance(value, (bool, np.bool_)), ""),
    "text": lambda value, allowed: (isinstance(value, str), ""),
    "choice": lambda value, allowed: (isinstance(value, str) and value in allowed, ""),
}


# ------------------------------------------------------------------------------------ field names


def _unknown_message(field: str, key: str, base: Mapping, prefix: str) -> str:
    """'field: unknown field (did you mean ...?); fields of SECTION: [...]' for `key` not in `base`."""
    where = f"fields of {prefix[:-1]}" if prefix else "top-level fields"
    return f"{field}: unknown field{schema.suggestion(key, list(base), prefix)}; {where}: {sorted(base)}"


def _check_known_fields(report: _Report, values: Mapping, base: Mapping, prefix: str = "") -> None:
    """Reports fields that the base config does not have (typos in config files add fields silently)."""
    for key, value in values.items():
        field = f"{prefix}{key}"
        if key not in base:
            report.add(_unknown_message(field, key, base, prefix))
        elif isinstance(base[key], Mapping):
            if isinstance(value, Mapping):
                _check_known_fields(report, value, base[key], f"{field}.")
            else:
                report.add(f"{field}={value!r}: must be a section with fields {sorted(base[key])}")


def unknown_field(name: str, family: str = DEFAULT_FAMILY) -> Optional[str]:
    """The message for dotted `name` if the base config of `family` has no such field or section, else None.

    The same line `check_config` gives for a config file that sets it, e.g.
    `fl.round: unknown field (did you mean fl.rounds?); fields of fl: [...]`.
    """
    node: object = config_lib.base_config(family).to_dict()
    prefix = ""
    for key in name.split("."):
        if not isinstance(node, Mapping):
            return f"{name}: unknown field; {prefix[:-1]} is a field, not a section"
        if key not in node:
            return _unknown_message(f"{prefix}{key}", key, node, prefix)
        node, prefix = node[key], f"{prefix}{key}."
    return None


# --------------------------------------------------------------------------------------- sections


def _check_top(report: _Report) -> None:
    """seed, dry_run, log_every_rounds, note."""
    for field in ("seed", "dry_run", "log_every_rounds", "note"):
        report.check(field)


def _check_compilation_cache(report: _Report, check_files: bool) -> None:
    """compilation_cache: '', 'off' or a directory; not a word meaning "off" (it would name a directory)
    and, with `check_files`, not an existing file."""
    setting = report.check("compilation_cache")
    if setting is not None:
        problem = _compilation_cache.setting_problem(setting, check_files)
        if problem:
            report.add(problem)


def _check_model(report: _Report) -> None:
    """model.conv_impl, model.dtype and model.execution (model.family is read first, by check_config)."""
    report.skip("model.family")
    report.check("model.conv_impl")
    report.check("model.dtype")
    report.check("model.execution")


def _check_data_values(report: _Report) -> None:
    """The data fields other than file paths: names, partition parameters, augmentation."""
    name = report.check("data.name")
    partition = report.check("data.partition")
    if partition == "natural" and name is not None and data_load.natural_needs_ids(name):  # .npz only
        report.add(data_load.natural_needs_ids(name))
    _check_data_kind(report, name, partition)
    if partition == "dirichlet":
        report.check("data.alpha")
    else:  # only the Dirichlet split reads it (and a bad partition is reported already)
        report.skip("data.alpha")
    for field in ("data.shards_per_client", "data.min_client_size", "data.val_fraction",
                  "data.crop_padding", "data.flip", "data.cutout_size", "data.seq_len", "data.scored_len",
                  "data.max_vocab"):
        report.check(field)
    seq_len, scored = report.get("data.seq_len"), report.get("data.scored_len")
    if name == "ptb" and _is_int(seq_len) and _is_int(scored) and scored > seq_len:  # only ptb reads them
        report.add(f"data.scored_len={scored}: more than data.seq_len={seq_len}, the window's length; "
                   f"need 1 <= data.scored_len <= {seq_len}")
    fraction = report.get("data.val_fraction")
    if name in data_load.OWN_VALIDATION and _is_number(fraction) and fraction:
        report.add(f"data.val_fraction={fraction}: data.name={name!r} has its own validation split "
                   "(valid.txt); set data.val_fraction=0")


def _check_data_kind(report: _Report, name, partition) -> None:
    """Text data needs a family that reads token windows, images one that reads images; token windows
    have no class per example, so the label-based splits cannot cut them."""
    if name not in data_load.DATASET_NAMES:
        return  # reported by the name's own check
    text = name in data_load.TEXT_DATASETS
    try:
        kind = family_lib.family_class(report.family).batch_kind
    except ValueError:
        return  # reported with model.family
    if text != (kind == family_lib.TOKENS):
        wants = "token windows (model.family='tcn')" if text else "images (model.family='ofa_resnet')"
        report.add(f"data.name={name!r}: its examples are {'token windows' if text else 'images'}, "
                   f"and model.family={report.family!r} reads {kind}; use a family that reads {wants}")
    if text and partition in partition_lib.LABEL_METHODS:
        report.add(f"data.partition={partition!r}: splits by class label, and data.name={name!r} holds "
                   "token windows with a target per position; use 'contiguous', 'iid' or 'natural' "
                   "(shakespeare, leaf_shakespeare)")


def _check_existing(report: _Report, field: str, path: str, is_dir: bool = False) -> None:
    """Reports `field` when `path` is not an existing file (or directory)."""
    exists = os.path.isdir(path) if is_dir else os.path.isfile(path)
    if not exists:
        kind = "directory" if is_dir else "file"
        state = "does not exist" if not os.path.exists(path) else f"is not a {kind}"
        report.add(f"{field}={path!r}: {state}; need an existing {kind}")


def _check_data_files(report: _Report) -> None:
    """data.path (required for name='npz'), data.archive and data.tfds_data_dir must exist if given."""
    name = report.get("data.name")
    path = report.check("data.path")
    if name in data_load.TEXT_DATASETS and path is not None:
        if not path:
            report.add(f"data.path='': data.name={name!r} needs data.path, "
                       f"{data_load.TEXT_PATH_HELP[name]}")
        elif not os.path.exists(path):
            report.add(f"data.path={path!r}: does not exist; need {data_load.TEXT_PATH_HELP[name]}")
    elif name == "npz" and path is not None:
        if not path:
            report.add("data.path='': data.name='npz' needs data.path, the .npz file "
                       "(keys x_train, y_train, x_test, y_test)")
        else:
            _check_existing(report, "data.path", path)
    archive = report.check("data.archive")
    if archive:
        _check_existing(report, "data.archive", archive)
    tfds_data_dir = report.check("data.tfds_data_dir")
    if tfds_data_dir:
        _check_existing(report, "data.tfds_data_dir", tfds_data_dir, is_dir=True)


def _check_per_round(report: _Report, num_clients: Optional[int]) -> Optional[int]:
    """fl.clients_per_round (P) in [1, fl.num_clients]; returns P if valid."""
    value = report.get("fl.clients_per_round")
    if value is _MISSING:
        return None
    if _is_int(value) and 1 <= value <= (num_clients or math.inf):
        return int(value)
    bound = f"between 1 and fl.num_clients={num_clients}" if num_clients else ">= 1"
    kind = "" if _is_int(value) else f" (an integer, not a {type(value).__name__})"
    report.add(f"fl.clients_per_round={value!r}: must be {bound}{kind}")
    return None


def _check_clients(report: _Report) -> None:
    """fl.num_clients (K), fl.clients_per_round (P) and fl.chunk_size (dividing P)."""
    num_clients = report.check("fl.num_clients")
    per_round = _check_per_round(report, num_clients)
    chunk = report.check("fl.chunk_size")
    if chunk and per_round is not None and per_round % chunk:
        report.add(f"fl.chunk_size={chunk}: must divide fl.clients_per_round={per_round} "
                   f"(0 = all of a round); divisors of {per_round}: {_divisors(per_round)}")


def _check_heuristic(report: _Report) -> None:
    """fl.heuristic, fl.count_random_extremes, fl.smallest_clients (leaving the largest arch a client),
    and that 'static'/'dynamic' have a pool."""
    heuristic = report.check("fl.heuristic")
    report.check("fl.count_random_extremes")
    smallest = report.check("fl.smallest_clients")
    per_round = report.get("fl.clients_per_round")
    if smallest is not None and _is_int(per_round) and smallest > max(1, per_round - 1):
        report.add(f"fl.smallest_clients={smallest!r}: must be at most fl.clients_per_round - 1 = "
                   f"{max(1, per_round - 1)} (one sampled client trains the largest subnet)")
    pool = report.check("fl.pool")
    if heuristic in POOL_HEURISTICS and pool == "":
        report.add(f"fl.pool='': fl.heuristic={heuristic!r} needs a pool, a JSON list of archs "
                   '(or names like "largest"), e.g. \'[{"d": [0, 0, 0, 0], "e": 0.1}]\'')


def _check_decay(report: _Report, schedule: Optional[str], rounds: Optional[int]) -> None:
    """fl.decay_fraction in (0, 1], giving at least one decay round for decaying schedules."""
    fraction = report.check("fl.decay_fraction")
    if fraction is None or rounds is None or schedule not in DECAYING_SCHEDULES:
        return
    if fraction * rounds < 1:
        report.add(f"fl.decay_fraction={fraction!r}: with fl.rounds={rounds} the {schedule} decay "
                   f"would last {fraction * rounds:g} rounds; need decay_fraction * rounds >= 1, i.e. "
                   f"fl.decay_fraction >= {1 / rounds:g}")


def _check_beta(report: _Report, rounds: Optional[int]) -> None:
    """fl.beta_schedule, fl.beta0, fl.beta_final, fl.decay_fraction and fl.weight_by_size (the weights)."""
    schedule = report.check("fl.beta_schedule")
    report.check("fl.beta0")
    report.check("fl.beta_final")
    _check_decay(report, schedule, rounds)
    report.check("fl.weight_by_size")


def _check_fl(report: _Report) -> None:
    """The fl section."""
    _check_clients(report)
    rounds = report.check("fl.rounds")
    _check_heuristic(report)
    _check_beta(report, rounds)
    report.check("fl.client_layout")


def _check_server(report: _Report) -> None:
    """The server section's values, then a user's own server.optimizer: it must import and return an optax
    transformation (built here with the section's values, before anything compiles)."""
    values = {entry.key: report.check(entry.name) for entry in schema.schema_fields(report.family)
              if entry.section == "server"}
    name = values["optimizer"]
    own_rule = isinstance(name, str) and name not in server_optimizer.SERVER_OPTIMIZERS
    if own_rule and not report.has_problem("server"):
        _add_error(report, lambda: server_optimizer.make_server_optimizer(ml_collections.ConfigDict(values)))


def _check_dp(report: _Report) -> None:
    """dp.clip_norm, dp.noise_multiplier, dp.delta (docs/algorithm.md 4.3): noise needs clipping (its std
    is noise_multiplier * clip_norm), clipping needs weights that do not depend on the data, and noise
    needs dp-accounting to report the privacy it spends (found before anything is compiled)."""
    clip = report.check("dp.clip_norm")
    noise = report.check("dp.noise_multiplier")
    report.check("dp.delta")  # a range check: delta in (0, 1)
    if noise and clip == 0:
        report.add(f"dp.noise_multiplier={noise!r}: needs dp.clip_norm > 0 (dp.clip_norm=0 turns "
                   "differential privacy off); the noise's std is noise_multiplier * clip_norm, so without "
                   "a clip norm there is no noise and nothing bounds a client's update")
    if clip and report.get("fl.weight_by_size") is True:
        report.add(f"fl.weight_by_size=True: cannot be used with dp.clip_norm={clip!r} > 0: weights "
                   "proportional to the clients' example counts depend on their data, so one client's "
                   "contribution to the noised sum, the sensitivity, would not be bounded; set "
                   "fl.weight_by_size=False")
    if noise and importlib.util.find_spec("dp_accounting") is None:
        report.add(f"dp.noise_multiplier={noise!r}: the privacy it spends is reported with "
                   + _extras.missing_extra_message("dp_accounting", "dp"))


def _check_section(report: _Report, section: str) -> None:
    """Every field of `section` against its schema entry alone (no field depends on another)."""
    for entry in schema.schema_fields(report.family):
        if entry.section == section:
            report.check(entry.name)


def _check_client(report: _Report, client_config) -> None:
    """The client section; Nesterov needs momentum; a user's client.optimizer must load and return an optax
    transformation for this section (built only when the section's other fields are good, since the
    user's function may read them)."""
    _check_section(report, "client")
    if report.get("client.nesterov") is True and report.get("client.momentum") == 0:
        report.add("client.nesterov=True: needs client.momentum > 0 (client.momentum=0.0); set "
                   "client.momentum in (0, 1) or client.nesterov=False")
    name = report.get("client.optimizer")
    if not isinstance(name, str) or name in client_optimizer.CLIENT_OPTIMIZERS:
        return  # a non-string was reported with the section
    if report.has_problem("client.") or client_config is None:
        _add_error(report, lambda: client_optimizer.load_rule(name))
    else:
        _add_error(report, lambda: client_optimizer.custom_rule(name, client_config))


def _check_distributed(report: _Report) -> None:
    """Multi-host settings (only used when distributed.initialize is True)."""
    report.check("distributed.initialize")
    address = report.get("distributed.coordinator_address")
    if address is not _MISSING and (not isinstance(address, str) or (address and ":" not in address)):
        report.add(f"distributed.coordinator_address={address!r}: allowed '' or 'host:port'")
    report.check("distributed.num_processes")
    process_id = report.check("distributed.process_id")
    processes = report.get("distributed.num_processes")
    if (isinstance(process_id, int) and isinstance(processes, int) and processes > 0
            and process_id >= processes):
        report.add(f"distributed.process_id={process_id}: must be < distributed.num_processes={processes}")


# Characters W&B refuses in a project name; caught here rather than by wandb.init after compiling.
_WANDB_PROJECT_FORBIDDEN = "/\\#?%:"


def _check_log(report: _Report) -> None:
    """log.wandb_project is '' or a W&B project name (no / \\ # ? % :, at most 128 characters)."""
    project = report.check("log.wandb_project")
    if isinstance(project, str) and (len(project) > 128 or project != project.strip()
                                     or any(c in project for c in _WANDB_PROJECT_FORBIDDEN)):
        report.add(f"log.wandb_project={project!r}: allowed '' or a W&B project name (at most 128 "
                   f"characters, no surrounding spaces, none of {' '.join(_WANDB_PROJECT_FORBIDDEN)})")
    report.check("log.wandb_mode")


def _check_the_rest(report: _Report) -> None:
    """Any schema field no section check read (a new field is checked by its schema entry at once).

    The space's fields are left to the family (`Family.from_config`), which owns their rules (see below).
    """
    for entry in schema.schema_fields(report.family):
        if entry.section != "space" and entry.name not in report.seen:
            report.check(entry.name)


# ------------------------------------------------------------------------------- space and archs


def _check_space_tuples(report: _Report) -> None:
    """The space's tuple fields hold numbers of their schema kind (the space itself would fail to
    compare a string with a number instead of naming the field)."""
    for entry in schema.schema_fields(report.family):
        if entry.section != "space" or entry.kind not in ("ints", "numbers"):
            continue
        value = report.get(entry.name)
        if value is _MISSING:
            continue
        element_ok = _is_int if entry.kind == "ints" else _is_number
        if not isinstance(value, (tuple, list)) or not all(element_ok(v) for v in value):
            report.add(entry.problem(value))


def _check_space_and_archs(report: _Report, config) -> None:
    """The family's space, then fl.pool and eval.tracked against it (skipped if the space is bad)."""
    _check_space_tuples(report)
    if report.has_problem("space"):  # unknown or misplaced space fields, already reported
        return
    try:
        family = config_lib.make_family(config)
    except ValueError as error:
        report.add(str(error))
        return
    pool = report.get("fl.pool")
    if isinstance(pool, str) and pool:
        _add_error(report, lambda: archs.parse_archs(family, pool, "fl.pool"))
    tracked = report.get("eval.tracked")
    if isinstance(tracked, str):  # a non-string was reported with the eval section
        _add_error(report, lambda: archs.tracked_archs(family, tracked))
    metric = report.get("eval.metric")
    if metric in metric_lib.METRIC_CHOICES:  # another value was reported with the eval section
        _add_error(report, lambda: metric_lib.headline_metric(metric, family.metrics))
    baseline = report.get("cost.baseline")
    if isinstance(baseline, str) and baseline:  # parsed now, not after training writes the report
        _add_error(report, lambda: archs.parse_archs(family, baseline, "cost.baseline"))


def _add_error(report: _Report, parse) -> None:
    """Calls `parse()`; reports the ValueError it raises (the parsers name their field)."""
    try:
        parse()
    except ValueError as error:
        report.add(str(error))


# ---------------------------------------------------------------------------------------- public


def _family_name(values: Mapping) -> str:
    """The config's `model.family` if it names a family that can be loaded; else ValueError (one line).

    Read before anything else: the family decides which `space` fields the config may have.
    """
    model = values.get("model")
    family = model.get("family", DEFAULT_FAMILY) if isinstance(model, Mapping) else DEFAULT_FAMILY
    if not isinstance(family, str):
        raise ValueError(schema.field("model.family").problem(family))
    schema.schema_fields(family)  # ValueError naming the value and what is allowed
    return family


def check_config(config: ml_collections.ConfigDict, check_files: bool = True) -> None:
    """Validates a whole experiment config before any data loading or compilation.

    Checks, in order: unknown fields (typos); seed, dry_run, log_every_rounds; model names; data
    names, partition parameters, augmentation and the files named by data.path / data.archive /
    data.tfds_data_dir; fl client counts, chunk size, rounds, heuristic and pool, beta schedule;
    client settings (client.nesterov needs client.momentum, a user's client.optimizer is loaded and
    built), server settings (a user's server.optimizer is loaded and built), eval, cost, checkpoint,
    memory, differential privacy, distributed and log settings, the compilation cache; the search
    space; fl.pool, eval.tracked and cost.baseline against it. Each field's kind, range and allowed
    values come from its entry in `superfed_jax.config_schema`. Integer fields must hold integers (not
    floats or bools) and real-number fields finite numbers.

    Args:
      config: a config built from `superfed_jax.config.base_config()` (or a nested mapping of the same
        fields).
      check_files: whether the data files must exist (and compilation_cache name no file); False for
        tools that read no data (the memory and cost command lines), which may run on a machine without
        the dataset.

    Raises:
      ValueError: listing every problem found, one line each, as `field=value: what is allowed`.
    """
    values = _as_dict(config)
    if not isinstance(config, ml_collections.ConfigDict):
        config = ml_collections.ConfigDict(values)
    family = _family_name(values)
    report = _Report(values, family)
    _check_known_fields(report, values, config_lib.base_config(family).to_dict())
    checks = (_check_top, _check_model, _check_data_values, _check_data_files, _check_fl, _check_server)
    for check in checks if check_files else [c for c in checks if c is not _check_data_files]:
        check(report)
    _check_client(report, config.get("client"))
    for section in ("eval", "cost", "checkpoint", "memory"):
        _check_section(report, section)
    _check_dp(report)
    _check_distributed(report)
    _check_log(report)
    _check_compilation_cache(report, check_files)
    _check_the_rest(report)
    _check_space_and_archs(report, config)
    report.raise_if_any()


def config_file_problem(argv: Sequence[str]) -> Optional[str]:
    """The message if the last `--config=PATH[:ARG]` in `argv` (argv[0]: the program) names no file.

    For command lines with a config-file flag: absl would otherwise report a missing file as a
    traceback, or as unknown `--config.X` flags when overrides follow.
    """
    value = None
    for position, arg in enumerate(argv[1:], start=1):
        if arg == "--":
            break
        if re.match(r"^--?config=", arg):
            value = arg.split("=", 1)[1]
        elif re.match(r"^--?config$", arg) and position + 1 < len(argv):
            value = argv[position + 1]
    if value is None:
        return None
    path = value.split(":", 1)[0]  # as ml_collections splits it
    if os.path.isfile(path):
        return None
    state = "is not a file" if os.path.exists(path) else "does not exist"
    return f"--config={value}: {path!r} {state}; need a config file such as configs/cifar10.py"


def _check_partition_size(report: _Report, num_examples: int,
                          natural: Optional[partition_lib.NaturalSplit]) -> None:
    """Whether the configured partition can give every client what it needs from `num_examples`."""
    if report.get("data.partition") == "natural" and natural is not None:
        _check_natural(report, natural)
        return
    clients = report.check("fl.num_clients")
    if clients is None:
        return
    if clients > num_examples:
        report.add(f"fl.num_clients={clients}: more clients than the {num_examples} training "
                   f"examples (after the validation hold-out); need fl.num_clients <= {num_examples}")
        return
    partition = report.get("data.partition")
    if partition == "dirichlet":
        _check_min_client_size(report, clients, num_examples)
    elif partition == "shards":
        _check_shards(report, clients, num_examples)


def _check_natural(report: _Report, natural: partition_lib.NaturalSplit) -> None:
    """Natural: fl.num_clients is the data's client count, and fl.clients_per_round at most that."""
    problem = partition_lib.natural_problem(natural, report.check("fl.num_clients"))
    if problem:
        report.add(problem)
    per_round = report.get("fl.clients_per_round")
    if natural.num_clients and _is_int(per_round) and per_round > natural.num_clients:
        report.add(f"fl.clients_per_round={per_round}: more than the {natural.num_clients} clients "
                   f"data.partition='natural' takes from the data; need at most {natural.num_clients}")


def _check_min_client_size(report: _Report, clients: int, num_examples: int) -> None:
    """Dirichlet: `clients * data.min_client_size` may not exceed the training examples."""
    min_size = report.check("data.min_client_size")
    if min_size is not None and clients * min_size > num_examples:
        report.add(
            f"data.min_client_size={min_size}: no partition can give every one of "
            f"fl.num_clients={clients} clients data.min_client_size={min_size} examples ({clients} * "
            f"{min_size} = {clients * min_size} > {num_examples} training examples); lower "
            f"data.min_client_size to at most {num_examples // clients} or fl.num_clients to at most "
            f"{num_examples // min_size} (or hold out less with data.val_fraction)")


def _check_shards(report: _Report, clients: int, num_examples: int) -> None:
    """Shards: `clients * data.shards_per_client` shards may not exceed the training examples."""
    shards = report.check("data.shards_per_client")
    if shards is not None and clients * shards > num_examples:
        report.add(
            f"data.shards_per_client={shards}: fl.num_clients={clients} clients * {shards} shards = "
            f"{clients * shards} shards, more than the {num_examples} training examples; lower "
            f"data.shards_per_client to at most {num_examples // clients} or fl.num_clients to at most "
            f"{num_examples // shards}")


def _check_augmentation_fits(report: _Report, image_shape) -> None:
    """data.crop_padding below and data.cutout_size at most the image's shorter side."""
    side = min(int(image_shape[0]), int(image_shape[1]))
    size = f"{int(image_shape[0])}x{int(image_shape[1])}"
    padding = report.check("data.crop_padding")
    if padding is not None and padding >= side:
        report.add(f"data.crop_padding={padding}: not smaller than the side of the {size} images, so "
                   f"some crops would be padding only; use 0 (no crop) to {side - 1}")
    cutout = report.check("data.cutout_size")
    if cutout is not None and cutout > side:
        report.add(f"data.cutout_size={cutout}: larger than the {size} images, so the Cutout square "
                   f"would blank most or all of every image; use 0 (no Cutout) to {side}")


def check_against_data(config: ml_collections.ConfigDict, num_train_examples: int,
                       image_shape: Optional[tuple] = None,
                       natural: Optional[partition_lib.NaturalSplit] = None) -> None:
    """Validates the parts of a config that depend on the data.

    Call it after `check_config` and after loading the data, with the number of training examples
    left after the validation hold-out (the examples that are partitioned over the clients).

    Args:
      config: an experiment config that passed `check_config`.
      num_train_examples: N, the size of the training split.
      image_shape: `(H, W, ...)` of the images; None skips the augmentation checks.
      natural: for data.partition='natural', the data's clients (`partition.natural_partition` of the
        training rows' client ids with data.min_client_size); None skips the client-count checks.

    Raises:
      ValueError: if there are more clients than examples, if a Dirichlet partition cannot give every
        client `data.min_client_size` examples, if a shards partition needs more shards than
        examples, if a natural partition's client count is not fl.num_clients (or below
        fl.clients_per_round, or zero), or if data.crop_padding or data.cutout_size do not fit the
        images; one line per problem.
    """
    if not _is_int(num_train_examples) or num_train_examples < 0:
        raise ValueError(f"num_train_examples={num_train_examples!r}: must be a non-negative integer")
    report = _Report(_as_dict(config))
    if num_train_examples == 0:
        report.add("the training set is empty (0 examples after the data.val_fraction hold-out); "
                   "check the data source and data.val_fraction")
    else:
        _check_partition_size(report, int(num_train_examples), natural)
    if image_shape is not None:
        _check_augmentation_fits(report, image_shape)
    report.raise_if_any()
