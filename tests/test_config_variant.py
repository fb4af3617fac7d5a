"""Tests of `config.apply_variant`: the `:smoke` and `:fedavg=ARCH` variants of `--config=FILE:arg`.

Pure Python: config files are loaded as launch.py's config flag loads them; nothing is trained.
"""
import json

import ml_collections
import pytest

from superfed_jax import config as config_lib
from superfed_jax import validation
from test_validation import load_config_file

SHIPPED = ("digits", "cifar10", "cifar100")
# What `:smoke` promises in its docstring, written out here as the reference.
SMOKE_FIELDS = {
    "space.stem_width": 4, "space.stage_widths": (32, 64), "space.stage_strides": (1, 2),
    "space.blocks_per_stage": 2, "space.divisor": 1,
    "fl.rounds": 2, "fl.num_clients": 4, "fl.clients_per_round": 2, "client.epochs": 1,
    "eval.every_rounds": 1, "eval.batch_size": 50, "checkpoint.every_rounds": 1, "log_every_rounds": 1,
}


def flat(config) -> dict:
    """{'a.b': value} for every leaf field of a config, tuples kept as tuples."""
    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from walk(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", tuple(value) if isinstance(value, list) else value
    return dict(walk(config.to_dict(), ""))


@pytest.mark.parametrize("name", SHIPPED)
def test_smoke_changes_exactly_the_documented_fields(name):
    plain, smoke = flat(load_config_file(name)), flat(load_config_file(name, "smoke"))
    assert plain.keys() == smoke.keys()
    changed = {key for key in plain if plain[key] != smoke[key]}
    assert changed <= set(SMOKE_FIELDS)  # nothing else moves (data, learning rate, chunk size, ...)
    for key, value in SMOKE_FIELDS.items():
        assert smoke[key] == value, key


@pytest.mark.parametrize("name,arg", [(name, arg) for name in SHIPPED
                                      for arg in ("smoke", "smoke,fedavg=largest", "fedavg=smallest,smoke")])
def test_smoke_configs_pass_validation(name, arg):
    config = load_config_file(name, arg)
    validation.check_config(config)
    # The shipped chunk sizes must divide the smoke run's clients per round (the docstring's promise).
    assert config.fl.chunk_size == 0 or config.fl.clients_per_round % config.fl.chunk_size == 0


def test_smoke_combines_with_fedavg_in_either_order():
    """Both orders equal FedAvg applied by hand to the smoke config."""
    by_hand = flat(config_lib.fedavg_baseline(load_config_file("digits", "smoke"), "largest"))
    assert flat(load_config_file("digits", "smoke,fedavg=largest")) == by_hand
    assert flat(load_config_file("digits", "fedavg=largest, smoke")) == by_hand
    assert by_hand["fl.heuristic"] == "static" and by_hand["fl.rounds"] == 2


def test_fedavg_arch_json_with_commas_stays_one_variant():
    arch = {"d": [0, 1], "e": [0.1, 0.25, 0.14, 0.22]}  # a valid arch of the smoke space
    spec = json.dumps(arch, separators=(",", ":"))
    config = load_config_file("digits", f"smoke,fedavg={spec}")
    assert json.loads(config.fl.pool) == [arch]
    assert json.loads(config.eval.tracked) == {"fedavg": arch}
    assert config.fl.rounds == 2 and config.space.stage_widths == (32, 64)
    validation.check_config(config)
    # The JSON first, then smoke: the same config.
    assert flat(load_config_file("digits", f"fedavg={spec},smoke")) == flat(config)


def test_no_variant_leaves_the_file_config_alone():
    assert flat(load_config_file("digits", "")) == flat(config_lib.apply_variant(load_config_file("digits"), ""))
    assert load_config_file("digits").fl.rounds == 150


@pytest.mark.parametrize("arg,problem", [
    ("smok", "'smok' is not a variant"),
    ("smoke=1", "'smoke=1' is not a variant"),
    ("fedavg=", "'fedavg=' is not a variant"),
    ("fedavg", "'fedavg' is not a variant"),
    ("smoke,,fedavg=largest", "'' is not a variant"),
    ("smoke,smoke", "'smoke' given twice"),
    ("fedavg=largest,fedavg=smallest", "'fedavg' given twice"),
])
def test_bad_variant_is_refused_naming_it_and_the_allowed_forms(arg, problem):
    with pytest.raises(ValueError) as info:
        config_lib.apply_variant(config_lib.base_config(), arg)
    message = str(info.value)
    assert message.startswith(f"config argument {arg!r}: {problem};")
    for allowed in ("''", "'smoke'", "'fedavg=ARCH'", "smallest, small, medium, largest", "arch JSON"):
        assert allowed in message


def test_fedavg_leaves_weight_by_size_as_set():
    """FedAvg baselines follow fl.weight_by_size like any run (docs/algorithm.md 4.1): the variant neither
    sets nor resets it, and the round settings built from the config carry it."""
    from superfed_jax.run import build  # jax; only this test needs it

    assert load_config_file("digits", "smoke,fedavg=largest").fl.weight_by_size is False  # the default
    config = load_config_file("digits", "smoke")
    config.fl.weight_by_size = True  # as --config.fl.weight_by_size=True does after the variant
    baseline = config_lib.fedavg_baseline(config, "largest")
    assert baseline.fl.weight_by_size is True
    validation.check_config(baseline)
    family = config_lib.make_family(baseline)
    assert build.round_settings(baseline, family).weight_by_size is True
    # A config saved before the field existed builds as before: without size weighting.
    older = baseline.to_dict()
    del older["fl"]["weight_by_size"]
    assert build.round_settings(ml_collections.ConfigDict(older), family).weight_by_size is False
