"""scikit-learn's bundled 8x8 handwritten digits, as a tiny offline dataset.

1797 greyscale images with pixel values 0..16 ship inside scikit-learn, so
this loader needs no download. It is the project's smoke-test dataset.
"""
from typing import Tuple

import numpy as np

from superfed_jax import _extras

__all__ = ["load_digits_arrays"]

_MAX_PIXEL = 16.0
_NUM_CLASSES = 10


def to_uint8_images(flat: np.ndarray) -> np.ndarray:
    """Maps ``[N, 64]`` pixel values in 0..16 to uint8 ``[N, 8, 8, 1]`` in 0..255.

    Args:
        flat: ``[N, 64]`` array of values in ``[0, 16]``.

    Returns:
        uint8 images ``round(x * 255 / 16)`` of shape ``[N, 8, 8, 1]``.
    """
    scaled = np.rint(flat.astype(np.float64) * (255.0 / _MAX_PIXEL))
    return scaled.astype(np.uint8).reshape(-1, 8, 8, 1)


def load_digits_arrays(
    test_fraction: float = 0.2, seed: int = 0
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Loads the digits with a seeded, class-stratified train/test split.

    Args:
        test_fraction: Share of the 1797 examples put in the test split.
        seed: Seed of the split. Keep it fixed across experiments so that
            every run is evaluated on the same test images.

    Returns:
        ``(x_train, y_train, x_test, y_test, num_classes)`` with uint8
        ``[N, 8, 8, 1]`` images and int32 labels.
    """
    # Imported here, not at the top: scikit-learn is the optional 'digits' extra, and the data layer
    # imports this module whichever dataset a run reads.
    sk_datasets = _extras.require("sklearn.datasets", "digits")
    model_selection = _extras.require("sklearn.model_selection", "digits")
    bunch = sk_datasets.load_digits()
    x = to_uint8_images(bunch.data)
    y = bunch.target.astype(np.int32)
    x_tr, x_te, y_tr, y_te = model_selection.train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed)
    return x_tr, y_tr, x_te, y_te, _NUM_CLASSES
