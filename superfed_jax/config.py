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
    """The paper's settings (algorithm.md) on the paper's CIFAR-10 space; unlocked for overriding.

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
    """Applies the `:arg` of `--config=FILE:arg`. '' = SuperFed; 'fedavg=ARCH' = FedAvg of one arch.

    ARCH is a default tracked name (smallest, small, medium, largest) or an arch JSON.
    """
    if not arg:
        return config
    key, _, value = arg.partition("=")
    if key != "fedavg" or not value:
        raise ValueError(f"config argument {arg!r}: allowed '' or 'fedavg=ARCH' with ARCH one of "
                         "smallest, small, medium, largest, or an arch JSON")
    return fedavg_baseline(config, value)
