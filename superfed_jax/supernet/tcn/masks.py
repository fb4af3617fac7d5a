"""Aggregation masks of an arch (tcn.md 2.6): which supernet elements its subnet uses."""
import jax.numpy as jnp

from superfed_jax.supernet.tcn import space as space_lib


def arch_masks(space: space_lib.TCNSpace, arch) -> dict:
    """float32 leaves broadcastable to their params (jittable).

    Embedding (= tied decoder weight) and decoder bias: always used. A kept block: conv1's rows (v, g, b)
    below its middle width, conv2's v in its input channels below the middle width, conv2's g and b whole.
    A dropped block: nothing.
    """
    keeps = space_lib.kept(space, arch)
    mids = jnp.asarray(space.mids)[jnp.asarray(arch.expand)]
    masks = {"embedding": jnp.ones((1, 1), jnp.float32), "decoder_bias": jnp.ones((1,), jnp.float32)}
    for i in range(space.levels):
        rows = ((jnp.arange(space.mid_max) < mids[i]) & keeps[i]).astype(jnp.float32)
        whole = jnp.reshape(keeps[i], (1,)).astype(jnp.float32)
        masks[f"block_{i}"] = {
            "conv1": {"v": rows[:, None, None], "g": rows, "b": rows},
            "conv2": {"v": rows[None, :, None], "g": whole, "b": whole},
        }
    return masks
