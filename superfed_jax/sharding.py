"""Every sharding of the project, in one place.

One mesh axis, ``clients``: the simulated clients of a round are split over all devices, while the
supernet params, the server state and the (small) training set are replicated. Model code never names a
sharding; the round function constrains its per-client arrays with `constrain_clients`.
"""
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

CLIENTS = "clients"


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh over `devices` (default: every device of every process) with the `clients` axis."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (CLIENTS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Same full value on every device: params, server state, training data."""
    return NamedSharding(mesh, PartitionSpec())


def client_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (client) axis split over the `clients` mesh axis."""
    return NamedSharding(mesh, PartitionSpec(CLIENTS))


def constrain_clients(tree, mesh: Mesh):
    """Inside jit: asks XLA to split the leading axis of every leaf over the devices."""
    return jax.lax.with_sharding_constraint(tree, client_sharded(mesh))
