"""The documented base config every experiment file in `configs/` starts from.

Every field is explained where it is defined; experiment files only override values. Strings hold
structured values (arch lists as JSON) so that each field can be overridden from the command line, e.g.
`--config.fl.pool='[{"d":[0,0,0,0],"e":0.1}]'`.
"""
import json

import ml_collections

from superfed_jax.supernet import space as space_lib


def base_config() -> ml_collections.ConfigDict:
    """The paper's settings (algorithm.md) on the paper's CIFAR-10 space; unlocked for overriding."""
    config = ml_collections.ConfigDict()
    config.seed = 0  # root of all randomness: init, partition, sampling, assignment, training
    config.dry_run = False  # only sample clients and assign archs for every round, write cost.json; no data

    # The supernet family (algorithm.md 2.1). input_size, input_channels and num_classes are replaced by
    # the dataset's own values when training; they matter for cost commands that read no data.
    config.space = ml_collections.ConfigDict(dict(
        stem_width=64,  # stem conv output channels
        stage_widths=(256, 512, 1024, 2048),  # output channels per stage
        stage_strides=(1, 2, 2, 2),  # stride of each stage's first block
        blocks_per_stage=3,  # supernet depth per stage; an arch keeps 1..3 of them
        expand_choices=(0.10, 0.14, 0.18, 0.22, 0.25),  # middle width = make_divisible(width * e, divisor)
        divisor=8,  # rounding of middle widths (use 1 for small spaces, so choices stay distinct)
        input_size=32,  # image height = width
        input_channels=3,
        num_classes=10,
    ))

    config.model = ml_collections.ConfigDict(dict(
        conv_impl="im2col",  # 'im2col' (fast on CPU, see performance-notes) or 'xla' (cuDNN on GPU)
        dtype="float32",  # compute dtype of convolutions and matmuls ('float32' or 'bfloat16')
    ))

    config.data = ml_collections.ConfigDict(dict(
        name="cifar10",  # 'digits', 'npz', 'cifar10' or 'cifar100'
        path="",  # the .npz file when name='npz' (keys x_train, y_train, x_test, y_test)
        archive="",  # CIFAR binary archive (cifar-10-binary.tar.gz / cifar-100-binary.tar.gz)
        tfds_data_dir="",  # a prepared TFDS data dir holding cifar10 / cifar100
        val_fraction=0.1,  # share of the training set held out to select the best round
        partition="dirichlet",  # 'dirichlet', 'iid' or 'shards' (algorithm.md 6)
        alpha=100.0,  # Dirichlet concentration: 100 near-IID, 1 and 0.1 increasingly skewed
        shards_per_client=2,  # label shards per client for partition='shards'
        min_client_size=10,  # the Dirichlet split is redrawn until every client has this many examples
        crop_padding=4,  # random crop after zero padding by this many pixels (0 disables)
        flip=True,  # random horizontal flip
        cutout_size=16,  # Cutout square side after normalization (0 disables)
    ))

    config.fl = ml_collections.ConfigDict(dict(
        num_clients=20,  # K
        clients_per_round=8,  # P, sampled without replacement each round
        rounds=1500,
        heuristic="tracking_sandwich",  # 'static', 'dynamic', 'random', 'sandwich', 'tracking_sandwich'
        pool="",  # JSON list of archs (or names like "largest") for 'static'/'dynamic' heuristics
        count_random_extremes=True,  # tracking counters also count random draws equal to max/min (reference)
        beta_schedule="cosine",  # 'uniform', 'constant', 'linear' or 'cosine' (algorithm.md 4.1)
        beta0=0.9,  # weight of the client training the largest subnet at round 0
        beta_final=-1.0,  # weight after the decay; -1 means 1/clients_per_round (plain averaging)
        decay_fraction=0.8,  # the decay lasts this share of the rounds
        chunk_size=0,  # clients trained together (one step of a scan over chunks); 0 = all. Must divide P
        client_layout="auto",  # a chunk as a 'vmap' batch axis, or 'side_by_side' subgraphs (fast on a
        # single CPU device, see benchmarks/RESULTS.md); 'auto' = side_by_side on one CPU device, else vmap
    ))

    config.client = ml_collections.ConfigDict(dict(
        epochs=5,  # local epochs per round
        batch_size=64,
        learning_rate=0.1,  # plain SGD, no momentum, no weight decay, fresh each round
        clip_norm=1.0,  # global-norm gradient clipping before every step
        scan_unroll=1,  # unroll factor of the local-step loop; 0 = fully (faster convs on CPU, longer compile)
    ))

    config.eval = ml_collections.ConfigDict(dict(
        every_rounds=50,  # evaluate the tracked archs every this many rounds, and after the last
        batch_size=500,
        tracked="",  # JSON object name -> arch (or name); '' = smallest, small, medium, largest
    ))
    config.cost = ml_collections.ConfigDict(dict(
        baseline="",  # JSON list of archs trained independently with FedAvg for the cost comparison;
        # '' = the 9 archs of the paper's table (paper space) or the tracked archs (other spaces)
        bytes_per_param=4,  # communicated bytes per parameter and direction (4 = float32)
    ))
    config.checkpoint = ml_collections.ConfigDict(dict(
        every_rounds=50,  # save the server state every this many rounds, after the last, and on SIGTERM
        keep=3,  # newest checkpoints kept; older ones are deleted (>1 leaves a fallback if one is damaged)
    ))
    config.distributed = ml_collections.ConfigDict(dict(
        initialize=False,  # multi-host: connect the processes with jax.distributed (superfed_jax/run/distributed.py)
        coordinator_address="",  # 'host:port' of process 0; '' = JAX_COORDINATOR_ADDRESS or auto-detected
        num_processes=0,  # 0 = JAX_NUM_PROCESSES or auto-detected (Cloud TPU, SLURM, Open MPI, ...)
        process_id=-1,  # -1 = JAX_PROCESS_ID or auto-detected
    ))
    config.memory = ml_collections.ConfigDict(dict(
        check=True,  # estimate a round's device memory before compiling; stop with a chunk-size advice
        available_gib=0.0,  # memory of one device; 0 = ask it (bytes_limit on GPU/TPU, host RAM on CPU)
    ))
    config.log_every_rounds = 1  # progress line cadence
    return config


def fedavg_baseline(config: ml_collections.ConfigDict, arch: str) -> ml_collections.ConfigDict:
    """Turns a config into plain FedAvg of one arch: static heuristic, one-arch pool, uniform weights.

    `arch` is a default tracked name (resolved against the final space at run time) or an arch JSON.
    """
    spec = arch if arch.lstrip().startswith("{") else json.dumps(arch)
    name = arch if not arch.lstrip().startswith("{") else "fedavg"
    config.fl.heuristic = "static"
    config.fl.pool = f"[{spec}]"
    config.fl.beta_schedule = "uniform"
    config.eval.tracked = json.dumps({name: json.loads(spec)})
    config.cost.baseline = f"[{spec}]"  # its cost report compares it with itself (ratio 1)
    return config


def search_space(config: ml_collections.ConfigDict, **overrides) -> space_lib.SearchSpace:
    """The `SearchSpace` of a config, optionally with some fields replaced (e.g. by the dataset's)."""
    if "space" not in config:
        raise ValueError("config has no 'space' field; it needs the fields of space.SearchSpace")
    fields = dict(config.space.to_dict())
    fields.update(overrides)
    try:
        return space_lib.SearchSpace(**fields)
    except TypeError as error:  # an unknown or missing field name
        raise ValueError(f"config.space: {error}") from None


def apply_variant(config: ml_collections.ConfigDict, arg: str) -> ml_collections.ConfigDict:
    """Applies the `:arg` of `--config=FILE:arg`, a comma-separated combination of variants.

    * '' : the file's own config (SuperFed).
    * 'fedavg=ARCH' : FedAvg of one arch (`fedavg_baseline`); ARCH is a default tracked name (smallest,
      small, medium, largest) or an arch JSON.
    * 'smoke' : a local run of seconds, for tests and a first try of a setup (as big_vision's local
      mode): 2 rounds of 2 out of 4 clients, 1 local epoch, a two-stage space of narrow blocks (stem 4,
      stages 32 and 64 wide, 2 blocks each, divisor 1; the file's expand choices), evaluation (in batches
      of 50), a checkpoint and a progress line after every round. The file's data, client batch size,
      learning rate and chunk size are kept (the shipped chunk sizes, 2 and 0, divide the 2 clients).

    Variants combine in any order, e.g. 'smoke,fedavg=largest'; `--config.x=value` flags still override
    on top (e.g. `:smoke` with `--config.fl.rounds=8`).
    """
    allowed = ("allowed '', 'smoke', 'fedavg=ARCH' or both comma-separated (e.g. 'smoke,fedavg=largest'), "
               "with ARCH one of smallest, small, medium, largest, or an arch JSON")

    def split_outside_brackets(text: str) -> list[str]:
        # An arch JSON holds commas of its own ({"d":[0,1],"e":0.25}); only top-level commas separate.
        parts, depth, start = [], 0, 0
        for position, char in enumerate(text):
            depth += (char in "[{") - (char in "]}")
            if char == "," and depth == 0:
                parts.append(text[start:position])
                start = position + 1
        parts.append(text[start:])
        return [part.strip() for part in parts]

    def smoke(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
        config.space.update(stem_width=4, stage_widths=(32, 64), stage_strides=(1, 2), blocks_per_stage=2,
                            divisor=1)
        config.fl.update(rounds=2, num_clients=4, clients_per_round=2)
        config.client.epochs = 1
        config.eval.update(every_rounds=1, batch_size=50)
        config.checkpoint.every_rounds = 1
        config.log_every_rounds = 1
        return config

    if not arg:
        return config
    applied = set()
    for part in split_outside_brackets(arg):
        key, equals, value = part.partition("=")
        valid = (key == "smoke" and not equals) or (key == "fedavg" and bool(value.strip()))
        if not valid or key in applied:
            problem = f"{key!r} given twice" if valid else f"{part!r} is not a variant"
            raise ValueError(f"config argument {arg!r}: {problem}; {allowed}")
        applied.add(key)
        config = smoke(config) if key == "smoke" else fedavg_baseline(config, value.strip())
    return config
