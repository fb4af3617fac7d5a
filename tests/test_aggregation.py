"""Tests for superfed_jax.aggregation (SuperFed masked, weighted aggregation)."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from superfed_jax.aggregation import CLIENT_SUMS, client_sum_for, finalize, masked_mean, masked_sums

SETTINGS = settings(max_examples=30, deadline=None)
# One fused compile per new shape is much cheaper than op-by-op eager dispatch; eager
# execution is covered by the other tests and compared with jit in test_jit_matches_eager.
jit_mean = jax.jit(masked_mean)


# ----------------------------------------------------------------------------- helpers
def loop_reference(params, masks, weights, previous):
    """Slow per-element reference: explicit loops over clients and elements, float64."""
    p_leaves, treedef = jax.tree.flatten(params)
    m_leaves = jax.tree.leaves(masks)
    prev_leaves = jax.tree.leaves(previous)
    weights = [float(w) for w in np.asarray(weights)]
    out = []
    for p, m, prev in zip(p_leaves, m_leaves, prev_leaves):
        p = np.asarray(p, np.float64)
        m = np.asarray(m).astype(np.float64)
        prev = np.asarray(prev, np.float64)
        res = np.empty(p.shape[1:], np.float64)
        for idx in np.ndindex(*p.shape[1:]):
            num = den = 0.0
            for c, w in enumerate(weights):
                # NumPy broadcasting aligns trailing axes: drop leading element axes the mask lacks.
                m_idx = tuple(0 if m.shape[1 + k] == 1 else i
                              for k, i in enumerate(idx[len(idx) - (m.ndim - 1):]))
                mval = m[(c,) + m_idx]
                num += w * mval * p[(c,) + idx]
                den += w * mval
            res[idx] = num / den if den > 0 else prev[idx]
        out.append(res)
    return jax.tree.unflatten(treedef, out)


def assert_trees_close(a, b, rtol=1e-5, atol=1e-5):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.shape(x) == np.shape(y)
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                                   rtol=rtol, atol=atol)


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def random_problem(rng, n_clients=5, mask_kind="broadcast", weight_zero_prob=0.2):
    """A nested-dict problem with leaves of rank 0..4 (after the client axis)."""
    shapes = {"conv": {"kernel": (3, 3, 2, 4), "bias": (4,)},
              "dense": {"kernel": (6, 5), "scale": ()},
              "emb": (7, 3)}
    params = jax.tree.map(lambda s: rng.normal(size=(n_clients,) + s).astype(np.float32),
                          shapes, is_leaf=lambda x: isinstance(x, tuple))

    def make_mask(s):
        if mask_kind == "ones":
            return np.ones((n_clients,) + s, np.float32)
        ms = tuple(d if rng.random() < 0.5 else 1 for d in s)  # broadcastable ...
        ms = ms[rng.integers(0, len(ms) + 1):]  # ... possibly missing leading axes
        if mask_kind == "broadcast_bool":
            return rng.random((n_clients,) + ms) < 0.6
        return (rng.random((n_clients,) + ms) < 0.6).astype(np.float32)

    masks = jax.tree.map(make_mask, shapes, is_leaf=lambda x: isinstance(x, tuple))
    weights = rng.uniform(0.1, 3.0, n_clients).astype(np.float32)
    weights[rng.random(n_clients) < weight_zero_prob] = 0.0
    previous = jax.tree.map(lambda s: rng.normal(size=s).astype(np.float32), shapes,
                            is_leaf=lambda x: isinstance(x, tuple))
    return params, masks, weights, previous


# ----------------------------------------------------------------------------- reference
@st.composite
def problems(draw):
    n = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n_leaves = draw(st.integers(1, 4))
    params, masks, previous = {}, {}, {}
    for i in range(n_leaves):
        shape = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=3)))
        kind = draw(st.sampled_from(["bool", "binary", "float"]))
        # Broadcastable mask: some axes set to 1, optionally leading axes dropped.
        mshape = tuple(d if draw(st.booleans()) else 1 for d in shape)
        mshape = mshape[draw(st.integers(0, len(mshape))):]
        raw = rng.random((n,) + mshape)
        mask = {"bool": raw < 0.5, "binary": (raw < 0.5).astype(np.float32),
                "float": np.where(raw < 0.3, 0.0, raw).astype(np.float32)}[kind]
        group = "outer" if i % 2 else "inner"  # nested dicts
        params.setdefault(group, {})[f"leaf{i}"] = rng.normal(size=(n,) + shape).astype(np.float32)
        masks.setdefault(group, {})[f"leaf{i}"] = mask
        previous.setdefault(group, {})[f"leaf{i}"] = rng.normal(size=shape).astype(np.float32)
    w = rng.uniform(0.1, 5.0, n)
    w[rng.random(n) < 0.25] = 0.0
    return params, masks, w.astype(np.float32), previous


@SETTINGS
@given(problems())
def test_matches_loop_reference(problem):
    params, masks, weights, previous = problem
    got = jit_mean(params, masks, weights, previous)
    assert_trees_close(got, loop_reference(params, masks, weights, previous))
    num, den = jax.eval_shape(masked_sums, params, masks, weights)
    for n_, d_, p_, m_ in zip(jax.tree.leaves(num), jax.tree.leaves(den),
                              jax.tree.leaves(params), jax.tree.leaves(masks)):
        assert n_.shape == p_.shape[1:] and d_.shape == m_.shape[1:]
        assert n_.dtype == d_.dtype == jnp.float32


@pytest.mark.parametrize("seed, kind", [(0, "broadcast"), (1, "broadcast_bool"), (2, "ones")])
def test_matches_loop_reference_conv_like(seed, kind):
    rng = np.random.default_rng(seed)
    problem = random_problem(rng, n_clients=3, mask_kind=kind)
    assert_trees_close(jit_mean(*problem), loop_reference(*problem))
    # Per-output-channel masks, written both as [C, 1, 1, 1, K] and as [C, K].
    kernel = rng.normal(size=(3, 2, 2, 3, 4)).astype(np.float32)
    channel_mask = rng.random((3, 4)) < 0.5
    prev = np.zeros((2, 2, 3, 4), np.float32)
    for mask in (channel_mask[:, None, None, None, :], channel_mask):
        assert_trees_close(jit_mean(kernel, mask, np.ones(3, np.float32), prev),
                           loop_reference(kernel, mask, np.ones(3), prev))


# ----------------------------------------------------------------------------- semantics
def test_all_ones_masks_is_weighted_fedavg():
    rng = np.random.default_rng(0)
    params, masks, weights, previous = random_problem(rng, mask_kind="ones", weight_zero_prob=0)
    got = masked_mean(params, masks, weights, previous)
    want = jax.tree.map(lambda p: np.tensordot(weights, p, axes=1) / weights.sum(), params)
    assert_trees_close(got, want)


@pytest.mark.parametrize("seed", [0, 1])
def test_disjoint_masks_pick_the_owner(seed):
    rng = np.random.default_rng(seed)
    n = 4
    params = {"a": rng.normal(size=(n, 5, 3)).astype(np.float32),
              "b": {"c": rng.normal(size=(n, 7)).astype(np.float32)}}
    owners = jax.tree.map(lambda p: rng.integers(0, n, p.shape[1:]), params)
    masks = jax.tree.map(lambda o: np.arange(n).reshape((n,) + (1,) * o.ndim) == o, owners)
    previous = jax.tree.map(lambda p: np.full(p.shape[1:], 99.0, np.float32), params)
    want = jax.tree.map(lambda p, o: np.take_along_axis(p, o[None], 0)[0], params, owners)
    for weights in (np.ones(n), rng.uniform(0.01, 100.0, n)):
        got = masked_mean(params, masks, weights.astype(np.float32), previous)
        assert_trees_close(got, want, rtol=1e-6, atol=0)


def test_zero_denominator_keeps_previous_without_nan():
    params = {"w": jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
              "b": jnp.array([[1.0], [2.0]])}
    # Element 0: nobody; element 1: only a zero-weight client; element 2: trained.
    masks = {"w": jnp.array([[0, 0, 1], [0, 1, 1]], bool), "b": jnp.zeros((2, 1), bool)}
    weights = jnp.array([1.0, 0.0])
    previous = {"w": jnp.array([-7.5, 0.125, 0.0]), "b": jnp.array([3.25])}
    out = masked_mean(params, masks, weights, previous)
    np.testing.assert_array_equal(out["w"], [-7.5, 0.125, 3.0])
    np.testing.assert_array_equal(out["b"], [3.25])
    # All weights zero: everything kept.
    assert_trees_equal(masked_mean(params, masks, jnp.zeros(2), previous), previous)
    # Gradients through the untrained elements are finite (double-where trick).
    loss = lambda p, w, prev: sum(jnp.sum(x) for x in jax.tree.leaves(masked_mean(p, masks, w, prev)))
    grads = jax.grad(loss, argnums=(0, 1, 2))(params, weights, previous)
    for g in jax.tree.leaves(grads):
        assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(grads[2]["w"], [1.0, 1.0, 0.0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_invariant_to_client_permutation_and_weight_scale(seed):
    rng = np.random.default_rng(seed)
    params, masks, weights, previous = random_problem(rng, n_clients=6)
    base = masked_mean(params, masks, weights, previous)
    perm = rng.permutation(6)
    permuted = masked_mean(jax.tree.map(lambda x: x[perm], params),
                           jax.tree.map(lambda x: x[perm], masks), weights[perm], previous)
    assert_trees_close(permuted, base)
    for scale in (1e-3, 7.0, 1e4):
        assert_trees_close(masked_mean(params, masks, weights * scale, previous), base)


def test_jit_matches_eager():
    rng = np.random.default_rng(3)
    problem = random_problem(rng, mask_kind="broadcast_bool")
    assert_trees_close(jax.jit(masked_mean)(*problem), masked_mean(*problem), rtol=1e-6, atol=1e-6)
    num, den = jax.jit(masked_sums)(*problem[:3])
    assert_trees_close(jax.jit(finalize)(num, den, problem[3]), masked_mean(*problem))


def test_sharded_client_axis_matches_unsharded():
    devices = jax.devices()
    assert len(devices) == 8
    mesh = Mesh(np.array(devices), ("clients",))
    rng = np.random.default_rng(4)
    params, masks, weights, previous = random_problem(rng, n_clients=16)
    want = masked_mean(params, masks, weights, previous)
    shard = NamedSharding(mesh, P("clients"))
    put = lambda tree: jax.tree.map(lambda x: jax.device_put(x, shard), tree)
    prev_rep = jax.device_put(previous, NamedSharding(mesh, P()))
    got = jax.jit(masked_mean)(put(params), put(masks), put(weights), prev_rep)
    assert_trees_close(got, want)
    # The inputs really were spread over all 8 devices.
    assert len(jax.tree.leaves(put(params))[0].sharding.device_set) == 8


@pytest.mark.parametrize("seed, kind", [(6, "broadcast"), (7, "broadcast_bool")])
def test_both_client_sums_match_loop_reference(seed, kind):
    rng = np.random.default_rng(seed)
    params, masks, weights, previous = random_problem(rng, n_clients=4, mask_kind=kind)
    want = loop_reference(params, masks, weights, previous)
    for client_sum in CLIENT_SUMS:
        num, den = jax.jit(masked_sums, static_argnums=3)(params, masks, weights, client_sum)
        assert_trees_close(finalize(num, den, previous), want)
    with pytest.raises(ValueError, match=r"client_sum='sum'.*'slices', 'reduce'"):
        masked_sums(params, masks, weights, "sum")


def test_client_sum_for_keeps_slices_to_one_cpu_device():
    assert client_sum_for(1, "cpu") == "slices"
    assert client_sum_for(8, "cpu") == client_sum_for(1, "gpu") == client_sum_for(4, "tpu") == "reduce"


def _count(hlo: str, op: str) -> int:
    return len(re.findall(rf"\b{op}(?:-start)?\(", hlo))


def test_sharded_reduce_is_all_reduces_without_permutes():
    """16 clients over 8 devices: "reduce" compiles to all-reduces only (at most one per numerator and
    denominator leaf, fewer when XLA fuses them); "slices" to collective-permutes (why it is CPU-only)."""
    mesh = Mesh(np.array(jax.devices()), ("clients",))
    params, masks, weights, _ = random_problem(np.random.default_rng(8), n_clients=16)
    shard = NamedSharding(mesh, P("clients"))
    put = lambda tree: jax.tree.map(lambda x: jax.device_put(x, shard), tree)
    args = (put(params), put(masks), put(weights))
    hlo = {form: jax.jit(masked_sums, static_argnums=3).lower(*args, form).compile().as_text()
           for form in CLIENT_SUMS}
    leaves = len(jax.tree.leaves(params))
    assert _count(hlo["reduce"], "collective-permute") == 0
    assert 1 <= _count(hlo["reduce"], "all-reduce") <= 2 * leaves
    assert _count(hlo["slices"], "collective-permute") > 0  # the form this test guards against
    assert_trees_close(jax.jit(masked_sums, static_argnums=3)(*args, "reduce"),
                       masked_sums(params, masks, weights))


def test_split_partial_sums_match_full():
    rng = np.random.default_rng(5)
    params, masks, weights, previous = random_problem(rng, n_clients=7)
    halves = [slice(0, 3), slice(3, 7)]
    parts = [masked_sums(jax.tree.map(lambda x: x[s], params),
                         jax.tree.map(lambda x: x[s], masks), weights[s]) for s in halves]
    num = jax.tree.map(jnp.add, parts[0][0], parts[1][0])
    den = jax.tree.map(jnp.add, parts[0][1], parts[1][1])
    assert_trees_close(finalize(num, den, previous), masked_mean(params, masks, weights, previous))


def test_bfloat16_params_accumulate_in_float32():
    rng = np.random.default_rng(6)
    params, masks, weights, previous = random_problem(rng)
    p16 = jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), params)
    prev16 = jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), previous)
    num, den = masked_sums(p16, masks, weights)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves((num, den)))
    out = masked_mean(p16, masks, weights, prev16)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(out))
    want = masked_mean(jax.tree.map(lambda x: x.astype(jnp.float32), p16), masks, weights,
                       jax.tree.map(lambda x: x.astype(jnp.float32), prev16))
    assert_trees_close(out, want, rtol=1e-2, atol=1e-2)


def test_float64_params_accumulate_in_float64():
    with jax.enable_x64(True):
        rng = np.random.default_rng(7)
        params, masks, weights, previous = random_problem(rng)
        p64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
        prev64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), previous)
        num, den = masked_sums(p64, masks, weights)
        assert all(x.dtype == jnp.float64 for x in jax.tree.leaves((num, den)))
        out = masked_mean(p64, masks, weights, prev64)
        assert all(x.dtype == jnp.float64 for x in jax.tree.leaves(out))
        assert_trees_close(out, loop_reference(p64, masks, weights, prev64), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- validation
def _small():
    params = {"a": jnp.ones((3, 4)), "b": {"c": jnp.ones((3, 2, 5))}}
    masks = {"a": jnp.ones((3, 4), bool), "b": {"c": jnp.ones((3, 1, 5), bool)}}
    return params, masks, jnp.ones(3), {"a": jnp.zeros(4), "b": {"c": jnp.zeros((2, 5))}}


@pytest.mark.parametrize("case, fragments", [
    ("missing_mask_leaf", ["client_masks", "['b']['c']"]),
    ("extra_mask_leaf", ["client_masks", "['d']"]),
    ("mask_client_axis", ["['b']['c']", "(2, 1, 5)", "C=3"]),
    ("param_client_axis", ["['a']", "(4, 4)", "C=3"]),
    ("weights_length", ["['a']", "C=2", "(2,)"]),
    ("weights_rank", ["client_weights", "(3, 1)"]),
    ("mask_not_broadcastable", ["['b']['c']", "(3, 2, 4)", "(3, 2, 5)"]),
])
def test_masked_sums_rejects_mismatches(case, fragments):
    params, masks, weights, _ = _small()
    if case == "missing_mask_leaf":
        masks = {"a": masks["a"], "b": {}}
    elif case == "extra_mask_leaf":
        masks = dict(masks, d=jnp.ones((3,)))
    elif case == "mask_client_axis":
        masks["b"]["c"] = jnp.ones((2, 1, 5), bool)
    elif case == "param_client_axis":
        params["a"] = jnp.ones((4, 4))
    elif case == "weights_length":
        weights = jnp.ones(2)
    elif case == "weights_rank":
        weights = jnp.ones((3, 1))
    elif case == "mask_not_broadcastable":
        masks["b"]["c"] = jnp.ones((3, 2, 4), bool)
    for fn in (masked_sums, jax.jit(masked_sums)):
        with pytest.raises(ValueError) as err:
            fn(params, masks, weights)
        for frag in fragments:
            assert frag in str(err.value), (frag, str(err.value))


def test_finalize_rejects_mismatches():
    params, masks, weights, previous = _small()
    num, den = masked_sums(params, masks, weights)
    with pytest.raises(ValueError, match=r"previous"):
        finalize(num, den, {"a": previous["a"]})
    with pytest.raises(ValueError, match=r"\['b'\]\['c'\].*\(2, 5\)"):
        finalize(num, den, {"a": previous["a"], "b": {"c": jnp.zeros((5, 2))}})
    with pytest.raises(ValueError, match=r"previous"):
        masked_mean(params, masks, weights, [previous["a"], previous["b"]])


def test_module_is_documented():
    import superfed_jax.aggregation as agg
    assert "2301.10879" in agg.__doc__
    for fn in (masked_sums, finalize, masked_mean):
        assert fn.__doc__ and "Args:" in fn.__doc__ and "Returns:" in fn.__doc__
    assert agg.__all__ == ["masked_sums", "finalize", "masked_mean", "CLIENT_SUMS", "client_sum_for"]
