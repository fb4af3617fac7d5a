"""Tests for the dataset loaders: digits, npz, CIFAR (binary and TFDS), load_dataset."""
import io
import tarfile

import ml_collections
import numpy as np
import pytest

from superfed_jax.data import cifar, digits, npz
from superfed_jax.data import load_dataset
from superfed_jax.data.dataset import holdout_validation
from superfed_jax.data.stats import channel_mean_std


def _config(**overrides):
    fields = dict(name="digits", path="", archive="", tfds_data_dir="", val_fraction=0.1)
    fields.update(overrides)
    return ml_collections.ConfigDict(fields)


# ---------------------------------------------------------------- digits


def test_digits_shapes_dtypes_classes():
    x_tr, y_tr, x_te, y_te, k = digits.load_digits_arrays()
    assert k == 10
    assert x_tr.shape == (1437, 8, 8, 1) and x_te.shape == (360, 8, 8, 1)
    assert x_tr.dtype == np.uint8 and y_tr.dtype == np.int32
    assert x_tr.max() == 255 and x_tr.min() == 0
    assert set(np.unique(y_te)) == set(range(10))  # stratified
    again = digits.load_digits_arrays()
    np.testing.assert_array_equal(again[3], y_te)


def test_digits_pixel_scaling():
    flat = np.array([[0, 1, 8, 16] + [0] * 60], np.float64)
    img = digits.to_uint8_images(flat)
    assert img.shape == (1, 8, 8, 1)
    np.testing.assert_array_equal(img[0, 0, :4, 0], [0, 16, 128, 255])  # round(x*255/16)


# ---------------------------------------------------------------- load_dataset


def test_load_dataset_digits_end_to_end():
    ds = load_dataset(_config(val_fraction=0.1), seed=0)
    assert len(ds.x_val) == round(0.1 * 1437) and len(ds.x_train) == 1437 - len(ds.x_val)
    assert len(ds.x_test) == 360 and ds.num_classes == 10
    assert ds.mean.shape == (1,) and ds.std.shape == (1,)
    assert ds.mean.dtype == np.float32
    pixels = ds.x_train.astype(np.float64) / 255.0
    np.testing.assert_allclose(ds.mean, [pixels.mean()], rtol=1e-5)
    np.testing.assert_allclose(ds.std, [pixels.std()], rtol=1e-5)
    # Train and validation are disjoint pieces of the same training split.
    other = load_dataset(_config(val_fraction=0.1), seed=1)
    assert not np.array_equal(ds.y_val, other.y_val)
    no_val = load_dataset(_config(val_fraction=0.0), seed=0)
    assert len(no_val.x_val) == 0 and len(no_val.x_train) == 1437


def test_holdout_validation_partitions_training_data():
    x = np.arange(50)[:, None]
    y = np.arange(50)
    x_tr, y_tr, x_val, y_val = holdout_validation(x, y, 0.2, seed=3)
    assert len(x_val) == 10
    np.testing.assert_array_equal(np.sort(np.concatenate([y_tr, y_val])), y)
    np.testing.assert_array_equal(x_tr[:, 0], y_tr)
    with pytest.raises(ValueError, match="val_fraction"):
        holdout_validation(x, y, 1.0, seed=0)


def test_load_dataset_unknown_name():
    allowed = r"data.name='mnist'.*'digits'.*'npz'.*'cifar10'.*'cifar100'"
    with pytest.raises(ValueError, match=allowed):
        load_dataset(_config(name="mnist"), seed=0)


def test_channel_mean_std_matches_numpy():
    x = np.random.default_rng(0).integers(0, 256, (9000, 4, 4, 3), dtype=np.uint8)
    mean, std = channel_mean_std(x)  # 9000 > one chunk: exercises accumulation
    ref = x.astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(std, ref.std(axis=(0, 1, 2)), rtol=1e-5)


# ---------------------------------------------------------------- npz


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def _good_arrays(shape=(6, 5, 4, 3), dtype=np.uint8):
    rng = np.random.default_rng(0)
    make = (lambda n: rng.integers(0, 256, (n,) + shape[1:]).astype(dtype))
    return dict(x_train=make(shape[0]), y_train=np.array([0, 1, 2, 0, 4, 2]),
                x_test=make(3), y_test=np.array([4, 0, 1]))


@pytest.mark.parametrize("shape,dtype", [
    ((6, 5, 4, 3), np.uint8), ((6, 5, 4), np.uint8),
    ((6, 5, 4, 3), np.float32), ((6, 5, 4), np.float64)])
def test_npz_loads_nhwc_and_nhw(tmp_path, shape, dtype):
    arrays = _good_arrays(shape, dtype)
    path = _write_npz(tmp_path / "d.npz", **arrays)
    x_tr, y_tr, x_te, y_te, k = npz.load_npz_arrays(path)
    assert x_tr.shape == (6, 5, 4, shape[3] if len(shape) == 4 else 1)
    assert x_tr.dtype == (np.uint8 if dtype == np.uint8 else np.float32)
    np.testing.assert_array_equal(x_tr.reshape(shape), arrays["x_train"].astype(x_tr.dtype))
    assert y_tr.dtype == np.int32 and k == 5  # max training label 4 + 1


def test_npz_through_load_dataset_computes_stats(tmp_path):
    path = _write_npz(tmp_path / "d.npz", **_good_arrays(shape=(6, 4, 4, 3)))
    ds = load_dataset(_config(name="npz", path=path, val_fraction=0.0), seed=0)
    assert ds.num_classes == 5 and ds.mean.shape == (3,)
    np.testing.assert_allclose(
        ds.mean, (ds.x_train / 255.0).mean(axis=(0, 1, 2)), rtol=1e-5)


def _bad_cases():
    good = _good_arrays()
    cases = {}
    missing = dict(good)
    del missing["y_test"]
    cases["missing"] = (missing, r"missing key 'y_test'.*x_train.*y_train.*x_test.*y_test")
    cases["length"] = (dict(good, y_train=good["y_train"][:5]),
                       r"x_train has 6 images but y_train has 5 labels")
    cases["negative"] = (dict(good, y_test=np.array([4, -1, 1])), r"y_test has label -1 outside")
    cases["fractional"] = (dict(good, y_train=good["y_train"] + 0.5),
                           r"y_train has non-integer labels")
    cases["string"] = (dict(good, x_test=np.array(["a", "b", "c"])),
                       r"x_test has non-numeric dtype")
    cases["empty"] = (dict(good, x_test=good["x_test"][:0], y_test=good["y_test"][:0]),
                      r"x_test is an empty split")
    nan = good["x_train"].astype(np.float32)
    nan[2, 1, 1, 0] = np.nan
    cases["nan"] = (dict(good, x_train=nan, x_test=good["x_test"].astype(np.float32)),
                    r"x_train contains NaN or inf")
    cases["rank"] = (dict(good, x_train=good["x_train"][..., None]), r"x_train has rank 5")
    cases["pixels"] = (dict(good, x_train=good["x_train"].astype(np.int32) * 2),
                       r"x_train has integer pixels in \[0, 5")
    return cases


@pytest.mark.parametrize("case", sorted(_bad_cases()))
def test_npz_rejects_bad_files_naming_file_and_problem(tmp_path, case):
    arrays, pattern = _bad_cases()[case]
    path = _write_npz(tmp_path / f"{case}.npz", **arrays)
    with pytest.raises(ValueError, match=pattern) as info:
        npz.load_npz_arrays(path)
    assert path in str(info.value)


def test_npz_refuses_pickled_arrays(tmp_path):
    good = _good_arrays()
    path = _write_npz(tmp_path / "obj.npz", **dict(good, y_train=np.array([0, 1, 2, 0, 1, None])))
    with pytest.raises(ValueError, match="y_train has a non-numeric \\(object\\) dtype"):
        npz.load_npz_arrays(path)


# ---------------------------------------------------------------- CIFAR binary


def _cifar_records(labels, label_bytes, seed):
    """Records in the binary layout, with images whose planes are known."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (len(labels), 32, 32, 3), dtype=np.uint8)
    planes = images.transpose(0, 3, 1, 2).reshape(len(labels), 3072)  # R, G, B planes
    head = np.zeros((len(labels), label_bytes), np.uint8)
    head[:, -1] = labels
    if label_bytes == 2:
        head[:, 0] = np.asarray(labels) // 5  # a coarse label that must be ignored
    return np.concatenate([head, planes], axis=1).tobytes(), images


def _write_tar(path, members, gz=True):
    with tarfile.open(path, "w:gz" if gz else "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def _cifar10_members(per_member=3):
    members, images, labels = {}, {}, {}
    names = [f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)]
    names.append("cifar-10-batches-bin/test_batch.bin")
    for i, name in enumerate(names):
        labels[name] = [(i + j) % 10 for j in range(per_member)]
        members[name], images[name] = _cifar_records(labels[name], 1, seed=i)
    members["cifar-10-batches-bin/batches.meta.txt"] = b"airplane\n"  # ignored
    return members, images, labels


def test_cifar10_binary_decodes_pixels_channels_and_labels(tmp_path):
    members, images, labels = _cifar10_members()
    path = _write_tar(tmp_path / "cifar-10-binary.tar.gz", members)
    x_tr, y_tr, x_te, y_te, k = cifar.load_cifar_binary("cifar10", path)
    assert k == 10 and x_tr.shape == (15, 32, 32, 3) and x_te.shape == (3, 32, 32, 3)
    assert x_tr.dtype == np.uint8 and y_tr.dtype == np.int32
    train_names = [f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)]
    np.testing.assert_array_equal(x_tr, np.concatenate([images[n] for n in train_names]))
    np.testing.assert_array_equal(y_tr, np.concatenate([labels[n] for n in train_names]))
    # Byte-level check of the layout: record 1 of test_batch, pixel (row 2,
    # col 5) is at 1 + 2*32 + 5 in the red plane, +1024 green, +2048 blue.
    raw = np.frombuffer(members["cifar-10-batches-bin/test_batch.bin"], np.uint8)
    rec = raw[3073:2 * 3073]
    assert y_te[1] == rec[0]
    offset = 1 + 2 * 32 + 5
    np.testing.assert_array_equal(
        x_te[1, 2, 5], [rec[offset], rec[offset + 1024], rec[offset + 2048]])


def test_cifar10_binary_known_pixel_values(tmp_path):
    # Hand-made record: red plane all 10, green all 20, blue all 30, except
    # pixel (0, 31) whose red is 200 and pixel (31, 0) whose blue is 250.
    planes = np.zeros((3, 32, 32), np.uint8)
    planes[0], planes[1], planes[2] = 10, 20, 30
    planes[0, 0, 31], planes[2, 31, 0] = 200, 250
    record = bytes([7]) + planes.tobytes()
    members = {f"cifar-10-batches-bin/data_batch_{i}.bin": record for i in range(1, 6)}
    members["cifar-10-batches-bin/test_batch.bin"] = record
    path = _write_tar(tmp_path / "c.tar.gz", members)
    x_tr, y_tr, _, _, _ = cifar.load_cifar_binary("cifar10", path)
    np.testing.assert_array_equal(x_tr[0, 5, 5], [10, 20, 30])
    np.testing.assert_array_equal(x_tr[0, 0, 31], [200, 20, 30])
    np.testing.assert_array_equal(x_tr[0, 31, 0], [10, 20, 250])
    np.testing.assert_array_equal(y_tr, [7] * 5)


def test_cifar100_binary_uses_fine_label(tmp_path):
    train, train_img = _cifar_records([99, 42, 3, 57], 2, seed=1)
    test, test_img = _cifar_records([11, 0], 2, seed=2)
    path = _write_tar(tmp_path / "cifar-100-binary.tar.gz",
                      {"cifar-100-binary/train.bin": train, "cifar-100-binary/test.bin": test})
    x_tr, y_tr, x_te, y_te, k = cifar.load_cifar_binary("cifar100", path)
    assert k == 100
    np.testing.assert_array_equal(y_tr, [99, 42, 3, 57])
    np.testing.assert_array_equal(y_te, [11, 0])
    np.testing.assert_array_equal(x_tr, train_img)
    np.testing.assert_array_equal(x_te, test_img)


def test_cifar_binary_reads_plain_tar(tmp_path):
    members, images, _ = _cifar10_members(per_member=1)
    path = _write_tar(tmp_path / "c.tar", members, gz=False)
    x_tr, _, _, _, _ = cifar.load_cifar_binary("cifar10", path)
    assert x_tr.shape == (5, 32, 32, 3)


def test_cifar_binary_rejects_missing_member(tmp_path):
    members, _, _ = _cifar10_members()
    del members["cifar-10-batches-bin/data_batch_4.bin"]
    path = _write_tar(tmp_path / "c.tar.gz", members)
    with pytest.raises(ValueError, match="missing member cifar-10-batches-bin/data_batch_4.bin"):
        cifar.load_cifar_binary("cifar10", path)


def test_cifar_binary_rejects_partial_record(tmp_path):
    members, _, _ = _cifar10_members()
    members["cifar-10-batches-bin/data_batch_2.bin"] += b"\x00" * 100
    path = _write_tar(tmp_path / "c.tar.gz", members)
    expected = r"data_batch_2.bin has 9319 bytes, not a positive multiple of the 3073"
    with pytest.raises(ValueError, match=expected):
        cifar.load_cifar_binary("cifar10", path)


def test_cifar_binary_rejects_out_of_range_label(tmp_path):
    members, _, _ = _cifar10_members()
    members["cifar-10-batches-bin/test_batch.bin"] = _cifar_records([1, 10], 1, seed=0)[0]
    path = _write_tar(tmp_path / "c.tar.gz", members)
    with pytest.raises(ValueError, match=r"test_batch.bin: label 10 is out of range \[0, 10\)"):
        cifar.load_cifar_binary("cifar10", path)


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.999])
def test_cifar_binary_rejects_truncated_archive(tmp_path, keep):
    # Random pixels barely compress, so cutting the .gz at 30% / 60% cuts a
    # member's data; cutting the last bytes leaves all data but no gzip trailer.
    members, _, _ = _cifar10_members()
    path = _write_tar(tmp_path / "c.tar.gz", members)
    raw = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(raw[: int(len(raw) * keep)])
    with pytest.raises(ValueError, match="truncated") as info:
        cifar.load_cifar_binary("cifar10", path)
    if keep < 0.9:
        assert "cifar-10-batches-bin/" in str(info.value)  # names the member


def test_cifar_binary_rejects_truncated_plain_tar(tmp_path):
    members, _, _ = _cifar10_members()
    path = _write_tar(tmp_path / "c.tar", members, gz=False)
    raw = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"member cifar-10-batches-bin/\S+ is truncated"):
        cifar.load_cifar_binary("cifar10", path)


def test_cifar_binary_rejects_non_archive(tmp_path):
    path = tmp_path / "c.tar.gz"
    path.write_bytes(b"not an archive at all" * 100)
    with pytest.raises(ValueError, match="c.tar.gz"):
        cifar.load_cifar_binary("cifar10", str(path))


# ---------------------------------------------------------------- CIFAR missing data


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_without_any_source_explains_how_to_prepare(name):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(_config(name=name), seed=0)
    msg = str(info.value)
    assert "--config.data.archive=" in msg and "binary version" in msg
    assert "--config.data.tfds_data_dir=DIR" in msg
    assert f"tfds.builder('{name}', data_dir=DIR" in msg and "download_and_prepare()" in msg


def test_cifar_with_absent_paths_explains_how_to_prepare(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*--config.data.tfds_data_dir"):
        cifar.load_cifar_arrays("cifar10", archive=str(tmp_path / "nope.tar.gz"))
    with pytest.raises(FileNotFoundError, match="has no prepared cifar100.*--config.data.archive"):
        cifar.load_cifar_arrays("cifar100", tfds_data_dir=str(tmp_path))


def test_load_dataset_cifar100_binary_computes_stats(tmp_path):
    train, _ = _cifar_records(list(range(20)), 2, seed=1)
    test, _ = _cifar_records([1, 2], 2, seed=2)
    path = _write_tar(tmp_path / "c100.tar.gz",
                      {"cifar-100-binary/train.bin": train, "cifar-100-binary/test.bin": test})
    ds = load_dataset(_config(name="cifar100", archive=path, val_fraction=0.0), seed=0)
    assert ds.num_classes == 100
    ref = ds.x_train.astype(np.float64) / 255.0
    np.testing.assert_allclose(ds.mean, ref.mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(ds.std, ref.std(axis=(0, 1, 2)), rtol=1e-5)
