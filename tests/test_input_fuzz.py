"""Fuzz-style: random bytes, truncations, flipped bytes and dtype/shape variants of a small `.npz` and of a
CIFAR binary archive. Every outcome must be a clean error (ValueError or FileNotFoundError naming the file)
or a load equal to what was written, never another exception."""
import gzip
import io
import tarfile

import numpy as np
import pytest

from superfed_jax.data import cifar, npz

_CASES = 40  # per fuzzed file; each load takes milliseconds


def _clean_or_equal(load, path, check_result):
    """Runs `load(path)`; a ValueError/FileNotFoundError must name the file, a result must check out."""
    try:
        result = load(path)
    except (ValueError, FileNotFoundError) as error:
        assert path in str(error), str(error)
        return "error"
    check_result(result)
    return "loaded"


# ----------------------------------------------------------------------------------------- npz


def _npz_bytes(arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _good_npz_arrays():
    rng = np.random.default_rng(1)
    return dict(x_train=rng.integers(0, 256, (5, 3, 3, 2), dtype=np.uint8), y_train=np.arange(5) % 2,
                x_test=rng.integers(0, 256, (2, 3, 3, 2), dtype=np.uint8), y_test=np.array([1, 0]))


def _npz_equals(written):
    """A check that a loaded result is exactly what `written` holds (after the documented conversions)."""
    def check(result):
        x_tr, y_tr, x_te, y_te, classes = result
        np.testing.assert_array_equal(x_tr, written["x_train"])
        np.testing.assert_array_equal(y_tr, written["y_train"])
        np.testing.assert_array_equal(x_te, written["x_test"])
        np.testing.assert_array_equal(y_te, written["y_test"])
        assert classes == int(np.max(written["y_train"])) + 1
    return check


def _never_loads(result):
    raise AssertionError(f"damaged file loaded: {[getattr(r, 'shape', r) for r in result]}")


def _byte_variants(good: bytes, rng):
    """Random bytes, truncations at random points and single flipped bytes of `good`."""
    yield "random", rng.integers(0, 256, int(rng.integers(0, 2 * len(good)))).astype(np.uint8).tobytes()
    cut = int(rng.integers(0, len(good)))
    yield "truncated", good[:cut]
    flipped = bytearray(good)
    flipped[int(rng.integers(0, len(good)))] ^= int(rng.integers(1, 256))
    yield "flipped", bytes(flipped)


@pytest.mark.parametrize("seed", range(_CASES))
def test_npz_byte_damage_is_clean(tmp_path, seed):
    rng = np.random.default_rng(seed)
    written = _good_npz_arrays()
    good = _npz_bytes(written)
    for kind, content in _byte_variants(good, rng):
        path = tmp_path / f"{kind}.npz"
        path.write_bytes(content)
        # A flipped byte may land in a part nobody checks (a zip comment, a timestamp): then the load
        # must equal the original. Random bytes and truncations can never load.
        check = _npz_equals(written) if kind == "flipped" else _never_loads
        _clean_or_equal(npz.load_npz_arrays, str(path), check)


_DTYPES = [np.uint8, np.int8, np.int16, np.uint16, np.int64, np.float16, np.float32, np.float64,
           np.complex64, np.bool_, "U3", "S2", "M8[s]", [("a", "<i4")]]


@pytest.mark.parametrize("dtype", _DTYPES, ids=str)
@pytest.mark.parametrize("key", ["x_train", "y_test"])
def test_npz_dtype_variants_are_clean(tmp_path, dtype, key):
    written = _good_npz_arrays()
    written[key] = written[key].astype(dtype) if not isinstance(dtype, list) else np.zeros(
        written[key].shape, dtype)
    path = tmp_path / "variant.npz"
    path.write_bytes(_npz_bytes(written))
    outcome = _clean_or_equal(npz.load_npz_arrays, str(path), lambda result: None)
    if np.dtype(dtype).kind not in "uif":
        assert outcome == "error"


@pytest.mark.parametrize("shape", [(0,), (5,), (5, 3), (5, 0, 3, 2), (5, 3, 3, 2, 1), (4, 3, 3, 2), ()])
@pytest.mark.parametrize("key", ["x_train", "y_train"])
def test_npz_shape_variants_are_clean(tmp_path, shape, key):
    written = _good_npz_arrays()
    written[key] = np.zeros(shape, written[key].dtype)
    path = tmp_path / "shape.npz"
    path.write_bytes(_npz_bytes(written))
    _clean_or_equal(npz.load_npz_arrays, str(path), lambda result: None)


# --------------------------------------------------------------------------------------- CIFAR


def _cifar10_archive_bytes(records_per_member=2) -> tuple[bytes, dict]:
    """A small CIFAR-10 binary archive (gzipped tar) and its members."""
    rng = np.random.default_rng(2)
    layout = cifar.LAYOUTS["cifar10"]
    members = {}
    for name in layout.train_members + layout.test_members:
        records = rng.integers(0, 256, (records_per_member, layout.record_bytes), dtype=np.uint8)
        records[:, 0] %= 10
        members[name] = records.tobytes()
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(tar_bytes.getvalue(), mtime=0), members


def _cifar_equals(members):
    layout = cifar.LAYOUTS["cifar10"]

    def check(result):
        x_tr, y_tr, x_te, y_te, classes = result
        expected_train = [cifar.decode_records(members[m], layout, m) for m in layout.train_members]
        np.testing.assert_array_equal(x_tr, np.concatenate([x for x, _ in expected_train]))
        np.testing.assert_array_equal(y_tr, np.concatenate([y for _, y in expected_train]))
        x_ref, y_ref = cifar.decode_records(members[layout.test_members[0]], layout, "test")
        np.testing.assert_array_equal(x_te, x_ref)
        np.testing.assert_array_equal(y_te, y_ref)
        assert classes == 10
    return check


@pytest.mark.parametrize("seed", range(_CASES))
def test_cifar_archive_byte_damage_is_clean(tmp_path, seed):
    rng = np.random.default_rng(seed)
    good, members = _cifar10_archive_bytes()
    for kind, content in _byte_variants(good, rng):
        path = tmp_path / f"{kind}.tar.gz"
        path.write_bytes(content)
        # gzip's CRC catches a flipped data byte; a flip in the header's timestamp or flags may load.
        check = _cifar_equals(members) if kind == "flipped" else _never_loads
        _clean_or_equal(lambda p: cifar.load_cifar_binary("cifar10", p), str(path), check)


def test_cifar_gzip_bomb_stops_at_the_known_record_count(tmp_path, monkeypatch):
    # Shrink the known record count so that a small bomb (8 MiB of zeros) is past it.
    monkeypatch.setattr(cifar, "_KNOWN_RECORDS", 10)
    monkeypatch.setattr(cifar, "_TAR_SLACK_BYTES", 1 << 16)
    limit = cifar.LAYOUTS["cifar10"].max_tar_bytes
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        info = tarfile.TarInfo(cifar.LAYOUTS["cifar10"].train_members[0])
        info.size = 8 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    path = tmp_path / "bomb.tar.gz"
    path.write_bytes(gzip.compress(tar_bytes.getvalue()))
    assert path.stat().st_size < 64 << 10
    seen = []
    original = cifar._inflate

    def recording(*args):
        seen.append(args[2])
        return original(*args)

    monkeypatch.setattr(cifar, "_inflate", recording)
    with pytest.raises(ValueError, match=f"inflates to more than {limit} bytes") as info:
        cifar.load_cifar_binary("cifar10", str(path))
    assert str(path) in str(info.value) and seen == [limit]
    # The same archive inflated without a cap would be > 8 MiB; with the genuine counts it loads as far as
    # its (wrong) member sizes allow: the cap does not refuse archives of the real size.
    monkeypatch.undo()
    assert cifar.LAYOUTS["cifar10"].max_tar_bytes > 60000 * 3073


@pytest.mark.parametrize("size_change", [-3073, -1, 1, 3073 * 3, -2 * 3073])
@pytest.mark.parametrize("label", [None, 10, 255])
def test_cifar_member_size_and_label_variants_are_clean(tmp_path, size_change, label):
    """Members cut or grown by bytes or whole records, and labels out of range."""
    _, members = _cifar10_archive_bytes()
    name = cifar.LAYOUTS["cifar10"].train_members[2]
    data = members[name]
    data = data[:len(data) + size_change] if size_change < 0 else data + bytes(size_change)
    if label is not None and data:
        data = bytes([label]) + data[1:]
    members = dict(members, **{name: data})
    path = tmp_path / "variant.tar"
    with tarfile.open(path, "w") as tar:
        for member, content in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    whole = len(data) % 3073 == 0 and len(data) > 0 and label is None
    outcome = _clean_or_equal(lambda p: cifar.load_cifar_binary("cifar10", p), str(path),
                              _cifar_equals(members))
    assert outcome == ("loaded" if whole else "error")
