"""Closed-form cost of a subnet: forward MACs of one image and parameter counts.

Khare et al., "SuperFed: Weight Shared Federated Learning", arXiv 2301.10879, measure compute in per-image
forward multiply-accumulates (MACs) and communication in parameters (docs/algorithm.md sections 2.3 and 8).
Conventions (MACs as below and params with ``bn_affine=True`` reproduce every row of the table in
docs/algorithm.md 2.3 exactly):

* MACs: a convolution costs Cin * k * k * Cout * Hout * Wout (padding taps included), a dense layer
  in * out; ReLU, pooling, residual adds and biases are free. ``count_padding=False`` instead counts only the
  taps that land on real input, which is what XLA's cost analysis counts (`xla_flops`).
* Params: ``bn_affine=False`` (the default) counts the parameters this codebase actually has: conv kernels,
  dense kernel and bias (the published runs have no normalization, section 2.4). The paper's table
  (``bn_affine=True``) also counts the frozen BatchNorm affine pairs of the reference code: one (gamma, beta)
  pair per output channel of the stem, of every kept block's conv1 (its mid) and conv2 (its width) and of
  every projection shortcut (its width again), i.e. 2 * (stem + sum(mid + width) + sum(shortcut width)).

Every form reads the layers of `layers.supernet_layers`. Three forms: `macs` / `params` sum the
layers one concrete arch keeps in Python ints (`macs_by_layer` gives the terms); `macs_batch` /
`params_batch` are exact vectorized NumPy (int64) versions for many archs at once on the host;
`macs_array` / `params_array` are jittable (float32 MACs, since 3.4e9 overflows int32 with x64 disabled).

The command line that prints these figures for one arch is `superfed_jax.reports.arch_size`.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from superfed_jax.supernet.ofa_resnet import layers as layers_lib
from superfed_jax.supernet.ofa_resnet import space as space_lib
from superfed_jax.supernet.ofa_resnet import subnet

_INT32_MAX = np.iinfo(np.int32).max


# ----------------------------------------------------------------------------------------------------
# One layer (`layers.Layer`) at given widths.


def _taps_1d(size: int, kernel: int, stride: int, count_padding: bool) -> int:
    """Kernel taps summed over the output positions of one spatial axis."""
    out = layers_lib.conv_out_size(size, kernel, stride)
    if count_padding:
        return out * kernel
    pad = (kernel - 1) // 2
    return sum(0 <= o * stride - pad + t < size for o in range(out) for t in range(kernel))


def conv_macs(cin: int, cout: int, size: int, kernel: int, stride: int,
              count_padding: bool = True) -> int:
    """MACs of a square bias-free convolution on a [size, size, cin] input."""
    return cin * cout * _taps_1d(size, kernel, stride, count_padding) ** 2


def layer_macs(layer: layers_lib.Layer, in_channels: int, out_channels: int,
               count_padding: bool = True) -> int:
    """Forward MACs of one image through `layer` with the given channel widths.

    A dense layer costs in * out (it is a 1x1 "convolution" of the 1x1 pooled features); a projection
    shortcut's 1x1 convolution runs after its average pooling, i.e. at the block's output resolution.
    """
    return conv_macs(in_channels, out_channels, layer.input_size, layer.kernel, layer.stride,
                     count_padding)


def layer_params(layer: layers_lib.Layer, in_channels: int, out_channels: int,
                 bn_affine: bool = False) -> int:
    """Parameters of `layer` with the given channel widths (see `params` for ``bn_affine``).

    With ``bn_affine`` every convolution also counts one frozen BatchNorm (gamma, beta) pair per output
    channel, as the reference code has; the dense head has none.
    """
    weights = layer.kernel * layer.kernel * in_channels * out_channels
    if layer.kind == layers_lib.LINEAR:
        return weights + out_channels  # the bias
    return weights + (2 * out_channels if bn_affine else 0)


def _layer_costs(space: space_lib.SearchSpace, arch: space_lib.Arch, cost_fn) -> dict[str, int]:
    """`cost_fn(layer, in_channels, out_channels)` of every layer the concrete arch keeps, by path."""
    shape = subnet.subnet_shape(space, arch)
    return {"/".join(layer.path): cost_fn(layer, *layer.widths(shape.mids))
            for layer in layers_lib.kept_layers(space, shape.depth)}


# ----------------------------------------------------------------------------------------------------
# Scalar form: sum over the layers of one concrete arch (the reference the batch forms are tested against).


def macs_by_layer(space: space_lib.SearchSpace, arch: space_lib.Arch,
                  count_padding: bool = True) -> dict[str, int]:
    """Forward MACs of one image through every layer of a concrete arch's dense subnet.

    Returns:
      A dict from the layer's params path joined by '/' (e.g. 'stage0_block0/conv1', 'head') to its
      MACs, for the layers the arch keeps, in forward order.
    """
    return _layer_costs(space, arch, functools.partial(layer_macs, count_padding=count_padding))


def macs(space: space_lib.SearchSpace, arch: space_lib.Arch, count_padding: bool = True) -> int:
    """Forward MACs of one image through the dense subnet of a concrete arch.

    Args:
      space: the search space.
      arch: one concrete arch (no batch axes).
      count_padding: count kernel taps that fall on the zero padding (the paper's convention, True) or
        only those on real input (XLA's convention, False).

    Returns:
      The MACs as a Python int.
    """
    return sum(macs_by_layer(space, arch, count_padding).values())


def params(space: space_lib.SearchSpace, arch: space_lib.Arch, bn_affine: bool = False) -> int:
    """Parameter count of the dense subnet of a concrete arch.

    Args:
      space: the search space.
      arch: one concrete arch (no batch axes).
      bn_affine: also count the reference code's frozen BatchNorm (gamma, beta) pairs; True reproduces
        the paper's table (docs/algorithm.md 2.3), False (default) counts this codebase's parameters.

    Returns:
      The count as a Python int.
    """
    count = functools.partial(layer_params, bn_affine=bn_affine)
    return sum(_layer_costs(space, arch, count).values())


# ----------------------------------------------------------------------------------------------------
# Batch forms. Every layer's cost is affine in its block's middle width (at most one side of a layer is
# elastic, and costs are linear in each width), and a stage's first block is always kept, so a subnet's
# cost is: fixed + sum over kept skippable blocks of per_block[block] + sum over kept blocks of
# per_mid[block] * mid[block].


@dataclasses.dataclass(frozen=True)
class _CostTable:
    """Affine cost of a space: fixed + sum over blocks b of kept[b] * (per_block[b] + per_mid[b] * mid[b])."""

    fixed: int
    per_block: np.ndarray  # int64 [num_blocks]: cost of a kept block independent of its mid.
    per_mid: np.ndarray  # int64 [num_blocks]: cost per middle channel of a kept block.


def _cost_table(space: space_lib.SearchSpace, cost_fn) -> _CostTable:
    """The table of `cost_fn(layer, in_channels, out_channels)`, read off at middle widths 0 and 1."""
    fixed = 0
    per_block = np.zeros(space.num_blocks, np.int64)
    per_mid = np.zeros(space.num_blocks, np.int64)
    for layer in layers_lib.supernet_layers(space):
        constant = _cost_at_mid(layer, cost_fn, 0, space.num_blocks)
        if layer.skippable:
            per_block[layer.block_index] += constant
        else:  # the stem, the head and the layers of a stage's first block are in every subnet
            fixed += constant
        if layer.elastic_in or layer.elastic_out:
            per_mid[layer.block_index] += _cost_at_mid(layer, cost_fn, 1, space.num_blocks) - constant
    return _CostTable(fixed, per_block, per_mid)


def _cost_at_mid(layer: layers_lib.Layer, cost_fn, mid: int, num_blocks: int) -> int:
    """`cost_fn` of a layer whose block has middle width `mid` (only elastic sides depend on it)."""
    return cost_fn(layer, *layer.widths([mid] * num_blocks))


@functools.lru_cache(maxsize=None)
def _macs_table(space: space_lib.SearchSpace, count_padding: bool) -> _CostTable:
    return _cost_table(space, functools.partial(layer_macs, count_padding=count_padding))


@functools.lru_cache(maxsize=None)
def _params_table(space: space_lib.SearchSpace, bn_affine: bool) -> _CostTable:
    return _cost_table(space, functools.partial(layer_params, bn_affine=bn_affine))


def _check_batch(space: space_lib.SearchSpace, depth, expand):
    depth, expand = np.asarray(depth), np.asarray(expand)
    space_lib.validate(space, space_lib.Arch(depth=depth, expand=expand))
    return depth, expand


def _apply_table(xp, space, table: _CostTable, depth, expand, dtype):
    """fixed + sum over kept blocks of the table's cost, with `xp` NumPy or jax.numpy."""
    stage_of_block = np.repeat(np.arange(space.num_stages), space.blocks_per_stage)
    mids = xp.asarray(space.mid_table, dtype)[stage_of_block, expand]
    position = np.tile(np.arange(space.blocks_per_stage), space.num_stages)
    kept = position <= xp.take(depth, stage_of_block, axis=-1)
    block_cost = xp.asarray(table.per_block, dtype) + xp.asarray(table.per_mid, dtype) * mids
    total = xp.sum(xp.where(kept, block_cost, xp.zeros((), dtype)), axis=-1)
    return xp.asarray(table.fixed, dtype) + total


def macs_batch(space: space_lib.SearchSpace, depth, expand, count_padding: bool = True) -> np.ndarray:
    """Exact per-image MACs of many archs on the host.

    Args:
      space: the search space.
      depth: int [..., num_stages] (NumPy or concrete JAX arrays).
      expand: int [..., num_blocks], indices into ``space.expand_choices``.
      count_padding: as in `macs`.

    Returns:
      int64 [...]; equal to `macs` of every arch.
    """
    depth, expand = _check_batch(space, depth, expand)
    return _apply_table(np, space, _macs_table(space, count_padding), depth, expand, np.int64)


def params_batch(space: space_lib.SearchSpace, depth, expand, bn_affine: bool = False) -> np.ndarray:
    """Exact parameter counts of many archs on the host; int64 [...] (see `params` for ``bn_affine``)."""
    depth, expand = _check_batch(space, depth, expand)
    return _apply_table(np, space, _params_table(space, bn_affine), depth, expand, np.int64)


def macs_array(space: space_lib.SearchSpace, arch: space_lib.Arch, count_padding: bool = True) -> jax.Array:
    """Jittable per-image MACs of (batches of) traced archs: float32 [...].

    float32 because the paper's largest subnet (3.4e9 MACs) overflows int32, JAX's widest integer with
    x64 disabled; each value is within about 1e-6 relative of `macs`. For exact totals use `macs_batch`.
    """
    return _apply_table(jnp, space, _macs_table(space, count_padding), jnp.asarray(arch.depth),
                        jnp.asarray(arch.expand), np.float32)


def params_array(space: space_lib.SearchSpace, arch: space_lib.Arch, bn_affine: bool = False) -> jax.Array:
    """Jittable exact parameter counts of (batches of) traced archs: int32 [...].

    Raises:
      ValueError: if the space's largest subnet has more than 2^31 - 1 parameters (int32 would wrap).
    """
    table = _params_table(space, bn_affine)
    # NumPy, not `params`: this runs while tracing, where even constant jnp values become tracers.
    largest = table.fixed + int((table.per_block + table.per_mid * np.repeat(
        space.max_mids, space.blocks_per_stage)).sum())
    if largest > _INT32_MAX:
        raise ValueError(f"the largest subnet has {largest} parameters, more than int32 holds; "
                         "use params_batch on the host")
    return _apply_table(jnp, space, table, jnp.asarray(arch.depth), jnp.asarray(arch.expand), np.int32)


# ----------------------------------------------------------------------------------------------------
# Cross-check against XLA.


def xla_flops(space: space_lib.SearchSpace, arch: space_lib.Arch, conv_impl: str = "xla") -> float:
    """FLOPs XLA's cost analysis assigns to the `subnet.DenseSubnet` forward of one image.

    XLA counts a MAC as 2 flops plus every elementwise op (ReLU, adds, pooling, bias), and for the "xla"
    convolution it skips the taps on the zero padding, so it tracks ``2 * macs(count_padding=False)``; the
    "im2col" convolution multiplies the padded patches and tracks ``2 * macs()``. Nothing is executed:
    the program is only lowered and compiled.
    """
    net = subnet.DenseSubnet(space, subnet.subnet_shape(space, arch), conv_impl)
    images = jax.ShapeDtypeStruct((1, space.input_size, space.input_size, space.input_channels),
                                  jnp.float32)
    variables = jax.eval_shape(lambda x: net.init(jax.random.key(0), x), images)
    analysis = jax.jit(net.apply).lower(variables, images).compile().cost_analysis()
    # Older JAX versions return a list with one dict per program.
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        raise RuntimeError(f"XLA cost analysis has no 'flops' entry on {jax.default_backend()}")
    return float(analysis["flops"])


# ----------------------------------------------------------------------------------------------------
# Command line.


def size_summary(space: space_lib.SearchSpace, arch: space_lib.Arch) -> dict:
    """The JSON-ready cost summary of one arch that the command prints."""
    arch_macs = macs(space, arch)
    return {
        "arch": space_lib.arch_to_dict(space, arch),
        "macs": arch_macs,
        "gmacs": arch_macs / 1e9,
        "macs_without_padding_taps": macs(space, arch, count_padding=False),
        "params": params(space, arch),
        "params_with_bn_affine": params(space, arch, bn_affine=True),
    }
