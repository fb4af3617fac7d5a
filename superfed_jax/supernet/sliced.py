"""Sliced execution of the supernet: compute only the widths and blocks a group of clients uses.

The masked supernet (`model.Supernet`) runs every block at full width and multiplies the unused middle
channels by zero, so a client costs the whole supernet whatever its arch. Here the *same* parameters (full
supernet shapes, the representation clients train and aggregation averages) are run at an **envelope**:
per block, the widest middle width any client of the group uses, and whether any client keeps the block.

Why an envelope rather than each client's own arch: clients trained together are a `jax.vmap` batch, and
under `vmap` a `lax.switch`/`lax.cond` whose index is batched becomes a select that runs every branch. The
envelope is computed once per chunk, outside the vmap, and passed in unbatched, so inside the model
`lax.switch` over the space's discrete width choices and `lax.cond` around skippable blocks stay real
branches. Each client's own mask is then applied inside the slice, so the result equals the masked
execution up to float summation order, and gradients land only in the sliced positions (the transpose of
a static slice pads with zeros: the full-shape gradient is exactly zero outside the client's subnet).

A group of one client (the side-by-side layout, or a single client) has its own arch as the envelope.
"""
import functools

import flax.struct
import jax
import jax.numpy as jnp
from jax import lax

from superfed_jax.supernet import conv
from superfed_jax.supernet import layers
from superfed_jax.supernet import model as model_lib
from superfed_jax.supernet import space as space_lib

# `model.execution`: how the supernet computes a client's subnet (config_schema.py documents the choice).
EXECUTIONS = ("masked", "sliced", "auto")


@flax.struct.dataclass
class Envelope:
    """What a group of clients needs of every block; unbatched (one per chunk), a pytree.

    expand: int32 [num_blocks], the widest expand index among the clients that keep the block (0 where
      none does; the block is then not run).
    active: bool [num_blocks], whether any client keeps the block (always true for a stage's first block).
    """

    expand: jax.Array
    active: jax.Array


def chunk_envelope(space: space_lib.SearchSpace, archs: space_lib.Arch) -> Envelope:
    """The envelope of a batch of archs (leading client axis); jittable.

    Middle widths increase with the expand index (`space.mid_table` is strictly increasing), so the
    widest index is the widest width.
    """
    active = space_lib.block_active(space, archs)  # [C, blocks]
    expand = jnp.where(active, jnp.asarray(archs.expand), 0)
    return Envelope(expand=jnp.max(expand, axis=0).astype(jnp.int32), active=jnp.any(active, axis=0))


def arch_envelope(space: space_lib.SearchSpace, arch: space_lib.Arch) -> Envelope:
    """The envelope of one arch: exactly its own widths and kept blocks."""
    return chunk_envelope(space, jax.tree.map(lambda a: jnp.asarray(a)[None], arch))


def _conv(x, kernel, stride, impl, dtype):
    return conv.conv2d(x.astype(dtype), kernel.astype(dtype), stride, impl)


def _block_at_width(x, block_params, client_mid, *, mid: int, stride: int, projection: bool, impl: str,
                    dtype):
    """One residual block with its middle width cut to the static `mid`, then the client's own mask.

    Mirrors `model.Block` (same casts and the same `where` mask), but on kernels sliced to `mid` middle
    channels: conv1's output channels and conv2's input channels.
    """
    hidden = jax.nn.relu(_conv(x, block_params["conv1"]["kernel"][..., :mid], stride, impl, dtype))
    hidden = jnp.where(jnp.arange(mid) < client_mid, hidden, 0)
    branch = jax.nn.relu(_conv(hidden, block_params["conv2"]["kernel"][:, :, :mid, :], 1, impl, dtype))
    shortcut = x
    if projection:
        shortcut = _conv(model_lib.avg_pool(x, stride), block_params["shortcut"]["kernel"], 1, impl, dtype)
    return jax.nn.relu(branch + shortcut)


def forward(space: space_lib.SearchSpace, params, images, arch: space_lib.Arch, envelope: Envelope,
            conv_impl: str = "xla", dtype=jnp.float32):
    """Logits [N, classes] of one arch, computing each block at the envelope's width (or not at all).

    Equals `model.Supernet(space, conv_impl, dtype).apply({'params': params}, images, arch)` (to float
    rounding) whenever the envelope covers the arch: every block the arch keeps is active in the envelope
    at an expand index at least the arch's. `params` are the supernet's full-shape params.
    """
    active = space_lib.block_active(space, arch)
    mids = space_lib.block_mids(space, arch)
    x = jax.nn.relu(_conv(images, params["stem"]["kernel"], 1, conv_impl, dtype))
    for s, stage_stride in enumerate(space.stage_strides):
        for b in range(space.blocks_per_stage):
            index = s * space.blocks_per_stage + b
            # One branch per distinct middle width of the stage: static shapes, one compiled body each.
            branches = [functools.partial(_block_at_width, mid=int(mid), stride=stage_stride if b == 0 else 1,
                                          projection=b == 0, impl=conv_impl, dtype=dtype)
                        for mid in space.mid_table[s]]
            block_params = params[layers.block_name(s, b)]
            run_block = functools.partial(lax.switch, envelope.expand[index], branches)
            if b == 0:  # a stage's first block is always kept
                x = run_block(x, block_params, mids[index])
                continue
            # Skippable blocks (stride 1, no projection) keep their input's shape, so the identity is a
            # valid other branch; a client that skips a block the envelope runs discards the output.
            out = lax.cond(envelope.active[index], run_block, lambda x_, *_: x_, x, block_params, mids[index])
            x = jnp.where(active[index], out, x)
    features = jnp.mean(x, axis=(1, 2))
    head = params["head"]
    logits = features.astype(dtype) @ head["kernel"].astype(dtype) + head["bias"].astype(dtype)
    return logits.astype(jnp.float32)


def apply(model: model_lib.Supernet, params, images, arch: space_lib.Arch, envelope: Envelope):
    """`forward` with the space, convolution and dtype of a `model.Supernet` (the masked model's twin)."""
    return forward(model.space, params, images, arch, envelope, model.conv_impl, model.dtype)
