"""Tests of `superfed_jax.validation`: the shipped configs pass, every bad field gives one clear line.

Pure Python: no data is loaded and nothing is compiled.
"""
import importlib.util
import math
import os
import sys
from collections.abc import Mapping

import ml_collections
import numpy as np
import pytest

from superfed_jax import config as config_lib
from superfed_jax import config_schema as schema
from superfed_jax import validation
from superfed_jax.data import load, partition
from superfed_jax.federated import client, heuristics, schedules
from superfed_jax.run import resume
from superfed_jax.supernet import conv
from superfed_jax.supernet.ofa_resnet import model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DELETE = object()  # an override value that removes the field


def load_config_file(name: str, arg: str = "") -> ml_collections.ConfigDict:
    """`get_config(arg)` of `configs/<name>.py`, loaded as launch.py's config flag does."""
    path = os.path.join(ROOT, "configs", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"configs_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def override(changes: dict, config=None) -> ml_collections.ConfigDict:
    """A copy of `config` (default: the base config) with dotted fields set to any value, type-free."""
    values = (config or config_lib.base_config()).to_dict()
    for field, value in changes.items():
        *sections, key = field.split(".")
        node = values
        for section in sections:
            node = node[section]
        if value is DELETE:
            del node[key]
        else:
            node[key] = value
    return ml_collections.ConfigDict(values)


def problems(config) -> list[str]:
    """The lines of `check_config`'s ValueError (fails the test if it passes)."""
    with pytest.raises(ValueError) as info:
        validation.check_config(config)
    return str(info.value).splitlines()


# ------------------------------------------------------------------------------------ valid configs


@pytest.mark.parametrize("name,arg", [("digits", ""), ("digits", "fedavg=largest"), ("cifar10", ""),
                                      ("cifar10", "fedavg=smallest"), ("cifar100", "")])
def test_shipped_configs_pass(name, arg):
    validation.check_config(load_config_file(name, arg))


def test_base_config_passes():
    validation.check_config(config_lib.base_config())


@pytest.mark.parametrize("changes", [
    {"fl.beta_final": -1.0}, {"fl.beta_final": 0.0}, {"fl.beta_final": 1.0}, {"fl.beta0": 0.0},
    {"fl.chunk_size": 8}, {"fl.chunk_size": 1}, {"fl.chunk_size": 4}, {"fl.decay_fraction": 1.0},
    {"fl.clients_per_round": 20}, {"fl.clients_per_round": 1, "fl.num_clients": 1},
    {"data.val_fraction": 0.0}, {"client.scan_unroll": 0}, {"client.learning_rate": 1},
    {"data.partition": "iid", "data.alpha": -1.0}, {"data.partition": "shards"},
    {"fl.rounds": 1, "fl.decay_fraction": 1.0}, {"fl.rounds": 1, "fl.beta_schedule": "constant"},
    {"fl.heuristic": "static", "fl.pool": '["largest", {"d": [0, 1, 0, 1], "e": 0.14}]'},
    {"fl.heuristic": "dynamic", "fl.pool": '[{"d": [0, 0, 0, 0], "e": 0.1}]'},
    {"eval.tracked": '{"tiny": "smallest", "mine": {"d": [2, 2, 2, 2], "e": 0.18}}'},
    {"model.conv_impl": "xla", "model.dtype": "bfloat16"}, {"seed": np.int64(3)},
    {"data.crop_padding": 0, "data.cutout_size": 0, "data.flip": False},
    {"dry_run": DELETE, "data.tfds_data_dir": DELETE},  # optional: loaders default them
    {"fl.weight_by_size": True}, {"fl.weight_by_size": DELETE},
    {"fl.smallest_clients": 7}, {"fl.smallest_clients": DELETE},  # at most P - 1 = 7; saved before it
    {"fl.smallest_clients": 1, "fl.clients_per_round": 1},  # P = 1: nobody trains the smallest anyway
    {"dp.clip_norm": 1.0}, {"dp.clip_norm": 0.5, "dp.noise_multiplier": 1.1, "dp.delta": 1e-9},
    {"dp.clip_norm": 0.0, "dp.noise_multiplier": 0.0, "fl.weight_by_size": True},
    # client optimiser options (docs/algorithm.md 5.1); a user's rule from tests/client_rules.py
    {"client.momentum": 0.9, "client.nesterov": True, "client.weight_decay": 0.1, "client.prox_mu": 1.0},
    {"client.optimizer": "client_rules:sign_sgd"}, {"client.optimizer": "client_rules:adam"},
    {"client.optimizer": DELETE, "client.momentum": DELETE, "client.nesterov": DELETE,
     "client.weight_decay": DELETE, "client.prox_mu": DELETE},  # a config saved before the options
])
def test_edge_values_pass(changes):
    validation.check_config(override(changes))


@pytest.mark.parametrize("heuristic", heuristics.HEURISTICS)
def test_every_heuristic_passes_with_a_pool(heuristic):
    validation.check_config(override({"fl.heuristic": heuristic, "fl.pool": '["smallest"]'}))


def test_plain_dict_config_passes():
    validation.check_config(config_lib.base_config().to_dict())


def test_existing_data_files_pass(tmp_path):
    npz, archive = tmp_path / "data.npz", tmp_path / "cifar-10-binary.tar.gz"
    npz.write_bytes(b"")
    archive.write_bytes(b"")
    validation.check_config(override({"data.name": "npz", "data.path": str(npz)}))
    validation.check_config(override({"data.archive": str(archive), "data.tfds_data_dir": str(tmp_path)}))


# --------------------------------------------------------------------------------------- bad fields

NAME_CASES = [
    ("fl.heuristic", "bogus", ["tracking_sandwich", "static", "dynamic", "random", "sandwich"]),
    ("fl.beta_schedule", "exponential", ["uniform", "constant", "linear", "cosine"]),
    ("model.conv_impl", "cudnn", ["xla", "im2col"]),
    ("data.name", "mnist", ["digits", "npz", "cifar10", "cifar100"]),
    ("data.partition", "pathological", ["dirichlet", "iid", "shards", "natural"]),
    ("model.dtype", "float16", ["float32", "bfloat16"]),
]


@pytest.mark.parametrize("field,value,allowed", NAME_CASES, ids=[c[0] for c in NAME_CASES])
def test_unknown_name_lists_allowed_values(field, value, allowed):
    [line] = problems(override({field: value}))
    assert f"{field}={value!r}" in line
    for name in allowed:
        assert repr(name) in line


# (overrides, substrings the single problem line must contain)
BAD_CASES = {
    # client counts
    "num_clients<1": ({"fl.num_clients": 0}, ["fl.num_clients=0", ">= 1"]),
    "per_round<1": ({"fl.clients_per_round": 0},
                    ["fl.clients_per_round=0: must be between 1 and fl.num_clients=20"]),
    "per_round_float": ({"fl.clients_per_round": 8.0},
                        ["fl.clients_per_round=8.0: must be between 1 and fl.num_clients=20", "integer"]),
    "per_round>K": ({"fl.clients_per_round": 9, "fl.num_clients": 8},
                    ["fl.clients_per_round=9: must be between 1 and fl.num_clients=8"]),
    "smallest_clients=P": ({"fl.smallest_clients": 8},
                           ["fl.smallest_clients=8: must be at most fl.clients_per_round - 1 = 7"]),
    "smallest_clients=0": ({"fl.smallest_clients": 0}, ["fl.smallest_clients=0", ">= 1"]),
    # partition
    "alpha=0": ({"data.alpha": 0.0}, ["data.alpha=0.0", "> 0"]),
    "alpha<0": ({"data.alpha": -0.5}, ["data.alpha=-0.5", "> 0"]),
    "shards<1": ({"data.shards_per_client": 0}, ["data.shards_per_client=0", ">= 1"]),
    "min_size<1": ({"data.min_client_size": 0}, ["data.min_client_size=0", ">= 1"]),
    "val_fraction=1": ({"data.val_fraction": 1.0}, ["data.val_fraction=1.0", "[0, 1)"]),
    "val_fraction<0": ({"data.val_fraction": -0.1}, ["data.val_fraction=-0.1", "[0, 1)"]),
    # non-positive counts and rates
    "rounds=0": ({"fl.rounds": 0}, ["fl.rounds=0", ">= 1"]),
    "epochs=0": ({"client.epochs": 0}, ["client.epochs=0", ">= 1"]),
    "batch=-1": ({"client.batch_size": -1}, ["client.batch_size=-1", ">= 1"]),
    "lr=0": ({"client.learning_rate": 0.0}, ["client.learning_rate=0.0", "> 0"]),
    "lr=nan": ({"client.learning_rate": float("nan")}, ["client.learning_rate=nan", "> 0"]),
    "clip<0": ({"client.clip_norm": -1.0}, ["client.clip_norm=-1.0", "> 0"]),
    "eval_every=0": ({"eval.every_rounds": 0}, ["eval.every_rounds=0", ">= 1"]),
    "eval_batch=0": ({"eval.batch_size": 0}, ["eval.batch_size=0", ">= 1"]),
    "checkpoint_every=0": ({"checkpoint.every_rounds": 0}, ["checkpoint.every_rounds=0", ">= 1"]),
    "checkpoint_keep=0": ({"checkpoint.keep": 0}, ["checkpoint.keep=0", ">= 1"]),
    "checkpoint_keep=1.5": ({"checkpoint.keep": 1.5}, ["checkpoint.keep=1.5"]),
    "memory_gib<0": ({"memory.available_gib": -1.0}, ["memory.available_gib=-1.0", ">= 0"]),
    "memory_check": ({"memory.check": 1}, ["memory.check"]),
    "distributed_address": ({"distributed.coordinator_address": "localhost"},
                            ["distributed.coordinator_address='localhost'", "host:port"]),
    "distributed_processes<0": ({"distributed.num_processes": -2}, ["distributed.num_processes=-2", ">= 0"]),
    "distributed_id>=n": ({"distributed.num_processes": 2, "distributed.process_id": 2},
                          ["distributed.process_id=2", "< distributed.num_processes=2"]),
    "distributed_initialize": ({"distributed.initialize": "yes"}, ["distributed.initialize"]),
    "log_every=0": ({"log_every_rounds": 0}, ["log_every_rounds=0", ">= 1"]),
    # beta schedule
    "beta0>1": ({"fl.beta0": 1.5}, ["fl.beta0=1.5", "[0, 1]"]),
    "beta0<0": ({"fl.beta0": -0.1}, ["fl.beta0=-0.1", "[0, 1]"]),
    "beta_final>1": ({"fl.beta_final": 2.0}, ["fl.beta_final=2.0", "[0, 1]", "-1"]),
    "beta_final=-0.5": ({"fl.beta_final": -0.5}, ["fl.beta_final=-0.5", "[0, 1]", "-1"]),
    "decay=0": ({"fl.decay_fraction": 0.0}, ["fl.decay_fraction=0.0", "(0, 1]"]),
    "decay_longer_than_run": ({"fl.decay_fraction": 1.5}, ["fl.decay_fraction=1.5", "(0, 1]"]),
    "decay_under_1_round": ({"fl.decay_fraction": 0.005, "fl.rounds": 100},
                            ["fl.decay_fraction=0.005", "fl.rounds=100", ">= 0.01"]),
    # chunks and unrolling
    "chunk<0": ({"fl.chunk_size": -1}, ["fl.chunk_size=-1", ">= 0"]),
    "chunk_not_dividing": ({"fl.chunk_size": 3},
                           ["fl.chunk_size=3", "must divide fl.clients_per_round=8", "[1, 2, 4, 8]"]),
    "chunk>P": ({"fl.chunk_size": 16}, ["fl.chunk_size=16", "fl.clients_per_round=8", "[1, 2, 4, 8]"]),
    "unroll<0": ({"client.scan_unroll": -1}, ["client.scan_unroll=-1", ">= 0"]),
    # client optimiser (docs/algorithm.md 5.1)
    "momentum=1": ({"client.momentum": 1.0}, ["client.momentum=1.0", "[0, 1)"]),
    "weight_decay<0": ({"client.weight_decay": -0.1}, ["client.weight_decay=-0.1", ">= 0"]),
    "prox_mu<0": ({"client.prox_mu": -1.0}, ["client.prox_mu=-1.0", ">= 0"]),
    "nesterov_without_momentum": ({"client.nesterov": True},
                                  ["client.nesterov=True", "needs client.momentum > 0"]),
    "client_optimizer_unknown": ({"client.optimizer": "adam"},
                                 ["client.optimizer='adam'", "not a registered client optimizer", "['sgd']"]),
    "client_optimizer_not_importable": ({"client.optimizer": "no_such_package.rules:adam"},
                                        ["client.optimizer='no_such_package.rules:adam'", "cannot import"]),
    "client_optimizer_no_function": ({"client.optimizer": "client_rules:missing"},
                                     ["client.optimizer='client_rules:missing'", "has no 'missing'"]),
    "client_optimizer_no_transformation": (
        {"client.optimizer": "client_rules:not_a_transformation"},
        ["client.optimizer='client_rules:not_a_transformation'", "not an optax GradientTransformation"]),
    "client_optimizer_raises": ({"client.optimizer": "client_rules:raises"},
                                ["client.optimizer='client_rules:raises'", "raised KeyError"]),
    "client_optimizer_with_a_bad_option": ({"client.optimizer": "client_rules:raises", "client.momentum": 2.0},
                                           ["client.momentum=2.0"]),
    # archs and space
    "tracked_outside_space": ({"eval.tracked": '{"big": {"d": [3, 3, 3, 3], "e": 0.25}}'},
                              ["eval.tracked=", "[3, 3, 3, 3]", "0..2"]),
    "tracked_unknown_name": ({"eval.tracked": '{"x": "huge"}'}, ["eval.tracked=", "'huge'", "smallest"]),
    "pool_outside_space": ({"fl.pool": '[{"d": [0, 0, 0, 0], "e": 0.3}]'}, ["fl.pool=", "0.3"]),
    "pool_not_json": ({"fl.pool": "largest"}, ["fl.pool='largest'"]),
    "pool_missing_static": ({"fl.heuristic": "static"}, ["fl.pool=''", "'static'"]),
    "pool_missing_dynamic": ({"fl.heuristic": "dynamic"}, ["fl.pool=''", "'dynamic'"]),
    "space_divisor": ({"space.divisor": 0}, ["space.divisor=0"]),
    "space_strides": ({"space.stage_strides": (1, 2)}, ["space.stage_strides=(1, 2)"]),
    "space_collapsed": ({"space.divisor": 64}, ["space.expand_choices", "space.divisor=64"]),
    # types
    "float_rounds": ({"fl.rounds": 10.5}, ["fl.rounds=10.5", "integer"]),
    "float_int_value": ({"client.epochs": 2.0}, ["client.epochs=2.0", "integer"]),
    "bool_batch": ({"client.batch_size": True}, ["client.batch_size=True", "integer"]),
    "str_clients": ({"fl.num_clients": "20"}, ["fl.num_clients='20'", "integer >= 1, not a str"]),
    "str_lr": ({"client.learning_rate": "0.1"}, ["client.learning_rate='0.1'", "number"]),
    "flag": ({"data.flip": "yes"}, ["data.flip='yes'", "True or False"]),
    "extremes_flag": ({"fl.count_random_extremes": 1}, ["fl.count_random_extremes=1", "True or False"]),
    "weight_by_size_str": ({"fl.weight_by_size": "True"},
                           ["fl.weight_by_size='True': must be True or False"]),
    "pool_type": ({"fl.pool": ["largest"]}, ["fl.pool=['largest']", "string"]),
    # differential privacy (docs/algorithm.md 4.3)
    "dp_noise_without_clip": ({"dp.noise_multiplier": 1.0},
                              ["dp.noise_multiplier=1.0: needs dp.clip_norm > 0", "dp.clip_norm=0"]),
    "dp_delta_1": ({"dp.delta": 1.0}, ["dp.delta=1.0", "(0, 1)"]),
    "dp_delta_0": ({"dp.delta": 0.0}, ["dp.delta=0.0", "(0, 1)"]),
    "dp_delta>1": ({"dp.delta": 2.0}, ["dp.delta=2.0", "(0, 1)"]),
    "dp_clip<0": ({"dp.clip_norm": -1.0}, ["dp.clip_norm=-1.0", ">= 0"]),
    "dp_noise<0": ({"dp.clip_norm": 1.0, "dp.noise_multiplier": -0.5}, ["dp.noise_multiplier=-0.5", ">= 0"]),
    "dp_weight_by_size": ({"dp.clip_norm": 1.0, "fl.weight_by_size": True},
                          ["fl.weight_by_size=True", "dp.clip_norm=1.0", "not be bounded"]),
    # other fields
    "seed<0": ({"seed": -1}, ["seed=-1", "in [0, 2**63)"]),
    "seed_too_big": ({"seed": 2 ** 63}, ["seed=9223372036854775808", "in [0, 2**63)"]),
    "crop<0": ({"data.crop_padding": -1}, ["data.crop_padding=-1", ">= 0"]),
    "cutout<0": ({"data.cutout_size": -2}, ["data.cutout_size=-2", ">= 0"]),
    "typo_field": ({"fl.num_client": 5}, ["fl.num_client: unknown field", "fl.num_clients"]),
    "typo_section": ({"trian": {}}, ["trian: unknown field"]),
    "space_typo": ({"space.stem_widht": 8}, ["space.stem_widht: unknown field", "space.stem_width"]),
    "missing_field": ({"fl.rounds": DELETE}, ["fl.rounds: missing"]),
    # data sources
    "npz_without_path": ({"data.name": "npz"}, ["data.path=''", "data.name='npz'"]),
    "npz_missing_file": ({"data.name": "npz", "data.path": "/nonexistent/data.npz"},
                         ["data.path='/nonexistent/data.npz'", "does not exist"]),
    "archive_missing": ({"data.archive": "/nonexistent/cifar-10-binary.tar.gz"},
                        ["data.archive='/nonexistent/cifar-10-binary.tar.gz'", "does not exist"]),
    "tfds_dir_missing": ({"data.tfds_data_dir": "/nonexistent/tfds"},
                         ["data.tfds_data_dir='/nonexistent/tfds'", "does not exist"]),
}


@pytest.mark.parametrize("changes,expected", list(BAD_CASES.values()), ids=list(BAD_CASES))
def test_bad_field_gives_one_line_naming_field_and_value(changes, expected):
    [line] = problems(override(changes))
    for text in expected:
        assert text in line


def test_noise_without_dp_accounting_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dp_accounting", None)  # as if not installed
    [line] = problems(override({"dp.clip_norm": 1.0, "dp.noise_multiplier": 1.0}))
    assert line.startswith("dp.noise_multiplier=1.0: ")
    assert "pip install 'superfed_jax[dp]'" in line
    validation.check_config(override({"dp.clip_norm": 1.0}))  # clipping alone needs no accountant


def test_weight_by_size_is_a_problem_only_with_clipping():
    # Without a clip norm the noise is the one mistake (weights by size are fine when DP is off) ...
    [line] = problems(override({"dp.noise_multiplier": 1.0, "fl.weight_by_size": True}))
    assert line.startswith("dp.noise_multiplier=1.0: needs dp.clip_norm > 0")
    # ... with one, weighting by size is.
    [line] = problems(override({"dp.clip_norm": 2.0, "dp.noise_multiplier": 1.0, "fl.weight_by_size": True}))
    assert line.startswith("fl.weight_by_size=True: cannot be used with dp.clip_norm=2.0 > 0")


def test_directory_is_not_a_data_file(tmp_path):
    [line] = problems(override({"data.name": "npz", "data.path": str(tmp_path)}))
    assert f"data.path={str(tmp_path)!r}: is not a file" in line


def test_float_override_on_a_typed_config_dict():
    config = config_lib.base_config()
    with config.ignore_type():
        config.fl.rounds = 10.5
    assert problems(config) == ["fl.rounds=10.5: must be an integer >= 1, not a float"]


def test_every_problem_is_listed_in_section_order():
    lines = problems(override({"model.dtype": "float16", "fl.rounds": 0, "fl.chunk_size": 3,
                               "client.epochs": 0, "eval.tracked": '{"x": "huge"}'}))
    assert [line.split("=")[0] for line in lines] == [
        "model.dtype", "fl.chunk_size", "fl.rounds", "client.epochs", "eval.tracked"]


def test_clients_per_round_without_a_valid_num_clients():
    assert problems(override({"fl.num_clients": 0, "fl.clients_per_round": 0})) == [
        "fl.num_clients=0: must be an integer >= 1", "fl.clients_per_round=0: must be >= 1"]


def test_arch_checks_are_skipped_when_the_space_is_bad():
    lines = problems(override({"space.blocks_per_stage": 0, "eval.tracked": '{"x": "huge"}'}))
    assert lines == ["space.blocks_per_stage=0: must be a positive integer"]


# ------------------------------------------------------------------------------------- the schema


def flat_fields(tree: dict, prefix: str = "") -> dict:
    """Dotted name -> value of every leaf of a nested dict, in order."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flat_fields(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_every_base_config_field_has_one_documented_schema_entry():
    fields = flat_fields(config_lib.base_config().to_dict())
    assert sorted(fields) == sorted(schema.field_names())
    for name, value in fields.items():
        entry = schema.field(name)
        assert entry.default == value and entry.kind in schema.KINDS
        assert entry.doc.strip() and "\n" not in entry.doc, name
    sections = {name for name, value in config_lib.base_config().to_dict().items() if isinstance(value, Mapping)}
    assert sections == set(schema.SECTIONS) and all(schema.SECTIONS.values())
    # The table lists each section's fields together, so the base config's sections keep one order.
    order = [f.section for f in schema.FIELDS if f.section]
    assert order == sorted(order, key=list(schema.SECTIONS).index)


def test_shipped_config_files_set_only_schema_fields():
    for name in ("digits", "cifar10", "cifar100"):
        assert set(flat_fields(load_config_file(name).to_dict())) == set(schema.field_names())


# One value of the wrong kind for each kind of field.
WRONG_KIND = {"int": "7", "number": "0.5", "flag": "yes", "text": 3, "choice": "no-such-name",
              "ints": "wide", "numbers": "many"}


@pytest.mark.parametrize("name", schema.field_names())
def test_every_schema_field_is_checked(name):
    """check_config reads every field: one of the wrong kind gives exactly one line naming it."""
    entry = schema.field(name)
    [line] = problems(override({name: WRONG_KIND[entry.kind]}))
    assert line.startswith(f"{name}=")


def ranged_fields():
    return [f for f in schema.FIELDS if isinstance(f.allowed, schema.Range) and f.section != "space"
            and math.isfinite(f.allowed.low) and f.name != "fl.clients_per_round"]


@pytest.mark.parametrize("entry", ranged_fields(), ids=lambda f: f.name)
def test_ranges_come_from_the_schema(entry):
    """Just below the declared lower bound is refused with the schema's message; the bound itself passes."""
    low, step = entry.allowed.low, (0.5 if entry.kind == "number" else 1)
    inside = low + step if entry.allowed.low_open else low
    outside = low if entry.allowed.low_open else low - step
    if entry.kind == "number":
        inside, outside = float(inside), float(outside)
    # The fields other checks compare with this one, set so that only this one can be wrong.
    changes = {"fl.rounds": 1000, "fl.decay_fraction": 1.0, "fl.clients_per_round": 1}
    validation.check_config(override({**changes, entry.name: inside}))
    [line] = problems(override({**changes, entry.name: outside}))
    assert line == entry.problem(outside)


@pytest.mark.parametrize("name,owner", [
    ("model.conv_impl", conv.CONV_IMPLS), ("model.dtype", model.DTYPES),
    ("data.name", load.DATASET_NAMES), ("data.partition", partition.PARTITION_METHODS),
    ("fl.heuristic", heuristics.HEURISTICS), ("fl.beta_schedule", schedules.SCHEDULES),
    ("fl.client_layout", client.CLIENT_LAYOUTS),
])
def test_allowed_names_are_the_owning_modules_lists(name, owner):
    assert schema.field(name).allowed is owner
    for value in owner:
        # A natural partition reads an .npz file's client_id array (tests/test_natural_partition.py).
        dataset = {"data.name": "npz"} if value == "natural" else {}
        config = override({name: value, "fl.pool": '["largest"]', "data.path": __file__, **dataset})
        if name == "data.name" and value in load.TEXT_DATASETS:  # token windows: the ResNet cannot read them
            with pytest.raises(ValueError, match=f"data.name='{value}': its examples are token windows"):
                validation.check_config(config)
            continue
        validation.check_config(config)


def test_no_second_copy_of_the_allowed_names():
    owners = {"DTYPES": model.DTYPES, "POOL_HEURISTICS": heuristics.POOL_HEURISTICS,
              "CLIENT_LAYOUTS": client.CLIENT_LAYOUTS, "DECAYING_SCHEDULES": schedules.DECAYING_SCHEDULES}
    for name, owner in owners.items():  # validation may import a list, never define its own
        assert getattr(validation, name, owner) is owner
    assert set(heuristics.POOL_HEURISTICS) <= set(heuristics.HEURISTICS)
    assert set(schedules.DECAYING_SCHEDULES) <= set(schedules.SCHEDULES)


def test_optional_fields_are_the_loaders_defaults():
    absent = schema.when_absent()
    assert {name.split(".", 1)[1]: value for name, value in absent.items() if name.startswith("data.")} \
        == load.OPTIONAL_FIELDS
    for name in absent:
        validation.check_config(override({name: DELETE}))
    for name in set(schema.field_names()) - set(absent):
        if name.startswith("space."):
            continue  # space.SearchSpace has its own defaults for the space's fields
        assert problems(override({name: DELETE})) == [
            f"{name}: missing; every field of superfed_jax/config.py's base_config() is needed"]


def test_resumable_fields_come_from_the_schema():
    # The rule before the schema existed: these fields, and every field of these sections, may change.
    before = {"fl.rounds", "fl.chunk_size", "fl.client_layout", "client.scan_unroll", "eval.",
              "log_every_rounds", "checkpoint.", "distributed.", "memory.", "cost.", "dry_run"}
    # Added since: overwrite (start over in an earlier run's workdir; says nothing of the result) and
    # model.execution (masked or sliced compute the same state, to float rounding); note (a line printed
    # at the start); log. (where metrics are copied to: Weights & Biases); compilation_cache (where
    # compiled programs are kept, not what they compute).
    added = {"overwrite", "model.execution", "note", "log.", "compilation_cache"}
    assert set(resume.RESUMABLE_FIELDS) == before | added
    resumable = {f.name for f in schema.FIELDS if f.resumable}
    base = config_lib.base_config().to_dict()
    for name in schema.field_names():
        changed = override({name: "changed"}).to_dict()
        assert (resume.config_differences(base, changed) == []) == (name in resumable), name


@pytest.mark.parametrize("name,expected", [
    ("fl.round", "fl.round: unknown field (did you mean fl.rounds?); fields of fl: ["),
    ("data.flipp", "data.flipp: unknown field (did you mean data.flip?)"),
    ("trian.epochs", "trian: unknown field"),
    ("fl.rounds.x", "fl.rounds.x: unknown field; fl.rounds is a field, not a section"),
])
def test_unknown_field_names_the_closest_field(name, expected):
    assert validation.unknown_field(name).startswith(expected)


@pytest.mark.parametrize("name", ["fl.rounds", "space.stage_widths", "fl", "seed"])
def test_known_fields_and_sections_are_not_unknown(name):
    assert validation.unknown_field(name) is None


# ------------------------------------------------------------------------------------------ data


def data_problems(config, num_examples: int) -> list[str]:
    """The lines of `check_against_data`'s ValueError (fails the test if it passes)."""
    with pytest.raises(ValueError) as info:
        validation.check_against_data(config, num_examples)
    return str(info.value).splitlines()


@pytest.mark.parametrize("changes,num_examples", [
    ({}, 200),  # dirichlet: 20 clients * 10 examples, exactly enough
    ({}, 50000),
    ({"data.partition": "iid"}, 20),  # one example each
    ({"data.partition": "shards"}, 40),  # 20 clients * 2 shards
])
def test_enough_examples_pass(changes, num_examples):
    validation.check_against_data(override(changes), num_examples)


def test_more_clients_than_examples():
    [line] = data_problems(override({"data.partition": "iid"}), 15)
    assert "fl.num_clients=20" in line and "15 training examples" in line


def test_dirichlet_min_client_size_cannot_be_met():
    [line] = data_problems(config_lib.base_config(), 150)
    assert "data.min_client_size=10" in line and "fl.num_clients=20" in line and "150" in line
    assert "no partition can give every one of" in line
    assert "data.min_client_size to at most 7" in line and "fl.num_clients to at most 15" in line


def test_shards_need_one_example_each():
    [line] = data_problems(override({"data.partition": "shards", "data.shards_per_client": 3}), 50)
    assert "data.shards_per_client=3" in line and "60 shards" in line and "50 training examples" in line
    assert "shards_per_client to at most 2" in line and "fl.num_clients to at most 16" in line


def test_empty_training_set():
    [line] = data_problems(config_lib.base_config(), 0)
    assert "empty" in line and "data.val_fraction" in line


@pytest.mark.parametrize("num_examples", [-1, 10.0, "100"])
def test_bad_example_count(num_examples):
    [line] = data_problems(config_lib.base_config(), num_examples)
    assert f"num_train_examples={num_examples!r}" in line
