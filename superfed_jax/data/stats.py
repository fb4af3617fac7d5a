"""Per-channel image statistics, computed on the host in bounded memory.

The statistics are those of the images after ``to_unit_float`` (uint8 scaled
to [0, 1], floats as stored), matching how images are normalised on device.
"""
from typing import Tuple

import numpy as np

__all__ = ["channel_mean_std"]

# Examples per chunk: float64 copies of a chunk stay small (CIFAR: ~100 MB)
# however large the training set is.
_CHUNK = 4096
_MIN_STD = 1e-6


def _unit_scale(x: np.ndarray) -> np.ndarray:
    """Host-side twin of ``to_unit_float``, in float64 for exact sums."""
    if x.dtype == np.uint8:
        return x.astype(np.float64) / 255.0
    return x.astype(np.float64)


def channel_mean_std(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Mean and (population) standard deviation of each channel.

    Args:
        x: ``[N, H, W, C]`` images, uint8 or float, with ``N >= 1``.

    Returns:
        ``(mean, std)``, each float32 ``[C]``; ``std`` is at least 1e-6.

    Raises:
        ValueError: If ``x`` is empty or not 4-D.
    """
    if x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"Need non-empty [N, H, W, C] images, got shape {x.shape}.")
    total = np.zeros(x.shape[-1])
    total_sq = np.zeros(x.shape[-1])
    for start in range(0, len(x), _CHUNK):
        chunk = _unit_scale(x[start:start + _CHUNK])
        total += chunk.sum(axis=(0, 1, 2))
        total_sq += np.square(chunk).sum(axis=(0, 1, 2))
    count = x.shape[0] * x.shape[1] * x.shape[2]
    mean = total / count
    # Clamp tiny negative variances that rounding can give for constant channels.
    var = np.maximum(total_sq / count - np.square(mean), 0.0)
    # A floor keeps (x - mean) / std finite (zero) on a constant channel.
    std = np.maximum(np.sqrt(var), _MIN_STD)
    return mean.astype(np.float32), std.astype(np.float32)
