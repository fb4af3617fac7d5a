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


def data_sharded(mesh: Mesh) -> NamedSharding:
    """Training rows split over the devices: each device (and process) holds only its share.

    The round gathers its clients' rows from the shards inside the compiled program.
    """
    return NamedSharding(mesh, PartitionSpec(CLIENTS))


def put_global(value, sharding: NamedSharding):
    """Places a host array (the same in every process) with a possibly multi-process `sharding`.

    Each process materialises only the slices its own devices hold.
    """
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def to_host(tree):
    """Host (NumPy) copies of the leaves of `tree`, also of arrays replicated over several processes.

    `jax.device_get` refuses arrays with devices in other processes; a replicated one has a full copy on
    each local device, which is read instead.
    """
    def leaf_to_host(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if not x.is_fully_replicated:
                raise ValueError("to_host needs replicated arrays in a multi-process run")
            return np.asarray(x.addressable_data(0))
        return jax.device_get(x)
    return jax.tree.map(leaf_to_host, tree)
