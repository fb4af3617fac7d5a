"""superfed_jax: SuperFed weight-shared federated learning (Khare et al., arXiv 2301.10879) in JAX/Flax.

The public API, importable from the package itself:

  masked_mean, masked_sums, finalize   the masked aggregation (model-agnostic; needs only JAX)
  SearchSpace, Arch                    the elastic search space and one arch in it
  base_config                          the default experiment config, every field documented
  train_and_evaluate                   the training driver: a config and a work directory -> a trained run
  SearchOptions, search_run            evolutionary search of a trained run under budgets -> search.json
  export_run, load_exported            one subnet of a trained run as a dense model, and loading it back
  load_run                             a run's per-round and per-evaluation metrics and config (DataFrames
                                       with pandas)

Every name loads on first use (PEP 562 module `__getattr__`), so `from superfed_jax import masked_mean` in
another JAX project pulls in neither Flax, orbax nor any optional extra, and `import superfed_jax` itself
imports nothing heavy: the training command installs its signal handler before JAX is imported (an
interrupt while the imports run is one line, not a KeyboardInterrupt traceback).
"""
import importlib

__version__ = "0.2.0"

# Public name -> the module that defines it; loaded by `__getattr__` the first time it is asked for.
_LAZY = {
    "masked_mean": "superfed_jax.aggregation",
    "masked_sums": "superfed_jax.aggregation",
    "finalize": "superfed_jax.aggregation",
    "SearchSpace": "superfed_jax.supernet.ofa_resnet.space",
    "Arch": "superfed_jax.supernet.ofa_resnet.space",
    "base_config": "superfed_jax.config",
    "train_and_evaluate": "superfed_jax.run.train",
    "SearchOptions": "superfed_jax.posttrain.search",
    "search_run": "superfed_jax.posttrain.search",
    "export_run": "superfed_jax.posttrain.export",
    "load_exported": "superfed_jax.posttrain.export",
    "load_run": "superfed_jax.reports.run_log",
}

__all__ = [*_LAZY]


def __getattr__(name: str):
    """Loads a public name's module on first access and caches the name in this package."""
    if name not in _LAZY:
        raise AttributeError(f"module 'superfed_jax' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    """The module's names, lazy ones included (for completion and `dir()`)."""
    return sorted(set(globals()) | set(_LAZY))
