"""Dense subnets of the TCN: cut out of the supernet (first-k slicing, tcn.md 2.5) and written back."""
import jax
import jax.numpy as jnp
import numpy as np

from superfed_jax.supernet.tcn import space as space_lib


def subnet_mids(space: space_lib.TCNSpace, arch) -> list:
    """Middle width of each kept block of a concrete arch."""
    arch = jax.tree.map(np.asarray, arch)
    n = space.kept_blocks[int(arch.depth)]
    return [space.mids[int(e)] for e in arch.expand[:n]]


def extract(space: space_lib.TCNSpace, params, arch) -> dict:
    """The dense params: embedding and decoder bias whole; per kept block conv1 rows [:mid] and conv2
    input channels [:mid] (its g and b whole). Dropped blocks are left out."""
    dense = {"embedding": params["embedding"], "decoder_bias": params["decoder_bias"]}
    for i, mid in enumerate(subnet_mids(space, arch)):
        c1, c2 = params[f"block_{i}"]["conv1"], params[f"block_{i}"]["conv2"]
        dense[f"block_{i}"] = {"conv1": {"v": c1["v"][:mid], "g": c1["g"][:mid], "b": c1["b"][:mid]},
                               "conv2": {"v": c2["v"][:, :mid], "g": c2["g"], "b": c2["b"]}}
    return dense


def embed(space: space_lib.TCNSpace, dense_params, arch, params) -> dict:
    """The supernet params with a dense subnet written back into its positions (a new tree; the caller's
    is unchanged). Elements outside the subnet keep their values."""
    out = {name: value for name, value in params.items()}
    out["embedding"] = jnp.asarray(dense_params["embedding"])
    out["decoder_bias"] = jnp.asarray(dense_params["decoder_bias"])
    for i, mid in enumerate(subnet_mids(space, arch)):
        name = f"block_{i}"
        c1, c2 = params[name]["conv1"], params[name]["conv2"]
        d1, d2 = dense_params[name]["conv1"], dense_params[name]["conv2"]
        out[name] = {
            "conv1": {key: jnp.asarray(c1[key]).at[:mid].set(d1[key]) for key in ("v", "g", "b")},
            "conv2": {"v": jnp.asarray(c2["v"]).at[:, :mid].set(d2["v"]), "g": jnp.asarray(d2["g"]),
                      "b": jnp.asarray(d2["b"])},
        }
    return out
