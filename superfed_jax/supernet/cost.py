"""Closed-form cost of a subnet: forward MACs of one image and parameter counts.

Khare et al., "SuperFed: Weight Shared Federated Learning", arXiv 2301.10879, measure compute in per-image
forward multiply-accumulates (MACs) and communication in parameters (algorithm.md sections 2.3 and 8).
Conventions (MACs as below and params with ``bn_affine=True`` reproduce every row of the table in
algorithm.md 2.3 exactly):

* MACs: a convolution costs Cin * k * k * Cout * Hout * Wout (padding taps included), a dense layer
  in * out; ReLU, pooling, residual adds and biases are free. ``count_padding=False`` instead counts only the
  taps that land on real input, which is what XLA's cost analysis counts (`xla_flops`).
* Params: ``bn_affine=False`` (the default) counts the parameters this codebase actually has: conv kernels,
  dense kernel and bias (the published runs have no normalization, section 2.4). The paper's table
  (``bn_affine=True``) also counts the frozen BatchNorm affine pairs of the reference code: one (gamma, beta)
  pair per output channel of the stem, of every kept block's conv1 (its mid) and conv2 (its width) and of
  every projection shortcut (its width again), i.e. 2 * (stem + sum(mid + width) + sum(shortcut width)).

Three forms: `macs` / `params` walk one concrete arch layer by layer in Python ints; `macs_batch` /
`params_batch` are exact vectorized NumPy (int64) versions for many archs at once on the host;
`macs_array` / `params_array` are jittable (float32 MACs, since 3.4e9 overflows int32 with x64 disabled).

Command line, one JSON object on stdout:
  python -m superfed_jax.supernet.cost --config=configs/cifar10.py --arch='{"d":[0,0,0,0],"e":0.1}'
"""
import dataclasses
import functools
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags

from superfed_jax import config as config_lib
from superfed_jax.supernet import space as space_lib
from superfed_jax.supernet import subnet

_INT32_MAX = np.iinfo(np.int32).max


# ----------------------------------------------------------------------------------------------------
# One convolution.


def _out_size(size: int, kernel: int, stride: int) -> int:
    """Output size of a convolution with symmetric padding (k - 1) // 2, as in `conv.conv2d`."""
    pad = (kernel - 1) // 2
    return (size + 2 * pad - kernel) // stride + 1


def _taps_1d(size: int, kernel: int, stride: int, count_padding: bool) -> int:
    """Kernel taps summed over the output positions of one spatial axis."""
    out = _out_size(size, kernel, stride)
    if count_padding:
        return out * kernel
    pad = (kernel - 1) // 2
    return sum(0 <= o * stride - pad + t < size for o in range(out) for t in range(kernel))


def conv_macs(cin: int, cout: int, size: int, kernel: int, stride: int,
              count_padding: bool = True) -> int:
    """MACs of a square bias-free convolution on a [size, size, cin] input."""
    return cin * cout * _taps_1d(size, kernel, stride, count_padding) ** 2


# ----------------------------------------------------------------------------------------------------
# Scalar form: walk the layers of one concrete arch (the reference the batch forms are tested against).


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
    shape = subnet.subnet_shape(space, arch)
    size, cin = space.input_size, space.input_channels
    total = conv_macs(cin, space.stem_width, size, 3, 1, count_padding)
    cin = space.stem_width
    for s, b, index in shape.kept_blocks(space):
        width, mid = space.stage_widths[s], shape.mids[index]
        stride = space.stage_strides[s] if b == 0 else 1
        out = _out_size(size, 3, stride)
        total += conv_macs(cin, mid, size, 3, stride, count_padding)
        total += conv_macs(mid, width, out, 3, 1, count_padding)
        if b == 0:
            # The 1x1 projection runs after the stride's average pooling, i.e. at the output resolution.
            total += cin * width * out * out
        size, cin = out, width
    return total + cin * space.num_classes


def params(space: space_lib.SearchSpace, arch: space_lib.Arch, bn_affine: bool = False) -> int:
    """Parameter count of the dense subnet of a concrete arch.

    Args:
      space: the search space.
      arch: one concrete arch (no batch axes).
      bn_affine: also count the reference code's frozen BatchNorm (gamma, beta) pairs; True reproduces
        the paper's table (algorithm.md 2.3), False (default) counts this codebase's parameters.

    Returns:
      The count as a Python int.
    """
    shape = subnet.subnet_shape(space, arch)
    total = 9 * space.input_channels * space.stem_width
    norm_channels = space.stem_width
    cin = space.stem_width
    for s, b, index in shape.kept_blocks(space):
        width, mid = space.stage_widths[s], shape.mids[index]
        total += 9 * cin * mid + 9 * mid * width
        norm_channels += mid + width
        if b == 0:
            total += cin * width
            norm_channels += width
        cin = width
    total += cin * space.num_classes + space.num_classes
    return total + (2 * norm_channels if bn_affine else 0)


# ----------------------------------------------------------------------------------------------------
# Batch forms. Skipped blocks are the identity and the first block of a stage is always kept, so every
# block's input width and resolution are fixed by the space; a subnet's cost is then an affine function
# of its kept mids: fixed + sum over kept blocks of per_mid[block] * mid[block].


@dataclasses.dataclass(frozen=True)
class _CostTable:
    """Affine cost of a space: fixed + sum over blocks b of kept[b] * (per_block[b] + per_mid[b] * mid[b])."""

    fixed: int
    per_block: np.ndarray  # int64 [num_blocks]: cost of a kept block independent of its mid.
    per_mid: np.ndarray  # int64 [num_blocks]: cost per middle channel of a kept block.


def _block_inputs(space: space_lib.SearchSpace):
    """Yields (flat block index, stage, block, input width, input size, stride) of every supernet block."""
    size, cin = space.input_size, space.stem_width
    for s, (width, stage_stride) in enumerate(zip(space.stage_widths, space.stage_strides)):
        for b in range(space.blocks_per_stage):
            stride = stage_stride if b == 0 else 1
            yield s * space.blocks_per_stage + b, s, b, cin, size, stride
            size, cin = _out_size(size, 3, stride), width


@functools.lru_cache(maxsize=None)
def _macs_table(space: space_lib.SearchSpace, count_padding: bool) -> _CostTable:
    fixed = conv_macs(space.input_channels, space.stem_width, space.input_size, 3, 1, count_padding)
    per_mid = np.zeros(space.num_blocks, np.int64)
    for index, s, b, cin, size, stride in _block_inputs(space):
        width, out = space.stage_widths[s], _out_size(size, 3, stride)
        per_mid[index] = (conv_macs(cin, 1, size, 3, stride, count_padding)
                          + conv_macs(1, width, out, 3, 1, count_padding))
        if b == 0:  # First blocks are always kept, so their projection is a fixed cost.
            fixed += cin * width * out * out
    fixed += space.stage_widths[-1] * space.num_classes
    return _CostTable(fixed, np.zeros(space.num_blocks, np.int64), per_mid)


@functools.lru_cache(maxsize=None)
def _params_table(space: space_lib.SearchSpace, bn_affine: bool) -> _CostTable:
    norm = 2 if bn_affine else 0
    fixed = 9 * space.input_channels * space.stem_width + norm * space.stem_width
    per_block = np.zeros(space.num_blocks, np.int64)
    per_mid = np.zeros(space.num_blocks, np.int64)
    for index, s, b, cin, _, _ in _block_inputs(space):
        width = space.stage_widths[s]
        per_mid[index] = 9 * cin + 9 * width + norm
        per_block[index] = norm * width
        if b == 0:
            fixed += cin * width + norm * width
    fixed += space.stage_widths[-1] * space.num_classes + space.num_classes
    return _CostTable(fixed, per_block, per_mid)


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


def report(space: space_lib.SearchSpace, arch: space_lib.Arch) -> dict:
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


def main(argv) -> None:
    del argv
    config, arch_text = flags.FLAGS.config, flags.FLAGS.arch
    # Costs are host arithmetic: never initialise (and preallocate memory on) an accelerator for them.
    jax.config.update("jax_platforms", "cpu")
    try:
        space = config_lib.search_space(config) if config is not None else space_lib.SearchSpace()
        arch = space_lib.parse_arch(space, arch_text)
    except ValueError as error:
        # One line, no traceback: these are user errors and the message names the allowed values.
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(report(space, arch)))


def _define_flags() -> None:
    # Defined only when run as a program: flags defined at import would clash with the flags of any
    # other program that imports this module (e.g. its own --config).
    config_flags.DEFINE_config_file("config", None, "Config file with a `space` field; default: "
                                    "the paper's CIFAR space.", lock_config=True)
    flags.DEFINE_string("arch", None, 'Arch as JSON, e.g. \'{"d":[0,1,0,1],"e":0.14}\'.')
    flags.mark_flag_as_required("arch")


def console() -> None:
    """The `superfed-cost` command: the same as `python -m superfed_jax.supernet.cost`."""
    _define_flags()
    app.run(main)


if __name__ == "__main__":
    console()
