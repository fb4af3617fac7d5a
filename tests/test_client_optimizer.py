"""The client's local optimiser options (federated/client_optimizer.py, docs/algorithm.md 5.1).

Each option (momentum, Nesterov, masked weight decay, FedProx's proximal term, all together) against a
hand-written NumPy loop over a few steps with given gradients, for two clients whose subnets overlap; the
invariant that an element outside a client's subnet never changes and keeps a zero momentum buffer; the
masked optimiser against the same optimiser on the dense subnet; a user's own rule; the default rule bit
for bit the chain of releases before the options; a user's rule through the command line. A run with
the options killed and resumed: tests/test_option_runs.py.
"""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import tiny_setup as T
from superfed_jax import config as config_lib
from superfed_jax import config_schema
from superfed_jax.federated import client
from superfed_jax.federated import client_optimizer
from superfed_jax.federated import objective
from superfed_jax.run import build
from superfed_jax.run import memory
from superfed_jax.supernet import family as family_lib
from test_launch import ROOT, SMOKE

LR, CLIP, STEPS = 0.1, 0.6, 4
SHAPES = {"w": (3, 4), "b": (4,)}
# Two clients' subnets as broadcastable masks (as `Family.masks` gives them): columns {0, 1} and {1, 2}
# overlap in column 1; column 3 is in neither.
SUBNETS = [{"w": np.array([[1, 1, 0, 0]], np.float32), "b": np.array([1, 1, 0, 0], np.float32)},
           {"w": np.array([[0, 1, 1, 0]], np.float32), "b": np.array([0, 1, 1, 0], np.float32)}]
OPTIONS = {
    "plain": {},
    "momentum": dict(momentum=0.9),
    "nesterov": dict(momentum=0.8, nesterov=True),
    "weight_decay": dict(weight_decay=0.05),
    "prox": dict(prox_mu=0.5),
    "all": dict(momentum=0.9, nesterov=True, weight_decay=0.05, prox_mu=0.5),
}


def client_section(**options):
    """A config's `client` section with `options` set (the rest at the base config's defaults)."""
    section = config_lib.base_config().client
    section.update(learning_rate=LR, clip_norm=CLIP, **options)
    return section


def start_params(seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}


def given_grads(subnet, seed=1):
    """STEPS gradients, zero outside `subnet` as a masked model's are, large enough that clipping acts."""
    rng = np.random.default_rng(seed)
    return [{k: (rng.normal(size=s) * np.broadcast_to(subnet[k], s)).astype(np.float32)
             for k, s in SHAPES.items()} for _ in range(STEPS)]


def np_local_steps(params, grads, subnet, momentum=0.0, nesterov=False, weight_decay=0.0, prox_mu=0.0):
    """The local rule of docs/algorithm.md 5.1, by hand in float64: (params, momentum buffers)."""
    w = {k: v.astype(np.float64) for k, v in params.items()}
    anchor = dict(w)
    mask = {k: np.broadcast_to(subnet[k], SHAPES[k]).astype(np.float64) for k in SHAPES}
    buffer = {k: np.zeros(SHAPES[k]) for k in SHAPES}
    for g in grads:
        g = {k: g[k] + prox_mu * (w[k] - anchor[k]) * mask[k] for k in SHAPES}
        norm = np.sqrt(sum(np.sum(v ** 2) for v in g.values()))
        g = {k: v * min(1.0, CLIP / norm) for k, v in g.items()}
        g = {k: g[k] + weight_decay * w[k] * mask[k] for k in SHAPES}
        if momentum:
            buffer = {k: g[k] + momentum * buffer[k] for k in SHAPES}
            g = {k: g[k] + momentum * buffer[k] for k in SHAPES} if nesterov else buffer
        w = {k: w[k] - LR * g[k] for k in SHAPES}
    return w, buffer


def local_steps(optimizer, params, grads, subnet):
    """The library's optimizer over the same steps, with the extra args the client passes."""
    params = jax.tree.map(jnp.asarray, params)
    anchor, state = params, optimizer.init(params)
    for g in grads:
        updates, state = optimizer.update(g, state, params, subnet=subnet, anchor=anchor)
        params = optax.apply_updates(params, updates)
    return params, state


def momentum_buffers(state):
    """The momentum buffers (optax's TraceState) in an optimizer state, or []."""
    return [s.trace for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, optax.TraceState))
            if isinstance(s, optax.TraceState)]


# ------------------------------------------------------------------------------- each option by hand


@pytest.mark.parametrize("name", list(OPTIONS))
def test_each_option_matches_numpy_for_overlapping_subnets(name):
    options = OPTIONS[name]
    optimizer = client_optimizer.make_client_optimizer(client_section(**options))
    params = start_params()
    for c, subnet in enumerate(SUBNETS):
        grads = given_grads(subnet, seed=c + 1)
        got, state = local_steps(optimizer, params, grads, subnet)
        expected, buffer = np_local_steps(params, grads, subnet, **options)
        for k in SHAPES:
            np.testing.assert_allclose(got[k], expected[k], rtol=1e-5, atol=1e-6, err_msg=f"{name} {k}")
            outside = np.broadcast_to(subnet[k], SHAPES[k]) == 0
            # The invariant: exactly unchanged outside the subnet, and no momentum built up there.
            np.testing.assert_array_equal(np.asarray(got[k])[outside], params[k][outside])
        for trace in momentum_buffers(state):
            for k in SHAPES:
                np.testing.assert_allclose(trace[k], buffer[k], rtol=1e-5, atol=1e-6)
                assert not np.any(np.asarray(trace[k])[np.broadcast_to(subnet[k], SHAPES[k]) == 0])
        assert bool(momentum_buffers(state)) == bool(options.get("momentum"))


def test_options_change_the_steps():
    """The hand loop is sensitive to each option (the comparisons above are not vacuous)."""
    params, grads = start_params(), given_grads(SUBNETS[0])
    plain, _ = np_local_steps(params, grads, SUBNETS[0])
    for name, options in OPTIONS.items():
        if options:
            changed, _ = np_local_steps(params, grads, SUBNETS[0], **options)
            assert not np.allclose(changed["w"], plain["w"]), name


def test_masked_optimizer_equals_the_dense_subnets():
    """Masked == dense: the options over the supernet with the arch's mask give, at the subnet's
    positions, what they give on the dense subnet's own params (everything in it trained, mask 1), and
    nothing elsewhere. The gradients' own equality is tests/test_subnet.py's."""
    optimizer = client_optimizer.make_client_optimizer(client_section(**OPTIONS["all"]))
    family, arch = T.FAMILY, T.MEDIUM
    params = T.as_jnp(T.init_params())
    mask = family.masks(arch)
    full_mask = jax.tree.map(lambda m, p: jnp.broadcast_to(m, p.shape), mask, params)
    rng = np.random.default_rng(5)
    grads = [jax.tree.map(lambda m: jnp.asarray(rng.normal(size=m.shape), jnp.float32) * m, full_mask)
             for _ in range(3)]
    steps = jax.jit(local_steps, static_argnums=0)  # one compile each, not hundreds of eager ops
    masked, _ = steps(optimizer, params, grads, mask)
    dense_params = family.extract(params, arch)
    dense_mask = family.extract(full_mask, arch)
    assert all(np.all(np.asarray(m) == 1) for m in jax.tree.leaves(dense_mask))  # extract = the subnet
    dense, _ = steps(optimizer, dense_params, [family.extract(g, arch) for g in grads], dense_mask)
    T.assert_trees_close(family.extract(masked, arch), dense, rtol=1e-5, atol=1e-6)
    for new, old, m in zip(jax.tree.leaves(masked), jax.tree.leaves(params), jax.tree.leaves(full_mask)):
        outside = np.asarray(m) == 0
        np.testing.assert_array_equal(np.asarray(new)[outside], np.asarray(old)[outside])


# --------------------------------------------------------------------------------- the default rule


def test_defaults_build_the_old_chain_and_absent_values_agree_with_the_schema():
    for name, value in client_optimizer.ABSENT.items():
        assert config_schema.field(f"client.{name}").absent == value, name
        assert config_lib.base_config().client[name] == value, name
    section = config_lib.base_config().client
    assert not client_optimizer.needs_subnet(section)
    old_keys = {k: v for k, v in section.to_dict().items() if k not in client_optimizer.ABSENT}
    old = ml_collections.ConfigDict(old_keys)  # a config saved before the options: the plain rule
    assert not client_optimizer.needs_subnet(old)
    made = client_optimizer.make_client_optimizer(old)
    params = start_params()
    state = jax.tree.structure(made.init(params))
    assert state == jax.tree.structure(client.make_optimizer(LR, CLIP).init(params))
    for options in ({"weight_decay": 0.1}, {"prox_mu": 0.1}, {"optimizer": "client_rules:adam"}):
        assert client_optimizer.needs_subnet(client_section(**options))
    assert not client_optimizer.needs_subnet(client_section(momentum=0.9, nesterov=True))


def test_the_memory_check_counts_the_options_state():
    """run/memory.py budgets a params-sized buffer for momentum and for the mask the options read."""
    assert client_optimizer.state_slots(config_lib.base_config().client) == 0
    assert client_optimizer.state_slots(client_section(momentum=0.9)) == 1
    assert client_optimizer.state_slots(client_section(**OPTIONS["all"])) == 2
    assert client_optimizer.state_slots(client_section(optimizer="client_rules:adam")) == 3
    config = config_lib.base_config()
    plain = memory.config_estimate(config, config_lib.make_family(config), num_devices=1)
    config.client.momentum = 0.9
    with_momentum = memory.config_estimate(config, config_lib.make_family(config), num_devices=1)
    assert with_momentum["per_client_bytes"] - plain["per_client_bytes"] == plain["params_bytes"]


def test_default_config_trains_bit_identical_to_the_literal_old_chain():
    """A chunk of clients built from the default config (run/build.py) equals one built with
    `optax.chain(optax.clip_by_global_norm(c), optax.sgd(lr))`, bit for bit; so does the default chain
    given the subnet mask it does not read (XLA drops what nobody uses)."""
    config = config_lib.base_config()
    config.client.update(epochs=1, batch_size=8, scan_unroll=1, learning_rate=LR, clip_norm=1.0)
    no_aug = ml_collections.ConfigDict(dict(crop_padding=0, flip=False, cutout_size=0))
    loss_fn = objective.make_loss_fn(T.FAMILY, T.MEAN, T.STD, no_aug)
    table, sizes = T.index_table()
    max_size = int(table.shape[1])
    schedule = dict(epochs=1, batch_size=8, max_size=max_size)
    old_chain = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(LR))
    chunks = {
        "build": build._train_clients_fn(config, None, T.FAMILY, loss_fn, max_size, "vmap", "masked"),
        "old": client.vmap_clients(client.make_client_update(loss_fn, old_chain, **schedule)),
        "unused mask": client.vmap_clients(client.make_client_update(
            loss_fn, client_optimizer.make_client_optimizer(config.client), subnet_mask=T.FAMILY.masks,
            **schedule)),
    }
    archs = family_lib.stack([T.MEDIUM, T.FAMILY.smallest()])
    images, labels = T.make_data()
    args = (T.as_jnp(T.init_params()), archs, table[[4, 6]], sizes[[4, 6]],
            jax.random.split(jax.random.key(3), 2), images, labels)
    results = {name: jax.device_get(jax.jit(fn)(*args)) for name, fn in chunks.items()}
    for name in ("build", "unused mask"):
        assert T.trees_equal(results[name].params, results["old"].params), name
        np.testing.assert_array_equal(results[name].loss, results["old"].loss)


def test_options_through_build_side_by_side_sliced_equal_vmapped_masked():
    """run/build.py's wiring with every option: clients side by side in the sliced execution (their mask
    from the raw arch of `(arch, envelope)`, in pieces) train what vmapped masked clients train, and
    leave every element outside their subnets as it was."""
    config = config_lib.base_config()
    config.client.update(epochs=1, batch_size=8, scan_unroll=1, learning_rate=LR, clip_norm=1.0,
                         **OPTIONS["all"])
    table, sizes = T.index_table()
    images, labels = T.make_data()
    no_aug = ml_collections.ConfigDict(dict(crop_padding=0, flip=False, cutout_size=0))
    archs = family_lib.stack([T.MEDIUM, T.FAMILY.smallest()])
    params = T.as_jnp(T.init_params())
    args = (params, archs, table[[4, 6]], sizes[[4, 6]], jax.random.split(jax.random.key(3), 2), images,
            labels)
    results = {}
    for layout, execution in (("vmap", "masked"), ("side_by_side", "sliced")):
        loss_fn = objective.make_loss_fn(T.FAMILY, T.MEAN, T.STD, no_aug, execution)
        fn = build._train_clients_fn(config, None, T.FAMILY, loss_fn, int(table.shape[1]), layout, execution)
        results[execution] = jax.device_get(jax.jit(fn)(*args))
    T.assert_trees_close(results["sliced"].params, results["masked"].params, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results["sliced"].loss, results["masked"].loss, rtol=1e-5)
    for c, arch in enumerate((T.MEDIUM, T.FAMILY.smallest())):
        outside = jax.tree.map(lambda m, p: np.broadcast_to(np.asarray(m), p.shape) == 0,
                               T.FAMILY.masks(arch), params)
        for result in results.values():
            for new, old, out in zip(jax.tree.leaves(result.params), jax.tree.leaves(params),
                                     jax.tree.leaves(outside)):
                np.testing.assert_array_equal(np.asarray(new)[c][out], np.asarray(old)[out])
            assert not T.trees_equal(jax.tree.map(lambda x: x[c], result.params), params)


# --------------------------------------------------------------------------------- a user's own rule


def test_a_custom_rule_is_loaded_built_and_keeps_the_outside():
    optimizer = client_optimizer.make_client_optimizer(client_section(optimizer="client_rules:sign_sgd"))
    params, subnet = start_params(), SUBNETS[1]
    got, _ = local_steps(optimizer, params, given_grads(subnet), subnet)
    expected = {k: params[k] - LR * sum(np.sign(g[k]) for g in given_grads(subnet)) for k in SHAPES}
    for k in SHAPES:
        np.testing.assert_allclose(got[k], expected[k], rtol=1e-6)
    # A plain transformation (optax.adam) is called without the extra args.
    adam = client_optimizer.make_client_optimizer(client_section(optimizer="client_rules:adam"))
    got, _ = local_steps(adam, params, given_grads(subnet), subnet)
    outside = np.broadcast_to(subnet["w"], SHAPES["w"]) == 0
    np.testing.assert_array_equal(np.asarray(got["w"])[outside], params["w"][outside])


@pytest.mark.parametrize("value,says", [
    ("client_rules:not_a_transformation", "returned float, not an optax GradientTransformation"),
    ("client_rules:raises", "raised KeyError"),
    ("client_rules:NOT_CALLABLE", "int is not a function"),
    ("client_rules:missing", "has no 'missing'"),
    ("adam", "not a registered client optimizer"),
])
def test_a_bad_custom_rule_is_one_error_naming_the_field(value, says):
    with pytest.raises(ValueError, match="client.optimizer=") as error:
        client_optimizer.make_client_optimizer(client_section(optimizer=value))
    assert says in str(error.value) and "'sgd'" in str(error.value)


# ---------------------------------------------------------------------------------- whole runs


def _env():
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "tests"), os.environ.get("PYTHONPATH", "")]))
    env.pop("XLA_FLAGS", None)
    return env


def _command(workdir, *flags):
    return [sys.executable, "launch.py", *flags, f"--workdir={workdir}"]


def _run(workdir, *flags):
    return subprocess.run(_command(workdir, *flags), cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=600)


def test_a_custom_rule_through_the_command_line(tmp_path):
    """`--config.client.optimizer=client_rules:sign_sgd` runs (a rule from the user's own module, on the
    PYTHONPATH); one that returns no transformation stops the run before it starts, naming the field."""
    flags = [SMOKE]  # 2 rounds
    custom = _run(tmp_path / "custom", *flags, "--config.client.optimizer=client_rules:sign_sgd")
    assert custom.returncode == 0, custom.stderr[-3000:]
    with open(tmp_path / "custom" / "config.json") as f:
        assert json.load(f)["client"]["optimizer"] == "client_rules:sign_sgd"
    broken = _run(tmp_path / "broken", *flags, "--config.client.optimizer=client_rules:not_a_transformation")
    assert broken.returncode == 2 and "client.optimizer='client_rules:not_a_transformation'" in broken.stderr
    assert not (tmp_path / "broken" / "metrics.jsonl").exists()
