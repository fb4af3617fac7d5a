"""CIFAR-10 and CIFAR-100 from local files: the binary archive or a TFDS dir.

Nothing here downloads. Two sources are read:

* the dataset authors' "binary version" archives, ``cifar-10-binary.tar.gz``
  and ``cifar-100-binary.tar.gz``, read with ``tarfile`` and
  ``np.frombuffer`` (the "python version" is pickled, and unpickling runs
  code, so it is not supported). The whole archive is checked - complete
  gzip stream, every member present, sizes whole records, labels in range -
  before any image is decoded, so a damaged file is never half-read. The
  gzip stream is inflated in chunks and stopped once it passes the size the
  known record counts allow, so a small "gzip bomb" cannot fill the memory;
* a TFDS data dir prepared elsewhere in the ``array_record`` format, read
  with ``tfds.data_source`` (no TensorFlow needed to read).

Binary layout: each record is the label byte(s) then 3072 image bytes,
1024 red, 1024 green, 1024 blue, each a row-major 32x32 plane. CIFAR-100
records carry a coarse then a fine label byte; the fine label is used.
"""
import dataclasses
import io
import os
import tarfile
import zlib
from typing import Any, Dict, Sequence, Tuple

import numpy as np

from superfed_jax import _extras

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR_NAMES",
    "decode_records",
    "load_cifar_arrays",
    "load_cifar_binary",
    "load_cifar_tfds",
    "read_data_source",
]

# Standard CIFAR-10 training-set statistics in [0, 1] scale.
CIFAR10_MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
CIFAR10_STD = np.array([0.2470, 0.2435, 0.2616], np.float32)

CIFAR_NAMES = ("cifar10", "cifar100")
_IMAGE_BYTES = 3 * 32 * 32
_GZIP_MAGIC = b"\x1f\x8b"
_READ_CHUNK = 1 << 20
# Both variants hold 50000 training and 10000 test records; the archive may not inflate to more than
# those records plus room for tar headers and the small extra members (readme, label names).
_KNOWN_RECORDS = 60000
_TAR_SLACK_BYTES = 16 << 20
_TFDS_BATCH = 1024

Arrays = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]


@dataclasses.dataclass(frozen=True)
class BinaryLayout:
    """Where and how one CIFAR variant is stored in its binary archive."""

    archive_name: str
    train_members: Tuple[str, ...]
    test_members: Tuple[str, ...]
    label_bytes: int  # label bytes before each image; the last one is used
    num_classes: int

    @property
    def record_bytes(self) -> int:
        """Bytes per record: labels then the image."""
        return self.label_bytes + _IMAGE_BYTES

    @property
    def max_tar_bytes(self) -> int:
        """The most bytes the (inflated) tar of a genuine archive can hold."""
        return _KNOWN_RECORDS * self.record_bytes + _TAR_SLACK_BYTES


LAYOUTS: Dict[str, BinaryLayout] = {
    "cifar10": BinaryLayout(
        archive_name="cifar-10-binary.tar.gz",
        train_members=tuple(
            f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)),
        test_members=("cifar-10-batches-bin/test_batch.bin",),
        label_bytes=1,
        num_classes=10),
    "cifar100": BinaryLayout(
        archive_name="cifar-100-binary.tar.gz",
        train_members=("cifar-100-binary/train.bin",),
        test_members=("cifar-100-binary/test.bin",),
        label_bytes=2,
        num_classes=100),
}


def missing_data_message(name: str) -> str:
    """How to make CIFAR data available offline, for the error users see.

    Args:
        name: ``'cifar10'`` or ``'cifar100'`` (TFDS uses the same names).

    Returns:
        Instructions naming both ways to provide the data.
    """
    return (
        f"To provide {name}, either pass "
        f"--config.data.archive=/path/to/{LAYOUTS[name].archive_name} (the "
        "\"binary version\" from the dataset authors' page, "
        "https://www.cs.toronto.edu/~kriz/cifar.html), or prepare a TFDS data "
        "dir on a machine with TensorFlow and internet: "
        f"tfds.builder('{name}', data_dir=DIR, file_format='array_record')"
        ".download_and_prepare(), copy DIR here and pass "
        "--config.data.tfds_data_dir=DIR.")


# ----------------------------------------------------------------------------
# Binary archive.


def _too_large(path: str, max_bytes: int) -> ValueError:
    """The error for an archive that inflates past what its records allow."""
    return ValueError(
        f"{path}: archive inflates to more than {max_bytes} bytes, more than the known "
        f"{_KNOWN_RECORDS} CIFAR records can take; this is not the dataset's archive (or it is "
        "damaged), download it again.")


def _inflate(path: str, f, max_bytes: int) -> Tuple[bytearray, bool]:
    """Inflates the gzip stream of open file `f`, stopping once it passes `max_bytes`."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing
    out = bytearray()
    try:
        while not inflater.eof:
            pending = f.read(_READ_CHUNK)
            if not pending:
                break
            while pending and not inflater.eof:
                out += inflater.decompress(pending, max_bytes + 1 - len(out))
                if len(out) > max_bytes:
                    raise _too_large(path, max_bytes)
                pending = inflater.unconsumed_tail
    except zlib.error as e:
        raise ValueError(f"{path}: corrupt gzip data: {e}") from e
    return out, inflater.eof


def _decompressed_bytes(path: str, max_bytes: int = 1 << 62) -> Tuple[bytes, bool]:
    """Returns the tar bytes of ``path`` and whether its gzip stream is whole.

    Decompression is streamed so that a truncated file still yields the
    bytes before the cut, which lets the caller name the member it hit, and
    so that it stops as soon as the output passes ``max_bytes``.
    """
    with open(path, "rb") as f:
        if f.read(len(_GZIP_MAGIC)) != _GZIP_MAGIC:
            if os.path.getsize(path) > max_bytes:
                raise _too_large(path, max_bytes)
            f.seek(0)
            return f.read(), True  # plain tar: tarfile itself detects a short member
        f.seek(0)
        return _inflate(path, f, max_bytes)


def _read_member(tar, info, archive: str, record_bytes: int) -> bytes:
    """Reads one member whole, checking its size is a whole number of records."""
    if info.size == 0 or info.size % record_bytes:
        raise ValueError(
            f"{archive}: member {info.name} has {info.size} bytes, not a "
            f"positive multiple of the {record_bytes}-byte record size.")
    try:
        data = tar.extractfile(info).read()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ValueError(
            f"{archive}: member {info.name} is truncated ({e}); the archive "
            "is incomplete, download it again.") from e
    if len(data) != info.size:
        raise ValueError(
            f"{archive}: member {info.name} is truncated: {len(data)} of "
            f"{info.size} bytes; the archive is incomplete.")
    return data


def _scan_tar(tar: tarfile.TarFile, wanted: Sequence[str], archive: str,
              record_bytes: int) -> Dict[str, bytes]:
    """Reads the wanted members of an open tar whose end may be cut off."""
    found: Dict[str, bytes] = {}
    try:
        for info in tar:
            name = os.path.normpath(info.name)  # drops a leading './'
            if name in wanted and info.isfile():
                found[name] = _read_member(tar, info, archive, record_bytes)
    except tarfile.ReadError:
        # The tar is cut short after the members read so far, which are
        # whole; the caller reports the wanted ones that never came.
        pass
    return found


def read_archive_members(path: str, wanted: Sequence[str], record_bytes: int,
                         max_bytes: int = 1 << 62) -> Dict[str, bytes]:
    """Reads and checks the wanted members of a (gzipped) tar archive.

    Args:
        path: Archive path.
        wanted: Member paths that must all be present.
        record_bytes: Each member's size must be a positive multiple of this.
        max_bytes: The most bytes the (inflated) tar may hold; reading stops
            with an error once it passes them.

    Returns:
        Member path to its bytes, for every wanted member.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the archive is corrupt or truncated, inflates past
            ``max_bytes``, a member is missing, or a member's size is not
            whole records.
    """
    data, whole = _decompressed_bytes(path, max_bytes)
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
    except tarfile.TarError as e:
        problem = "is truncated" if not whole else "is not a tar archive"
        raise ValueError(f"{path}: archive {problem} ({e}).") from e
    with tar:
        found = _scan_tar(tar, wanted, path, record_bytes)
    missing = [m for m in wanted if m not in found]
    if missing and not whole:
        raise ValueError(
            f"{path}: archive is truncated before member {missing[0]} "
            f"(missing: {missing}); download it again.")
    if missing:
        raise ValueError(
            f"{path}: missing member {missing[0]} (missing: {missing}); is "
            "this the right archive (the binary version)?")
    if not whole:
        raise ValueError(f"{path}: archive is truncated (gzip stream ends early).")
    return found


def decode_records(data: bytes, layout: BinaryLayout,
                   member: str) -> Tuple[np.ndarray, np.ndarray]:
    """Decodes binary records into NHWC RGB images and labels.

    Args:
        data: Concatenated records of one member.
        layout: The CIFAR variant's layout.
        member: Member name, for error messages.

    Returns:
        ``(images, labels)``: uint8 ``[N, 32, 32, 3]`` and int32 ``[N]``.

    Raises:
        ValueError: If the size is not whole records or a label is out of range.
    """
    if len(data) % layout.record_bytes:
        raise ValueError(
            f"member {member}: {len(data)} bytes is not a multiple of the "
            f"{layout.record_bytes}-byte record size.")
    records = np.frombuffer(data, np.uint8).reshape(-1, layout.record_bytes)
    labels = records[:, layout.label_bytes - 1].astype(np.int32)
    if labels.size and labels.max() >= layout.num_classes:
        raise ValueError(
            f"member {member}: label {labels.max()} is out of range "
            f"[0, {layout.num_classes}).")
    planes = records[:, layout.label_bytes:].reshape(-1, 3, 32, 32)
    # Planes are channel-major (R, G, B); NHWC puts the channel last.
    return np.ascontiguousarray(planes.transpose(0, 2, 3, 1)), labels


def _decode_split(members: Dict[str, bytes], names: Sequence[str],
                  layout: BinaryLayout, archive: str):
    """Decodes and concatenates the members of one split, in order."""
    xs, ys = [], []
    for name in names:
        try:
            x, y = decode_records(members[name], layout, name)
        except ValueError as e:
            raise ValueError(f"{archive}: {e}") from e
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def load_cifar_binary(name: str, archive: str) -> Arrays:
    """Loads CIFAR-10/100 from the authors' binary ``.tar.gz`` archive.

    Args:
        name: ``'cifar10'`` or ``'cifar100'``.
        archive: Path of ``cifar-10-binary.tar.gz`` / ``cifar-100-binary.tar.gz``.

    Returns:
        ``(x_train, y_train, x_test, y_test, num_classes)``, uint8 NHWC
        images and int32 labels (CIFAR-100: fine labels).

    Raises:
        FileNotFoundError: If ``archive`` does not exist.
        ValueError: If the archive is truncated or corrupt, inflates past what
            60000 records can take, lacks a member, has a member that is not
            whole records, or has out-of-range labels.
    """
    layout = LAYOUTS[name]
    if not os.path.isfile(archive):
        raise FileNotFoundError(
            f"data.archive={archive!r} does not exist. " + missing_data_message(name))
    wanted = layout.train_members + layout.test_members
    members = read_archive_members(archive, wanted, layout.record_bytes, layout.max_tar_bytes)
    # Decode (and range-check) every member before returning anything.
    x_tr, y_tr = _decode_split(members, layout.train_members, layout, archive)
    x_te, y_te = _decode_split(members, layout.test_members, layout, archive)
    return x_tr, y_tr, x_te, y_te, layout.num_classes


# ----------------------------------------------------------------------------
# TFDS data dir.


def _getitems(source: Any, keys: Sequence[int]) -> Sequence[Dict[str, Any]]:
    """Fetches records in one batched call, falling back to one at a time.

    TFDS data sources read a batch of records in parallel through
    ``__getitems__``. Sources without it - and ``tfds.testing.mock_data``'s
    stand-in, whose ``__getitems__`` is attached unbound and raises
    ``TypeError`` (tfds 4.9.x) - are read record by record instead.
    """
    batched = getattr(source, "__getitems__", None)
    if batched is not None:
        try:
            return batched(list(keys))
        except TypeError:
            pass
    return [source[k] for k in keys]


def read_data_source(source: Any, num_classes: int, what: str = "source",
                     batch_size: int = _TFDS_BATCH) -> Tuple[np.ndarray, np.ndarray]:
    """Reads every record of a random-access source of ``image``/``label`` dicts.

    Args:
        source: Object with ``__len__`` and ``__getitem__`` (and ideally
            ``__getitems__``), e.g. a ``tfds.data_source`` split.
        num_classes: Labels must lie in ``[0, num_classes)``.
        what: Name of the source for error messages.
        batch_size: Records fetched per batched call.

    Returns:
        ``(images, labels)``: uint8 ``[N, H, W, C]`` and int32 ``[N]``.

    Raises:
        ValueError: If the source is empty or a label is out of range.
    """
    n = len(source)
    if n == 0:
        raise ValueError(f"{what}: empty split.")
    images, labels = None, np.empty(n, np.int32)
    for start in range(0, n, batch_size):
        batch = _getitems(source, range(start, min(start + batch_size, n)))
        chunk = np.stack([np.asarray(r["image"]) for r in batch])
        if images is None:  # allocate once, now that the image shape is known
            images = np.empty((n,) + chunk.shape[1:], chunk.dtype)
        images[start:start + len(batch)] = chunk
        labels[start:start + len(batch)] = [int(r["label"]) for r in batch]
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"{what}: labels span [{labels.min()}, {labels.max()}], outside "
            f"[0, {num_classes}).")
    return images, labels


def _open_split(name: str, data_dir: str, split: str):
    """Opens one prepared TFDS split without ever downloading."""
    # Lazy: only this reader needs it, and tensorflow-datasets is the optional 'cifar' extra.
    tfds = _extras.require("tensorflow_datasets", "cifar")

    try:
        return tfds.data_source(name, split=split, data_dir=data_dir,
                                download=False)
    except NotImplementedError as e:
        # TFDS's answer when the dir was prepared in its default TFRecord
        # format, which has no random access.
        raise ValueError(
            f"data.tfds_data_dir={data_dir!r}: {name} is not prepared in the "
            f"array_record format ({e}). " + missing_data_message(name)) from e


def load_cifar_tfds(name: str, data_dir: str) -> Arrays:
    """Loads CIFAR-10/100 from a prepared TFDS (array_record) data dir.

    Args:
        name: ``'cifar10'`` or ``'cifar100'``.
        data_dir: TFDS data dir holding ``<name>/<version>/``.

    Returns:
        ``(x_train, y_train, x_test, y_test, num_classes)``.

    Raises:
        FileNotFoundError: If ``data_dir`` has no ``name`` folder.
        ValueError: If the data is not readable as described.
    """
    if not os.path.isdir(os.path.join(data_dir, name)):
        raise FileNotFoundError(
            f"data.tfds_data_dir={data_dir!r} has no prepared {name} "
            f"(no folder {name}/ in it). " + missing_data_message(name))
    num_classes = LAYOUTS[name].num_classes
    splits = []
    for split in ("train", "test"):
        source = _open_split(name, data_dir, split)
        splits.extend(read_data_source(
            source, num_classes, f"{data_dir} {name}[{split}]"))
    return (*splits, num_classes)


def load_cifar_arrays(name: str, archive: str = "", tfds_data_dir: str = "") -> Arrays:
    """Loads CIFAR-10/100 from the binary archive if given, else from TFDS.

    Args:
        name: ``'cifar10'`` or ``'cifar100'``.
        archive: Path of the binary archive, or ``''``.
        tfds_data_dir: Prepared TFDS data dir, or ``''``.

    Returns:
        ``(x_train, y_train, x_test, y_test, num_classes)``.

    Raises:
        FileNotFoundError: If neither source is given or the given one is
            absent; the message says how to prepare the data.
        ValueError: If ``name`` is not a CIFAR name or the data is damaged.
    """
    if name not in LAYOUTS:
        raise ValueError(f"Not a CIFAR dataset: {name!r}; expected one of {list(CIFAR_NAMES)}.")
    if archive:
        return load_cifar_binary(name, archive)
    if tfds_data_dir:
        return load_cifar_tfds(name, tfds_data_dir)
    raise FileNotFoundError(
        f"No {name} data: data.archive and data.tfds_data_dir are both empty. "
        + missing_data_message(name))
