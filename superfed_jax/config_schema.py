"""The config schema: every field of an experiment config, declared once.

Each `Field` holds a field's default, its one-line documentation, its check (a kind with a range or the
allowed values) and whether a resumed run may change it. Everything else reads this table:

* `superfed_jax.config.base_config()` builds the base config from it (fields, defaults, order);
* `superfed_jax.validation.check_config` takes each field's kind, range and allowed values from it (and
  adds the checks that involve several fields);
* `superfed_jax.run.resume` takes the fields a resume may change from it;
* the command line (`superfed_jax.run.launch`) checks the type of every `--config.X=V` override with it.

The lists of allowed names belong to the modules that implement them (a heuristic name is defined where
the heuristic is); this module imports them, never the reverse.

Structured values (arch lists) are JSON strings so that every field can be overridden from the command
line, e.g. `--config.fl.pool='[{"d":[0,0,0,0],"e":0.1}]'`.
"""
import dataclasses
import difflib
import math
from typing import Any, Optional, Sequence, Union

from superfed_jax.data.load import DATASET_NAMES, OPTIONAL_FIELDS
from superfed_jax.data.partition import PARTITION_METHODS
from superfed_jax.federated.client import CLIENT_LAYOUTS
from superfed_jax.federated.heuristics import HEURISTICS
from superfed_jax.federated.schedules import SCHEDULES
from superfed_jax.supernet.conv import CONV_IMPLS
from superfed_jax.supernet.model import DTYPES
from superfed_jax.supernet.sliced import EXECUTIONS

__all__ = ["KINDS", "Range", "Field", "FIELDS", "SECTIONS", "field", "field_names", "resumable_fields",
           "resumable_prefixes", "when_absent", "suggestion"]

# int: an integer (not a bool); number: a finite int or float; flag: True or False; text: a string;
# choice: one of `allowed`; ints / numbers: a tuple of them (checked by the module that reads it).
KINDS = ("int", "number", "flag", "text", "choice", "ints", "numbers")
_REQUIRED = object()  # `Field.absent` of a field every config must have


@dataclasses.dataclass(frozen=True)
class Range:
    """An interval of allowed numbers, open or closed at either end, plus single extra values.

    `text` replaces the generated description (e.g. 'in [0, 2**63)' rather than 19 digits).
    """

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    also: tuple = ()  # single values allowed outside the interval (e.g. -1 = "derive it")
    text: str = ""

    def __contains__(self, value) -> bool:
        if value in self.also:
            return True
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        if self.text:
            return self.text
        low, high = _format(self.low), _format(self.high)
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {low}"
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


def _format(bound: float) -> str:
    """A range bound as written in messages: integers without a decimal point."""
    return str(int(bound)) if math.isfinite(bound) and bound == int(bound) else f"{bound:g}"


def suggestion(value, allowed: Sequence[str], prefix: Optional[str] = None) -> str:
    """' (did you mean X?)' for a near miss among `allowed`, else ''.

    X is quoted (a value), or, with `prefix`, the dotted field name `prefix + X`.
    """
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    if not close:
        return ""
    return f" (did you mean {close[0]!r}?)" if prefix is None else f" (did you mean {prefix}{close[0]}?)"


@dataclasses.dataclass(frozen=True)
class Field:
    """One config field: its dotted name, default, documentation, check and resume rule."""

    name: str  # dotted, e.g. 'fl.rounds'
    default: Any
    doc: str  # one line, as shown to users
    kind: str  # one of KINDS
    allowed: Union[Range, tuple, None] = None  # a Range (int, number) or the allowed names (choice)
    hint: str = ""  # appended to the range in messages, e.g. ' (0 disables Cutout)'
    resumable: bool = False  # may differ between a checkpointed run and the run that resumes it
    absent: Any = _REQUIRED  # the value loaders use when a config lacks the field (older configs)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"field {self.name}: kind={self.kind!r}; allowed kinds are {list(KINDS)}")
        if self.kind == "choice" and self.default not in self.allowed:
            raise ValueError(f"field {self.name}: default {self.default!r} is not among {self.allowed}")
        if isinstance(self.allowed, Range) and self.default not in self.allowed:
            raise ValueError(f"field {self.name}: default {self.default!r} is not {self.allowed}")

    @property
    def section(self) -> str:
        """The section holding the field ('' for a top-level field)."""
        return self.name.rpartition(".")[0]

    @property
    def key(self) -> str:
        """The field's name inside its section."""
        return self.name.rpartition(".")[2]

    @property
    def optional(self) -> bool:
        """Whether a config may lack the field (loaders then read `absent`)."""
        return self.absent is not _REQUIRED

    def requirement(self) -> str:
        """What a value must be, as the end of a 'field=value: ...' message."""
        if self.kind == "int":
            return f"must be an integer {self.allowed}{self.hint}"
        if self.kind == "number":
            return f"must be a number {self.allowed}{self.hint}"
        if self.kind == "flag":
            return "must be True or False"
        if self.kind == "text":
            return f"must be a string{self.hint}"
        if self.kind == "choice":
            return f"allowed values are {list(self.allowed)}"
        noun = "integers" if self.kind == "ints" else "numbers"
        return f"must be a tuple of {noun}, e.g. {str(tuple(self.default)).replace(' ', '')!r}{self.hint}"

    def problem(self, value) -> str:
        """The one-line message for a bad `value` of this field: 'field=value: what is allowed'."""
        hint = suggestion(value, self.allowed) if self.kind == "choice" else ""
        return f"{self.name}={value!r}: {self.requirement()}{hint}"


_AT_LEAST_1 = Range(1)
_AT_LEAST_0 = Range(0)
_POSITIVE = Range(0, low_open=True)
_UNIT = Range(0, 1)

# One-line documentation of each section, in the order of the base config.
SECTIONS = {
    "space": "The supernet family (docs/algorithm.md 2.1). input_size, input_channels and num_classes are "
             "replaced by the dataset's own values when training; they matter for cost commands that "
             "read no data.",
    "model": "How the supernet computes.",
    "data": "The dataset, its split over clients and the augmentation.",
    "fl": "The federated rounds: clients, subnet assignment and the aggregation weights.",
    "client": "Local training on a client (plain SGD, a fresh optimizer each round).",
    "eval": "Evaluation of the tracked archs.",
    "cost": "The compute and communication report against independently trained archs.",
    "checkpoint": "Saving the server state.",
    "distributed": "Multi-host runs (superfed_jax/run/distributed.py).",
    "memory": "The up-front estimate of one round's device memory.",
}

# Why these may change on resume: they say how long to run, how often to evaluate, log or checkpoint, how
# to report cost, or how to lay the same computation out on the hardware; results do not depend on them
# (except fl.rounds, whose change also moves the beta decay horizon, a fraction of it).
FIELDS = (
    Field("seed", 0, "root of all randomness: init, partition, sampling, assignment, training", "int",
          Range(0, 2 ** 63, high_open=True, text="in [0, 2**63)")),  # jax.random.key overflows from 2**63
    Field("dry_run", False, "only sample clients and assign archs for every round, write cost.json; "
          "no data", "flag", resumable=True, absent=False),
    Field("overwrite", False, "start over in a workdir that holds an earlier run: first delete that run's "
          "files (checkpoints, metrics, reports, config.json); without it such a workdir is resumed, or "
          "refused if it has results but no checkpoint. Drop it again to resume after an interruption",
          "flag", resumable=True, absent=False),

    Field("space.stem_width", 64, "stem conv output channels", "int", _AT_LEAST_1),
    Field("space.stage_widths", (256, 512, 1024, 2048), "output channels per stage", "ints"),
    Field("space.stage_strides", (1, 2, 2, 2), "stride of each stage's first block (1 or 2)", "ints"),
    Field("space.blocks_per_stage", 3, "supernet depth per stage; an arch keeps 1..blocks_per_stage of "
          "them", "int", _AT_LEAST_1),
    Field("space.expand_choices", (0.10, 0.14, 0.18, 0.22, 0.25), "middle width = "
          "make_divisible(width * e, divisor), strictly increasing in (0, 1]", "numbers"),
    Field("space.divisor", 8, "rounding of middle widths (use 1 for small spaces, so choices stay "
          "distinct)", "int", _AT_LEAST_1),
    Field("space.input_size", 32, "image height = width", "int", _AT_LEAST_1),
    Field("space.input_channels", 3, "image channels", "int", _AT_LEAST_1),
    Field("space.num_classes", 10, "classes of the head", "int", _AT_LEAST_1),

    Field("model.conv_impl", "im2col", "'im2col' (fast on CPU) or 'xla' (cuDNN on GPU); 'xla_mmgrad' "
          "for unvmapped clients on CPU", "choice", CONV_IMPLS),
    Field("model.dtype", "float32", "compute dtype of convolutions and matmuls", "choice", DTYPES),
    # Resumable: masks stay the representation, so the state is the same and results agree to float
    # rounding, like fl.chunk_size and fl.client_layout (tests/test_sliced.py).
    Field("model.execution", "auto", "'masked' runs the full-width supernet with masks (the reference); "
          "'sliced' computes only each chunk's widest subnet (a lax.cond per width group of a block, "
          "skipped blocks not run); 'auto' = sliced where measured faster (side by side on one CPU device, supernet of "
          "at least 0.1 GMACs per image), else masked "
          "(docs/performance.md 16)",
          "choice", EXECUTIONS, resumable=True, absent="masked"),

    Field("data.name", "cifar10", "the dataset", "choice", DATASET_NAMES),
    Field("data.path", "", "the .npz file when name='npz' (keys x_train, y_train, x_test, y_test)", "text",
          absent=OPTIONAL_FIELDS["path"]),
    Field("data.archive", "", "CIFAR binary archive (cifar-10-binary.tar.gz / cifar-100-binary.tar.gz)",
          "text", absent=OPTIONAL_FIELDS["archive"]),
    Field("data.tfds_data_dir", "", "a prepared TFDS data dir holding cifar10 / cifar100", "text",
          absent=OPTIONAL_FIELDS["tfds_data_dir"]),
    Field("data.val_fraction", 0.1, "share of the training set held out to select the best round",
          "number", Range(0, 1, high_open=True), absent=OPTIONAL_FIELDS["val_fraction"]),
    Field("data.partition", "dirichlet", "how the training set is split over clients (docs/algorithm.md 6)",
          "choice", PARTITION_METHODS),
    Field("data.alpha", 100.0, "Dirichlet concentration: 100 near-IID, 1 and 0.1 increasingly skewed",
          "number", _POSITIVE, " (the Dirichlet concentration)"),
    Field("data.shards_per_client", 2, "label shards per client for partition='shards'", "int",
          _AT_LEAST_1),
    Field("data.min_client_size", 10, "the Dirichlet split is redrawn until every client has this many "
          "examples", "int", _AT_LEAST_1),
    Field("data.crop_padding", 4, "random crop after zero padding by this many pixels (0 disables)", "int",
          _AT_LEAST_0, " (0 disables the random crop)"),
    Field("data.flip", True, "random horizontal flip", "flag"),
    Field("data.cutout_size", 16, "Cutout square side after normalization (0 disables)", "int",
          _AT_LEAST_0, " (0 disables Cutout)"),

    Field("fl.num_clients", 20, "K, the clients holding data", "int", _AT_LEAST_1),
    Field("fl.clients_per_round", 8, "P, sampled without replacement each round (at most K)", "int",
          _AT_LEAST_1, " (at most fl.num_clients)"),
    Field("fl.rounds", 1500, "rounds of the run", "int", _AT_LEAST_1, resumable=True),
    Field("fl.heuristic", "tracking_sandwich", "which sampled client trains which subnet", "choice",
          HEURISTICS),
    Field("fl.pool", "", "JSON list of archs (or names like \"largest\") for the 'static'/'dynamic' "
          "heuristics", "text"),
    Field("fl.count_random_extremes", True, "tracking counters also count random draws equal to max/min "
          "(reference)", "flag"),
    Field("fl.beta_schedule", "cosine", "the MaxNet aggregation weight over rounds (docs/algorithm.md 4.1)",
          "choice", SCHEDULES),
    Field("fl.beta0", 0.9, "weight of the client training the largest subnet at round 0", "number", _UNIT),
    Field("fl.beta_final", -1.0, "weight after the decay; -1 means 1/clients_per_round (plain averaging)",
          "number", Range(0, 1, also=(-1,), text="in [0, 1], or -1 for 1/fl.clients_per_round "
                                                 "(plain averaging)")),
    Field("fl.decay_fraction", 0.8, "the decay lasts this share of the rounds", "number",
          Range(0, 1, low_open=True), " (the decay may not outlast the run)"),
    # Not resumable: the aggregate depends on it. Configs saved before it existed ran without it.
    Field("fl.weight_by_size", False, "multiply each client's aggregation weight by its number of training "
          "examples (the reference's --weight_dataset; off in its image runs; docs/algorithm.md 4.1)",
          "flag", absent=False),
    Field("fl.chunk_size", 0, "clients trained together (one step of a scan over chunks); 0 = all; must "
          "divide clients_per_round", "int", _AT_LEAST_0, " (0 = all of a round)", resumable=True),
    Field("fl.client_layout", "auto", "a chunk as a 'vmap' batch axis or 'side_by_side' subgraphs (fast "
          "on one CPU device, benchmarks/RESULTS.md); 'auto' = side_by_side on one CPU device, else vmap",
          "choice", CLIENT_LAYOUTS, resumable=True),

    Field("client.epochs", 5, "local epochs per round", "int", _AT_LEAST_1),
    Field("client.batch_size", 64, "local batch size", "int", _AT_LEAST_1),
    Field("client.learning_rate", 0.1, "plain SGD, no momentum, no weight decay, fresh each round",
          "number", _POSITIVE),
    Field("client.clip_norm", 1.0, "global-norm gradient clipping before every step", "number", _POSITIVE),
    Field("client.scan_unroll", 1, "unroll factor of the local-step loop; 0 = fully (faster convs on CPU, "
          "longer compile)", "int", _AT_LEAST_0, " (0 = fully unrolled)", resumable=True),

    Field("eval.every_rounds", 50, "evaluate the tracked archs every this many rounds, and after the last",
          "int", _AT_LEAST_1, resumable=True),
    Field("eval.batch_size", 500, "evaluation batch size", "int", _AT_LEAST_1, resumable=True),
    Field("eval.tracked", "", "JSON object name -> arch (or name); '' = smallest, small, medium, largest",
          "text", hint=", a JSON object name -> arch, or ''", resumable=True),

    Field("cost.baseline", "", "JSON list of archs trained independently with FedAvg for the cost "
          "comparison; '' = the 9 archs of the paper's table (paper space) or the tracked archs (other "
          "spaces)", "text", resumable=True),
    Field("cost.bytes_per_param", 4, "communicated bytes per parameter and direction (4 = float32)", "int",
          _AT_LEAST_1, resumable=True),

    Field("checkpoint.every_rounds", 50, "save the server state every this many rounds, after the last, "
          "and on SIGTERM", "int", _AT_LEAST_1, resumable=True),
    Field("checkpoint.keep", 3, "newest checkpoints kept; older ones are deleted (>1 leaves a fallback if "
          "one is damaged)", "int", _AT_LEAST_1, resumable=True),

    # The same run may resume on another number of hosts.
    Field("distributed.initialize", False, "multi-host: connect the processes with jax.distributed",
          "flag", resumable=True),
    Field("distributed.coordinator_address", "", "'host:port' of process 0; '' = JAX_COORDINATOR_ADDRESS "
          "or auto-detected", "text", hint=", '' or 'host:port'", resumable=True),
    Field("distributed.num_processes", 0, "0 = JAX_NUM_PROCESSES or auto-detected (Cloud TPU, SLURM, "
          "Open MPI, ...)", "int", _AT_LEAST_0, " (0 = from the environment)", resumable=True),
    Field("distributed.process_id", -1, "-1 = JAX_PROCESS_ID or auto-detected", "int", Range(-1),
          " (-1 = from the environment)", resumable=True),
    Field("distributed.timeout_s", 300, "seconds to wait for every process to connect; then one "
          "error message and exit status 2", "int", _AT_LEAST_1, resumable=True, absent=300),

    Field("memory.check", True, "estimate a round's device memory before compiling; stop with a "
          "chunk-size advice", "flag", resumable=True),
    Field("memory.available_gib", 0.0, "memory of one device; 0 = ask it (bytes_limit on GPU/TPU, host "
          "RAM on CPU)", "number", _AT_LEAST_0, " (0 = ask the device)", resumable=True),

    Field("log_every_rounds", 1, "progress line cadence", "int", _AT_LEAST_1, resumable=True),
    Field("note", "", "a line the training command prints once, at the start, about what to expect of "
          "this config (e.g. digits: the first rounds sit near chance); '' prints nothing", "text",
          resumable=True, absent=""),
)

_BY_NAME = {f.name: f for f in FIELDS}


def field(name: str) -> Field:
    """The schema entry of dotted field `name`; ValueError naming the field if there is none."""
    if name not in _BY_NAME:
        raise ValueError(f"{name}: unknown field{suggestion(name, list(_BY_NAME), '')}")
    return _BY_NAME[name]


def field_names() -> tuple[str, ...]:
    """Every dotted field name, in the order of the base config."""
    return tuple(_BY_NAME)


def resumable_fields() -> tuple[str, ...]:
    """The dotted names of the fields a resumed run may change, in the order of the base config."""
    return tuple(f.name for f in FIELDS if f.resumable)


def resumable_prefixes() -> tuple[str, ...]:
    """The resumable fields, a section written as 'section.' when all of its fields may change.

    A whole section also covers fields of it that a saved config may hold and the schema no longer has.
    """
    prefixes = []
    for f in FIELDS:
        if not f.resumable:
            continue
        whole = bool(f.section) and all(g.resumable for g in FIELDS if g.section == f.section)
        prefix = f"{f.section}." if whole else f.name
        if prefix not in prefixes:
            prefixes.append(prefix)
    return tuple(prefixes)


def when_absent() -> dict:
    """dotted name -> value for the fields a config may lack (loaders read these values instead)."""
    return {f.name: f.absent for f in FIELDS if f.optional}
