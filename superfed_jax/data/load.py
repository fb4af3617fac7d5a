"""Builds a :class:`Dataset` from the ``data`` section of the config.

``load_dataset`` picks the loader by ``data.name``, holds out a validation
split from the training data and attaches per-channel statistics.
"""
from typing import Any

import numpy as np

from superfed_jax.data import cifar, digits, npz
from superfed_jax.data.dataset import Dataset, holdout_validation
from superfed_jax.data.stats import channel_mean_std

__all__ = ["DATASET_NAMES", "OPTIONAL_FIELDS", "load_dataset", "load_raw"]

DATASET_NAMES = ("digits", "npz", "cifar10", "cifar100")
# Fields of the data section read with these values when a config lacks them, so configs written before
# the fields existed still load as they did then (no hold-out, no archive, no TFDS folder).
OPTIONAL_FIELDS = {"path": "", "archive": "", "tfds_data_dir": "", "val_fraction": 0.0}


def _field(config: Any, name: str) -> Any:
    """Reads an optional config field (one of `OPTIONAL_FIELDS`), so older configs without it still work."""
    return getattr(config, name, OPTIONAL_FIELDS[name])


def load_raw(data_config: Any):
    """Loads the raw train/test arrays named by ``data_config.name``.

    Args:
        data_config: Config with ``name`` and, as the loader needs, ``path``,
            ``archive`` and ``tfds_data_dir``.

    Returns:
        ``(x_train, y_train, x_test, y_test, num_classes)``.

    Raises:
        ValueError: If ``data.name`` is unknown, or the loader's errors.
    """
    name = data_config.name
    if name == "digits":
        # The test split stays fixed across experiment seeds on purpose.
        return digits.load_digits_arrays()
    if name == "npz":
        path = _field(data_config, "path")
        if not path:
            raise ValueError("data.name='npz' needs data.path, the .npz file.")
        return npz.load_npz_arrays(path)
    if name in cifar.CIFAR_NAMES:
        return cifar.load_cifar_arrays(
            name, _field(data_config, "archive"),
            _field(data_config, "tfds_data_dir"))
    raise ValueError(
        f"Unknown data.name={name!r}; expected one of {list(DATASET_NAMES)}.")


def _stats(name: str, x_train: np.ndarray):
    """CIFAR-10's standard statistics, else those of the training images."""
    if name == "cifar10":
        return cifar.CIFAR10_MEAN.copy(), cifar.CIFAR10_STD.copy()
    return channel_mean_std(x_train)


def load_dataset(data_config: Any, seed: int) -> Dataset:
    """Loads the configured dataset with a held-out validation split.

    Args:
        data_config: Config (e.g. ``ml_collections.ConfigDict``) with fields
            ``name`` (one of :data:`DATASET_NAMES`), ``path`` (npz file),
            ``archive`` (CIFAR binary archive or ``''``), ``tfds_data_dir``
            (or ``''``) and ``val_fraction`` (in ``[0, 1)``).
        seed: Seed of the validation hold-out.

    Returns:
        The :class:`Dataset`; ``mean``/``std`` are computed on the training
        part after the hold-out (fixed standard values for CIFAR-10).

    Raises:
        ValueError: For an unknown ``data.name``, a bad ``val_fraction`` or
            damaged data.
        FileNotFoundError: If the data files are absent.
    """
    x_tr, y_tr, x_te, y_te, num_classes = load_raw(data_config)
    fraction = float(_field(data_config, "val_fraction"))
    x_tr, y_tr, x_val, y_val = holdout_validation(x_tr, y_tr, fraction, seed)
    mean, std = _stats(data_config.name, x_tr)
    return Dataset(
        x_train=x_tr, y_train=y_tr.astype(np.int32),
        x_val=x_val, y_val=y_val.astype(np.int32),
        x_test=x_te, y_test=y_te.astype(np.int32),
        num_classes=int(num_classes), mean=mean, std=std)
