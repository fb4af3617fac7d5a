"""Tests for reading CIFAR from a TFDS data dir with tfds.data_source.

The project's environment has TensorFlow Datasets but no TensorFlow, so each
passing test here also shows that reading needs no TensorFlow. Three levels:
an injected fake source (batching logic), ``tfds.testing.mock_data`` (the
TFDS entry point, with records faked), and a tiny data dir written here in
the real prepared layout (array_record files of serialised ``tf.Example``
protos with PNG images), read end to end with nothing mocked.
"""
import io
import os

import ml_collections
import numpy as np
import pytest

from superfed_jax.data import cifar, load_dataset

tfds = pytest.importorskip("tensorflow_datasets")


class _FakeSource:
    """A random-access source with a working batched ``__getitems__``."""

    def __init__(self, images, labels):
        self.images, self.labels, self.batched_calls = images, labels, 0

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        raise AssertionError("batched access expected")

    def __getitems__(self, keys):
        self.batched_calls += 1
        return [{"image": self.images[k], "label": np.int64(self.labels[k])} for k in keys]


def _random_split(n, seed, num_classes=10):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, num_classes, n))


def test_read_data_source_batches_and_orders():
    images, labels = _random_split(10, seed=0)
    source = _FakeSource(images, labels)
    x, y = cifar.read_data_source(source, 10, batch_size=4)
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    assert source.batched_calls == 3 and y.dtype == np.int32
    with pytest.raises(ValueError, match=r"labels span \[.*\], outside \[0, 5\)"):
        cifar.read_data_source(_FakeSource(images, labels), 5)


@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_tfds_with_mock_data(tmp_path, name, classes):
    # mock_data's stand-in source has a broken __getitems__ (tfds 4.9.x: it
    # is attached unbound and raises TypeError), so this exercises the
    # record-by-record fallback.
    (tmp_path / name).mkdir()  # what a prepared data dir would contain
    with tfds.testing.mock_data(num_examples=7):
        x_tr, y_tr, x_te, y_te, k = cifar.load_cifar_arrays(name, tfds_data_dir=str(tmp_path))
    assert k == classes
    assert x_tr.shape == (7, 32, 32, 3) and x_te.shape == (7, 32, 32, 3)
    assert x_tr.dtype == np.uint8 and y_tr.dtype == np.int32
    assert y_tr.min() >= 0 and y_tr.max() < classes


def test_load_dataset_cifar10_tfds_mock_uses_standard_stats(tmp_path):
    (tmp_path / "cifar10").mkdir()
    config = ml_collections.ConfigDict(dict(
        name="cifar10", path="", archive="", tfds_data_dir=str(tmp_path), val_fraction=0.25))
    with tfds.testing.mock_data(num_examples=12):
        ds = load_dataset(config, seed=0)
    assert len(ds.x_train) == 9 and len(ds.x_val) == 3 and len(ds.x_test) == 12
    np.testing.assert_allclose(ds.mean, [0.4914, 0.4822, 0.4465])
    np.testing.assert_allclose(ds.std, [0.2470, 0.2435, 0.2616])


# ------------------------------------------------- a real prepared data dir


def _serialized_example(image, label, key):
    """A tf.Example proto as TFDS stores CIFAR records (PNG image, int label)."""
    from PIL import Image
    from tensorflow_datasets.proto import tf_example_pb2

    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    example = tf_example_pb2.Example()
    example.features.feature["image"].bytes_list.value.append(png.getvalue())
    example.features.feature["label"].int64_list.value.append(int(label))
    example.features.feature["id"].bytes_list.value.append(key.encode())
    return example.SerializeToString()


def _prepare_tiny_cifar10(data_dir, splits):
    """Writes ``splits`` ({name: (images, labels)}) as a prepared TFDS dir."""
    pytest.importorskip("PIL")
    arm = pytest.importorskip("array_record.python.array_record_module")
    builder = tfds.builder("cifar10", data_dir=data_dir, file_format="array_record")
    os.makedirs(builder.data_dir, exist_ok=True)
    infos = []
    for split, (images, labels) in splits.items():
        path = os.path.join(builder.data_dir,
                            f"cifar10-{split}.array_record-00000-of-00001")
        writer = arm.ArrayRecordWriter(path, "group_size:1")
        for i, (image, label) in enumerate(zip(images, labels)):
            writer.write(_serialized_example(image, label, f"{split}_{i}"))
        writer.close()
        infos.append(tfds.core.SplitInfo(
            name=split, shard_lengths=[len(labels)], num_bytes=0, filename_template=None))
    builder.info.set_splits(tfds.core.SplitDict(infos))
    builder.info.write_to_directory(builder.data_dir)


def test_cifar10_from_real_prepared_tfds_dir(tmp_path):
    splits = {"train": _random_split(6, seed=1), "test": _random_split(3, seed=2)}
    _prepare_tiny_cifar10(str(tmp_path), splits)
    x_tr, y_tr, x_te, y_te, k = cifar.load_cifar_arrays("cifar10", tfds_data_dir=str(tmp_path))
    assert k == 10
    np.testing.assert_array_equal(x_tr, splits["train"][0])
    np.testing.assert_array_equal(y_tr, splits["train"][1])
    np.testing.assert_array_equal(x_te, splits["test"][0])
    np.testing.assert_array_equal(y_te, splits["test"][1])


def test_tfrecord_prepared_dir_is_refused_with_the_fix(tmp_path):
    # `download_and_prepare()` without file_format writes TFRecord, which
    # tfds.data_source cannot read; the error must say how to re-prepare.
    builder = tfds.builder("cifar10", data_dir=str(tmp_path))
    os.makedirs(builder.data_dir, exist_ok=True)
    builder.info.set_splits(tfds.core.SplitDict([tfds.core.SplitInfo(
        name=s, shard_lengths=[1], num_bytes=0, filename_template=None)
        for s in ("train", "test")]))
    builder.info.write_to_directory(builder.data_dir)
    expected = "(?s)not prepared in the array_record format.*file_format='array_record'"
    with pytest.raises(ValueError, match=expected):
        cifar.load_cifar_arrays("cifar10", tfds_data_dir=str(tmp_path))
