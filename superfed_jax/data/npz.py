"""Loads an image classification dataset from a user-supplied ``.npz`` file.

The file must hold ``x_train``, ``y_train``, ``x_test`` and ``y_test``.
Images are ``[N, H, W, C]`` or greyscale ``[N, H, W]``; uint8 (0..255) or
float (kept as stored). Labels are integers ``[N]`` (or ``[N, 1]``, as Keras
saves them). The number of classes is the largest label plus one.

Everything is checked before it is used, and every problem is reported as a
``ValueError`` that names the file, the array and what is wrong: a bad file
should fail at load time, not as NaN losses hours into training. Pickled
(object) arrays are refused rather than unpickled, since unpickling runs code.
"""
from typing import Dict, Tuple

import numpy as np

__all__ = ["REQUIRED_KEYS", "load_npz_arrays"]

REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _open_npz(path: str):
    """Opens ``path`` as an npz archive, refusing anything else."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (FileNotFoundError, IsADirectoryError):
        raise
    except (ValueError, OSError, EOFError) as e:  # garbage or a pickle
        raise ValueError(f"{path}: not a readable .npz file: {e}") from e
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{path}: holds a single array, not an .npz archive with keys "
            f"{list(REQUIRED_KEYS)}.")
    return loaded


def _read_arrays(path: str) -> Dict[str, np.ndarray]:
    """Reads the required arrays, refusing pickles and naming missing keys."""
    with _open_npz(path) as npz:
        missing = [k for k in REQUIRED_KEYS if k not in npz.files]
        if missing:
            raise ValueError(
                f"{path}: missing key {missing[0]!r} (missing: {missing}); an "
                f"npz dataset needs keys {list(REQUIRED_KEYS)}, found "
                f"{sorted(npz.files)}.")
        arrays = {}
        for key in REQUIRED_KEYS:
            try:
                arrays[key] = npz[key]
            except ValueError as e:  # object arrays need pickle, which we refuse
                raise ValueError(
                    f"{path}: {key} has a non-numeric (object) dtype, which "
                    f"would need unpickling: {e}") from e
    return arrays


def _check_images(path: str, key: str, x: np.ndarray) -> np.ndarray:
    """Validates one image array and returns it as NHWC uint8 or float32."""
    if x.dtype.kind not in "uif":
        raise ValueError(
            f"{path}: {key} has non-numeric dtype {x.dtype}; images must be "
            "uint8 or float.")
    if x.ndim == 3:
        x = x[..., np.newaxis]  # greyscale NHW -> NHWC with one channel
    if x.ndim != 4:
        raise ValueError(
            f"{path}: {key} has rank {x.ndim} (shape {x.shape}); images must "
            "be [N, H, W, C] or [N, H, W].")
    if x.shape[0] == 0:
        raise ValueError(f"{path}: {key} is an empty split (shape {x.shape}).")
    if x.dtype.kind == "f":
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{path}: {key} contains NaN or inf pixels.")
        return x.astype(np.float32, copy=False)
    return _integer_images_to_uint8(path, key, x)


def _integer_images_to_uint8(path: str, key: str, x: np.ndarray) -> np.ndarray:
    """Accepts integer pixels only in 0..255, the range uint8 scaling assumes."""
    if x.dtype == np.uint8:
        return x
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or hi > 255:
        raise ValueError(
            f"{path}: {key} has integer pixels in [{lo}, {hi}]; integer images "
            "must lie in 0..255 (or store floats).")
    return x.astype(np.uint8)


def _check_labels(path: str, key: str, y: np.ndarray) -> np.ndarray:
    """Validates one label array and returns it as int32 ``[N]``."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # Keras-style [N, 1] labels
    if y.ndim != 1:
        raise ValueError(
            f"{path}: {key} has shape {y.shape}; labels must be [N] integers.")
    if y.dtype.kind not in "uif":
        raise ValueError(
            f"{path}: {key} has non-numeric dtype {y.dtype}; labels must be "
            "integers.")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
        raise ValueError(
            f"{path}: {key} has non-integer labels; labels must be integers.")
    if y.size and y.min() < 0:
        raise ValueError(
            f"{path}: {key} has label {y.min()} outside [0, num_classes); "
            "labels must be non-negative.")
    return y.astype(np.int32)


def _check_split(path: str, split: str, arrays: Dict[str, np.ndarray]):
    """Validates the images and labels of one split and that they pair up."""
    x = _check_images(path, f"x_{split}", arrays[f"x_{split}"])
    y = _check_labels(path, f"y_{split}", arrays[f"y_{split}"])
    if len(x) != len(y):
        raise ValueError(
            f"{path}: x_{split} has {len(x)} images but y_{split} has "
            f"{len(y)} labels; they must have the same length.")
    return x, y


def load_npz_arrays(
    path: str,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Loads and validates an ``.npz`` image classification dataset.

    Args:
        path: Path of the ``.npz`` file.

    Returns:
        ``(x_train, y_train, x_test, y_test, num_classes)``: NHWC images
        (uint8 or float32), int32 labels, and ``max label + 1`` over both
        splits.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If a key is missing, a dtype is non-numeric, a split is
            empty, images have the wrong rank, differ in shape or dtype between
            splits, or hold NaN/inf, labels are non-integer or negative, or x and y
            lengths differ.
    """
    arrays = _read_arrays(path)
    x_tr, y_tr = _check_split(path, "train", arrays)
    x_te, y_te = _check_split(path, "test", arrays)
    if x_tr.shape[1:] != x_te.shape[1:] or x_tr.dtype != x_te.dtype:
        raise ValueError(
            f"{path}: x_train images are {x_tr.dtype} {x_tr.shape[1:]} but "
            f"x_test images {x_te.dtype} {x_te.shape[1:]}; both splits must "
            "share dtype and [H, W, C].")
    num_classes = int(max(y_tr.max(), y_te.max())) + 1
    return x_tr, y_tr, x_te, y_te, num_classes
