"""Sliced execution of the supernet: compute only the widths and blocks a group of clients uses.

The masked supernet (`model.Supernet`) runs every block at full width and multiplies the unused middle
channels by zero, so a client costs the whole supernet whatever its arch. Here the *same* parameters are run
at an **envelope**: per block, the widest middle width any client of the group uses, and whether any client
keeps the block.

**Width groups.** A block's middle widths are the space's discrete choices m_0 < m_1 < ... (`space.mid_table`),
so its middle channels split into groups [0, m_0), [m_0, m_1), ...: width choice e is exactly groups 0..e.
A block's conv1 computes each group's channels independently and its conv2 is the sum over groups of each
group's contribution, so the block at width e is

    branch = relu(sum over g <= e of conv2_g(relu(conv1_g(x))))

and each group is a `lax.cond` that runs when the envelope reaches it. Nothing is computed beyond the
envelope's width, and (unlike a `lax.switch` over whole blocks at each width, whose every branch keeps its
own saved values and kernel copies) the program holds each channel once. The backward pass of a block's
groups is written by hand (`_middle_bwd`): each running group adds its input gradient inside its own cond,
so a group that does not run costs nothing, where autodiff of a cond would add a zero tensor of the block
input's size per skipped group. A block no client of the group keeps is one more cond, whose other branch
passes the input (and its gradient) through.

**Params as pieces.** A client trains on `to_pieces(params)`: every block's conv1 kernel split along its
output channels and conv2 kernel along its input channels into the width groups, each piece a contiguous
array. The forward pass then slices nothing (no kernel copies per step, none kept for the backward pass),
the gradient of a piece that did not run is zero, and the pieces join back into the supernet's full-shape
params (`from_pieces`) once, at the end of the client's local training: the representation that
aggregation averages is unchanged, and the gradient is exactly zero outside the client's subnet.

**Why an envelope rather than each client's own arch:** clients trained together are a `jax.vmap` batch,
and under `vmap` a `lax.cond` whose predicate is batched becomes a select that runs both branches. The
envelope is computed once per chunk, outside the vmap, and passed in unbatched; each client's own widths
and skipped blocks are then applied with the same `where` masks as the masked execution, so the result
equals it up to float summation order. A group of one client (the side-by-side layout, or a single
client) has its own arch as the envelope.
"""
import functools

import flax.struct
import jax
import jax.numpy as jnp
from jax import lax

from superfed_jax.supernet import conv
from superfed_jax.supernet import family as family_lib
from superfed_jax.supernet.ofa_resnet import layers
from superfed_jax.supernet.ofa_resnet import model as model_lib
from superfed_jax.supernet.ofa_resnet import space as space_lib

# `model.execution`: how the supernet computes a client's subnet (config_schema.py documents the choice).
EXECUTIONS = family_lib.EXECUTIONS


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


def _blocks(space: space_lib.SearchSpace):
    """(stage, block in stage, block index, params name) of every block."""
    for s in range(space.num_stages):
        for b in range(space.blocks_per_stage):
            yield s, b, s * space.blocks_per_stage + b, layers.block_name(s, b)


def to_pieces(space: space_lib.SearchSpace, params) -> dict:
    """The supernet's params with every block's conv1/conv2 kernel split into its width groups (tuples)."""
    pieces = dict(params)
    for s, _, _, name in _blocks(space):
        cuts = list(space.mid_table[s][:-1])  # group g holds channels [m_(g-1), m_g)
        block = dict(params[name])
        block["conv1"] = {"kernel": tuple(jnp.split(block["conv1"]["kernel"], cuts, axis=3))}
        block["conv2"] = {"kernel": tuple(jnp.split(block["conv2"]["kernel"], cuts, axis=2))}
        pieces[name] = block
    return pieces


def from_pieces(space: space_lib.SearchSpace, pieces) -> dict:
    """Inverse of `to_pieces`: the full-shape params."""
    params = dict(pieces)
    for _, _, _, name in _blocks(space):
        block = dict(pieces[name])
        block["conv1"] = {"kernel": jnp.concatenate(block["conv1"]["kernel"], axis=3)}
        block["conv2"] = {"kernel": jnp.concatenate(block["conv2"]["kernel"], axis=2)}
        params[name] = block
    return params


def _conv(x, kernel, stride, impl, dtype):
    return conv.conv2d(x.astype(dtype), kernel.astype(dtype), stride, impl)


def _group(x, k1, k2, keep, stride: int, impl: str, dtype):
    """One width group of a block's middle path: (its conv2 contribution, its masked hidden channels).

    `keep` False zeroes the group's channels (the client's own width is narrower than the envelope's);
    None: every client keeps them (the first group).
    """
    hidden = jax.nn.relu(_conv(x, k1, stride, impl, dtype))
    if keep is not None:
        hidden = jnp.where(keep, hidden, 0)
    return _conv(hidden, k2, 1, impl, dtype), hidden


def _middle_forward(x, kernels1, kernels2, keeps, runs, stride, impl, dtype):
    """sum over the running groups g of conv2_g(relu(conv1_g(x))), and each group's hidden channels (zeros
    for a group that did not run): a block's middle path before its final relu.

    The first group always runs (every width includes it); `runs[g - 1]` and `keeps[g - 1]` say whether
    group g >= 1 runs for the chunk and whether this client keeps it.
    """
    total, hidden = _group(x, kernels1[0], kernels2[0], None, stride, impl, dtype)
    hiddens = [hidden]
    for k1, k2, keep, run in zip(kernels1[1:], kernels2[1:], keeps, runs):
        def compute(total_, k1=k1, k2=k2, keep=keep):
            out, hidden_ = _group(x, k1, k2, keep, stride, impl, dtype)
            return total_ + out, hidden_

        def skip(total_, k1=k1):
            return total_, jnp.zeros(total_.shape[:3] + k1.shape[-1:], dtype)

        total, hidden = lax.cond(run, compute, skip, total)
        hiddens.append(hidden)
    return total, hiddens


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7))
def _middle(x, kernels1, kernels2, keeps, runs, stride, impl, dtype):
    return _middle_forward(x, kernels1, kernels2, keeps, runs, stride, impl, dtype)[0]


def _middle_fwd(x, kernels1, kernels2, keeps, runs, stride, impl, dtype):
    total, hiddens = _middle_forward(x, kernels1, kernels2, keeps, runs, stride, impl, dtype)
    return total, (x, kernels1, kernels2, runs, hiddens)


def _middle_bwd(stride, impl, dtype, residuals, d_total):
    """The backward pass group by group, each group's input gradient added inside its own `lax.cond`.

    Written by hand because autodiff of a `lax.cond` gives the branch that does not run an explicit zero
    cotangent for every operand: a zero tensor of the block input's size per skipped group, added to the
    input gradient (several times a step's useful traffic for a small arch). Here a skipped group passes
    the running input gradient on untouched and only its own kernels get (their exact) zero gradient.
    """
    x, kernels1, kernels2, runs, hiddens = residuals
    conv1 = lambda x_, k: _conv(x_, k, stride, impl, dtype)  # noqa: E731
    conv2 = lambda h, k: _conv(h, k, 1, impl, dtype)  # noqa: E731

    def group_grads(k1, k2, hidden):
        """(input gradient, conv1 and conv2 kernel gradients) of one group that ran."""
        d_hidden, d_k2 = jax.vjp(conv2, hidden, k2)[1](d_total)
        # relu and the client's mask: hidden is 0 wherever either cut the gradient.
        d_pre = jnp.where(hidden > 0, d_hidden, 0).astype(hidden.dtype)
        d_x_group, d_k1 = jax.vjp(conv1, x, k1)[1](d_pre)
        return d_x_group, d_k1, d_k2

    d_x, d_k1, d_k2 = group_grads(kernels1[0], kernels2[0], hiddens[0])
    d_kernels1, d_kernels2 = [d_k1], [d_k2]
    for k1, k2, hidden, run in zip(kernels1[1:], kernels2[1:], hiddens[1:], runs):
        def compute(d_x_, k1=k1, k2=k2, hidden=hidden):
            d_x_group, d_k1_, d_k2_ = group_grads(k1, k2, hidden)
            return d_x_ + d_x_group, d_k1_, d_k2_

        def skip(d_x_, k1=k1, k2=k2):
            return d_x_, jnp.zeros_like(k1), jnp.zeros_like(k2)

        d_x, d_k1, d_k2 = lax.cond(run, compute, skip, d_x)
        d_kernels1.append(d_k1)
        d_kernels2.append(d_k2)
    return d_x, tuple(d_kernels1), tuple(d_kernels2), None, None


_middle.defvjp(_middle_fwd, _middle_bwd)


def _block(x, block_pieces, *, runs, keeps, stride: int, projection: bool, impl: str, dtype):
    """One residual block from its width groups (`_middle_forward` says what `runs` and `keeps` hold).

    Mirrors `model.Block` (same casts, the same `where` mask on the client's middle channels), with conv2's
    sum over middle channels taken group by group.
    """
    kernels1 = tuple(block_pieces["conv1"]["kernel"])
    kernels2 = tuple(block_pieces["conv2"]["kernel"])
    branch = jax.nn.relu(_middle(x, kernels1, kernels2, keeps, runs, stride, impl, jnp.dtype(dtype)))
    shortcut = x
    if projection:
        shortcut = _conv(model_lib.avg_pool(x, stride), block_pieces["shortcut"]["kernel"], 1, impl, dtype)
    return jax.nn.relu(branch + shortcut)


def forward_pieces(space: space_lib.SearchSpace, pieces, images, arch: space_lib.Arch, envelope: Envelope,
                   conv_impl: str = "xla", dtype=jnp.float32):
    """Logits [N, classes] of one arch from params as pieces (`to_pieces`), at the envelope's widths.

    Equals the masked supernet (to float rounding) whenever the envelope covers the arch: every block the
    arch keeps is active in the envelope at an expand index at least the arch's.
    """
    active = space_lib.block_active(space, arch)
    expand = jnp.asarray(arch.expand)
    extra_groups = range(1, len(space.expand_choices))  # group 0 is part of every width
    x = jax.nn.relu(_conv(images, pieces["stem"]["kernel"], 1, conv_impl, dtype))
    for s, b, index, name in _blocks(space):
        # Group g runs when the envelope reaches width g; the client keeps it when its own width does.
        block = functools.partial(
            _block, runs=tuple(envelope.expand[index] >= g for g in extra_groups),
            keeps=tuple(expand[index] >= g for g in extra_groups),
            stride=space.stage_strides[s] if b == 0 else 1, projection=b == 0, impl=conv_impl, dtype=dtype)
        if b == 0:  # a stage's first block is always kept
            x = block(x, pieces[name])
            continue
        # A skippable block (stride 1, no projection) keeps its input's shape: when no client of the group
        # keeps it, it is not run at all (the identity passes the gradient through); a client that skips a
        # block the envelope runs discards the output (inside the cond: a skipped block costs nothing).
        def run_or_pass(x_, block_pieces, block=block, index=index):
            return jnp.where(active[index], block(x_, block_pieces), x_)

        x = lax.cond(envelope.active[index], run_or_pass, lambda x_, _: x_, x, pieces[name])
    features = jnp.mean(x, axis=(1, 2))
    head = pieces["head"]
    logits = features.astype(dtype) @ head["kernel"].astype(dtype) + head["bias"].astype(dtype)
    return logits.astype(jnp.float32)


def is_pieces(space: space_lib.SearchSpace, params) -> bool:
    """Whether `params` are split into width-group pieces (`to_pieces`) rather than full-shape."""
    return isinstance(params[layers.block_name(0, 0)]["conv1"]["kernel"], (tuple, list))


def forward(space: space_lib.SearchSpace, params, images, arch: space_lib.Arch, envelope: Envelope,
            conv_impl: str = "xla", dtype=jnp.float32):
    """`forward_pieces` from params full-shape (split here; their gradients join back) or as pieces."""
    pieces = params if is_pieces(space, params) else to_pieces(space, params)
    return forward_pieces(space, pieces, images, arch, envelope, conv_impl, dtype)


def apply(model: model_lib.Supernet, params, images, arch: space_lib.Arch, envelope: Envelope):
    """`forward` with the space, convolution and dtype of a `model.Supernet` (the masked model's twin)."""
    return forward(model.space, params, images, arch, envelope, model.conv_impl, model.dtype)
