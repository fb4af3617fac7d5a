"""Up-front validation of an experiment config, before any data is loaded or anything is compiled.

Two entry points, both pure Python (no data reads, no tracing, no compilation):

* `check_config(config)` checks the config alone: every field of the base config
  (`superfed_jax/config.py`), the search space, the arch lists and the data files it names.
* `check_against_data(config, num_train_examples)` checks what needs the size of the training set
  (after the validation hold-out): that the partition over clients can be made at all.

Both collect *every* problem they find and raise one `ValueError` whose message has one line per
problem, in the order of the base config's sections. Each line names the dotted field, its bad value
and what is allowed, in the style of the base config's documentation, e.g.

    fl.clients_per_round=9: must be between 1 and fl.num_clients=8

A check whose inputs are themselves bad is skipped, so that one mistake gives one line.
"""
import dataclasses
import difflib
import math
import os
from collections.abc import Mapping
from typing import Optional, Sequence

import ml_collections
import numpy as np

from superfed_jax import config as config_lib
from superfed_jax.data.load import DATASET_NAMES
from superfed_jax.data.partition import PARTITION_METHODS
from superfed_jax.federated.heuristics import HEURISTICS
from superfed_jax.federated.schedules import SCHEDULES
from superfed_jax.supernet import space as space_lib
from superfed_jax.supernet.conv import CONV_IMPLS

__all__ = ["DTYPES", "DECAYING_SCHEDULES", "POOL_HEURISTICS", "check_config", "check_against_data"]

DTYPES = ("float32", "bfloat16")  # model.dtype
POOL_HEURISTICS = ("static", "dynamic")  # heuristics that draw archs from fl.pool
DECAYING_SCHEDULES = ("linear", "cosine")  # beta schedules that use fl.decay_fraction
# Fields that loaders read with a default (data/load.py), so older configs without them still work.
_OPTIONAL = {"dry_run": False, "data.path": "", "data.archive": "", "data.tfds_data_dir": "",
             "data.val_fraction": 0.0}
_MAX_SEED = 2 ** 63  # jax.random.key overflows from here; numpy's default_rng rejects negative seeds
_MISSING = object()


# ------------------------------------------------------------------------------------------ helpers


@dataclasses.dataclass(frozen=True)
class _Range:
    """An interval of allowed numbers; open or closed at either end."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        low, high = _format(self.low), _format(self.high)
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {low}"
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


def _format(bound: float) -> str:
    """A range bound as written in messages: integers without a decimal point."""
    return str(int(bound)) if math.isfinite(bound) and bound == int(bound) else f"{bound:g}"


_POSITIVE = _Range(0, low_open=True)
_AT_LEAST_1 = _Range(1)
_AT_LEAST_0 = _Range(0)
_UNIT = _Range(0, 1)


def _is_int(value) -> bool:
    """Whether `value` is an integer (Python or NumPy), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value) -> bool:
    """Whether `value` is a finite int or float (Python or NumPy), not a bool."""
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_)) and math.isfinite(value))


def _suggestion(value, allowed: Sequence[str], prefix: Optional[str] = None) -> str:
    """' (did you mean X?)' for a near miss among `allowed`, else ''.

    X is quoted (a value), or, with `prefix`, the dotted field name `prefix + X`.
    """
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    if not close:
        return ""
    return f" (did you mean {close[0]!r}?)" if prefix is None else f" (did you mean {prefix}{close[0]}?)"


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
    """Reads fields of a config (as nested dicts) and collects the problems found."""

    def __init__(self, values: dict):
        self.values = values
        self.problems: list[str] = []

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

    def get(self, field: str):
        """The value of dotted `field`; reports a missing required field and returns `_MISSING`."""
        node = self.values
        for key in field.split("."):
            if not isinstance(node, Mapping) or key not in node:
                if field in _OPTIONAL:
                    return _OPTIONAL[field]
                self.add(f"{field}: missing; every field of superfed_jax/config.py's base_config() "
                         "is needed")
                return _MISSING
            node = node[key]
        return node

    def integer(self, field: str, allowed: _Range, hint: str = "") -> Optional[int]:
        """The value of an integer field in `allowed`, or None (reported) if it is not one."""
        value = self.get(field)
        if value is _MISSING:
            return None
        if not _is_int(value) or value not in allowed:
            kind = "" if _is_int(value) else f", not a {type(value).__name__}"
            self.add(f"{field}={value!r}: must be an integer {allowed}{hint}{kind}")
            return None
        return int(value)

    def number(self, field: str, allowed: _Range, hint: str = "") -> Optional[float]:
        """The value of a real-number field in `allowed`, or None (reported) if it is not one."""
        value = self.get(field)
        if value is _MISSING:
            return None
        if not _is_number(value) or value not in allowed:
            self.add(f"{field}={value!r}: must be a number {allowed}{hint}")
            return None
        return float(value)

    def choice(self, field: str, allowed: Sequence[str]) -> Optional[str]:
        """The value of a field that names one of `allowed`, or None (reported)."""
        value = self.get(field)
        if value is _MISSING:
            return None
        if not isinstance(value, str) or value not in allowed:
            self.add(f"{field}={value!r}: allowed values are {list(allowed)}{_suggestion(value, allowed)}")
            return None
        return value

    def flag(self, field: str) -> Optional[bool]:
        """The value of a boolean field, or None (reported)."""
        value = self.get(field)
        if value is _MISSING:
            return None
        if not isinstance(value, (bool, np.bool_)):
            self.add(f"{field}={value!r}: must be True or False")
            return None
        return bool(value)

    def text(self, field: str) -> Optional[str]:
        """The value of a string field, or None (reported)."""
        value = self.get(field)
        if value is _MISSING:
            return None
        if not isinstance(value, str):
            self.add(f"{field}={value!r}: must be a string")
            return None
        return value


# ------------------------------------------------------------------------------------ field names


def _check_known_fields(report: _Report, values: Mapping, base: Mapping, prefix: str = "") -> None:
    """Reports fields that the base config does not have (typos in config files add fields silently)."""
    for key, value in values.items():
        field = f"{prefix}{key}"
        if key not in base:
            where = f"fields of {prefix[:-1]}" if prefix else "top-level fields"
            hint = _suggestion(key, list(base), prefix)
            report.add(f"{field}: unknown field{hint}; {where}: {sorted(base)}")
        elif isinstance(base[key], Mapping):
            if isinstance(value, Mapping):
                _check_known_fields(report, value, base[key], f"{field}.")
            else:
                report.add(f"{field}={value!r}: must be a section with fields {sorted(base[key])}")


# --------------------------------------------------------------------------------------- sections


def _check_top(report: _Report) -> None:
    """seed, dry_run, log_every_rounds."""
    seed = report.get("seed")
    if seed is not _MISSING and not (_is_int(seed) and 0 <= seed < _MAX_SEED):
        report.add(f"seed={seed!r}: must be an integer in [0, 2**63)")
    report.flag("dry_run")
    report.integer("log_every_rounds", _AT_LEAST_1)


def _check_model(report: _Report) -> None:
    """model.conv_impl and model.dtype."""
    report.choice("model.conv_impl", CONV_IMPLS)
    report.choice("model.dtype", DTYPES)


def _check_data_values(report: _Report) -> None:
    """The data fields other than file paths: names, partition parameters, augmentation."""
    report.choice("data.name", DATASET_NAMES)
    partition = report.choice("data.partition", PARTITION_METHODS)
    if partition == "dirichlet":
        report.number("data.alpha", _POSITIVE, " (the Dirichlet concentration)")
    report.integer("data.shards_per_client", _AT_LEAST_1)
    report.integer("data.min_client_size", _AT_LEAST_1)
    report.number("data.val_fraction", _Range(0, 1, high_open=True))
    report.integer("data.crop_padding", _AT_LEAST_0, " (0 disables the random crop)")
    report.flag("data.flip")
    report.integer("data.cutout_size", _AT_LEAST_0, " (0 disables Cutout)")


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
    path = report.text("data.path")
    if name == "npz" and path is not None:
        if not path:
            report.add("data.path='': data.name='npz' needs data.path, the .npz file "
                       "(keys x_train, y_train, x_test, y_test)")
        else:
            _check_existing(report, "data.path", path)
    archive = report.text("data.archive")
    if archive:
        _check_existing(report, "data.archive", archive)
    tfds_data_dir = report.text("data.tfds_data_dir")
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
    num_clients = report.integer("fl.num_clients", _AT_LEAST_1)
    per_round = _check_per_round(report, num_clients)
    chunk = report.integer("fl.chunk_size", _AT_LEAST_0, " (0 = all of a round)")
    if chunk and per_round is not None and per_round % chunk:
        report.add(f"fl.chunk_size={chunk}: must divide fl.clients_per_round={per_round} "
                   f"(0 = all of a round); divisors of {per_round}: {_divisors(per_round)}")


def _check_heuristic(report: _Report) -> None:
    """fl.heuristic, fl.count_random_extremes, and that 'static'/'dynamic' have a pool."""
    heuristic = report.choice("fl.heuristic", HEURISTICS)
    report.flag("fl.count_random_extremes")
    pool = report.text("fl.pool")
    if heuristic in POOL_HEURISTICS and pool == "":
        report.add(f"fl.pool='': fl.heuristic={heuristic!r} needs a pool, a JSON list of archs "
                   '(or names like "largest"), e.g. \'[{"d": [0, 0, 0, 0], "e": 0.1}]\'')


def _check_decay(report: _Report, schedule: Optional[str], rounds: Optional[int]) -> None:
    """fl.decay_fraction in (0, 1], giving at least one decay round for decaying schedules."""
    fraction = report.number("fl.decay_fraction", _Range(0, 1, low_open=True),
                             " (the decay may not outlast the run)")
    if fraction is None or rounds is None or schedule not in DECAYING_SCHEDULES:
        return
    if fraction * rounds < 1:
        report.add(f"fl.decay_fraction={fraction!r}: with fl.rounds={rounds} the {schedule} decay "
                   f"would last {fraction * rounds:g} rounds; need decay_fraction * rounds >= 1, i.e. "
                   f"fl.decay_fraction >= {1 / rounds:g}")


def _check_beta(report: _Report, rounds: Optional[int]) -> None:
    """fl.beta_schedule, fl.beta0, fl.beta_final and fl.decay_fraction."""
    schedule = report.choice("fl.beta_schedule", SCHEDULES)
    report.number("fl.beta0", _UNIT)
    beta_final = report.get("fl.beta_final")
    if beta_final is not _MISSING and not (_is_number(beta_final)
                                           and (beta_final == -1 or beta_final in _UNIT)):
        report.add(f"fl.beta_final={beta_final!r}: must be a number in [0, 1], or -1 for "
                   "1/fl.clients_per_round (plain averaging)")
    _check_decay(report, schedule, rounds)


CLIENT_LAYOUTS = ("auto", "vmap", "side_by_side")


def _check_fl(report: _Report) -> None:
    """The fl section."""
    _check_clients(report)
    rounds = report.integer("fl.rounds", _AT_LEAST_1)
    _check_heuristic(report)
    _check_beta(report, rounds)
    report.choice("fl.client_layout", CLIENT_LAYOUTS)


def _check_client(report: _Report) -> None:
    """The client section: local training."""
    report.integer("client.epochs", _AT_LEAST_1)
    report.integer("client.batch_size", _AT_LEAST_1)
    report.number("client.learning_rate", _POSITIVE)
    report.number("client.clip_norm", _POSITIVE)
    report.integer("client.scan_unroll", _AT_LEAST_0, " (0 = fully unrolled)")


def _check_eval(report: _Report) -> None:
    """The eval section's numbers (eval.tracked is checked with the archs)."""
    report.integer("eval.every_rounds", _AT_LEAST_1)
    report.integer("eval.batch_size", _AT_LEAST_1)


def _check_checkpoint(report: _Report) -> None:
    """How often to checkpoint and how many checkpoints to keep."""
    report.integer("checkpoint.every_rounds", _AT_LEAST_1)
    report.integer("checkpoint.keep", _AT_LEAST_1)


def _check_memory(report: _Report) -> None:
    """The up-front memory check."""
    report.flag("memory.check")
    report.number("memory.available_gib", _AT_LEAST_0, " (0 = ask the device)")


def _check_distributed(report: _Report) -> None:
    """Multi-host settings (only used when distributed.initialize is True)."""
    report.flag("distributed.initialize")
    address = report.get("distributed.coordinator_address")
    if not isinstance(address, str) or (address and ":" not in address):
        report.add(f"distributed.coordinator_address={address!r}: allowed '' or 'host:port'")
    report.integer("distributed.num_processes", _AT_LEAST_0, " (0 = from the environment)")
    process_id = report.integer("distributed.process_id", _Range(-1), " (-1 = from the environment)")
    processes = report.get("distributed.num_processes")
    if (isinstance(process_id, int) and isinstance(processes, int) and processes > 0
            and process_id >= processes):
        report.add(f"distributed.process_id={process_id}: must be < distributed.num_processes={processes}")


# ------------------------------------------------------------------------------- space and archs


def _check_space_and_archs(report: _Report, config) -> None:
    """The search space, then fl.pool and eval.tracked against it (skipped if the space is bad)."""
    if report.has_problem("space"):  # unknown or misplaced space fields, already reported
        return
    try:
        space = config_lib.search_space(config)
    except ValueError as error:
        report.add(str(error))
        return
    pool = report.get("fl.pool")
    if isinstance(pool, str) and pool:
        _add_error(report, lambda: space_lib.parse_archs(space, pool, "fl.pool"))
    tracked = report.get("eval.tracked")
    if isinstance(tracked, str):
        _add_error(report, lambda: space_lib.tracked_archs(space, tracked))
    elif tracked is not _MISSING:
        report.add(f"eval.tracked={tracked!r}: must be a string, a JSON object name -> arch, or ''")


def _add_error(report: _Report, parse) -> None:
    """Calls `parse()`; reports the ValueError it raises (the parsers name their field)."""
    try:
        parse()
    except ValueError as error:
        report.add(str(error))


# ---------------------------------------------------------------------------------------- public


def check_config(config: ml_collections.ConfigDict) -> None:
    """Validates a whole experiment config before any data loading or compilation.

    Checks, in order: unknown fields (typos); seed, dry_run, log_every_rounds; model names; data
    names, partition parameters, augmentation and the files named by data.path / data.archive /
    data.tfds_data_dir; fl client counts, chunk size, rounds, heuristic and pool, beta schedule;
    client, eval and checkpoint numbers; the search space; fl.pool and eval.tracked against it. Integer
    fields must hold integers (not floats or bools) and real-number fields finite numbers.

    Args:
      config: a config built from `superfed_jax.config.base_config()` (or a nested mapping of the same
        fields).

    Raises:
      ValueError: listing every problem found, one line each, as `field=value: what is allowed`.
    """
    values = _as_dict(config)
    if not isinstance(config, ml_collections.ConfigDict):
        config = ml_collections.ConfigDict(values)
    report = _Report(values)
    _check_known_fields(report, values, config_lib.base_config().to_dict())
    for check in (_check_top, _check_model, _check_data_values, _check_data_files, _check_fl,
                  _check_client, _check_eval, _check_checkpoint, _check_memory,
                  _check_distributed):
        check(report)
    _check_space_and_archs(report, config)
    report.raise_if_any()


def _check_partition_size(report: _Report, num_examples: int) -> None:
    """Whether the configured partition can give every client what it needs from `num_examples`."""
    clients = report.integer("fl.num_clients", _AT_LEAST_1)
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


def _check_min_client_size(report: _Report, clients: int, num_examples: int) -> None:
    """Dirichlet: `clients * data.min_client_size` may not exceed the training examples."""
    min_size = report.integer("data.min_client_size", _AT_LEAST_1)
    if min_size is not None and clients * min_size > num_examples:
        report.add(
            f"data.min_client_size={min_size}: no partition can give every one of "
            f"fl.num_clients={clients} clients data.min_client_size={min_size} examples ({clients} * "
            f"{min_size} = {clients * min_size} > {num_examples} training examples); lower "
            f"data.min_client_size to at most {num_examples // clients} or fl.num_clients to at most "
            f"{num_examples // min_size} (or hold out less with data.val_fraction)")


def _check_shards(report: _Report, clients: int, num_examples: int) -> None:
    """Shards: `clients * data.shards_per_client` shards may not exceed the training examples."""
    shards = report.integer("data.shards_per_client", _AT_LEAST_1)
    if shards is not None and clients * shards > num_examples:
        report.add(
            f"data.shards_per_client={shards}: fl.num_clients={clients} clients * {shards} shards = "
            f"{clients * shards} shards, more than the {num_examples} training examples; lower "
            f"data.shards_per_client to at most {num_examples // clients} or fl.num_clients to at most "
            f"{num_examples // shards}")


def check_against_data(config: ml_collections.ConfigDict, num_train_examples: int) -> None:
    """Validates the parts of a config that depend on the training set's size.

    Call it after `check_config` and after loading the data, with the number of training examples
    left after the validation hold-out (the examples that are partitioned over the clients).

    Args:
      config: an experiment config that passed `check_config`.
      num_train_examples: N, the size of the training split.

    Raises:
      ValueError: if there are more clients than examples, if a Dirichlet partition cannot give every
        client `data.min_client_size` examples, or if a shards partition needs more shards than
        examples; one line per problem.
    """
    if not _is_int(num_train_examples) or num_train_examples < 0:
        raise ValueError(f"num_train_examples={num_train_examples!r}: must be a non-negative integer")
    report = _Report(_as_dict(config))
    if num_train_examples == 0:
        report.add("the training set is empty (0 examples after the data.val_fraction hold-out); "
                   "check the data source and data.val_fraction")
    else:
        _check_partition_size(report, int(num_train_examples))
    report.raise_if_any()
