"""The user-family template `examples/elastic_mlp.py` keeps the family contract (tests/family_contract.py),
counts MACs, params and subnets as worked out by hand, and rejects archs and spaces outside its space."""
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import family_contract
from superfed_jax.supernet import archs as archs_lib
from superfed_jax.supernet import family as family_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # examples/ is not a package of the project; launch.py finds it from the root
    sys.path.insert(0, REPO)

from examples.elastic_mlp import SPACE_FIELDS, ElasticMLP, MLPArch  # noqa: E402

# Hand-worked space: 2x2x1 images (4 features), two hidden layers of 2 or 3 units, 3 classes.
TINY = ElasticMLP(hidden_layers=2, width_choices=(2, 3), input_shape=(2, 2, 1), num_classes=3)


def _batch(family, count=5, seed=0):
    rng = np.random.default_rng(seed)
    inputs = rng.standard_normal((count,) + family.data_shape.input_shape).astype(np.float32)
    labels = rng.integers(0, family.data_shape.num_classes, count).astype(np.int32)
    return inputs, labels, rng.uniform(0.5, 1.5, count).astype(np.float32)


@pytest.mark.parametrize("family", [TINY, ElasticMLP()], ids=["tiny", "default"])
def test_elastic_mlp_keeps_the_family_contract(family):
    params = family.init(jax.random.key(0))
    family_contract.check_family(family, params, *_batch(family))


def test_import_path_resolves_as_model_family_names_it():
    assert family_lib.family_class("examples.elastic_mlp:ElasticMLP") is ElasticMLP
    assert [f.name for f in ElasticMLP.space_fields()] == [
        "space.hidden_layers", "space.width_choices", "space.input_shape", "space.num_classes"]
    assert ElasticMLP.space_fields() is SPACE_FIELDS
    # The fields' defaults are the class's defaults, so a config of them builds the default family.
    defaults = {f.key: f.default for f in SPACE_FIELDS}
    assert ElasticMLP.from_config(defaults) == ElasticMLP()
    assert ElasticMLP.from_config({**defaults, **ElasticMLP.smoke_space()}).num_subnets() == 2 + 4


def test_costs_and_subnet_count_by_hand():
    # Layers 4 -> k0 [-> k1] -> 3; a dense layer costs fan_in * fan_out MACs, params add fan_out biases.
    cases = {  # JSON: (MACs, params)
        '{"depth": 1, "width": [2]}': (4 * 2 + 2 * 3, 4 * 2 + 2 + 2 * 3 + 3),  # 14, 19
        '{"depth": 1, "width": [3]}': (4 * 3 + 3 * 3, 4 * 3 + 3 + 3 * 3 + 3),  # 21, 27
        '{"depth": 2, "width": [3, 2]}': (4 * 3 + 3 * 2 + 2 * 3, 4 * 3 + 3 + 3 * 2 + 2 + 2 * 3 + 3),  # 24, 32
        '{"depth": 2, "width": [3, 3]}': (4 * 3 + 3 * 3 + 3 * 3, 4 * 3 + 3 + 3 * 3 + 3 + 3 * 3 + 3),  # 30, 39
    }
    archs = [archs_lib.parse_arch(TINY, text) for text in cases]
    batch = family_lib.stack(archs)
    macs, params = zip(*cases.values())
    assert [TINY.macs(a) for a in archs] == list(macs) == [14, 21, 24, 30]
    assert [TINY.params(a) for a in archs] == list(params) == [19, 27, 32, 39]
    np.testing.assert_array_equal(TINY.macs_batch(batch), macs)
    np.testing.assert_array_equal(TINY.params_batch(batch), params)
    assert TINY.macs_batch(batch).dtype == np.int64
    np.testing.assert_array_equal(jax.jit(TINY.params_array)(batch), params)
    np.testing.assert_array_equal(jax.jit(TINY.macs_array)(batch), np.asarray(macs, np.float32))
    assert TINY.cost_summary(archs[2]) == {"arch": {"depth": 2, "width": [3, 2]}, "macs": 24,
                                           "gmacs": 24e-9, "params": 32}
    # Depth 1: 2 widths; depth 2: 2 * 2. The default space: 4 + 16 + 64.
    assert TINY.num_subnets() == 6
    assert ElasticMLP().num_subnets() == 84
    # The default space's supernet: 64 -> 64 -> 64 -> 64 -> 10.
    assert ElasticMLP().macs(ElasticMLP().largest()) == 64 * 64 * 3 + 64 * 10 == 12928
    assert ElasticMLP().params(ElasticMLP().largest()) == 12928 + 3 * 64 + 10


def test_subnet_count_is_the_number_of_distinct_canonical_archs():
    family = ElasticMLP(hidden_layers=3, width_choices=(2, 3, 5), input_shape=(1, 1, 1), num_classes=2)
    every = [MLPArch(np.int32(d), np.array(w, np.int32)) for d in range(3) for w in np.ndindex(3, 3, 3)]
    assert len({family_lib.to_genes(family, family.canonical(a)).tobytes() for a in every}) \
        == family.num_subnets() == 3 + 9 + 27


def test_masks_of_one_arch_by_hand():
    arch = TINY.arch_from_json({"depth": 2, "width": [2, 3]})
    masks = jax.tree.map(np.asarray, TINY.masks(arch))
    np.testing.assert_array_equal(masks["hidden_0"]["w"], [[1, 1, 0]])  # every input, first 2 units
    np.testing.assert_array_equal(masks["hidden_1"]["w"], [[1, 1, 1], [1, 1, 1], [0, 0, 0]])
    np.testing.assert_array_equal(masks["hidden_1"]["b"], [1, 1, 1])
    np.testing.assert_array_equal(masks["head"]["w"], [[1], [1], [1]])
    skipped = jax.tree.map(np.asarray, TINY.masks(TINY.arch_from_json({"depth": 1, "width": 2})))
    np.testing.assert_array_equal(skipped["hidden_1"]["w"], np.zeros((3, 3)))
    np.testing.assert_array_equal(skipped["head"]["w"], [[1], [1], [0]])


def test_embed_writes_a_dense_subnet_back_into_numpy_or_jax_params():
    params = TINY.init(jax.random.key(0))
    arch = TINY.arch_from_json({"depth": 1, "width": [2]})
    dense = jax.tree.map(lambda x: x + 1, TINY.extract(params, arch))
    for supernet in (params, jax.tree.map(np.asarray, params)):  # e.g. params read from a checkpoint
        embedded = TINY.embed(dense, arch, supernet)
        np.testing.assert_array_equal(embedded["hidden_0"]["w"][:, :2], params["hidden_0"]["w"][:, :2] + 1)
        np.testing.assert_array_equal(embedded["hidden_0"]["w"][:, 2], params["hidden_0"]["w"][:, 2])
        np.testing.assert_array_equal(embedded["head"]["w"][:2], params["head"]["w"][:2] + 1)
        np.testing.assert_array_equal(embedded["hidden_1"]["w"], params["hidden_1"]["w"])


def test_a_batch_of_archs_under_vmap_equals_each_arch_alone():
    # The round runs clients side by side: apply and masks are vmapped over a leading arch axis.
    family = ElasticMLP(hidden_layers=3, width_choices=(2, 3, 5), input_shape=(3, 3, 2), num_classes=4)
    params = family.init(jax.random.key(1))
    inputs = _batch(family)[0]
    archs = family.sample(jax.random.key(2), (6,))
    logits = jax.jit(jax.vmap(family.apply, in_axes=(None, None, 0)))(params, inputs, archs)
    masks = jax.jit(jax.vmap(family.masks))(archs)
    for i, arch in enumerate(family_lib.unstack(archs)):
        np.testing.assert_allclose(logits[i], family.apply(params, inputs, arch), rtol=1e-6, atol=1e-6)
        for a, b in zip(jax.tree.leaves(masks), jax.tree.leaves(family.masks(arch))):
            np.testing.assert_array_equal(a[i], b)


def test_a_skipped_layer_passes_its_input_through():
    params = TINY.init(jax.random.key(0))
    inputs = _batch(TINY)[0]
    one_layer = TINY.arch_from_json({"depth": 1, "width": [3]})
    # Whatever the second layer's weights, a depth-1 arch never reads them.
    changed = jax.tree.map(lambda x: x, params)
    changed["hidden_1"] = {"w": jnp.full((3, 3), jnp.nan), "b": jnp.full((3,), jnp.inf)}
    np.testing.assert_array_equal(TINY.apply(changed, inputs, one_layer), TINY.apply(params, inputs, one_layer))
    hidden = jax.nn.relu(inputs.reshape(5, -1) @ params["hidden_0"]["w"] + params["hidden_0"]["b"])
    np.testing.assert_allclose(TINY.apply(params, inputs, one_layer),
                               hidden @ params["head"]["w"] + params["head"]["b"], rtol=1e-6, atol=1e-6)


def test_arch_json_round_trip_and_named_archs():
    arch = TINY.arch_from_json({"depth": 2, "width": [3, 2]})
    assert int(arch.depth) == 1 and arch.width.tolist() == [1, 0]
    assert TINY.arch_to_json(arch) == {"depth": 2, "width": [3, 2]}
    # One width for every layer that runs; the skipped layer's width is not written.
    assert TINY.arch_to_json(TINY.arch_from_json({"depth": 1, "width": 3})) == {"depth": 1, "width": [3]}
    assert TINY.arch_to_json(MLPArch(np.int32(0), np.array([1, 1], np.int32))) == {"depth": 1, "width": [3]}
    tracked = {name: ElasticMLP().arch_to_json(a) for name, a in ElasticMLP().default_tracked().items()}
    assert tracked == {"smallest": {"depth": 1, "width": [16]}, "small": {"depth": 2, "width": [32, 32]},
                       "medium": {"depth": 3, "width": [48, 48, 48]},
                       "largest": {"depth": 3, "width": [64, 64, 64]}}
    assert TINY.arch_to_json(archs_lib.arch_from_spec(TINY, "largest")) == {"depth": 2, "width": [3, 3]}


@pytest.mark.parametrize("spec, message", [
    ({"depth": 1}, r"arch \{'depth': 1\}: need \{\"depth\": D, \"width\": \[one width per layer that runs\] "
                   r"or one width\} with D in 1..2 and widths from \[2, 3\]"),
    ({"depth": 1, "width": [2], "extra": 0}, "need {\"depth\": D"),
    ([1, [2]], r"arch \[1, \[2\]\]: need"),
    ({"depth": 0, "width": []}, r"arch depth=0: need .* D in 1..2"),
    ({"depth": 3, "width": [2, 2, 2]}, r"arch depth=3: need"),
    ({"depth": True, "width": [2]}, r"arch depth=True: need"),
    ({"depth": "2", "width": [2, 2]}, r"arch depth='2': need"),
    ({"depth": 2, "width": [2]}, r"arch width=\[2\] for depth 2: need .*one width per layer that runs"),
    ({"depth": 1, "width": "2"}, r"arch width='2' for depth 1: need"),
    ({"depth": 1, "width": [4]}, r"arch width 4 is not a choice: need .*widths from \[2, 3\]"),
    ({"depth": 1, "width": 2.5}, r"arch width=2.5 for depth 1: need"),
    ({"depth": 1, "width": [True]}, r"arch width True is not a choice"),
    ({"depth": 1, "width": [2.0]}, r"arch width 2.0 is not a choice"),
])
def test_archs_outside_the_space_are_refused_with_what_is_allowed(spec, message):
    with pytest.raises(ValueError, match=message):
        TINY.arch_from_json(spec)


def test_validate_refuses_bad_concrete_archs():
    TINY.validate(family_lib.stack([TINY.smallest(), TINY.largest()]))  # leading axes are fine
    with pytest.raises(ValueError, match=r"arch shapes depth \(\), width \(3,\): need \[...\] and \[..., 2\]"):
        TINY.validate(MLPArch(np.int32(0), np.zeros(3, np.int32)))
    with pytest.raises(ValueError, match=r"arch depth indices 2: allowed 0..1"):
        TINY.validate(MLPArch(np.int32(2), np.zeros(2, np.int32)))
    with pytest.raises(ValueError, match=r"arch width indices \[0, 2\]: allowed 0..1"):
        TINY.validate(MLPArch(np.int32(0), np.array([0, 2], np.int32)))


def test_space_from_config_and_data():
    family = ElasticMLP.from_config(TINY.space_dict(), data=family_lib.DataShape((8, 8, 1), 10))
    assert family.data_shape == family_lib.DataShape((8, 8, 1), 10)
    assert family.space_dict() == {"hidden_layers": 2, "width_choices": [2, 3], "input_shape": [8, 8, 1],
                                   "num_classes": 10}
    assert json.loads(json.dumps(family.space_dict())) == family.space_dict()
    assert ElasticMLP.from_config({**TINY.space_dict(), "width_choices": [2, 3]}) == TINY  # lists or tuples
    with pytest.raises(ValueError, match=r"config.space: .*'stage_widths'.*the fields of ElasticMLP are "
                                         r"\['hidden_layers', 'width_choices', 'input_shape', 'num_classes'\]"):
        ElasticMLP.from_config({"stage_widths": (8, 16)})
    with pytest.raises(ValueError, match=r"space.width_choices=\(3, 2\): must be strictly increasing"):
        ElasticMLP(width_choices=(3, 2))
    with pytest.raises(ValueError, match=r"space.width_choices=\(2, 2\): must be strictly increasing"):
        ElasticMLP(width_choices=(2, 2))
    with pytest.raises(ValueError, match=r"space.hidden_layers=0: must be a positive integer"):
        ElasticMLP(hidden_layers=0)
    with pytest.raises(ValueError, match=r"space.input_shape=\(80,\): must be an image shape \[H, W, C\]"):
        ElasticMLP.from_config({}, data=family_lib.DataShape((80,), 100))
    with pytest.raises(ValueError, match=r"model.dtype='float16': allowed values are"):
        ElasticMLP.from_config({}, dtype="float16")


def test_bfloat16_matmuls_stay_close_to_float32():
    family = ElasticMLP.from_config(ElasticMLP().space_dict(), dtype="bfloat16")
    params = family.init(jax.random.key(0))
    inputs = _batch(family)[0]
    arch = family.largest()
    logits = family.apply(params, inputs, arch)
    assert logits.dtype == jnp.float32 and params["head"]["w"].dtype == jnp.float32
    np.testing.assert_allclose(logits, ElasticMLP().apply(params, inputs, arch), rtol=0.05, atol=0.05)
