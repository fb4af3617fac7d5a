"""Exact cost of a TCN arch per token (tcn.md 2.8).

* MACs per token: each kept block's two convolutions, 2 * C * mid * k, plus the decoder C * V (the
  embedding lookup, biases, ReLUs, dropout and the residual add are free).
* Params: the tied embedding/decoder matrix once (V * C), the decoder bias V, and per kept block conv1
  (mid * C * k + mid + mid: v, g, b) and conv2 (C * mid * k + C + C).
"""
import jax.numpy as jnp
import numpy as np

from superfed_jax.supernet.tcn import space as space_lib


def costs(space: space_lib.TCNSpace, xp, archs, dtype):
    """(MACs, params) of archs with any leading axes; xp is NumPy (exact on the host) or jax.numpy."""
    c, k, v_size = space.channels, space.kernel_size, space.num_classes
    keeps = space_lib.kept(space, archs, xp)
    mids = xp.where(keeps, xp.asarray(space.mids, dtype)[xp.asarray(archs.expand)], 0).astype(dtype)
    macs = xp.sum(2 * c * k * mids, axis=-1) + c * v_size
    params = (xp.sum(2 * c * k * mids + 2 * mids + 2 * c * keeps.astype(dtype), axis=-1)
              + v_size * c + v_size)
    return macs, params


def macs(space: space_lib.TCNSpace, arch) -> int:
    """MACs per token of one concrete arch."""
    return int(costs(space, np, arch, np.int64)[0])


def params(space: space_lib.TCNSpace, arch) -> int:
    """Parameters of one concrete arch's dense subnet."""
    return int(costs(space, np, arch, np.int64)[1])


def macs_array(space: space_lib.TCNSpace, archs):
    """Jittable float32 MACs per token."""
    return costs(space, jnp, archs, jnp.float32)[0]


def params_array(space: space_lib.TCNSpace, archs):
    """Jittable int32 parameter counts."""
    return costs(space, jnp, archs, jnp.int32)[1]
