"""What every command line of the package does first: keep other libraries' start-up chatter off the terminal.

JAX probes each backend it knows when it first picks a device. On a machine without a TPU the probe fails
quietly, and jax's `xla_bridge` module reports that at INFO ("Unable to initialize backend 'tpu': ...
Failed to open libtpu.so"). absl's `app.run` shows INFO records on stderr until a command lowers the
verbosity, so any command that touched a device before (or without) doing so printed that line, which
reads like a failure although nothing is wrong. Every console script calls `quiet_backend_probe` before
anything else, so the rule lives here once.
"""
import logging

__all__ = ["BACKEND_PROBE_LOGGER", "quiet_backend_probe"]

# The logger of the module that probes backends (jax/_src/xla_bridge.py: `logging.getLogger(__name__)`).
BACKEND_PROBE_LOGGER = "jax._src.xla_bridge"


def quiet_backend_probe() -> None:
    """Drops the backend probe's INFO records; its warnings still show.

    The warnings are kept on purpose: "An NVIDIA GPU may be present on this machine, but a CUDA-enabled
    jaxlib is not installed" tells a user that the run will not use the accelerator they have. A level on
    the logger itself, not on the root logger, so absl's later `set_verbosity` (or `--verbosity`) does not
    undo it and the rest of the program's logging is untouched.
    """
    logging.getLogger(BACKEND_PROBE_LOGGER).setLevel(logging.WARNING)
