"""Builds a :class:`Dataset` from the ``data`` section of the config.

``load_dataset`` picks the loader by ``data.name``, holds out a validation
split from the training data and attaches per-channel statistics. What the
loaders return is checked again here, after each conversion: images must be
square (the search space has one input size), the statistics finite, and
every split's normalised pixels finite in float32. For
``data.partition='natural'`` it also reads each training example's client id
(``.npz`` only) and keeps the ids of the rows that stay in training.
"""
import sys
from typing import Any

import numpy as np

from superfed_jax.data import cifar, digits, npz
from superfed_jax.data.dataset import Dataset, holdout_indices, holdout_per_client, holdout_validation
from superfed_jax.data.stats import channel_mean_std

__all__ = ["CLIENT_ID_DATASETS", "DATASET_NAMES", "IMAGE_DATASETS", "OWN_VALIDATION", "TEXT_DATASETS", "OPTIONAL_FIELDS", "check_normalizable",
           "check_square", "load_dataset", "load_raw", "natural_needs_ids", "single_class_warning"]

IMAGE_DATASETS = ("digits", "npz", "cifar10", "cifar100")
# Token windows for language models (`superfed_jax.data.text`): TFF's federated Shakespeare (archive or
# h5 files), LEAF's Shakespeare JSON, and word-level text in the Penn Treebank files' layout.
TEXT_DATASETS = ("shakespeare", "leaf_shakespeare", "ptb")
DATASET_NAMES = IMAGE_DATASETS + TEXT_DATASETS
# The datasets whose files can name the client of each training example (data.partition='natural').
CLIENT_ID_DATASETS = ("npz", "shakespeare", "leaf_shakespeare")
# What data.path names for each text dataset, for messages.
TEXT_PATH_HELP = {
    "shakespeare": "TensorFlow Federated's shakespeare.tar.bz2, or a folder holding its "
                   "shakespeare_train.h5 and shakespeare_test.h5",
    "leaf_shakespeare": "a folder holding LEAF's train/ and test/ folders of JSON files",
    "ptb": "a folder holding train.txt, valid.txt and test.txt (one sentence per line)",
}
# The text datasets that come with their own validation split (data.val_fraction must be 0).
OWN_VALIDATION = ("ptb",)
# Fields of the data section read with these values when a config lacks them, so configs written before
# the fields existed still load as they did then (no hold-out, no archive, no TFDS folder).
OPTIONAL_FIELDS = {"path": "", "archive": "", "tfds_data_dir": "", "val_fraction": 0.0,
                   "seq_len": 80, "scored_len": 40, "max_vocab": 0}


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


def natural_needs_ids(name: str) -> str:
    """The problem of ``data.partition='natural'`` on dataset ``name``, or '' if it can carry client ids.

    One message for the up-front config check (`superfed_jax.validation`) and for the loader.
    """
    if name in CLIENT_ID_DATASETS:
        return ""
    return (f"data.partition='natural': makes one client per client id, and only data.name 'npz' (an "
            f"array {npz.CLIENT_ID_KEY!r} in the .npz file), 'shakespeare' and 'leaf_shakespeare' (one "
            f"client per speaking role) carry ids; data.name={name!r} has none. Use data.partition "
            f"{'contiguous or iid' if name in TEXT_DATASETS else 'dirichlet, iid or shards'}, or data "
            "with client ids")


def _natural(data_config: Any) -> bool:
    """Whether the data is loaded for a natural partition, which needs each example's client id.

    Ids are read only then, so a stray or damaged ``client_id`` array never stops a run that ignores it
    (nor the evaluation of an export, whose data config has no partition). ValueError, before any data
    is read, for a dataset that cannot carry ids.
    """
    if getattr(data_config, "partition", "") != "natural":
        return False
    problem = natural_needs_ids(data_config.name)
    if problem:
        raise ValueError(problem)
    return True


def _stats(name: str, x_train: np.ndarray):
    """CIFAR-10's standard statistics, else those of the training images."""
    if name == "cifar10":
        return cifar.CIFAR10_MEAN.copy(), cifar.CIFAR10_STD.copy()
    return channel_mean_std(x_train)


def _where(data_config: Any) -> str:
    """The data source named in messages: the file when there is one, else ``data.name``."""
    for field in ("path", "archive", "tfds_data_dir"):
        if _field(data_config, field):
            return f"{_field(data_config, field)}"
    return f"data.name={data_config.name!r}"


def check_square(where: str, x_train: np.ndarray) -> None:
    """Refuses images whose height and width differ.

    The search space has a single ``input_size`` (height = width): its cost model would count the
    MACs of a square image and evaluating an export would refuse the run's own data.

    Raises:
        ValueError: Naming ``where``, the image shape and what to do.
    """
    height, width = x_train.shape[1:3]
    if height != width:
        raise ValueError(
            f"{where}: images are {height}x{width} (height x width); only square images are "
            f"supported (space.input_size is both height and width). Pad or crop them to "
            f"{max(height, width)}x{max(height, width)} or {min(height, width)}x{min(height, width)}.")


def check_normalizable(where: str, splits: dict, mean: np.ndarray, std: np.ndarray) -> None:
    """Checks that statistics and every split's normalised pixels are finite in float32.

    Images are normalised on the device as ``(to_unit_float(x) - mean) / std`` in float32; a float
    image far beyond the training statistics (or statistics that overflowed) would give inf there.

    Args:
        where: The data source, for messages.
        splits: split name -> ``[N, H, W, C]`` images (empty splits are skipped).
        mean, std: float32 ``[C]`` per-channel statistics.

    Raises:
        ValueError: Naming the source, the split and the largest magnitude.
    """
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
        raise ValueError(
            f"{where}: the training images' per-channel mean {mean} / std {std} are not finite in "
            "float32; the pixel values are too large, rescale them (e.g. to [0, 1]).")
    for split, x in splits.items():
        if not len(x):
            continue
        scale = 255.0 if x.dtype == np.uint8 else 1.0
        extremes = np.stack([x.min(axis=(0, 1, 2)), x.max(axis=(0, 1, 2))]).astype(np.float32) / scale
        with np.errstate(over="ignore", invalid="ignore"):
            normalized = (extremes - mean) / std
        if not np.all(np.isfinite(normalized)):
            raise ValueError(
                f"{where}: x_{split} normalised with the training statistics (mean {mean}, std {std}) "
                f"overflows float32 (pixels span [{float(extremes.min()):.3g}, "
                f"{float(extremes.max()):.3g}]); rescale the images (e.g. to [0, 1]).")


def single_class_warning(where: str, y_train: np.ndarray) -> str:
    """A warning when the training labels hold a single class ('' otherwise).

    Such a run trains to accuracy 1.0 on any test set of that class, which measures nothing.
    """
    classes = np.unique(y_train)
    if len(classes) != 1:
        return ""
    return (f"warning: {where}: every training label is {int(classes[0])}; a single-class dataset "
            "trains to perfect accuracy without learning anything. Check the labels.")


def _load_text(data_config: Any, seed: int, natural: bool) -> Dataset:
    """A text dataset as token windows: inputs [N, T] and targets [N, T] (-1 where a position is not
    scored), the vocabulary as the classes; the validation split is the data's own (ptb) or a seeded
    hold-out of training windows (data.val_fraction), per client when the data has clients; client ids
    kept for a natural partition."""
    from superfed_jax.data import text  # imported here: image runs never read text files

    path = _field(data_config, "path")
    if not path:
        raise ValueError(f"data.name={data_config.name!r} needs data.path, where the data lies "
                         f"({TEXT_PATH_HELP[data_config.name]})")
    if data_config.name == "shakespeare":
        tokens = text.load_tff_shakespeare(path)
    elif data_config.name == "leaf_shakespeare":
        tokens = text.load_leaf_shakespeare(path)
    else:
        tokens = text.load_word_text(path, seq_len=int(_field(data_config, "seq_len")),
                                     scored=int(_field(data_config, "scored_len")),
                                     max_vocab=int(_field(data_config, "max_vocab")))
    for note in tokens.notes:
        print(f"note: {path}: {note}", file=sys.stderr, flush=True)
    fraction = float(_field(data_config, "val_fraction"))
    x_tr, y_tr, x_val, y_val = tokens.x_train, tokens.y_train, tokens.x_val, tokens.y_val
    client_train = tokens.client_train if natural else None
    if x_val is None:
        # Per client when the data has clients: a natural partition keeps all of them whatever the seed.
        train_idx, val_idx = (holdout_indices(len(x_tr), fraction, seed) if tokens.client_train is None
                              else holdout_per_client(tokens.client_train, fraction, seed))
        x_val, y_val = x_tr[val_idx], y_tr[val_idx]
        x_tr, y_tr = x_tr[train_idx], y_tr[train_idx]
        client_train = None if client_train is None else client_train[train_idx]
    elif fraction:
        raise ValueError(f"data.val_fraction={fraction}: data.name={data_config.name!r} has its own "
                         "validation split; set data.val_fraction=0")
    # Token ids go to the model as they are: no per-channel statistics (identity normalization).
    return Dataset(x_train=x_tr.astype(np.int32), y_train=y_tr.astype(np.int32),
                   x_val=x_val.astype(np.int32), y_val=y_val.astype(np.int32),
                   x_test=tokens.x_test.astype(np.int32), y_test=tokens.y_test.astype(np.int32),
                   num_classes=len(tokens.vocab), mean=np.zeros(1, np.float32), std=np.ones(1, np.float32),
                   client_train=client_train)


def load_dataset(data_config: Any, seed: int) -> Dataset:
    """Loads the configured dataset with a held-out validation split.

    Args:
        data_config: Config (e.g. ``ml_collections.ConfigDict``) with fields
            ``name`` (one of :data:`DATASET_NAMES`), ``path`` (npz file),
            ``archive`` (CIFAR binary archive or ``''``), ``tfds_data_dir``
            (or ``''``), ``val_fraction`` (in ``[0, 1)``) and, if present,
            ``partition`` (``'natural'`` reads the client ids).
        seed: Seed of the validation hold-out.

    Returns:
        The :class:`Dataset`; ``mean``/``std`` are computed on the training
        part after the hold-out (fixed standard values for CIFAR-10);
        ``client_train`` holds the client ids of the training rows for a
        natural partition (the held-out rows' ids are dropped with them).

    Raises:
        ValueError: For an unknown ``data.name``, a bad ``val_fraction``,
            damaged data, non-square images, pixels that overflow float32
            once normalised, or missing or bad client ids of a natural
            partition.
        FileNotFoundError: If the data files are absent.
    """
    natural = _natural(data_config)
    if data_config.name in TEXT_DATASETS:
        return _load_text(data_config, seed, natural)
    x_tr, y_tr, x_te, y_te, num_classes = load_raw(data_config)
    where = _where(data_config)
    check_square(where, x_tr)
    ids = npz.load_npz_client_ids(_field(data_config, "path"), len(y_tr)) if natural else None
    fraction = float(_field(data_config, "val_fraction"))
    x_tr, y_tr, x_val, y_val = holdout_validation(x_tr, y_tr, fraction, seed)
    # The same seeded rows holdout_validation keeps, so each id stays with its example.
    client_train = None if ids is None else ids[holdout_indices(len(ids), fraction, seed)[0]]
    mean, std = _stats(data_config.name, x_tr)
    check_normalizable(where, {"train": x_tr, "val": x_val, "test": x_te}, mean, std)
    warning = single_class_warning(where, y_tr)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    return Dataset(
        x_train=x_tr, y_train=y_tr.astype(np.int32),
        x_val=x_val, y_val=y_val.astype(np.int32),
        x_test=x_te, y_test=y_te.astype(np.int32),
        num_classes=int(num_classes), mean=mean, std=std, client_train=client_train)
