"""Subnet masks: which supernet parameters an arch uses (docs/algorithm.md section 2.2).

`arch_masks` maps an arch (integer arrays, traceable) to a pytree with the supernet params' structure.
Leaves are float32 and *broadcastable* to the parameter they mask, to save memory: a conv1 kernel
[3, 3, cin, mid_max] gets a per-output-channel mask [1, 1, 1, mid_max], a conv2 kernel a per-input-channel
mask [1, 1, mid_max, 1], everything else of a block one scalar-like [1, ...] value (1 if the block is kept,
0 if skipped); the stem and head are always fully used. These masks weight the aggregation
(`aggregation.masked_mean`). The layers and their elastic sides come from `layers.supernet_layers`.
"""
import jax
import jax.numpy as jnp

from superfed_jax.supernet.ofa_resnet import layers as layers_lib
from superfed_jax.supernet.ofa_resnet import space as space_lib


def _ones_like_rank(rank: int) -> jax.Array:
    return jnp.ones((1,) * rank, jnp.float32)


def _layer_masks(layer: layers_lib.Layer, active: jax.Array, mids: jax.Array) -> dict:
    """Mask of every parameter of one layer, given the arch's kept blocks and middle widths."""
    shapes = layer.param_shapes
    if layer.block_index is None:  # stem and head: always fully used
        return {name: _ones_like_rank(len(shape)) for name, shape in shapes.items()}
    kept = active[layer.block_index]
    if not (layer.elastic_in or layer.elastic_out):
        return {name: kept.reshape((1,) * len(shape)) for name, shape in shapes.items()}
    # The elastic side is a first-k slice of the middle width (the kernel's last axis for the output
    # channels, the one before it for the input channels).
    mid_max = layer.out_channels if layer.elastic_out else layer.in_channels
    axis = -1 if layer.elastic_out else -2
    channels = (jnp.arange(mid_max) < mids[layer.block_index]).astype(jnp.float32) * kept
    masks = {}
    for name, shape in shapes.items():
        mask_shape = [1] * len(shape)
        mask_shape[axis] = mid_max
        masks[name] = channels.reshape(mask_shape)
    return masks


def arch_masks(space: space_lib.SearchSpace, arch: space_lib.Arch) -> dict:
    """Mask pytree of one arch; vmap it for a batch of archs. Jittable (arch may be traced)."""
    active = space_lib.block_active(space, arch).astype(jnp.float32)
    mids = space_lib.block_mids(space, arch)
    masks = {}
    for layer in layers_lib.supernet_layers(space):
        node = masks
        for module in layer.path[:-1]:
            node = node.setdefault(module, {})
        node[layer.path[-1]] = _layer_masks(layer, active, mids)
    return masks
