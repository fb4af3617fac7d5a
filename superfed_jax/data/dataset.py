"""The in-memory dataset (images or token windows) and the helpers that shape it.

A :class:`Dataset` holds host-side NumPy arrays (NHWC images with int32
labels, or int32 token windows [N, T] with int32 targets [N, T], -1 where a
position is not scored) for train, validation and test, plus the per-channel
statistics used to
normalise images on device. Images stay in their stored dtype (usually uint8)
until they reach the accelerator, where :func:`to_unit_float` scales them:
uint8 images are four times smaller to keep and to transfer than float32.
"""
import dataclasses
from typing import Optional, Tuple

import jax.numpy as jnp
import numpy as np

__all__ = ["Dataset", "holdout_indices", "holdout_per_client", "holdout_validation", "to_unit_float"]


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Train/validation/test splits of an image classification task or a language-modelling task.

    ``eq=False`` because element-wise array comparison has no single truth
    value; datasets are compared by identity.

    Attributes:
        x_train: ``[N, H, W, C]`` images, uint8 (0..255) or float; or
            ``[N, T]`` int32 token windows (ids in ``[0, num_classes)``).
        y_train: ``[N]`` int32 labels in ``[0, num_classes)``; for token
            windows ``[N, T]`` target ids, -1 where a position is not scored
            (padding, or context that only conditions the prediction).
        x_val: Validation images held out from the training data (may be empty).
        y_val: Validation labels.
        x_test: Test images.
        y_test: Test labels.
        num_classes: Number of classes (the vocabulary size for tokens).
        mean: ``[C]`` float32 per-channel mean of the training images after
            :func:`to_unit_float` (``[0.]`` for tokens, which are not normalised).
        std: ``[C]`` float32 per-channel standard deviation, same scale (``[1.]`` for tokens).
        client_train: ``[N]`` int64 client id of each training example (after
            the validation hold-out), for ``data.partition='natural'``; None
            when the data names no clients.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    mean: np.ndarray
    std: np.ndarray
    client_train: Optional[np.ndarray] = None

    def __post_init__(self):
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if len(x) != len(y):
                raise ValueError(
                    f"Dataset: x_{split} has {len(x)} images but y_{split} has "
                    f"{len(y)} labels.")
        if self.client_train is not None and len(self.client_train) != len(self.y_train):
            raise ValueError(
                f"Dataset: client_train has {len(self.client_train)} ids but y_train has "
                f"{len(self.y_train)} labels.")


def holdout_indices(n: int, fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """The rows :func:`holdout_validation` keeps for training and holds out, each in increasing order.

    For arrays that must follow the same rows as the images and labels (the client id of each
    example): indexing them with the training indices keeps every value with its row.

    Args:
        n: Number of training examples.
        fraction: Share of examples to hold out, in ``[0, 1)``; rounded to the
            nearest whole number of examples.
        seed: Seed of the permutation that picks the held-out examples.

    Returns:
        ``(train_idx, val_idx)``, int arrays that together hold ``0..n-1`` once.

    Raises:
        ValueError: If ``fraction`` is outside ``[0, 1)`` or leaves no training example.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(
            f"data.val_fraction must be in [0, 1), got {fraction!r}.")
    n_val = int(round(fraction * n))
    if n and n_val >= n:
        raise ValueError(
            f"data.val_fraction={fraction} of {n} examples leaves no training "
            "data; use a smaller fraction.")
    perm = np.random.default_rng(seed).permutation(n)
    # Sorting keeps each part in file order; only membership is random.
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def holdout_per_client(client_ids: np.ndarray, fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Like :func:`holdout_indices`, but each client holds out ``floor(fraction * n_c)`` of its own rows.

    Every client keeps at least one training row (the floor of a fraction below 1 of n_c is below n_c),
    so the clients of a natural partition, and their count, do not depend on the seed.

    Args:
        client_ids: ``[N]`` client id of each training row.
        fraction: Share of each client's rows to hold out, in ``[0, 1)``.
        seed: Seed of the per-client choice.

    Returns:
        ``(train_idx, val_idx)``, int arrays in increasing order that together hold ``0..N-1`` once.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(
            f"data.val_fraction must be in [0, 1), got {fraction!r}.")
    client_ids = np.asarray(client_ids)
    rng = np.random.default_rng(seed)
    held = []
    for client in np.unique(client_ids):
        rows = np.flatnonzero(client_ids == client)
        held.append(rng.permutation(rows)[:int(np.floor(fraction * len(rows)))])
    val_idx = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    keep = np.ones(len(client_ids), bool)
    keep[val_idx] = False
    return np.flatnonzero(keep), val_idx


def holdout_validation(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Splits a seeded random ``fraction`` of the training data off as validation.

    Both parts keep the original relative order of their examples, so the split
    depends only on ``seed`` and the number of examples.

    Args:
        x: ``[N, ...]`` training images.
        y: ``[N]`` training labels.
        fraction: Share of examples to hold out, in ``[0, 1)``; rounded to the
            nearest whole number of examples.
        seed: Seed of the permutation that picks the held-out examples.

    Returns:
        ``(x_train, y_train, x_val, y_val)``.

    Raises:
        ValueError: If ``fraction`` is outside ``[0, 1)``, leaves no training
            example, or the lengths of ``x`` and ``y`` differ.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)}.")
    train_idx, val_idx = holdout_indices(len(x), fraction, seed)
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx]


def to_unit_float(x):
    """Converts images to float32: uint8 is divided by 255, floats are kept.

    Args:
        x: Array of uint8 (0..255) or floating dtype.

    Returns:
        float32 ``jnp`` array of the same shape.

    Raises:
        TypeError: For any other dtype, whose scale would be a guess.
    """
    x = jnp.asarray(x)
    if x.dtype == jnp.uint8:
        return x.astype(jnp.float32) / 255.0
    if jnp.issubdtype(x.dtype, jnp.floating):
        return x.astype(jnp.float32)
    raise TypeError(f"Images must be uint8 or float, got dtype {x.dtype}.")
