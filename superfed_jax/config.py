"""The base config every experiment file in `configs/` starts from, built from the schema.

Each field's default, documentation and allowed values are declared once, in
`superfed_jax/config_schema.py`; experiment files only override values. Strings hold structured values
(arch lists as JSON) so that each field can be overridden from the command line, e.g.
`--config.fl.pool='[{"d":[0,0,0,0],"e":0.1}]'`.
"""
import json
from typing import Callable, Mapping

import ml_collections

from superfed_jax import _cli
from superfed_jax import config_schema
from superfed_jax.supernet import family as family_lib


def base_config(family: str = family_lib.DEFAULT_FAMILY) -> ml_collections.ConfigDict:
    """The paper's settings (docs/algorithm.md) with `family`'s default space; unlocked for overriding.

    Every field of `config_schema.schema_fields(family)` with its default, sections in the schema's order;
    the default family's space is the paper's CIFAR-10 space. `family` is a `model.family` value.
    """
    config = ml_collections.ConfigDict()
    for entry in config_schema.schema_fields(family):
        node = config
        if entry.section:
            if entry.section not in config:
                config[entry.section] = ml_collections.ConfigDict()
            node = config[entry.section]
        node[entry.key] = entry.default
    config.model.family = family
    return config


def with_family(config: ml_collections.ConfigDict, family: str) -> ml_collections.ConfigDict:
    """`config` switched to `family`: its `space` section becomes that family's defaults.

    Unchanged when the config already names that family (its space is kept). For `--config.model.family`
    on the command line: the config file built its space for its own family, whose fields another family
    does not have; `--config.space.X` overrides then apply to the new family's space.
    """
    if config.model.get("family", family_lib.DEFAULT_FAMILY) == family:
        return config
    space = base_config(family).space  # raises ValueError for a family that cannot be found
    with config.unlocked():
        config.space = space
        config.model.family = family
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


def make_family(config: ml_collections.ConfigDict,
                data: "family_lib.DataShape | None" = None) -> family_lib.Family:
    """The supernet family of a config (`model.family`) on its `space` section and `model` settings.

    `data` replaces the space's input shape and classes by the dataset's; without it the config's own
    values are used (cost commands that read no data). ValueError names a bad field.
    """
    if "space" not in config:
        raise ValueError("config has no 'space' field; it needs the fields of its model.family")
    model = config.get("model", {})
    family_class = family_lib.family_class(model.get("family", family_lib.DEFAULT_FAMILY))
    return family_class.from_config(dict(config.space.to_dict()), data=data,
                                    conv_impl=model.get("conv_impl", "xla"),
                                    dtype=model.get("dtype", "float32"))


def apply_variant(config: ml_collections.ConfigDict, arg: str,
                  own: "Mapping[str, Callable] | None" = None) -> ml_collections.ConfigDict:
    """Applies the `:arg` of `--config=FILE:arg`, a comma-separated combination of variants.

    * '' : the file's own config (SuperFed).
    * 'fedavg=ARCH' : FedAvg of one arch (`fedavg_baseline`); ARCH is a default tracked name (smallest,
      small, medium, largest) or an arch JSON.
    * 'smoke' : a local run for tests and a first try of a setup (as big_vision's local mode), most of it
      compiling (digits: about a minute on 2 CPU cores, 20 s with the programs cached): 2 rounds of 2
      out of 4 clients (out of the data's own for data.partition='natural') with the beta decay over at
      least one of them, 1 local epoch, the family's tiny space (`Family.smoke_space`; the OFA-ResNet's:
      two stages of narrow blocks), evaluation (in batches of 50), a checkpoint and a progress line after every round. The
      file's data, client batch size, learning rate and chunk size are kept (the shipped chunk sizes, 2
      and 0, divide the 2 clients).
    * a name of `own`: the config file's own variants, name -> function(config) -> config (e.g.
      configs/shakespeare.py's 'cpu', a scaled-down run for a CPU machine).

    Variants combine in any order, e.g. 'smoke,fedavg=largest', and apply in a fixed one (the file's own,
    then smoke, then fedavg), so 'cpu,smoke' is a smoke run whatever the file's 'cpu' sets;
    `--config.x=value` flags still override on top (e.g. `:smoke` with `--config.fl.rounds=8`).
    """
    own = dict(own or {})
    names = "".join(f"'{name}', " for name in own)
    allowed = (f"allowed '', {names}'smoke', 'fedavg=ARCH' or several comma-separated (e.g. "
               "'smoke,fedavg=largest'), with ARCH one of smallest, small, medium, largest, or an arch JSON")

    def smoke(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
        family = family_lib.family_class(config.model.get("family", family_lib.DEFAULT_FAMILY))
        config.space.update(**family.smoke_space())
        config.fl.update(rounds=2, clients_per_round=2)
        # The beta decay must last at least one of the 2 rounds (a short decay of a long run would not).
        config.fl.decay_fraction = max(config.fl.decay_fraction, 0.5)
        if config.data.partition != "natural":  # a natural partition's client count is the data's
            config.fl.num_clients = 4
        config.client.epochs = 1
        config.eval.update(every_rounds=1, batch_size=50)
        config.checkpoint.every_rounds = 1
        config.log_every_rounds = 1
        return config

    if not arg:
        return config
    chosen = {}
    for part in _cli.split_variants(arg):
        key, equals, value = part.partition("=")
        valid = ((key in ("smoke", *own) and not equals) or (key == "fedavg" and bool(value.strip())))
        if not valid or key in chosen:
            problem = f"{key!r} given twice" if valid else f"{part!r} is not a variant"
            raise ValueError(f"config argument {arg!r}: {problem}; {allowed}")
        chosen[key] = value.strip()
    for key in own:
        if key in chosen:
            config = own[key](config)
    if "smoke" in chosen:
        config = smoke(config)
    if "fedavg" in chosen:
        config = fedavg_baseline(config, chosen["fedavg"])
    return config
