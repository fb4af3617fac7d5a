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

Connecting waits at most `distributed.timeout_s` seconds for every process, and what it waits for is
printed first. If a process is missing when that time is up, this process prints one `error:` line
saying what to do and exits with status 2. JAX's own deadline is set a little later
(`_JAX_GRACE_S`): left to itself, JAX's runtime ends the process with SIGABRT (exit 134) and a C++ log
instead of raising, so our deadline must come first.
"""
import os
import sys
import threading

import jax

# Seconds JAX's own connection deadline lies after `distributed.timeout_s`, so that ours always ends the
# wait first (JAX's would abort the process).
_JAX_GRACE_S = 30.0
EXIT_MISSING_PEER = 2  # something must be fixed first (start the other processes), as for a bad config


def settings_from(config_distributed) -> dict:
    """Keyword arguments for `jax.distributed.initialize`, from the config then the environment.

    Unset values are left out so that JAX's cluster auto-detection can fill them.
    """
    address = config_distributed.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS", "")
    processes = config_distributed.num_processes or _environment_int("JAX_NUM_PROCESSES", 0)
    process_id = config_distributed.process_id
    if process_id < 0:
        process_id = _environment_int("JAX_PROCESS_ID", -1)
    kwargs = {}
    if address:
        kwargs["coordinator_address"] = address
    if processes:
        kwargs["num_processes"] = processes
    if process_id >= 0:
        kwargs["process_id"] = process_id
    return kwargs


def _environment_int(name: str, default: int) -> int:
    """The integer in environment variable `name` (`default` when unset or empty).

    Raises:
      ValueError: naming the variable, its value and what it must be (int() alone says only "invalid
        literal for int() with base 10: 'abc'", which names neither).
    """
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={os.environ[name]!r}: must be an integer (or "
                         "unset); it sets up a multi-host run (README, multi-host training); unset it for a "
                         "run on one machine") from None


def timeout_s(config_distributed) -> int:
    """`distributed.timeout_s` (300 for configs saved before the field existed)."""
    return int(getattr(config_distributed, "timeout_s", 300))


def waiting_message(settings: dict, timeout: int) -> str:
    """What `initialize` waits for, in words, from `settings_from`'s keyword arguments."""
    who = (f"process {settings['process_id']}" if "process_id" in settings else "this process")
    total = (f"all {settings['num_processes']} processes" if "num_processes" in settings
             else "every process")
    where = (f"the coordinator at {settings['coordinator_address']}" if "coordinator_address" in settings
             else "the coordinator found by JAX's cluster detection")
    return (f"distributed: {who} connecting to {where}; waiting up to {timeout} s for {total} "
            "(distributed.timeout_s)")


def missing_peer_message(settings: dict, timeout: int) -> str:
    """The one message when not every process has connected within `timeout` seconds."""
    total = settings.get("num_processes", "all")
    return (f"error: distributed: not every one of the {total} processes connected within {timeout} s, so "
            "this process stopped; nothing was written. Start the same command on every host (each with "
            "its own distributed.process_id), check distributed.coordinator_address, or raise "
            "distributed.timeout_s.")


class _Deadline:
    """Ends the process with `missing_peer_message` unless `stop()` is called within `timeout` s.

    A lock orders the two: once `stop()` has run, the deadline does nothing, and once the deadline has
    begun, the process ends (it never ends a process that has already connected).
    """

    def __init__(self, settings: dict, timeout: int):
        self._lock, self._done = threading.Lock(), False
        self._timer = threading.Timer(timeout, self._expire, args=(settings, timeout))
        self._timer.daemon = True
        self._timer.start()

    def _expire(self, settings: dict, timeout: int) -> None:
        with self._lock:
            if self._done:
                return
            print(missing_peer_message(settings, timeout), file=sys.stderr, flush=True)
            # os._exit: the main thread is blocked inside JAX's runtime, where no exception reaches it.
            os._exit(EXIT_MISSING_PEER)

    def stop(self) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()


def initialize(config_distributed) -> None:
    """Connects this process to the others when `config.distributed.initialize` is set; else nothing.

    Must run before anything touches a JAX backend. Prints what it waits for; if not every process has
    connected within `distributed.timeout_s`, prints `missing_peer_message` and exits with status 2.
    """
    if not config_distributed.initialize:
        return
    # Only affects the CPU backend; without it CPU collectives across processes are unavailable.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    settings, timeout = settings_from(config_distributed), timeout_s(config_distributed)
    print(waiting_message(settings, timeout), file=sys.stderr, flush=True)
    deadline = _Deadline(settings, timeout)
    try:
        jax.distributed.initialize(**settings, initialization_timeout=int(timeout + _JAX_GRACE_S))
    finally:  # connected, or a Python error (a bad address) that the caller reports
        deadline.stop()


def is_writer() -> bool:
    """True in the one process that writes the workdir's files (process 0)."""
    return jax.process_index() == 0
