"""The elastic TCN's forward passes: the masked supernet, one block at a static width, and dense subnets.

Params (PyTorch's layout, one max-shape tree; `init`):

    embedding     [V, C]   token embedding, also the decoder weight (tied)
    decoder_bias  [V]
    block_i       conv1 {v [mid_max, C, k], g [mid_max], b [mid_max]}
                  conv2 {v [C, mid_max, k], g [C],       b [C]}

A convolution's weight is weight-normalised: w = g * v / ||v|| with the norm per output row over
(input channels, taps). A subnet is a slice of (g, v), not of w: conv2 of a block at middle width m
normalises its rows over the first m input channels only (tcn.md 2.5).

**Width groups.** The middle channels of a block split at the choices' widths m_0 < m_1 < ...: group g is
channels [m_(g-1), m_g), and middle width choice e is exactly groups 0..e. `block` computes a block group
by group: conv1 per group of output rows, conv2 as the sum over groups of each group's contribution, and
conv2's squared row norms as a sum over groups. The masked supernet runs all groups (the client's groups
beyond its own width become exact zeros); the sliced execution (`sliced.py`) runs groups 0..j for the
envelope's choice j. The two then perform the same floating-point operations on the groups both run, plus
additions of exact zeros, so their logits are equal bit for bit; one full-width convolution against a
sliced one would sum in another order.
"""
from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp

from superfed_jax.supernet.tcn import space as space_lib

# fold_in streams of the dropout keys: the embedding's, then per block (1 + i) and position in the block.
_EMBEDDING_STREAM = 0
_CONV1_POSITION, _CONV2_POSITION = 0, 1


def groups(space: space_lib.TCNSpace) -> tuple:
    """(start, stop) of each width group's middle channels."""
    mids = space.mids
    return tuple(zip((0,) + mids[:-1], mids))


def shift(x, steps: int):
    """x [B, T, C] delayed by `steps` positions along T, zeros shifted in: out[t] = x[t - steps]."""
    length = x.shape[-2]
    if steps == 0:
        return x
    if steps >= length:
        return jnp.zeros_like(x)
    return jnp.pad(x[..., :length - steps, :], [(0, 0)] * (x.ndim - 2) + [(steps, 0), (0, 0)])


def causal_conv(x, v_oiw, dilation: int, dtype):
    """Causal dilated 1-D convolution: x [B, T, in] with a kernel in PyTorch's [out, in, k] layout ->
    float32 [B, T, out]; out[t] = sum over taps j of w[:, :, j] @ x[t - dilation * (k - 1 - j)] (PyTorch's
    symmetric padding then chomping the end, i.e. left zero padding only).

    Computed as one matrix product per tap rather than `lax.conv_general_dilated`: as fast on CPU, and
    its gradients are matrix products too. The sliced execution runs blocks inside `lax.switch`, where
    XLA:CPU computes a convolution's kernel gradient about 30 times slower than outside a conditional
    (measured: 240 ms against 8 ms for a [32, 80, 450] input and a [90, 450, 3] kernel).
    """
    k = v_oiw.shape[-1]
    out = None
    for j in range(k):
        part = jnp.dot(shift(x, dilation * (k - 1 - j)).astype(dtype), v_oiw[:, :, j].T.astype(dtype),
                       preferred_element_type=jnp.float32)
        out = part if out is None else out + part
    return out


def row_sq_norms(v):
    """Squared norm of each output row of a [out, in, k] kernel."""
    return jnp.sum(jnp.square(v), axis=(1, 2))


def normalized(g, v):
    """The weight-normalised kernel g * v / ||v|| (rows of v independently)."""
    return (g / jnp.sqrt(row_sq_norms(v)))[:, None, None] * v


def dropout_keep(rng, stream, position, shape, rate: float):
    """The keep mask of one dropout site, drawn at the site's full width (its last axis); None for no
    dropout. A narrower execution takes the first columns of the same draw."""
    if rng is None or rate == 0:
        return None
    key = jax.random.fold_in(jax.random.fold_in(rng, stream), position)
    return jax.random.bernoulli(key, 1.0 - rate, shape)


def apply_dropout(x, keep, rate: float):
    """Inverted dropout with a drawn keep mask (or none)."""
    if keep is None:
        return x
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def embed_tokens(space: space_lib.TCNSpace, params, tokens, rng):
    """Embedding lookup and its dropout: float32 [B, T, C]."""
    x = jnp.take(params["embedding"], tokens, axis=0)
    keep = dropout_keep(rng, _EMBEDDING_STREAM, 0, x.shape, space.emb_dropout)
    return apply_dropout(x, keep, space.emb_dropout)


def decode(params, x, dtype):
    """Logits float32 [B, T, V] = x @ embedding^T + decoder_bias (the tied decoder)."""
    logits = jnp.einsum("btc,vc->btv", x.astype(dtype), params["embedding"].astype(dtype),
                        preferred_element_type=jnp.float32)
    return logits + params["decoder_bias"]


def block(space: space_lib.TCNSpace, index: int, x, block_params, expand, width: int, rng, dtype):
    """Temporal block `index` computed on width groups 0..`width` (static) for a client whose own expand
    index is `expand` (traced; <= width for an exact result): its groups beyond its own are zeroed.

    Returns relu(h + x), h = dropout(relu(conv2(dropout(relu(conv1(x)))))); the block is not skipped here.
    """
    dilation = 2 ** index
    c1, c2 = block_params["conv1"], block_params["conv2"]
    stream = 1 + index
    keep1 = dropout_keep(rng, stream, _CONV1_POSITION, x.shape[:-1] + (space.mid_max,), space.dropout)
    hiddens, conv2_kernels, sq_norms = [], [], None
    for g, (lo, hi) in enumerate(groups(space)[:width + 1]):
        own = expand >= g  # does the client's own width include this group?
        w1 = normalized(c1["g"][lo:hi], c1["v"][lo:hi])  # rows normalise independently: a slice is exact
        h = jax.nn.relu(causal_conv(x, w1, dilation, dtype) + c1["b"][lo:hi])
        # where, not a product: unused channels are exactly 0 (and pass no gradient) whatever their value.
        h = jnp.where(own, h, 0.0)
        hiddens.append(apply_dropout(h, None if keep1 is None else keep1[..., lo:hi], space.dropout))
        v2 = jnp.where(own, c2["v"][:, lo:hi], 0.0)  # conv2's inputs beyond the client's width
        conv2_kernels.append(v2)
        part = row_sq_norms(v2)
        sq_norms = part if sq_norms is None else sq_norms + part
    scale = (c2["g"] / jnp.sqrt(sq_norms))[:, None, None]  # the norm over the kept inputs only
    out = None
    for h, v2 in zip(hiddens, conv2_kernels):
        part = causal_conv(h, scale * v2, dilation, dtype)
        out = part if out is None else out + part
    h = jax.nn.relu(out + c2["b"])
    keep2 = dropout_keep(rng, stream, _CONV2_POSITION, h.shape, space.dropout)
    h = apply_dropout(h, keep2, space.dropout)
    return jax.nn.relu(h + x)


def forward(space: space_lib.TCNSpace, params, tokens, arch, rng: Optional[jax.Array], dtype):
    """The masked supernet: logits float32 [B, T, V] of `arch` (traced), dropout when `rng` is given.

    Every block runs at full width with the client's own width masked inside; a block the arch drops is
    the identity (selected after the fact, so its params get no gradient).
    """
    x = embed_tokens(space, params, tokens, rng)
    keeps = space_lib.kept(space, arch)
    full = len(space.expand_choices) - 1
    for i in range(space.levels):
        y = block(space, i, x, params[f"block_{i}"], jnp.asarray(arch.expand)[i], full, rng, dtype)
        x = y if i < space.min_blocks else jnp.where(keeps[i], y, x)
    return decode(params, x, dtype)


# ----------------------------------------------------------------------------------------- dense subnets

def dense_block(index: int, x, block_params, dtype):
    """One block of a standalone dense subnet: its own shapes, the weight norm over its own v."""
    dilation = 2 ** index
    c1, c2 = block_params["conv1"], block_params["conv2"]
    h = jax.nn.relu(causal_conv(x, normalized(c1["g"], c1["v"]), dilation, dtype) + c1["b"])
    h = jax.nn.relu(causal_conv(h, normalized(c2["g"], c2["v"]), dilation, dtype) + c2["b"])
    return jax.nn.relu(h + x)


def dense_forward(dense_params, tokens, dtype):
    """Logits of a dense subnet (no dropout: evaluation and export). Its blocks are `block_0..block_{n-1}`."""
    x = jnp.take(dense_params["embedding"], tokens, axis=0)
    i = 0
    while f"block_{i}" in dense_params:
        x = dense_block(i, x, dense_params[f"block_{i}"], dtype)
        i += 1
    return decode(dense_params, x, dtype)


# ----------------------------------------------------------------------------------------------- init

def init_params(space: space_lib.TCNSpace, key, mids) -> dict:
    """Params with blocks of middle widths `mids` (one per block; the supernet's are all mid_max), drawn as
    the reference really initialises them (tcn.md 2.3): embedding N(0, 0.01^2), decoder bias 0, v and b
    uniform in +-1/sqrt(fan_in * k) with fan_in from the supernet's max shape, g = ||v|| per row."""
    c, k, v_size = space.channels, space.kernel_size, space.num_classes
    keys = jax.random.split(key, 1 + len(mids))
    params = {"embedding": 0.01 * jax.random.normal(keys[0], (v_size, c), jnp.float32),
              "decoder_bias": jnp.zeros((v_size,), jnp.float32)}

    def conv(key, out, inp, fan_in):
        bound = 1.0 / math.sqrt(fan_in * k)
        kv, kb = jax.random.split(key)
        v = jax.random.uniform(kv, (out, inp, k), jnp.float32, -bound, bound)
        return {"v": v, "g": jnp.sqrt(row_sq_norms(v)),
                "b": jax.random.uniform(kb, (out,), jnp.float32, -bound, bound)}

    for i, (mid, block_key) in enumerate(zip(mids, keys[1:])):
        k1, k2 = jax.random.split(block_key)
        params[f"block_{i}"] = {"conv1": conv(k1, mid, c, c), "conv2": conv(k2, c, mid, space.mid_max)}
    return params
