"""The commands' stderr carries no backend-probe chatter (superfed_jax/_console.py).

On a machine without a TPU, JAX's first device lookup logs "Unable to initialize backend 'tpu': ..." at
INFO, and absl shows INFO on stderr. Every console script quiets that logger before anything else; a real
command run without JAX_PLATFORMS (so that JAX probes every backend, as on a user's machine) shows it is
gone, and one subprocess checks that every console script of pyproject.toml does it first.
"""
import json
import logging
import os
import subprocess
import sys
import tomllib

from superfed_jax import _console

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE_LINE = "Unable to initialize backend"


def run_python(*args: str) -> subprocess.CompletedProcess:
    """`python ARGS` in the repository as a user runs it: JAX picks its backends itself."""
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop("JAX_PLATFORMS", None)  # the conftest's 'cpu' would skip the probe this test is about
    env.pop("XLA_FLAGS", None)
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def test_quiet_drops_the_probe_info_but_keeps_its_warnings(caplog):
    logger = logging.getLogger(_console.BACKEND_PROBE_LOGGER)
    before = logger.level
    try:
        logger.setLevel(logging.NOTSET)
        with caplog.at_level(logging.INFO):
            logger.info("Unable to initialize backend 'tpu': before")
            _console.quiet_backend_probe()
            logger.info("Unable to initialize backend 'tpu': after")
            logger.warning("An NVIDIA GPU may be present on this machine")
        messages = [record.getMessage() for record in caplog.records if record.name == logger.name]
        assert messages == ["Unable to initialize backend 'tpu': before",
                            "An NVIDIA GPU may be present on this machine"]
    finally:
        logger.setLevel(before)


def test_memory_command_stderr_has_no_backend_probe_line():
    # superfed-memory asks the default device for its memory; before the fix its stderr began with
    # "I... xla_bridge.py:849] Unable to initialize backend 'tpu': ... libtpu.so ..." on this machine.
    result = run_python("-m", "superfed_jax.run.memory", "--config=configs/digits.py:smoke")
    assert result.returncode == 0, result.stderr[-3000:]
    assert PROBE_LINE not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip() == "", result.stderr[-3000:]


# Calls each console script with a flag no command has (each stops at its flag parsing) and prints the
# level of the probe's logger it left; the level is reset before each. Errors after the quieting (a flag
# defined twice in one process) are part of the plan: only the level matters here.
_EVERY_SCRIPT = r"""
import importlib, json, logging, sys
logger = logging.getLogger(sys.argv[1])
levels = {}
for script, target in json.loads(sys.argv[2]).items():
    module, _, function = target.partition(":")
    logger.setLevel(logging.NOTSET)
    sys.argv = [script, "--no_command_has_this_flag"]
    try:
        getattr(importlib.import_module(module), function)()
    except BaseException:
        pass
    levels[script] = logger.level
print(json.dumps(levels))
"""


def test_every_console_script_quiets_the_probe_first():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert len(scripts) >= 7
    result = run_python("-c", _EVERY_SCRIPT, _console.BACKEND_PROBE_LOGGER, json.dumps(scripts))
    assert result.returncode == 0, result.stderr[-3000:]
    levels = json.loads(result.stdout.strip().splitlines()[-1])
    assert levels == {script: logging.WARNING for script in scripts}
