"""Subnet masks: which supernet parameters an arch uses (algorithm.md section 2.2).

`arch_masks` maps an arch (integer arrays, traceable) to a pytree with the supernet params' structure.
Leaves are float32 and *broadcastable* to the parameter they mask, to save memory: a conv1 kernel
[3, 3, cin, mid_max] gets a per-output-channel mask [1, 1, 1, mid_max], a conv2 kernel a per-input-channel
mask [1, 1, mid_max, 1], everything else of a block one scalar-like [1, ...] value (1 if the block is kept,
0 if skipped); the stem and head are always fully used. These masks weight the aggregation
(`aggregation.masked_mean`).
"""
import jax
import jax.numpy as jnp

from superfed_jax.supernet import model as model_lib
from superfed_jax.supernet import space as space_lib


def _ones_like_rank(rank: int) -> jax.Array:
    return jnp.ones((1,) * rank, jnp.float32)


def arch_masks(space: space_lib.SearchSpace, arch: space_lib.Arch) -> dict:
    """Mask pytree of one arch; vmap it for a batch of archs. Jittable (arch may be traced)."""
    active = space_lib.block_active(space, arch).astype(jnp.float32)
    mids = space_lib.block_mids(space, arch)
    masks = {"stem": {"kernel": _ones_like_rank(4)},
             "head": {"kernel": _ones_like_rank(2), "bias": _ones_like_rank(1)}}
    for s in range(space.num_stages):
        mid_max = space.max_mids[s]
        for b in range(space.blocks_per_stage):
            index = s * space.blocks_per_stage + b
            channels = (jnp.arange(mid_max) < mids[index]).astype(jnp.float32) * active[index]
            block = {"conv1": {"kernel": channels.reshape(1, 1, 1, mid_max)},
                     "conv2": {"kernel": channels.reshape(1, 1, mid_max, 1)}}
            if b == 0:
                block["shortcut"] = {"kernel": active[index].reshape(1, 1, 1, 1)}
            masks[model_lib.block_name(s, b)] = block
    return masks
