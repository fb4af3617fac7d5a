"""The elastic TCN family (`supernet/tcn/`): the family contract, the sizes table of tcn.md 2.8, masked ==
dense == a slow NumPy loop reference, the weight norm of thin subnets, the reference's init, dropout, the
sliced execution against the masked one, and the arch JSON forms and subnet counts."""
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import family_contract
from superfed_jax.supernet import family as family_lib
from superfed_jax.supernet.tcn import model as model_lib
from superfed_jax.supernet.tcn.family import ElasticTCN, TCNArch, TCNSpace

# A small space with everything elastic: 3 levels of which 1..3 are kept, widths 2, 4, 8 of 8 channels.
TINY = ElasticTCN(TCNSpace(channels=8, levels=3, kernel_size=3, depth_choices=(0, 1, 2),
                           expand_choices=(0.25, 0.5, 1.0), input_shape=(9,), num_classes=11))
# For the sliced execution (what it compiles grows with the levels): an always-kept block and a droppable one.
SMALL = ElasticTCN(TCNSpace(channels=8, levels=2, kernel_size=3, depth_choices=(0, 1),
                            expand_choices=(0.25, 0.5, 1.0), input_shape=(9,), num_classes=11))
PTB = ElasticTCN()  # the defaults are the reference's PTB model
SHAKESPEARE = ElasticTCN(TCNSpace(channels=450, levels=3, expand_choices=(0.2, 0.5, 1.0), input_shape=(80,),
                                  num_classes=80))


def _batch(family, count=3, seed=0):
    rng = np.random.default_rng(seed)
    shape = (count,) + family.data_shape.input_shape
    vocab = family.data_shape.num_classes
    return (rng.integers(0, vocab, shape).astype(np.int32), rng.integers(0, vocab, shape).astype(np.int32),
            rng.uniform(0.5, 1.5, shape).astype(np.float32))


def _loss(logits, labels, weights):
    logp = jax.nn.log_softmax(logits)
    return -jnp.sum(jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0] * weights)


@pytest.fixture(scope="module")
def tiny_params():
    return TINY.init(jax.random.key(0))


@pytest.fixture(scope="module")
def small_params():
    return SMALL.init(jax.random.key(0))


@pytest.fixture(scope="module")
def ptb_params():  # the one initialisation of the 14.6M-parameter PTB supernet in this file
    return PTB.init(jax.random.key(0))


def test_tcn_keeps_the_family_contract():
    params = TINY.init(jax.random.key(1))
    family_contract.check_family(TINY, params, *_batch(TINY))


def test_registered_and_built_from_a_config():
    assert family_lib.family_class("tcn") is ElasticTCN
    assert family_lib.family_ref(TINY) == "tcn"
    assert (ElasticTCN.name, ElasticTCN.batch_kind, ElasticTCN.cost_unit) == ("tcn", "tokens", "token")
    assert ElasticTCN.metrics == ("accuracy", "loss", "perplexity")
    defaults = {f.key: f.default for f in ElasticTCN.space_fields()}
    assert ElasticTCN.from_config(defaults) == PTB
    smoke = ElasticTCN.from_config({**defaults, **ElasticTCN.smoke_space()})
    assert smoke.num_subnets() == 2 + 4
    family = ElasticTCN.from_config(SHAKESPEARE.space_dict(), data=family_lib.DataShape((40,), 90),
                                    conv_impl="im2col", dtype="bfloat16")
    assert family.data_shape == family_lib.DataShape((40,), 90) and family.dtype == "bfloat16"
    with pytest.raises(ValueError, match=r"token windows \[T\].*\(8, 8, 1\)"):
        ElasticTCN.from_config({}, data=family_lib.DataShape((8, 8, 1), 10))
    with pytest.raises(ValueError, match=r"config.space: .*'width'.*the fields of ElasticTCN are"):
        ElasticTCN.from_config({"width": 3})
    with pytest.raises(ValueError, match=r"model.dtype='float16': allowed values are"):
        ElasticTCN.from_config({}, dtype="float16")


@pytest.mark.parametrize("fields, message", [
    (dict(channels=0), r"space.channels=0: must be a positive integer"),
    (dict(levels=2.5), r"space.levels=2.5: must be a positive integer"),
    (dict(depth_choices=(0, 2, 1)), r"space.depth_choices=\(0, 2, 1\): must be strictly increasing"),
    (dict(depth_choices=(0, 4)), r"space.depth_choices=\(0, 4\): .*largest <= levels - 1 = 3"),
    (dict(depth_choices=(-1, 0)), r"space.depth_choices=\(-1, 0\)"),
    (dict(expand_choices=(0.5, 0.5)), r"space.expand_choices=\(0.5, 0.5\): must be strictly increasing "
                                      r"numbers in \(0, 1\]"),
    (dict(expand_choices=(0.5, 1.5)), r"space.expand_choices=\(0.5, 1.5\)"),
    (dict(channels=4, expand_choices=(0.1, 1.0)), r"middle widths round\(channels \* e\) are \[0, 4\]"),
    (dict(channels=4, expand_choices=(0.3, 0.35)), r"are \[1, 1\]; they must be >= 1 and distinct"),
    (dict(dropout=1.0), r"space.dropout=1.0: must be a number in \[0, 1\)"),
    (dict(input_shape=(8, 8)), r"space.input_shape=\(8, 8\): must be a token window length \[T\]"),
])
def test_bad_spaces_name_the_field_value_and_rule(fields, message):
    with pytest.raises(ValueError, match=message):
        TCNSpace(**fields)


# ------------------------------------------------------------------------------------------ sizes

TABLE = [  # tcn.md 2.8: (family, d, e, blocks, mid, params, per-token MACs)
    (PTB, 0, 0.1, 2, 60, 6_444_640, 6_432_000),
    (PTB, 1, 0.2, 3, 120, 7_310_320, 7_296_000),
    (PTB, 1, 0.5, 3, 300, 9_255_400, 9_240_000),
    (PTB, 1, 1.0, 3, 600, 12_497_200, 12_480_000),
    (PTB, 2, 1.0, 4, 600, 14_659_600, 14_640_000),
    (SHAKESPEARE, 0, 0.2, 1, 90, 280_160, 279_000),
    (SHAKESPEARE, 1, 0.2, 2, 90, 524_240, 522_000),
    (SHAKESPEARE, 1, 0.5, 2, 225, 1_253_780, 1_251_000),
    (SHAKESPEARE, 1, 1.0, 2, 450, 2_469_680, 2_466_000),
    (SHAKESPEARE, 2, 1.0, 3, 450, 3_686_480, 3_681_000),
]


def test_sizes_table_of_the_reference():
    for family in (PTB, SHAKESPEARE):
        rows = [row for row in TABLE if row[0] is family]
        archs = [family.arch_from_json({"d": d, "e": e}) for _, d, e, *_ in rows]
        # The tracked archs are the table's rows, smallest to largest.
        assert [family.arch_to_json(a) for a in family.default_tracked().values()] == \
            [{"d": d, "e": e} for _, d, e, *_ in rows]
        for arch, (_, d, e, blocks, mid, count, macs) in zip(archs, rows):
            assert family.dense_description(arch) == {"blocks": blocks, "mids": [mid] * blocks}
            assert (family.params(arch), family.macs(arch)) == (count, macs)
            assert family.cost_summary(arch) == {"arch": {"d": d, "e": e}, "macs": macs, "gmacs": macs / 1e9,
                                                 "params": count}
        batch = family_lib.stack(archs)
        np.testing.assert_array_equal(family.params_batch(batch), [row[5] for row in rows])
        np.testing.assert_array_equal(family.macs_batch(batch), [row[6] for row in rows])
        np.testing.assert_array_equal(jax.jit(family.params_array)(batch), [row[5] for row in rows])
        np.testing.assert_allclose(jax.jit(family.macs_array)(batch), [row[6] for row in rows], rtol=1e-7)
    shakespeare = jax.eval_shape(SHAKESPEARE.init, jax.random.key(0))
    assert sum(math.prod(x.shape) for x in jax.tree.leaves(shakespeare)) == 3_686_480


def test_ptb_supernet_size_and_reference_init(ptb_params):
    params = ptb_params
    # The parameter count of the largest arch is the initialised supernet's (the tied matrix once).
    assert sum(int(np.size(x)) for x in jax.tree.leaves(params)) == PTB.params(PTB.largest()) == 14_659_600
    embedding = np.asarray(params["embedding"])
    assert embedding.shape == (10000, 600)
    assert abs(embedding.std() - 0.01) < 2e-4 and abs(embedding.mean()) < 1e-4
    np.testing.assert_array_equal(params["decoder_bias"], np.zeros(10000))
    bound = 1 / math.sqrt(600 * 3)  # fan_in * k of the max shape, for both convolutions (mid_max = C)
    for i in range(4):
        for conv in ("conv1", "conv2"):
            v, g, b = (np.asarray(params[f"block_{i}"][conv][key]) for key in ("v", "g", "b"))
            assert v.shape == (600, 600, 3)
            assert np.abs(v).max() <= bound and np.abs(v).max() > 0.99 * bound
            assert np.abs(b).max() <= bound and np.abs(b).max() > 0.9 * bound
            # g is the row norm of v, so the initial effective weight is v itself.
            np.testing.assert_allclose(g, np.sqrt((v.astype(np.float64) ** 2).sum(axis=(1, 2))), rtol=1e-5)
    assert not np.array_equal(params["block_0"]["conv1"]["v"], params["block_1"]["conv1"]["v"])


# ----------------------------------------------------------------------------------- masked == dense

def _numpy_dense_reference(dense, tokens, kernel_size):
    """The dense TCN by explicit loops over batch, time, output and input channels and taps (float64)."""
    x = np.asarray(dense["embedding"], np.float64)[np.asarray(tokens)]  # [B, T, C]
    batch, steps, _ = x.shape
    i = 0
    while f"block_{i}" in dense:
        dilation, residual = 2 ** i, x
        for conv in ("conv1", "conv2"):
            v, g, b = (np.asarray(dense[f"block_{i}"][conv][key], np.float64) for key in ("v", "g", "b"))
            out_channels, in_channels, _ = v.shape
            w = np.zeros_like(v)
            for o in range(out_channels):  # weight norm per output row, by hand
                norm = math.sqrt(sum(v[o, c, j] ** 2 for c in range(in_channels) for j in range(kernel_size)))
                w[o] = g[o] * v[o] / norm
            y = np.zeros((batch, steps, out_channels))
            for n, t, o in itertools.product(range(batch), range(steps), range(out_channels)):
                total = b[o]
                for c, j in itertools.product(range(in_channels), range(kernel_size)):
                    source = t - dilation * (kernel_size - 1 - j)  # causal: left padding only
                    if source >= 0:
                        total += w[o, c, j] * x[n, source, c]
                y[n, t, o] = max(total, 0.0)  # ReLU after each convolution
            x = y
        x = np.maximum(x + residual, 0.0)
        i += 1
    return x @ np.asarray(dense["embedding"], np.float64).T + np.asarray(dense["decoder_bias"], np.float64)


def test_dense_and_masked_forward_equal_a_numpy_loop_reference():
    family = ElasticTCN(TCNSpace(channels=4, levels=2, kernel_size=2, depth_choices=(0, 1),
                                 expand_choices=(0.5, 1.0), input_shape=(6,), num_classes=5))
    params = family.init(jax.random.key(2))
    # Away from the init (g = ||v||), so the weight norm's scale matters.
    params = jax.tree.map(lambda p: p * 1.7, params)
    tokens = _batch(family, count=2)[0]
    for spec in ({"d": 0, "e": 0.5}, {"d": 1, "e": [0.5, 1.0]}, {"d": 1, "e": [1.0, 0.5]}):
        arch = family.arch_from_json(spec)
        dense = family.extract(params, arch)
        reference = _numpy_dense_reference(dense, tokens, 2)
        np.testing.assert_allclose(family.dense_apply(dense, tokens, arch), reference, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(family.apply(params, tokens, arch), reference, rtol=1e-5, atol=1e-6)


def test_a_thin_conv2_is_renormalised_over_its_kept_inputs():
    # conv2 of one block: 2 output rows, 4 middle inputs, 1 tap; a subnet keeps the first 2 inputs.
    v = np.array([[[3.0], [4.0], [12.0], [0.0]], [[1.0], [0.0], [0.0], [1.0]]], np.float32)
    g = np.array([2.0, 5.0], np.float32)
    thin = np.asarray(model_lib.normalized(g, v[:, :2]))
    np.testing.assert_allclose(thin[:, :, 0], [[2 * 3 / 5, 2 * 4 / 5], [5.0, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(np.sqrt((thin ** 2).sum(axis=(1, 2))), g, rtol=1e-6)  # the norm is g again
    # Not a slice of the supernet's effective weight (whose first row has norm 2 over all 4 inputs).
    np.testing.assert_allclose(np.asarray(model_lib.normalized(g, v))[0, :2, 0], [2 * 3 / 13, 2 * 4 / 13])
    # The masked supernet does the same: a width-1 subnet of a 1-tap, 2-channel block reads conv2's row
    # norm over its 1 kept input only.
    family = ElasticTCN(TCNSpace(channels=2, levels=1, kernel_size=1, depth_choices=(0,),
                                 expand_choices=(0.5, 1.0), input_shape=(1,), num_classes=2))
    params = jax.tree.map(np.asarray, family.init(jax.random.key(0)))
    params["embedding"] = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    params["decoder_bias"] = np.zeros(2, np.float32)
    params["block_0"] = {"conv1": {"v": np.array([[[1.0], [0.0]], [[0.0], [1.0]]], np.float32),
                                   "g": np.ones(2, np.float32), "b": np.zeros(2, np.float32)},
                         "conv2": {"v": np.array([[[3.0], [4.0]], [[-2.0], [7.0]]], np.float32),
                                   "g": np.array([2.0, 1.0], np.float32), "b": np.zeros(2, np.float32)}}
    arch = family.arch_from_json({"d": 0, "e": 0.5})
    # Token 0: embedding [1, 0] -> conv1 keeps hidden [1]; conv2 rows over input 0 only: 2*3/3 = 2 and
    # 1*(-2)/2 = -1 -> ReLU [2, 0]; + residual [1, 0] -> [3, 0]; logits = [3, 0] @ I.
    np.testing.assert_allclose(family.apply(params, np.array([[0]], np.int32), arch)[0, 0], [3.0, 0.0],
                               rtol=1e-6)


# ------------------------------------------------------------------------------------------ dropout

def test_dropout_is_drawn_from_the_key_in_training_only(tiny_params):
    tokens = _batch(TINY)[0]
    arch = TINY.largest()
    apply = jax.jit(lambda arch, rng: TINY.apply(tiny_params, tokens, arch, train=True, rng=rng))
    evaluation = TINY.apply(tiny_params, tokens, arch)
    first = apply(arch, jax.random.key(5))
    np.testing.assert_array_equal(first, apply(arch, jax.random.key(5)))
    assert not np.allclose(first, apply(arch, jax.random.key(6)))
    assert not np.allclose(first, evaluation)
    np.testing.assert_array_equal(TINY.apply(tiny_params, tokens, arch, train=False, rng=jax.random.key(5)),
                                  evaluation)
    np.testing.assert_array_equal(TINY.apply(tiny_params, tokens, arch, train=True), evaluation)
    no_rate = ElasticTCN(TCNSpace(**{**TINY.space_dict(), "dropout": 0.0, "emb_dropout": 0.0}))
    np.testing.assert_array_equal(no_rate.apply(tiny_params, tokens, arch, train=True, rng=jax.random.key(5)),
                                  evaluation)


# ------------------------------------------------------------------------------------ sliced == masked

GROUPS = [  # groups of SMALL's clients trained together (the envelope is theirs); each arch checked under it
    [{"d": 0, "e": 0.25}],
    [{"d": 0, "e": 0.25}, {"d": 1, "e": 1.0}],  # an envelope far larger than the smallest arch
    [{"d": 1, "e": [0.5, 0.25]}, {"d": 0, "e": [0.25, 1.0]}],  # a dropped block's e does not widen it
    [{"d": 1, "e": [0.25, 0.5]}, {"d": 1, "e": [1.0, 0.25]}, {"d": 0, "e": 0.5}],
]


def test_sliced_equals_masked_in_logits_and_gradients(small_params):
    sliced = SMALL.sliced
    tokens, labels, weights = _batch(SMALL)

    def masked_loss(params, arch, rng):
        logits = SMALL.apply(params, tokens, arch, train=True, rng=rng)
        return _loss(logits, labels, weights), logits

    def sliced_loss(params, arch, env, rng):
        logits = sliced.apply(params, tokens, arch, env, True, rng)
        return _loss(logits, labels, weights), logits

    @jax.jit
    def both(params, arch, env, rng):
        (_, masked), masked_grad = jax.value_and_grad(masked_loss, has_aux=True)(params, arch, rng)
        (_, cut), sliced_grad = jax.value_and_grad(sliced_loss, has_aux=True)(params, arch, env, rng)
        evaluation = (SMALL.apply(params, tokens, arch), sliced.apply(params, tokens, arch, env))
        return (masked, cut), evaluation, masked_grad, sliced_grad

    for g, group in enumerate(GROUPS):
        archs = [SMALL.arch_from_json(spec) for spec in group]
        env = sliced.envelope(family_lib.stack(archs))
        for arch in archs:
            (masked, cut), (masked_eval, cut_eval), masked_grad, sliced_grad = both(
                small_params, arch, env, jax.random.key(g))
            np.testing.assert_array_equal(cut, masked)  # bit for bit, dropout on
            np.testing.assert_array_equal(cut_eval, masked_eval)  # and off
            for a, b, m in zip(jax.tree.leaves(sliced_grad), jax.tree.leaves(masked_grad),
                               jax.tree.leaves(SMALL.masks(arch))):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
                assert not np.any(np.where(np.broadcast_to(m, a.shape) == 0, a, 0))  # exactly zero outside
    assert sliced.to_pieces(small_params) is small_params and sliced.from_pieces(small_params) is small_params


def test_envelope_of_a_group():
    archs = family_lib.stack([TINY.arch_from_json({"d": 1, "e": [0.5, 0.25, 1.0]}),
                              TINY.arch_from_json({"d": 0, "e": [0.25, 1.0, 1.0]})])
    env = TINY.sliced.envelope(archs)
    assert int(env.blocks) == 2  # depth 1 keeps 2 blocks; block 2's 1.0 is a dropped block's, ignored
    np.testing.assert_array_equal(env.expand, [1, 0, 0])


def test_sliced_under_jit_and_vmap_over_clients_with_an_unbatched_envelope(small_params):
    sliced = SMALL.sliced
    tokens = _batch(SMALL)[0]
    archs = family_lib.stack([SMALL.arch_from_json(spec) for spec in GROUPS[3]])
    keys = jax.random.split(jax.random.key(9), 3)
    env = sliced.envelope(archs)
    cut = jax.jit(jax.vmap(lambda a, r: sliced.apply(small_params, tokens, a, env, True, r)))(archs, keys)
    masked = jax.jit(jax.vmap(lambda a, r: SMALL.apply(small_params, tokens, a, train=True, rng=r)))(archs, keys)
    np.testing.assert_array_equal(cut, masked)
    for i, arch in enumerate(family_lib.unstack(archs)):  # and each client alone
        np.testing.assert_allclose(cut[i], SMALL.apply(small_params, tokens, arch, train=True, rng=keys[i]),
                                   rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------ JSON, counts

def test_arch_json_forms():
    arch = TINY.arch_from_json({"d": 1, "e": 0.5})
    assert int(arch.depth) == 1 and arch.expand.tolist() == [1, 1, 1]
    assert TINY.arch_to_json(arch) == {"d": 1, "e": 0.5}  # one ratio when every kept block has it
    listed = TINY.arch_from_json({"d": 1, "e": [0.25, 1.0, 0.5]})
    assert listed.expand.tolist() == [0, 2, 1]
    assert TINY.arch_to_json(listed) == {"d": 1, "e": [0.25, 1.0, 0.25]}  # dropped block: smallest ratio
    # A dropped block's ratio does not matter: equal ratios of the kept blocks give the scalar form.
    assert TINY.arch_to_json(TINY.arch_from_json({"d": 0, "e": [0.5, 0.5, 1.0]})) == {"d": 0, "e": 0.5}
    assert TINY.arch_from_json({"d": 2, "e": 1}).expand.tolist() == [2, 2, 2]  # an int ratio
    np.testing.assert_array_equal(TINY.canonical(listed).expand, [0, 2, 0])


@pytest.mark.parametrize("spec, message", [
    ({"d": 1}, r"arch \{'d': 1\}: need \{\"d\": D, \"e\": E\} with D one of \[0, 1, 2\] and E one ratio or a "
               r"list of 3 ratios .* from \[0.25, 0.5, 1.0\]"),
    ({"d": 1, "e": 0.5, "w": 1}, r"arch \{.*\}: need"),
    ([1, 0.5], r"arch \[1, 0.5\]: need"),
    ({"d": 3, "e": 0.5}, r"arch d=3: need"),
    ({"d": True, "e": 0.5}, r"arch d=True: need"),
    ({"d": 1.0, "e": 0.5}, r"arch d=1.0: need"),
    ({"d": 1, "e": 0.3}, r"arch e 0.3 is not a choice: need"),
    ({"d": 1, "e": [0.5, 0.5]}, r"arch e=\[0.5, 0.5\]: need"),
    ({"d": 1, "e": "0.5"}, r"arch e='0.5': need"),
    ({"d": 1, "e": [0.5, True, 0.5]}, r"arch e True is not a choice"),
])
def test_bad_arch_json_is_refused_with_what_is_allowed(spec, message):
    with pytest.raises(ValueError, match=message):
        TINY.arch_from_json(spec)


def test_validate_refuses_bad_concrete_archs():
    TINY.validate(family_lib.stack([TINY.smallest(), TINY.largest()]))
    with pytest.raises(ValueError, match=r"arch shapes depth \(\), expand \(2,\): need \[...\] and \[..., 3\]"):
        TINY.validate(TCNArch(np.int32(0), np.zeros(2, np.int32)))
    with pytest.raises(ValueError, match=r"arch depth indices 3: allowed 0..2"):
        TINY.validate(TCNArch(np.int32(3), np.zeros(3, np.int32)))
    with pytest.raises(ValueError, match=r"arch expand indices \[0, 3, 0\]: allowed 0..2"):
        TINY.validate(TCNArch(np.int32(0), np.array([0, 3, 0], np.int32)))


def test_subnet_counts():
    assert PTB.num_subnets() == 5 ** 2 + 5 ** 3 + 5 ** 4 == 775
    assert SHAKESPEARE.num_subnets() == 3 + 9 + 27 == 39
    assert ElasticTCN(TCNSpace(channels=450, levels=3, num_classes=80)).num_subnets() == 155
    # Brute force: every encoding of a small space, counted by canonical form.
    family = ElasticTCN(TCNSpace(channels=8, levels=4, depth_choices=(1, 3), expand_choices=(0.25, 0.5, 1.0)))
    every = [TCNArch(np.int32(d), np.array(e, np.int32)) for d in range(2) for e in np.ndindex(3, 3, 3, 3)]
    assert len({family_lib.to_genes(family, family.canonical(a)).tobytes() for a in every}) \
        == family.num_subnets() == 3 ** 2 + 3 ** 4


def test_default_tracked_of_small_spaces_drops_duplicate_intermediates():
    smoke = ElasticTCN(TCNSpace(**{**TINY.space_dict(), **ElasticTCN.smoke_space()}))
    tracked = {name: smoke.arch_to_json(a) for name, a in smoke.default_tracked().items()}
    assert tracked == {"smallest": {"d": 0, "e": 0.25}, "small": {"d": 1, "e": 0.25},
                       "largest": {"d": 1, "e": 1.0}}  # medium = small, large = largest
    one = ElasticTCN(TCNSpace(channels=4, levels=1, depth_choices=(0,), expand_choices=(1.0,)))
    assert one.num_subnets() == 1 and list(one.default_tracked()) == ["smallest", "largest"]


def test_bfloat16_compute_stays_close_to_float32(tiny_params):
    family = ElasticTCN(TINY.space, "bfloat16")
    tokens = _batch(TINY)[0]
    logits = family.apply(tiny_params, tokens, TINY.largest())
    assert logits.dtype == jnp.float32
    np.testing.assert_allclose(logits, TINY.apply(tiny_params, tokens, TINY.largest()), rtol=0.05, atol=0.05)
