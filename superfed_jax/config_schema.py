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
import functools

from superfed_jax._fields import KINDS, Field, Range, suggestion
from superfed_jax.data.load import DATASET_NAMES, OPTIONAL_FIELDS
from superfed_jax.data.partition import PARTITION_METHODS
from superfed_jax.federated.client import CLIENT_LAYOUTS
from superfed_jax.federated.client_optimizer import CLIENT_OPTIMIZERS
from superfed_jax.federated.heuristics import HEURISTICS
from superfed_jax.federated.metric import METRIC_CHOICES
from superfed_jax.federated.schedules import SCHEDULES
from superfed_jax.federated.server_optimizer import SERVER_OPTIMIZERS
from superfed_jax.supernet.conv import CONV_IMPLS
from superfed_jax.supernet.family import DEFAULT_FAMILY, DTYPES, EXECUTIONS, FAMILIES
from superfed_jax.supernet import family as family_lib

__all__ = ["KINDS", "Range", "Field", "FIELDS", "SECTIONS", "field", "field_names", "resumable_fields",
           "resumable_prefixes", "schema_fields", "when_absent", "suggestion"]

_AT_LEAST_1 = Range(1)
_AT_LEAST_0 = Range(0)
_POSITIVE = Range(0, low_open=True)
_UNIT = Range(0, 1)

# One-line documentation of each section, in the order of the base config.
SECTIONS = {
    "space": "The elastic space of the supernet family that model.family names: its own fields (the "
             "OFA-ResNet's: docs/algorithm.md 2.1). The input shape and classes are replaced by the "
             "dataset's own values when training; they matter for cost commands that read no data.",
    "model": "How the supernet computes.",
    "data": "The dataset, its split over clients and the augmentation.",
    "fl": "The federated rounds: clients, subnet assignment and the aggregation weights.",
    "client": "Local training on a client: SGD (plain by default; momentum, weight decay and FedProx's "
              "proximal term as options, all over the client's own subnet), a fresh optimizer each round.",
    "server": "The server's step from the clients' masked mean (docs/algorithm.md 4.2): 'none' takes the "
              "mean, as the paper does; an optimiser treats (server value - mean) as a gradient, per "
              "covered element (FedAvgM, FedAdam, FedYogi, FedAdagrad).",
    "dp": "User-level differential privacy for overlapping masks (DP-FedAvg; docs/algorithm.md 4.3): "
          "clip each client's update, add Gaussian noise to each element's weighted sum, account the "
          "privacy spent.",
    "eval": "Evaluation of the tracked archs.",
    "cost": "The compute and communication report against independently trained archs.",
    "checkpoint": "Saving the server state.",
    "distributed": "Multi-host runs (superfed_jax/run/distributed.py).",
    "memory": "The up-front estimate of one round's device memory.",
    "log": "Where metrics go besides rounds.jsonl, metrics.jsonl and TensorBoard (always written; "
           "superfed_jax/run/writers.py): an optional Weights & Biases run.",
}

# Why these may change on resume: they say how long to run, how often to evaluate, log or checkpoint, how
# to report cost, or how to lay the same computation out on the hardware; results do not depend on them
# (except fl.rounds, whose change also moves the beta decay horizon, a fraction of it).
_PACKAGE_FIELDS = (
    Field("seed", 0, "root of all randomness: init, partition, sampling, assignment, training", "int",
          Range(0, 2 ** 63, high_open=True, text="in [0, 2**63)")),  # jax.random.key overflows from 2**63
    Field("dry_run", False, "only sample clients and assign archs for every round, write cost.json; "
          "no data", "flag", resumable=True, absent=False),
    Field("overwrite", False, "start over in a workdir that holds an earlier run: first delete that run's "
          "files (checkpoints, metrics, reports, config.json); without it such a workdir is resumed, or "
          "refused if it has results but no checkpoint. Drop it again to resume after an interruption",
          "flag", resumable=True, absent=False),

    # The `space` section is the family's own (`Family.space_fields`), spliced in here by `schema_fields`.

    Field("model.family", DEFAULT_FAMILY, "the supernet family: a registered name "
          f"({', '.join(FAMILIES)}) or a user's own as 'package.module:ClassName' (docs/families.md); "
          "the space section holds its fields", "text", hint=", a registered family or "
          "'package.module:ClassName'", absent=DEFAULT_FAMILY),
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
    Field("data.path", "", "the .npz file when name='npz' (keys x_train, y_train, x_test, y_test; "
          "client_id for partition='natural'); for 'shakespeare' TFF's shakespeare.tar.bz2 or a folder of "
          "its two .h5 files; for 'leaf_shakespeare' a folder with LEAF's train/ and test/ JSON folders; "
          "for 'ptb' a folder with train.txt, valid.txt, test.txt", "text",
          absent=OPTIONAL_FIELDS["path"]),
    Field("data.archive", "", "CIFAR binary archive (cifar-10-binary.tar.gz / cifar-100-binary.tar.gz)",
          "text", absent=OPTIONAL_FIELDS["archive"]),
    Field("data.tfds_data_dir", "", "a prepared TFDS data dir holding cifar10 / cifar100", "text",
          absent=OPTIONAL_FIELDS["tfds_data_dir"]),
    Field("data.seq_len", 80, "name='ptb': tokens per training window (its input length)", "int",
          _AT_LEAST_1, absent=OPTIONAL_FIELDS["seq_len"]),
    Field("data.scored_len", 40, "name='ptb': the last this many positions of a window are scored (the "
          "rest is context) and windows start this many tokens apart, so every token is predicted once",
          "int", _AT_LEAST_1, absent=OPTIONAL_FIELDS["scored_len"]),
    Field("data.max_vocab", 0, "name='ptb': refuse a training vocabulary larger than this (0 = no cap)",
          "int", _AT_LEAST_0, " (0 = no cap)", absent=OPTIONAL_FIELDS["max_vocab"]),
    Field("data.val_fraction", 0.1, "share of the training set held out to select the best round",
          "number", Range(0, 1, high_open=True), absent=OPTIONAL_FIELDS["val_fraction"]),
    Field("data.partition", "dirichlet", "how the training set is split over clients (docs/algorithm.md 6): "
          "by a Dirichlet draw over class labels, iid, label shards, contiguous runs in file order (a "
          "text stream), or the data's own clients (natural)",
          "choice", PARTITION_METHODS),
    Field("data.alpha", 100.0, "Dirichlet concentration: 100 near-IID, 1 and 0.1 increasingly skewed",
          "number", _POSITIVE, " (the Dirichlet concentration)"),
    Field("data.shards_per_client", 2, "label shards per client for partition='shards'", "int",
          _AT_LEAST_1),
    Field("data.min_client_size", 10, "the Dirichlet split is redrawn until every client has this many "
          "examples; partition='natural' drops smaller clients", "int", _AT_LEAST_1),
    Field("data.crop_padding", 4, "random crop after zero padding by this many pixels (0 disables)", "int",
          _AT_LEAST_0, " (0 disables the random crop)"),
    Field("data.flip", True, "random horizontal flip", "flag"),
    Field("data.cutout_size", 16, "Cutout square side after normalization (0 disables)", "int",
          _AT_LEAST_0, " (0 disables Cutout)"),

    Field("fl.num_clients", 20, "K, the clients holding data; for partition='natural' the data's own "
          "count, which must be given (the error says it)", "int", _AT_LEAST_1),
    Field("fl.clients_per_round", 8, "P, sampled without replacement each round (at most K)", "int",
          _AT_LEAST_1, " (at most fl.num_clients)"),
    Field("fl.rounds", 1500, "rounds of the run", "int", _AT_LEAST_1, resumable=True),
    Field("fl.heuristic", "tracking_sandwich", "which sampled client trains which subnet", "choice",
          HEURISTICS),
    Field("fl.pool", "", "JSON list of archs (or names like \"largest\") for the 'static'/'dynamic' "
          "heuristics", "text"),
    # Not resumable: it changes the assignment sequence. Configs saved before it existed gave one client.
    Field("fl.smallest_clients", 1, "sandwich heuristics: how many sampled clients train the smallest "
          "subnet each round (the paper: 1); other heuristics ignore it (docs/algorithm.md 3)", "int",
          _AT_LEAST_1, " (at most fl.clients_per_round - 1)", absent=1),
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
    Field("client.learning_rate", 0.1, "the local SGD step size", "number", _POSITIVE),
    Field("client.clip_norm", 1.0, "global-norm gradient clipping before every step", "number", _POSITIVE),
    # Not resumable, like every option of the client's or the server's rule: results depend on them.
    # Configs saved before they existed trained with the plain rule (`absent`).
    Field("client.optimizer", "sgd", "the local rule: 'sgd' (with the options below) or a user's own "
          "'package.module:function' taking the client section and returning an optax transformation "
          "(docs/algorithm.md 5.1)", "text", hint=f", one of {list(CLIENT_OPTIMIZERS)} or 'package.module:function'", absent="sgd"),
    Field("client.momentum", 0.0, "heavy-ball momentum of the local SGD (0 = none); the buffer starts at "
          "zero every round", "number", Range(0, 1, high_open=True), absent=0.0),
    Field("client.nesterov", False, "Nesterov momentum (needs client.momentum > 0)", "flag", absent=False),
    Field("client.weight_decay", 0.0, "L2 weight decay added to the clipped gradient, over the client's "
          "subnet only (elements outside it never change)", "number", _AT_LEAST_0, absent=0.0),
    Field("client.prox_mu", 0.0, "FedProx: mu/2 * ||w - w_server||^2 over the client's subnet added to "
          "the local loss (0 = plain FedAvg)", "number", _AT_LEAST_0, absent=0.0),
    Field("client.scan_unroll", 1, "unroll factor of the local-step loop; 0 = fully (faster convs on CPU, "
          "longer compile)", "int", _AT_LEAST_0, " (0 = fully unrolled)", resumable=True),

    Field("server.optimizer", "none", "how the server moves each covered element toward the clients' "
          "masked mean: 'none' takes the mean (the paper); 'sgd' (FedAvgM), 'adam', 'yogi', 'adagrad' "
          "step on (server - mean) with optax; or a user's own 'package.module:function' taking the "
          "server section and returning an optax GradientTransformation", "text",
          hint=f", one of {list(SERVER_OPTIMIZERS)} or 'package.module:function'", absent="none"),
    Field("server.learning_rate", 1.0, "the server's step size (sgd with 1.0 and no momentum is 'none' "
          "up to rounding)", "number", _POSITIVE, absent=1.0),
    Field("server.momentum", 0.0, "server.optimizer='sgd': momentum of the server step (FedAvgM)",
          "number", Range(0, 1, high_open=True), absent=0.0),
    Field("server.b1", 0.9, "'adam', 'yogi': decay of the first moment", "number",
          Range(0, 1, high_open=True), absent=0.9),
    Field("server.b2", 0.99, "'adam', 'yogi': decay of the second moment", "number",
          Range(0, 1, high_open=True), absent=0.99),
    Field("server.eps", 1e-3, "'adam', 'yogi', 'adagrad': the adaptivity constant (Reddi et al.'s tau)",
          "number", _POSITIVE, absent=1e-3),

    Field("dp.clip_norm", 0.0, "clip each client's update (its trained values minus the server's, over "
          "its subnet) to this L2 norm; 0 = no differential privacy", "number", _AT_LEAST_0,
          " (0 = off)", absent=0.0),
    Field("dp.noise_multiplier", 0.0, "Gaussian noise of std noise_multiplier * clip_norm on each "
          "element's weighted sum of updates (needs dp.clip_norm > 0)", "number", _AT_LEAST_0, absent=0.0),
    Field("dp.delta", 1e-5, "the delta at which the privacy spent, epsilon, is reported", "number",
          Range(0, 1, low_open=True, high_open=True), absent=1e-5),

    Field("eval.every_rounds", 50, "evaluate the tracked archs every this many rounds, and after the last",
          "int", _AT_LEAST_1, resumable=True),
    Field("eval.batch_size", 500, "evaluation batch size", "int", _AT_LEAST_1, resumable=True),
    Field("eval.tracked", "", "JSON object name -> arch (or name); '' = smallest, small, medium, largest",
          "text", hint=", a JSON object name -> arch, or ''", resumable=True),
    # Resumable: it changes only which evaluation the reports select and how they compare, not training.
    Field("eval.metric", "auto", "the metric that chooses the best round, ranks search candidates and "
          "decides claim verdicts; 'auto' = perplexity for a language-model family (one whose metrics list "
          "it), else accuracy", "choice", METRIC_CHOICES, resumable=True, absent="auto"),

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

    # Resumable, absent in configs saved before it existed: where metrics are copied to, not what they are.
    Field("log.wandb_project", "", "Weights & Biases project to log every round and evaluation to (the "
          "'wandb' extra); '' = no W&B run. Each session is its own W&B run, grouped by the workdir's name",
          "text", hint=", a W&B project name or ''", resumable=True, absent=""),
    Field("log.wandb_mode", "online", "W&B mode with log.wandb_project: 'online' uploads as it runs, "
          "'offline' keeps the run under WORKDIR/wandb for a later `wandb sync`", "choice",
          ("online", "offline"), resumable=True, absent="online"),

    Field("log_every_rounds", 1, "progress line cadence", "int", _AT_LEAST_1, resumable=True),
    # Resumable, absent in configs saved before it existed: where compiled programs are kept, not what
    # they compute (superfed_jax/_compilation_cache.py).
    Field("compilation_cache", "", "where compiled programs are kept, so a later run of the same programs "
          "on this machine loads them instead of compiling: '' = JAX_COMPILATION_CACHE_DIR, else "
          "$XDG_CACHE_HOME/superfed_jax/xla (~/.cache/superfed_jax/xla); 'off' = compile every time; or a "
          "directory", "text", hint=", '' (the default directory), 'off' or a directory", resumable=True,
          absent=""),
    Field("note", "", "a line the training command prints once, at the start, about what to expect of "
          "this config (e.g. digits: the first rounds sit near chance); '' prints nothing", "text",
          resumable=True, absent=""),
)

@functools.lru_cache(maxsize=None)
def schema_fields(family: str = DEFAULT_FAMILY) -> tuple:
    """Every field of a config of `family` (a `model.family` value): the package's fields with the family's
    `space` fields in the place of the space section. ValueError names a family that cannot be found."""
    space = family_lib.family_class(family).space_fields()
    for entry in space:
        if not isinstance(entry, Field) or entry.section != "space":
            raise ValueError(f"model.family={family!r}: space_fields() must return Field entries named "
                             f"'space.KEY'; got {entry!r}")
    at = next(i for i, f in enumerate(_PACKAGE_FIELDS) if f.section == "model")
    return _PACKAGE_FIELDS[:at] + tuple(space) + _PACKAGE_FIELDS[at:]


# The fields of a config of the default family (the OFA-ResNet), in the order of the base config.
FIELDS = schema_fields()


def field(name: str, family: str = DEFAULT_FAMILY) -> Field:
    """The schema entry of dotted field `name`; ValueError naming the field if there is none."""
    by_name = {f.name: f for f in schema_fields(family)}
    if name not in by_name:
        raise ValueError(f"{name}: unknown field{suggestion(name, list(by_name), '')}")
    return by_name[name]


def field_names(family: str = DEFAULT_FAMILY) -> tuple[str, ...]:
    """Every dotted field name, in the order of the base config."""
    return tuple(f.name for f in schema_fields(family))


def resumable_fields(family: str = DEFAULT_FAMILY) -> tuple[str, ...]:
    """The dotted names of the fields a resumed run may change, in the order of the base config."""
    return tuple(f.name for f in schema_fields(family) if f.resumable)


def resumable_prefixes(family: str = DEFAULT_FAMILY) -> tuple[str, ...]:
    """The resumable fields, a section written as 'section.' when all of its fields may change.

    A whole section also covers fields of it that a saved config may hold and the schema no longer has.
    """
    fields = schema_fields(family)
    prefixes = []
    for f in fields:
        if not f.resumable:
            continue
        whole = bool(f.section) and all(g.resumable for g in fields if g.section == f.section)
        prefix = f"{f.section}." if whole else f.name
        if prefix not in prefixes:
            prefixes.append(prefix)
    return tuple(prefixes)


def when_absent(family: str = DEFAULT_FAMILY) -> dict:
    """dotted name -> value for the fields a config may lack (loaders read these values instead)."""
    return {f.name: f.absent for f in schema_fields(family) if f.optional}
