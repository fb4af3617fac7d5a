"""Sliced execution of the TCN: run only the blocks and middle widths a group of clients uses.

The masked supernet runs every block at full width whatever the arch; Shakespeare's smallest subnet costs
1/13 of the supernet's MACs, so most of a small client's masked step is wasted. Here a group of clients
(a chunk trained side by side or under `vmap`) first computes its **envelope**: how many blocks any of
them keeps and, per block, the widest expand index among the clients that keep it. Then, per block:

* a `lax.cond` on the envelope skips the block when no client of the group keeps it (the identity,
  which is what the masked supernet computes for those clients too);
* a `lax.switch` over the expand choices runs the block on width groups 0..j for the envelope's choice
  j (`model.block` with static slices of v, g and b), each client's own narrower width masked inside and
  its own depth applied by selecting the block's input where it drops the block.

The envelope is unbatched (computed once per group, outside the per-client `vmap`), so the cond and the
switch stay real branches under `vmap`; batched predicates would become selects that run every branch.
Every operation on the groups that run is the masked supernet's own (same shapes, same order), the groups
beyond the envelope contribute exact zeros there, and dropout masks are the first columns of the same
full-width draws, so the logits equal the masked supernet's bit for bit for any envelope covering the arch.
"""
import flax.struct
import jax
import jax.numpy as jnp
from jax import lax

from superfed_jax.supernet.tcn import model as model_lib
from superfed_jax.supernet.tcn import space as space_lib


@flax.struct.dataclass
class Envelope:
    """What a group of clients needs; unbatched, int32.

    blocks: [] the most blocks any client of the group keeps.
    expand: [levels] per block, the widest expand index among the clients that keep it (0 when none does;
      the block is then not run).
    """

    blocks: jax.Array
    expand: jax.Array


def envelope(space: space_lib.TCNSpace, archs) -> Envelope:
    """The envelope of a batch of archs with one leading client axis (jittable). Widths increase with the
    expand index, so the widest index is the widest width."""
    keeps = space_lib.kept(space, archs)  # [clients, levels]
    counts = jnp.asarray(space.kept_blocks, jnp.int32)[jnp.asarray(archs.depth)]
    expand = jnp.where(keeps, jnp.asarray(archs.expand), 0)
    return Envelope(blocks=jnp.max(counts).astype(jnp.int32), expand=jnp.max(expand, axis=0).astype(jnp.int32))


def arch_envelope(space: space_lib.TCNSpace, arch) -> Envelope:
    """The envelope of one arch alone: exactly its own blocks and widths."""
    return envelope(space, jax.tree.map(lambda a: jnp.asarray(a)[None], arch))


def forward(space: space_lib.TCNSpace, params, tokens, arch, env: Envelope, rng, dtype):
    """Logits float32 [B, T, V] of `arch` at the envelope's blocks and widths; equal to
    `model.forward(space, params, tokens, arch, rng, dtype)` whenever `env` covers `arch` (every block
    the arch keeps is below `env.blocks`, at an expand index <= the envelope's)."""
    x = model_lib.embed_tokens(space, params, tokens, rng)
    keeps = space_lib.kept(space, arch)
    expand = jnp.asarray(arch.expand)
    for i in range(space.levels):
        name = f"block_{i}"

        def at_width(j, i=i):
            def run(x_, block_params):
                return model_lib.block(space, i, x_, block_params, expand[i], j, rng, dtype)
            return run

        branches = [at_width(j) for j in range(len(space.expand_choices))]
        if i < space.min_blocks:  # kept by every arch: only the width varies
            x = lax.switch(env.expand[i], branches, x, params[name])
            continue

        def run_or_pass(x_, block_params, i=i, branches=branches):
            # A client that drops a block the group runs discards its output (its params get no gradient).
            return jnp.where(keeps[i], lax.switch(env.expand[i], branches, x_, block_params), x_)

        x = lax.cond(i < env.blocks, run_or_pass, lambda x_, _: x_, x, params[name])
    return model_lib.decode(params, x, dtype)
