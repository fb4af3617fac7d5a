"""The base config every experiment file in `configs/` starts from, built from the schema.

Each field's default, documentation and allowed values are declared once, in
`superfed_jax/config_schema.py`; experiment files only override values. Strings hold structured values
(arch lists as JSON) so that each field can be overridden from the command line, e.g.
`--config.fl.pool='[{"d":[0,0,0,0],"e":0.1}]'`.
"""
import json

import ml_collections

from superfed_jax import config_schema
from superfed_jax.supernet import space as space_lib


def base_config() -> ml_collections.ConfigDict:
    """The paper's settings (docs/algorithm.md) on the paper's CIFAR-10 space; unlocked for overriding.

    Every field of `config_schema.FIELDS` with its default, sections in the schema's order.
    """
    config = ml_collections.ConfigDict()
    for entry in config_schema.FIELDS:
        node = config
        if entry.section:
            if entry.section not in config:
                config[entry.section] = ml_collections.ConfigDict()
            node = config[entry.section]
        node[entry.key] = entry.default
    return config


def fedavg_baseline(config: ml_collections.ConfigDict, arch: str) -> ml_collections.ConfigDict:
    """Turns a config into plain FedAvg of one arch: static heuristic, one-arch pool, uniform weights.

    `arch` is a default tracked name (resolved against the final space at run time) or an arch JSON.
    `fl.weight_by_size` is left as set: with it on, the baseline weights clients by data size as well.
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
