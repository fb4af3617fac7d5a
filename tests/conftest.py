"""Test-wide JAX setup: 8 fake CPU devices so sharding logic is exercised without accelerators; one
compilation cache, for this session only, shared by the runs the tests start in subprocesses."""
import atexit
import os
import shutil
import tempfile

# Must happen before jax initialises its backends.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_threefry_partitionable", True)

# The suite starts dozens of real runs (`python launch.py ...` and the posttrain commands), most of them on
# one of a few configs; compiling their round and evaluation is most of each run's time (a :smoke run of 8
# rounds: 34 s of CPU, 8 s with the programs cached, on
# the 2-core AMD EPYC project machine, jax 0.10.2). JAX's persistent cache lets the second run of a
# config load the programs the first compiled. Set after `import jax`, so it reaches only the subprocesses
# (which inherit os.environ) and this process keeps compiling everything itself. The directory is new
# each session: nothing carries over between test runs, and each config is still compiled once.
# Runs that drop it: test_launch's compile-counting run (a user's cold start) and test_multihost's processes.
COMPILATION_CACHE = {"JAX_COMPILATION_CACHE_DIR": tempfile.mkdtemp(prefix="superfed_test_xla_cache_"),
                     "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                     "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
atexit.register(shutil.rmtree, COMPILATION_CACHE["JAX_COMPILATION_CACHE_DIR"], True)
os.environ.update(COMPILATION_CACHE)
