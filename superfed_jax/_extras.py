"""Optional dependencies: import one, or say which extra of the package installs it.

The core install (`pip install superfed_jax`) carries only what the aggregation, the supernet and the
training loop need. Datasets, plots and TensorBoard scalars come with extras; a module that needs one
imports it through `require`, so a missing extra reads as one line that says what to install instead of
a bare ModuleNotFoundError deep inside a run.
"""
import importlib
from types import ModuleType

__all__ = ["EXTRAS", "require", "missing_extra_message"]

# Top-level module -> (its name on PyPI, the extra of superfed_jax that installs it, what it is used for).
EXTRAS = {
    "tensorflow_datasets": ("tensorflow-datasets", "cifar", "reading CIFAR from a TFDS data dir"),
    "sklearn": ("scikit-learn", "digits", "the embedded digits dataset"),
    "matplotlib": ("matplotlib", "plots", "the report's plots"),
    "tensorboardX": ("tensorboardX", "tensorboard", "TensorBoard scalars"),
    "h5py": ("h5py", "text", "reading TFF's federated Shakespeare (HDF5)"),
    "dp_accounting": ("dp-accounting", "dp", "accounting the privacy spent (dp.noise_multiplier > 0)"),
    "wandb": ("wandb", "wandb", "logging to Weights & Biases (set by log.wandb_project)"),
}


def missing_extra_message(module: str, extra: str) -> str:
    """The one-line explanation for a missing optional `module` that `extra` installs.

    Args:
      module: the dotted module that failed to import, e.g. "matplotlib.figure".
      extra: the extra of superfed_jax that provides it, e.g. "plots".
    """
    top = module.split(".")[0]
    distribution, _, purpose = EXTRAS.get(top, (top, extra, extra))
    return (f"{distribution} is needed for {purpose} (extra '{extra}'): "
            f"pip install 'superfed_jax[{extra}]'")


def require(module: str, extra: str) -> ModuleType:
    """Imports `module` and returns it, or raises an ImportError that names the extra to install.

    Args:
      module: dotted module name, e.g. "tensorboardX.proto.event_pb2".
      extra: one of the extras declared in pyproject.toml (see EXTRAS).

    Raises:
      ValueError: `extra` is not the extra that EXTRAS records for `module`'s package (a typo here
        would send users to install the wrong thing).
      ImportError: `module` cannot be imported; the original error is chained as its cause.
    """
    top = module.split(".")[0]
    if top in EXTRAS and EXTRAS[top][1] != extra:
        raise ValueError(f"require({module!r}, extra={extra!r}): {top} is installed by the extra "
                         f"{EXTRAS[top][1]!r}, not {extra!r}")
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(missing_extra_message(module, extra)) from error
