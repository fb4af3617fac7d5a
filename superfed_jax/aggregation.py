"""Masked, weighted aggregation of overlapping client sub-networks (SuperFed).

Implements the server-side aggregation rule of Khare et al., "SuperFed: Weight
Shared Federated Learning", arXiv:2301.10879 (the section on aggregating
arbitrarily overlapping weight-shared parameters). Client ``c`` returns
parameters ``theta_c``, a mask ``M_c`` marking which elements it trained, and
a scalar weight ``w_c`` (e.g. its number of examples). For every element ``e``::

    num[e] = sum_c w_c * M_c[e] * theta_c[e]
    den[e] = sum_c w_c * M_c[e]
    new[e] = num[e] / den[e]   if den[e] > 0   else previous[e]

Weights are renormalised per element, so they need not sum to one; they should
be non-negative. Elements that no client trained keep their previous value.

The rule is split in two so that the sums can be reduced across devices or
hosts (``jax.lax.psum`` inside ``shard_map``, or adding partial sums of client
chunks) before the division::

    num, den = masked_sums(params, masks, weights)   # leaves [C, ...] -> [...]
    new = finalize(num, den, previous)

Everything is pure, model-agnostic (any pytree) and jittable. Example::

    params = {"w": jnp.ones((4, 3, 8)), "b": jnp.zeros((4, 8))}   # C = 4 clients
    masks = {"w": jnp.ones((4, 1, 8), bool), "b": jnp.ones((4, 8), bool)}
    weights = jnp.array([10.0, 20.0, 5.0, 1.0])
    previous = {"w": jnp.zeros((3, 8)), "b": jnp.zeros((8,))}
    new = jax.jit(masked_mean)(params, masks, weights, previous)
"""
import functools
from typing import Any, Tuple

import jax
import jax.numpy as jnp

PyTree = Any

__all__ = ["masked_sums", "finalize", "masked_mean", "CLIENT_SUMS", "client_sum_for"]

# How `masked_sums` adds over the client axis (docs/performance.md 6): "slices" adds the C client slices
# one by one (fastest on one CPU device); "reduce" is one array reduction over the axis, which a client
# axis sharded over devices turns into one all-reduce per leaf instead of a chain of collective-permutes.
CLIENT_SUMS = ("slices", "reduce")


def client_sum_for(num_devices: int, platform: str) -> str:
    """The `masked_sums` form for clients spread over `num_devices` devices of `platform` ("cpu", "gpu",
    "tpu"): "slices" only on a single CPU device, where it measurably wins; "reduce" everywhere else."""
    return "slices" if num_devices == 1 and platform == "cpu" else "reduce"


def _accum_dtype(dtype) -> jnp.dtype:
    """float32 for low-precision/integer inputs, float64 stays float64."""
    return jnp.promote_types(dtype, jnp.float32)


def _broadcasts_to(src: Tuple[int, ...], dst: Tuple[int, ...]) -> bool:
    """Whether shape ``src`` broadcasts (NumPy rules) to exactly ``dst``."""
    try:
        return jnp.broadcast_shapes(src, dst) == tuple(dst)
    except ValueError:
        return False


def _leaves_matching(tree: PyTree, ref: PyTree, what: str, ref_what: str):
    """Returns ``(path, leaf)`` pairs of ``tree``; raises if its structure differs from ``ref``."""
    pairs = jax.tree_util.tree_flatten_with_path(tree)[0]
    if jax.tree.structure(tree) != jax.tree.structure(ref):
        have = {jax.tree_util.keystr(p) for p, _ in pairs}
        want = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(ref)[0]}
        raise ValueError(
            f"{what} tree structure differs from {ref_what}: leaf paths missing from {what}: "
            f"{sorted(want - have)[:10]}, extra in {what}: {sorted(have - want)[:10]} "
            "(if both are empty, the container types differ, e.g. dict vs FrozenDict or list "
            f"vs tuple): {what} is {jax.tree.structure(tree)}"[:2000])
    return pairs


def masked_sums(client_params: PyTree, client_masks: PyTree, client_weights: jax.Array,
                client_sum: str = "slices") -> Tuple[PyTree, PyTree]:
    """Weighted, masked sums over the client axis.

    Args:
        client_params: pytree whose leaves have shape ``[C, ...]``.
        client_masks: same structure; each leaf ``[C, ...]`` whose trailing shape
            broadcasts (NumPy rules) to the matching params leaf's trailing shape,
            e.g. ``[C, 1, 1, 1, 64]`` or ``[C, 64]`` for a ``[C, 3, 3, 16, 64]``
            kernel. Boolean or float.
        client_weights: ``[C]`` non-negative per-client weights.
        client_sum: how the numerator is summed over the client axis, one of ``CLIENT_SUMS`` (static):
            ``"slices"`` (the default) adds the C slices one by one, fastest on one CPU device;
            ``"reduce"`` reduces the axis at once, which is one all-reduce per leaf when the client
            axis is sharded over devices. Same sums up to float summation order; `client_sum_for`
            picks one from the device count and platform.

    Returns:
        ``(numerator, denominator)``: numerator leaves have the params leaf shape
        without ``C``; denominator leaves have the *mask* leaf shape without
        ``C``. Both are float32 (float64 for float64 params). Being sums over
        ``C``, they may be added across client chunks/devices before `finalize`.

    Raises:
        ValueError: on mismatched tree structure, client-axis length or shapes, or an unknown
            ``client_sum``.
    """
    if client_sum not in CLIENT_SUMS:
        raise ValueError(f"client_sum={client_sum!r}: allowed values are {CLIENT_SUMS} ('slices' on one "
                         "CPU device, 'reduce' when clients are sharded; see client_sum_for)")
    client_weights = jnp.asarray(client_weights)
    if client_weights.ndim != 1:
        raise ValueError(f"client_weights must have shape [C], got {client_weights.shape}")
    n = client_weights.shape[0]
    mask_leaves = [m for _, m in _leaves_matching(client_masks, client_params,
                                                  "client_masks", "client_params")]
    nums, dens = [], []
    for (path, p), m in zip(jax.tree_util.tree_flatten_with_path(client_params)[0], mask_leaves):
        p, m = jnp.asarray(p), jnp.asarray(m)
        where = jax.tree_util.keystr(path)
        if p.ndim < 1 or m.ndim < 1 or p.shape[0] != n or m.shape[0] != n:
            raise ValueError(f"leaf {where}: params shape {p.shape} and mask shape {m.shape} "
                             f"must both lead with the client axis C={n} (client_weights "
                             f"shape {client_weights.shape})")
        if not _broadcasts_to(m.shape[1:], p.shape[1:]):
            raise ValueError(f"leaf {where}: mask shape {m.shape} does not broadcast to "
                             f"params shape {p.shape} (after the client axis)")
        acc = _accum_dtype(p.dtype)
        wm = m.astype(acc) * client_weights.astype(acc).reshape((n,) + (1,) * (m.ndim - 1))
        dens.append(jnp.sum(wm, axis=0))
        wm_full = wm.reshape((n,) + (1,) * (p.ndim - m.ndim) + m.shape[1:])
        if client_sum == "reduce":  # sharded clients: a local reduction, then one all-reduce
            nums.append(jnp.sum(wm_full * p.astype(acc), axis=0))
        else:
            # Slice by slice: on one CPU device XLA reduces a leading axis of large leaves ~40x slower
            # than it adds C slices (4.4 s vs 0.07 s for 2 clients of the paper's supernet); sharded,
            # this form becomes collective-permutes, hence "reduce" there.
            nums.append(functools.reduce(jnp.add, [wm_full[i] * p[i].astype(acc) for i in range(n)]))
    treedef = jax.tree.structure(client_params)
    return jax.tree.unflatten(treedef, nums), jax.tree.unflatten(treedef, dens)


def finalize(numerator: PyTree, denominator: PyTree, previous: PyTree) -> PyTree:
    """Divides sums into means; keeps ``previous`` wherever ``denominator <= 0``.

    Args:
        numerator: pytree of summed ``w * mask * theta`` (leaf shape = params shape).
        denominator: same structure; leaves broadcastable to the numerator leaves.
        previous: same structure; the current global params (leaf shape = params shape).

    Returns:
        Pytree like ``previous`` (same shapes and dtypes). The division never
        sees a zero denominator, so no NaN/inf arises in values or gradients.

    Raises:
        ValueError: on mismatched tree structure or leaf shapes.
    """
    num_leaves = [x for _, x in _leaves_matching(numerator, previous, "numerator", "previous")]
    den_leaves = [x for _, x in _leaves_matching(denominator, previous, "denominator", "previous")]
    out = []
    for (path, prev), num, den in zip(jax.tree_util.tree_flatten_with_path(previous)[0],
                                      num_leaves, den_leaves):
        prev, num, den = jnp.asarray(prev), jnp.asarray(num), jnp.asarray(den)
        if num.shape != prev.shape or not _broadcasts_to(den.shape, prev.shape):
            raise ValueError(f"leaf {jax.tree_util.keystr(path)}: numerator {num.shape} and "
                             f"denominator {den.shape} do not match previous {prev.shape}")
        trained = den > 0
        safe_den = jnp.where(trained, den, jnp.ones_like(den))  # double-where: never num / 0
        mean = num / safe_den
        out.append(jnp.where(trained, mean, prev).astype(prev.dtype))  # kept values are exact
    return jax.tree.unflatten(jax.tree.structure(previous), out)


def masked_mean(client_params: PyTree, client_masks: PyTree, client_weights: jax.Array,
                previous: PyTree) -> PyTree:
    """SuperFed aggregation in one call: ``finalize(*masked_sums(...), previous)``.

    Args:
        client_params: pytree, leaves ``[C, ...]``.
        client_masks: same structure, leaves ``[C, ...]`` broadcastable to params.
        client_weights: ``[C]`` non-negative weights.
        previous: pytree, leaves ``[...]``: value kept where no client contributed.

    Returns:
        New global params, structure/shapes/dtypes of ``previous``.
    """
    return finalize(*masked_sums(client_params, client_masks, client_weights), previous)
