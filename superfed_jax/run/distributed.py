"""Multi-host runs with JAX's own multi-controller runtime: one process per host, one global mesh.

Every process runs the same program (`launch.py` with the same config); `jax.distributed.initialize`
connects them, after which `jax.devices()` lists every process's devices and the round's `clients` mesh
axis spans all of them. Each process holds its share of the training rows on its own devices
(`sharding.data_sharded`), all processes write their shards of a checkpoint (orbax coordinates this), and
only process 0 writes metrics, reports and the other files of the workdir.

Configuration (`config.distributed`): `initialize=True` and either explicit coordinator address, process
count and process id, or none of them on clusters JAX detects itself (Cloud TPU pods, SLURM, Open MPI,
Kubernetes). The environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID fill
fields left unset. On CPU the gloo collectives are used (see docs/performance.md 11).
"""
import os

import jax


def settings_from(config_distributed) -> dict:
    """Keyword arguments for `jax.distributed.initialize`, from the config then the environment.

    Unset values are left out so that JAX's cluster auto-detection can fill them.
    """
    address = config_distributed.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS", "")
    processes = config_distributed.num_processes or int(os.environ.get("JAX_NUM_PROCESSES", "0"))
    process_id = config_distributed.process_id
    if process_id < 0:
        process_id = int(os.environ.get("JAX_PROCESS_ID", "-1"))
    kwargs = {}
    if address:
        kwargs["coordinator_address"] = address
    if processes:
        kwargs["num_processes"] = processes
    if process_id >= 0:
        kwargs["process_id"] = process_id
    return kwargs


def initialize(config_distributed) -> None:
    """Connects this process to the others when `config.distributed.initialize` is set; else nothing.

    Must run before anything touches a JAX backend.
    """
    if not config_distributed.initialize:
        return
    # Only affects the CPU backend; without it CPU collectives across processes are unavailable.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**settings_from(config_distributed))


def is_writer() -> bool:
    """True in the one process that writes the workdir's files (process 0)."""
    return jax.process_index() == 0
