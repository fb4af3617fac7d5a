"""Sliced execution (supernet/ofa_resnet/sliced.py) against its oracles: the masked supernet and the dense subnet.

The masked execution is the reference implementation: the sliced one must give the same logits, the same
client step and the same whole round (params and losses to float32 tolerance): vmapped over 8 fake devices,
chunked and unchunked, and side by side on one. Its gradients must equal the dense subnet's
(`subnet.DenseSubnet` on `subnet.extract`-ed params) at the subnet's positions and be exactly zero
elsewhere, also when the chunk's envelope is wider than the client's arch.
"""
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import tiny_setup as T
from superfed_jax.federated import client
from superfed_jax.federated import client_optimizer
from superfed_jax.federated import objective
from superfed_jax.federated import round as fr
from superfed_jax.federated import sharding
from superfed_jax.supernet.ofa_resnet import masks as masks_lib
from superfed_jax.supernet.ofa_resnet import sliced
from superfed_jax.supernet.ofa_resnet import space as space_lib
from superfed_jax.supernet.ofa_resnet import subnet as subnet_lib
from superfed_jax.supernet.ofa_resnet.family import OFAResNet

K = T.NUM_CLIENTS
EPOCHS, BATCH, LR, CLIP = 2, 8, 0.1, 1.0
DATA_CONFIG = ml_collections.ConfigDict(dict(crop_padding=1, flip=True, cutout_size=0))
IMAGES, LABELS = T.make_data()
TABLE, SIZES = T.index_table()
PARAMS = T.as_jnp(T.init_params())
SCHEDULE = dict(epochs=EPOCHS, batch_size=BATCH, max_size=int(TABLE.shape[1]))
ENVELOPE = T.FAMILY.sliced.envelope  # sliced.chunk_envelope of the tiny space
# What run/build.py passes for sliced execution: clients train the params as width-group pieces.
PIECES = client.ParamsForm(T.FAMILY.sliced.to_pieces, T.FAMILY.sliced.from_pieces)


def loss_fn(execution):
    return objective.make_loss_fn(T.FAMILY, T.MEAN, T.STD, DATA_CONFIG, execution)


def optimizer():
    return client.make_optimizer(LR, CLIP)


def archs_of(n, seed):
    """n random archs (a batch) and the same as a list of single archs."""
    batch = space_lib.sample(T.SPACE, jax.random.key(seed), (n,))
    return batch, [jax.tree.map(lambda x: x[i], batch) for i in range(n)]


# ------------------------------------------------------------------------------------------ the envelope


def test_envelope_is_widest_kept_width_and_any_kept_block():
    batch, archs = archs_of(6, 0)
    envelope = jax.device_get(sliced.chunk_envelope(T.SPACE, batch))
    active = np.array([T.np_active(a.depth).reshape(-1) for a in archs])  # hand rule, [C, blocks]
    expand = np.array([np.asarray(a.expand) for a in archs])
    np.testing.assert_array_equal(envelope.active, active.any(axis=0))
    for block in range(T.SPACE.num_blocks):
        kept = expand[active[:, block], block]
        assert envelope.expand[block] == (kept.max() if kept.size else 0)


# ----------------------------------------------------------------------------------------- the forward


def test_sliced_forward_equals_masked_for_chunk_and_own_envelopes():
    batch, archs = archs_of(8, 1)
    envelope = sliced.chunk_envelope(T.SPACE, batch)
    images = jnp.asarray(T.normalize(IMAGES[:10]))
    forward = jax.jit(lambda p, a, e: sliced.apply(T.MODEL, p, images, a, e))
    masked = jax.jit(lambda p, a: T.MODEL.apply({"params": p}, images, a))
    spread = []
    for a in archs:
        expected = np.asarray(masked(PARAMS, a))
        np.testing.assert_allclose(forward(PARAMS, a, envelope), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(forward(PARAMS, a, sliced.arch_envelope(T.SPACE, a)), expected,
                                   rtol=1e-5, atol=1e-6)
        spread.append(expected)
    assert np.std(np.stack(spread), axis=0).max() > 1e-3  # the archs really differ


# --------------------------------------------------------------------------------------- the gradients


def _ce(logits, labels):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))


def test_sliced_gradients_equal_dense_subnet_and_vanish_elsewhere():
    images = jnp.asarray(T.normalize(IMAGES[:12]))
    labels = jnp.asarray(LABELS[:12])
    batch, archs = archs_of(2, 2)
    archs += [space_lib.smallest(T.SPACE), space_lib.largest(T.SPACE)]
    grads_fn = jax.jit(jax.value_and_grad(
        lambda p, a, e: _ce(sliced.apply(T.MODEL, p, images, a, e), labels)))
    zeros = jax.tree.map(jnp.zeros_like, PARAMS)
    for a in archs:
        a = jax.tree.map(np.asarray, a)
        shape = subnet_lib.subnet_shape(T.SPACE, a)
        dense = subnet_lib.DenseSubnet(T.SPACE, shape, T.CONV_IMPL)
        dense_loss, dense_grads = jax.value_and_grad(
            lambda d: _ce(dense.apply({"params": d}, images), labels))(subnet_lib.extract(T.SPACE, PARAMS, a))
        embedded = subnet_lib.embed(T.SPACE, dense_grads, a, zeros)
        masks = jax.tree.map(lambda m, p: np.broadcast_to(np.asarray(m), p.shape),
                             masks_lib.arch_masks(T.SPACE, a), PARAMS)
        # The arch's own envelope, and that of a chunk holding it and 2 others (wider somewhere).
        chunk = jax.tree.map(lambda x, y: np.concatenate([x, np.asarray(y)[None]]), batch, a)
        for envelope in (sliced.arch_envelope(T.SPACE, a), sliced.chunk_envelope(T.SPACE, chunk)):
            loss, grads = grads_fn(PARAMS, a, envelope)
            np.testing.assert_allclose(loss, dense_loss, rtol=1e-5)
            for (path, g), e, m in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(embedded),
                                       jax.tree.leaves(masks)):
                g = np.asarray(g)
                assert np.all(g[m == 0] == 0.0), jax.tree_util.keystr(path)  # exactly zero outside
                np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path))
        assert np.abs(np.asarray(grads["stage0_block0"]["conv1"]["kernel"])).sum() > 0


# ------------------------------------------------------------------------------------ one client step


# Every client optimiser option at once (docs/algorithm.md 5.1): they must keep masked == sliced.
OPTIONS = ml_collections.ConfigDict(dict(learning_rate=LR, clip_norm=CLIP, optimizer="sgd", momentum=0.9,
                                         nesterov=True, weight_decay=0.05, prox_mu=0.5))


@functools.lru_cache(maxsize=None)
def masked_update(with_options: bool):
    """The jitted masked client update (the reference), compiled once for the forms that share it."""
    if with_options:
        return jax.jit(client.make_client_update(loss_fn("masked"), client_optimizer.make_client_optimizer(
            OPTIONS), subnet_mask=T.FAMILY.masks, **SCHEDULE))
    return jax.jit(client.make_client_update(loss_fn("masked"), optimizer(), **SCHEDULE))


@pytest.mark.parametrize("form", ["full", "pieces", "pieces with options"])
def test_one_client_update_sliced_equals_masked(form):
    """A whole local schedule of one client (its own arch as the envelope) against the masked update,
    training full-shape params (split at every step) and width-group pieces (split once); with the
    client optimiser's options, whose subnet mask the sliced client gets in pieces. Elements outside the
    client's subnet stay exactly as they were."""
    with_options = form == "pieces with options"
    opt, masks = optimizer(), {"masked": None, "sliced": None}
    if with_options:
        opt = client_optimizer.make_client_optimizer(OPTIONS)
        masks = {"masked": T.FAMILY.masks,
                 "sliced": lambda arch_and_envelope: T.FAMILY.masks(arch_and_envelope[0])}
    masked = masked_update(with_options)
    params_form = PIECES if form.startswith("pieces") else client.IDENTITY_FORM
    sliced_update = jax.jit(client.make_client_update(loss_fn("sliced"), opt, params_form=params_form,
                                                      subnet_mask=masks["sliced"], **SCHEDULE))
    key = jax.random.key(7)
    for c, a in ((6, T.MEDIUM), (3, space_lib.smallest(T.SPACE))):
        expected = masked(PARAMS, a, TABLE[c], SIZES[c], key, IMAGES, LABELS)
        got = sliced_update(PARAMS, (a, sliced.arch_envelope(T.SPACE, a)), TABLE[c], SIZES[c], key, IMAGES,
                            LABELS)
        np.testing.assert_allclose(got.loss, expected.loss, rtol=1e-5)
        assert jax.tree.structure(got.params) == jax.tree.structure(PARAMS)  # joined back to full shape
        T.assert_trees_close(got.params, expected.params, rtol=1e-5, atol=1e-6)
        assert not T.trees_equal(got.params, PARAMS)
        outside = jax.tree.map(lambda m, p: np.broadcast_to(np.asarray(m), p.shape) == 0, T.FAMILY.masks(a),
                               PARAMS)
        for result in (got, expected):
            for new, old, out in zip(jax.tree.leaves(result.params), jax.tree.leaves(PARAMS),
                                     jax.tree.leaves(outside)):
                np.testing.assert_array_equal(np.asarray(new)[out], np.asarray(old)[out])


def test_pieces_round_trip_and_group_widths():
    """`to_pieces` cuts at the space's middle widths: piece g of a block holds channels [m_(g-1), m_g)."""
    pieces = sliced.to_pieces(T.SPACE, PARAMS)
    assert T.trees_equal(sliced.from_pieces(T.SPACE, pieces), PARAMS)
    for s in range(T.SPACE.num_stages):
        name = f"stage{s}_block0"
        widths = [k.shape[3] for k in pieces[name]["conv1"]["kernel"]]
        assert widths == [k.shape[2] for k in pieces[name]["conv2"]["kernel"]]
        np.testing.assert_array_equal(np.cumsum(widths), T.SPACE.mid_table[s])
        first = np.asarray(PARAMS[name]["conv1"]["kernel"])[..., T.SPACE.mid_table[s][0]:T.SPACE.mid_table[s][1]]
        np.testing.assert_array_equal(pieces[name]["conv1"]["kernel"][1], first)
    assert sliced.is_pieces(T.SPACE, pieces) and not sliced.is_pieces(T.SPACE, PARAMS)


# ------------------------------------------------------------------------------------- whole rounds


def round_settings(chunk_size, heuristic):
    pool = space_lib.stack([T.MEDIUM, space_lib.smallest(T.SPACE)]) if heuristic in ("static", "dynamic") \
        else None
    return fr.RoundSettings(num_clients=K, clients_per_round=4, chunk_size=chunk_size, heuristic=heuristic,
                            pool=pool, count_random_extremes=True, beta_schedule="cosine", beta0=0.9,
                            beta_final=0.25, decay_rounds=4)


def train_clients(execution, layout):
    envelope = ENVELOPE if execution == "sliced" else None
    form = PIECES if execution == "sliced" else client.IDENTITY_FORM
    if layout == "side_by_side":
        return client.make_side_by_side_update(loss_fn(execution), optimizer(), chunk_envelope=envelope,
                                               params_form=form, **SCHEDULE)
    return client.vmap_clients(client.make_client_update(loss_fn(execution), optimizer(), params_form=form,
                                                         **SCHEDULE), envelope)


class Rounds:
    """A jitted round of one execution; counts its traces."""

    def __init__(self, execution, layout, devices, chunk_size, heuristic):
        self.mesh = sharding.make_mesh(jax.devices()[:devices])
        pure = fr.make_round_fn(T.FAMILY, round_settings(chunk_size, heuristic),
                                train_clients(execution, layout), self.mesh)
        self.traces = 0

        def counted(state, data):
            self.traces += 1
            return pure(state, data)

        self.round_fn = jax.jit(counted, donate_argnums=0)
        self.data = jax.device_put(fr.FederatedData(IMAGES, LABELS, TABLE, SIZES),
                                   sharding.replicated(self.mesh))

    def run(self, rounds, seed=0):
        state = jax.device_put(fr.init_state(T.as_jnp(T.init_params()), seed, K),
                               sharding.replicated(self.mesh))
        records = []
        for _ in range(rounds):
            state, metrics = self.round_fn(state, self.data)
            records.append((jax.device_get(metrics), jax.device_get(state)))
        return records


# (layout, devices, chunk_size, heuristic), P = 4. Each case compiles two rounds (20-35 s on the 2-core
# machine), so there is one case per path the sliced execution takes in a round: vmapped clients split
# over 8 fake devices, unchunked (one envelope for all 4 clients) and chunked (chunks cut in
# `chunk_order`, an envelope each), and clients side by side on one device (the CPU layout, each client
# its own envelope) in chunks. A heuristic only decides the archs, the same way for both executions
# (test_heuristics.py, and rounds of the others in test_round.py and test_chunks.py); these give rounds
# with the largest and the smallest arch next to middle ones (sandwich, tracking sandwich) and with
# pool archs (dynamic). Not repeated here: vmap on one device (the sharded case is the riskier program
# of the same code) and side by side unchunked (the chunked case runs the same per-client envelopes).
CASES = [("vmap", 8, 4, "tracking_sandwich"), ("vmap", 8, 2, "dynamic"), ("side_by_side", 1, 2, "sandwich")]


@pytest.mark.parametrize("layout,devices,chunk_size,heuristic", CASES)
def test_round_sliced_equals_masked_and_compiles_once(layout, devices, chunk_size, heuristic):
    masked = Rounds("masked", layout, devices, chunk_size, heuristic).run(2)
    sliced_rounds = Rounds("sliced", layout, devices, chunk_size, heuristic)
    got = sliced_rounds.run(2)
    for (m_masked, s_masked), (m_sliced, s_sliced) in zip(masked, got):
        for name in ("clients", "archs", "beta"):
            T.assert_equal(m_sliced[name], m_masked[name], err_msg=name)
        np.testing.assert_allclose(m_sliced["train_loss"], m_masked["train_loss"], rtol=1e-5)
        T.assert_trees_close(s_sliced.params, s_masked.params, rtol=1e-5, atol=1e-5)
    assert not T.trees_equal(got[-1][1].params, T.init_params())
    # Compiled once: two rounds, then another seed, without retracing or recompiling.
    sliced_rounds.run(1, seed=5)
    assert sliced_rounds.traces == 1
    if hasattr(sliced_rounds.round_fn, "_cache_size"):  # private jax API: also no recompile (shardings)
        assert sliced_rounds.round_fn._cache_size() == 1


def test_sliced_chunk_skips_blocks_no_client_keeps():
    """The chunk envelope really narrows: a chunk of small archs compiles branches it does not run."""
    envelope = jax.device_get(sliced.chunk_envelope(T.SPACE, space_lib.stack(
        [space_lib.smallest(T.SPACE), T.MEDIUM])))
    np.testing.assert_array_equal(envelope.active, [True, True, True, False])
    np.testing.assert_array_equal(envelope.expand, [2, 0, 1, 0])


def test_auto_execution_is_sliced_only_where_measured_faster():
    from superfed_jax import config as config_lib
    from superfed_jax.run import build
    config = config_lib.base_config()
    paper, tiny = OFAResNet(space_lib.SearchSpace()), T.FAMILY
    assert jax.default_backend() == "cpu"  # the tests' platform (conftest.py)
    assert config.model.execution == "auto"
    assert build.execution(config, "side_by_side", paper) == "sliced"
    assert build.execution(config, "side_by_side", tiny) == "masked"  # compile outweighs the savings
    assert build.execution(config, "vmap", paper) == "masked"
    for chosen in ("masked", "sliced"):
        config.model.execution = chosen
        assert {build.execution(config, layout, family) for layout in ("side_by_side", "vmap")
                for family in (paper, tiny)} == {chosen}
    del config.model["execution"]  # a config saved before the field existed ran masked
    assert build.execution(config, "side_by_side", paper) == "masked"


class _MaskedOnly(OFAResNet):
    """The paper's family as one without a sliced execution (`Family.sliced` None)."""

    @property
    def sliced(self):
        return None


def test_a_family_without_sliced_execution_runs_masked_and_refuses_sliced():
    from superfed_jax import config as config_lib
    from superfed_jax.run import build
    config = config_lib.base_config()
    family = _MaskedOnly(space_lib.SearchSpace())
    assert config.model.execution == "auto"
    assert build.execution(config, "side_by_side", family) == "masked"  # 'sliced' for the OFA-ResNet
    config.model.execution = "sliced"
    with pytest.raises(ValueError, match=r"model.execution='sliced': the family 'ofa_resnet' has no sliced "
                                         r"execution; use 'masked' or 'auto'"):
        build.execution(config, "side_by_side", family)
    with pytest.raises(ValueError, match=r"model.execution='sliced'"):
        objective.make_loss_fn(family, T.MEAN, T.STD, DATA_CONFIG, "sliced")
