"""A tiny trained digits run shared by test_search.py and test_export.py: trained once per test process.

The run is trained by the real entry point in a subprocess (one CPU device, as a user's run) on a shrunken
space and schedule, so that it finishes in seconds yet its subnets' accuracies differ (a search has
something to find). `loaded()` restores it in this process once, for every test that needs it.
"""
import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile

import jax
import numpy as np

from superfed_jax.federated import objective
from superfed_jax.posttrain import run_dir
from superfed_jax.posttrain import search
from superfed_jax.supernet import family as family_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The `:smoke` variant, grown a little: 400 distinct subnets (two stages of two blocks, four expand
# ratios) and eight rounds of four out of eight clients leave the subnets' accuracies different (about 0.1
# to 0.2), which is all a search test needs.
TINY_RUN = ["--config=configs/digits.py:smoke", "--config.fl.rounds=8", "--config.eval.every_rounds=8",
            "--config.checkpoint.every_rounds=8", "--config.fl.num_clients=8", "--config.fl.clients_per_round=4",
            "--config.space.stem_width=8", "--config.space.stage_widths=(16,32)",
            "--config.space.expand_choices=(0.25,0.5,0.75,1.0)"]


def run_module(*args, timeout=300) -> subprocess.CompletedProcess:
    """Runs `python *args` in the repository root on one CPU device; returns the finished process."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one CPU device, as a user's plain run
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@functools.lru_cache(maxsize=None)
def workdir() -> str:
    """The directory of the tiny trained run (removed when the test process exits)."""
    path = tempfile.mkdtemp(prefix="superfed_trained_")
    atexit.register(shutil.rmtree, path, True)
    result = run_module("launch.py", *TINY_RUN, f"--workdir={path}")
    assert result.returncode == 0, result.stderr[-3000:]
    return path


@functools.lru_cache(maxsize=None)
def loaded() -> run_dir.TrainedRun:
    """The tiny run restored from its newest checkpoint, params on one device."""
    return run_dir.load_trained_run(workdir())


ARCH_BATCH = 8  # every test evaluates archs in batches of this size, so the evaluation compiles once


@functools.lru_cache(maxsize=None)
def val_accuracy_fn():
    """`fn(genes [n, G]) -> accuracy [n]` on the tiny run's validation split, from the supernet."""
    run = loaded()
    return search.make_accuracy_fn(run.family, run.run.evaluate, run.params, run.val_set, ARCH_BATCH)


def val_accuracy(arch) -> float:
    """Supernet validation accuracy of one arch of the tiny run."""
    return float(val_accuracy_fn()(family_lib.to_genes(loaded().family, arch)[None])[0])


@functools.lru_cache(maxsize=None)
def supernet_logits_fn():
    """Jitted `fn(params, raw_images, arch) -> logits` of the tiny run's masked supernet (one compile)."""
    run = loaded()
    return jax.jit(objective.make_logits_fn(run.run.family, run.run.dataset.mean, run.run.dataset.std))


def supernet_logits(arch, images) -> np.ndarray:
    """Masked-supernet logits of one arch of the tiny run."""
    return np.asarray(supernet_logits_fn()(loaded().params, images, arch))
