"""What every `supernet.family.Family` must satisfy, as checks any family's tests can run.

`check_family(family, inputs, labels, weights)` is the contract: archs within their bounds and JSON round
trips, masks shaped like the params, the three cost forms agreeing with each other and with the params'
own size, and the key equivalence of weight sharing: the masked supernet equals the dense subnet cut out
of it, in logits and in gradients, with exactly zero gradient on every element outside the subnet; and a
dense subnet built on its own (`dense_init`, what loading an export uses) has the shapes of the one cut
out. The references are independent of the family's own shortcuts: the dense subnet is a separate model
with exact shapes, and the parameter count of the largest arch is counted from the initialised params.
"""
import json

import jax
import jax.numpy as jnp
import numpy as np

from superfed_jax.supernet import family as family_lib


def _loss(logits, labels, weights):
    """Weighted summed cross-entropy (with a constant, so gradients of every logit are non-zero)."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))
    picked = jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]
    return -jnp.sum(picked * weights)


def sample_archs(family, count: int, seed: int = 0) -> list:
    """`count` archs: the smallest, the largest, then uniform draws."""
    drawn = family_lib.unstack(family.sample(jax.random.key(seed), (count,)))
    return [family.smallest(), family.largest()] + drawn[:max(0, count - 2)]


def check_space(family) -> None:
    bounds = family.arch_bounds()
    for arch in sample_archs(family, 8):
        family.validate(arch)
        for leaf, bound in zip(jax.tree.leaves(arch), jax.tree.leaves(bounds)):
            assert np.all((0 <= np.asarray(leaf)) & (np.asarray(leaf) < np.asarray(bound)))
        canonical = family.canonical(arch)
        again = family.arch_from_json(family.arch_to_json(arch))
        for a, b in zip(jax.tree.leaves(canonical), jax.tree.leaves(family.canonical(again))):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        genes = family_lib.to_genes(family, arch)
        assert genes.shape == family_lib.gene_bounds(family).shape
        for a, b in zip(jax.tree.leaves(arch), jax.tree.leaves(family_lib.from_genes(family, genes))):
            np.testing.assert_array_equal(np.asarray(a), b)
    assert family.num_subnets() >= 1
    for name, arch in family.default_tracked().items():
        family.validate(arch)
        assert isinstance(name, str)
    # The space's JSON form reads back to an equal (and equally hashed) family, as run files need.
    again = type(family).from_config(family.space_dict(), conv_impl=getattr(family, "conv_impl", "xla"),
                                     dtype=getattr(family, "dtype", "float32"))
    assert again == family and hash(again) == hash(family)


def check_cost(family, params) -> None:
    archs = sample_archs(family, 6)
    batch = family_lib.stack(archs)
    macs = [family.macs(a) for a in archs]
    counts = [family.params(a) for a in archs]
    np.testing.assert_array_equal(family.macs_batch(batch), macs)
    np.testing.assert_array_equal(family.params_batch(batch), counts)
    np.testing.assert_array_equal(np.asarray(jax.jit(family.params_array)(batch)), counts)
    np.testing.assert_allclose(np.asarray(jax.jit(family.macs_array)(batch)), macs, rtol=1e-6)
    total = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(params))
    assert family.params(family.largest()) == total
    for arch, count in zip(archs, counts):
        dense = family.extract(params, arch)
        assert sum(int(np.size(leaf)) for leaf in jax.tree.leaves(dense)) == count


def check_masks(family, params) -> None:
    for arch in sample_archs(family, 4):
        masks = family.masks(arch)
        assert jax.tree.structure(masks) == jax.tree.structure(params)
        for mask, param in zip(jax.tree.leaves(masks), jax.tree.leaves(params)):
            assert np.broadcast_shapes(np.shape(mask), np.shape(param)) == np.shape(param)
        used = sum(int(np.sum(np.broadcast_to(np.asarray(m), np.shape(p))))
                   for m, p in zip(jax.tree.leaves(masks), jax.tree.leaves(params)))
        assert used == family.params(arch)


def check_masked_equals_dense(family, params, inputs, labels, weights, archs=None, rtol=2e-5,
                              atol=2e-6) -> None:
    """Logits and gradients of the masked supernet equal those of the extracted dense subnet."""
    masked_grad = jax.jit(jax.value_and_grad(
        lambda p, a: _loss(family.apply(p, inputs, a), labels, weights)))

    def dense_loss_and_logits(dense_params, arch):
        logits = family.dense_apply(dense_params, inputs, arch)
        return _loss(logits, labels, weights), logits

    for arch in archs or sample_archs(family, 5):
        # The dense subnet's logits, loss and gradients from one compiled program per arch (its shapes are
        # the arch's own); run op by op, the same computation took about 1.5 times as long.
        dense_grad = jax.jit(jax.value_and_grad(lambda d, a=arch: dense_loss_and_logits(d, a), has_aux=True))
        (dense_loss, dense_logits), dense_grads = dense_grad(family.extract(params, arch))
        np.testing.assert_allclose(np.asarray(family.apply(params, inputs, arch)), np.asarray(dense_logits),
                                   rtol=rtol, atol=atol)
        loss, grads = masked_grad(params, arch)
        np.testing.assert_allclose(float(loss), float(dense_loss), rtol=rtol, atol=atol)
        # The gradient outside the subnet is exactly zero; inside it is the dense subnet's.
        masks = family.masks(arch)
        for g, m in zip(jax.tree.leaves(grads), jax.tree.leaves(masks)):
            assert not np.any(np.where(np.broadcast_to(np.asarray(m), g.shape) == 0, np.asarray(g), 0))
        extracted = family.extract(grads, arch)
        for g, d in zip(jax.tree.leaves(extracted), jax.tree.leaves(dense_grads)):
            np.testing.assert_allclose(np.asarray(g), np.asarray(d), rtol=1e-4, atol=1e-6)
        # Cutting out and putting back is the identity.
        for a, b in zip(jax.tree.leaves(family.embed(family.extract(params, arch), arch, params)),
                        jax.tree.leaves(params)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def check_dense(family, params, inputs) -> None:
    """`dense_init` builds exactly what `extract` cuts out (structure, shapes, dtypes), which is what
    `dense_apply` takes; `dense_description` is JSON."""
    for arch in sample_archs(family, 4):
        extracted = jax.eval_shape(lambda p: family.extract(p, arch), params)
        built = jax.eval_shape(lambda x: family.dense_init(jax.random.key(0), x, arch), inputs)
        assert jax.tree.structure(built) == jax.tree.structure(extracted)
        for a, b in zip(jax.tree.leaves(built), jax.tree.leaves(extracted)):
            assert (a.shape, a.dtype) == (b.shape, b.dtype)
        # The forward of a freshly built dense subnet, traced for its output shape (run eagerly, building
        # it drew every initialiser op by op: most of this check's time, for a shape).
        logits = jax.eval_shape(
            lambda: family.dense_apply(family.dense_init(jax.random.key(1), inputs, arch), inputs, arch))
        positions = np.shape(inputs)[:1] if family.batch_kind == family_lib.IMAGES else np.shape(inputs)
        assert logits.shape == tuple(positions) + (family.data_shape.num_classes,)
        json.dumps(family.dense_description(arch))


def check_family(family, params, inputs, labels, weights) -> None:
    """The whole contract (see the module docstring)."""
    check_space(family)
    check_cost(family, params)
    check_masks(family, params)
    check_masked_equals_dense(family, params, inputs, labels, weights)
    check_dense(family, params, inputs)
    assert family.activation_elements() > 0
    assert family.batch_kind in (family_lib.IMAGES, family_lib.TOKENS)
