"""Loads an image classification dataset from a user-supplied ``.npz`` file.

The file must hold ``x_train``, ``y_train``, ``x_test`` and ``y_test``.
Images are ``[N, H, W, C]`` or greyscale ``[N, H, W]``; uint8 (0..255) or
float (kept as stored). Labels are integers ``[N]`` (or ``[N, 1]``, as Keras
saves them). The number of classes is the largest training label plus one;
a test label outside the training labels' range is refused. An optional
``client_id`` array (one integer per training example) names the client that
holds each training example; :func:`load_npz_client_ids` reads it for
``data.partition='natural'`` (docs/algorithm.md 6).

Everything is checked before it is used, and every problem is reported as a
``ValueError`` that names the file, the array and what is wrong: a bad file
should fail at load time, not as NaN losses hours into training. Pickled
(object) arrays are refused rather than unpickled, since unpickling runs code.
"""
import lzma
import zipfile
import zlib
from typing import Dict, Tuple

import numpy as np

__all__ = ["CLIENT_ID_KEY", "REQUIRED_KEYS", "load_npz_arrays", "load_npz_client_ids"]

REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test")
# The optional array of per-example client ids that data.partition='natural' reads.
CLIENT_ID_KEY = "client_id"


# The first bytes of the file say what it is, so a wrong file is named for what it is (numpy's own
# message for anything that is neither a zip nor an .npy file is "contains pickled data").
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"
_PICKLE_MAGIC = b"\x80"
# Labels become int32 and the model gets one output per class; a label past this is a damaged file.
MAX_LABEL = 2 ** 31 - 2
# What reading a damaged zip member can raise: a bad CRC or directory (BadZipFile), a broken deflate
# stream (zlib.error, lzma.LZMAError), a cut-off member (EOFError, OSError), a bad .npy header
# (ValueError), a damaged compression method field (NotImplementedError) or encryption flag
# (RuntimeError: "File is encrypted").
_MEMBER_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, ValueError,
                  NotImplementedError, RuntimeError)


def _file_kind(head: bytes) -> str:
    """What a file starting with `head` is, for messages: '' for a zip archive."""
    if head.startswith(_ZIP_MAGICS):
        return ""
    if head.startswith(_NPY_MAGIC):
        return "a single .npy array"
    if head.startswith(_PICKLE_MAGIC):
        return "a Python pickle (refused: unpickling runs code)"
    if not head:
        return "an empty file"
    return f"not a zip archive (it starts with bytes {head[:8]!r})"


def _open_npz(path: str):
    """Opens ``path`` as an npz archive, refusing anything else by what it is."""
    with open(path, "rb") as f:  # FileNotFoundError / IsADirectoryError pass through
        kind = _file_kind(f.read(8))
    if kind:
        raise ValueError(
            f"{path}: is {kind}, not an .npz archive with keys {list(REQUIRED_KEYS)} "
            "(write one with numpy.savez).")
    try:
        return np.load(path, allow_pickle=False)
    except _MEMBER_ERRORS as e:
        raise ValueError(
            f"{path}: damaged or truncated .npz (zip) archive: {e}; write or copy the file "
            "again.") from e


def _check_declared_size(path: str, npz, key: str) -> None:
    """Refuses a member whose header declares more data than the member holds.

    numpy allocates the declared shape before reading, so a damaged header claiming a huge shape
    would otherwise ask for terabytes instead of failing as the damaged file it is.
    """
    names = npz.zip.namelist()
    info = npz.zip.getinfo(f"{key}.npy" if f"{key}.npy" in names else key)
    with npz.zip.open(info) as member:
        version = np.lib.format.read_magic(member)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(member)
        header_bytes = member.tell()
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    held = info.file_size - header_bytes
    if declared > held:
        raise ValueError(
            f"{path}: array {key} declares shape {shape} of {dtype} ({declared} bytes) but holds "
            f"{held} bytes; the file is damaged or truncated, write or copy it again.")


def _read_member(path: str, npz, key: str) -> np.ndarray:
    """Reads one array, naming a pickled (object) array or a damaged member."""
    try:
        _check_declared_size(path, npz, key)
        return npz[key]
    except _MEMBER_ERRORS as e:
        if isinstance(e, ValueError) and "allow_pickle" in str(e):
            raise ValueError(
                f"{path}: {key} has a non-numeric (object) dtype, which "
                f"would need unpickling: {e}") from e
        raise ValueError(
            f"{path}: array {key} is damaged or truncated ({type(e).__name__}: {e}); write or "
            "copy the file again.") from e


def _read_arrays(path: str) -> Dict[str, np.ndarray]:
    """Reads the required arrays, refusing pickles and naming missing keys."""
    with _open_npz(path) as npz:
        missing = [k for k in REQUIRED_KEYS if k not in npz.files]
        if missing:
            raise ValueError(
                f"{path}: missing key {missing[0]!r} (missing: {missing}); an "
                f"npz dataset needs keys {list(REQUIRED_KEYS)}, found "
                f"{sorted(npz.files)}.")
        return {key: _read_member(path, npz, key) for key in REQUIRED_KEYS}


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
    if 0 in x.shape:
        raise ValueError(f"{path}: {key} has shape {x.shape}; height, width and channels must be >= 1.")
    if x.dtype.kind == "f":
        return _float_images_to_float32(path, key, x)
    return _integer_images_to_uint8(path, key, x)


def _float_images_to_float32(path: str, key: str, x: np.ndarray) -> np.ndarray:
    """Casts float pixels to float32, checking them *after* the cast.

    A float64 pixel beyond float32's range (~3.4e38) is finite before the cast and inf after it.
    """
    with np.errstate(over="ignore"):  # an overflow is reported below, naming the file
        x32 = x.astype(np.float32, copy=False)
    if np.all(np.isfinite(x32)):
        return x32
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{path}: {key} contains NaN or inf pixels.")
    largest = float(np.max(np.abs(x)))
    raise ValueError(
        f"{path}: {key} has pixels up to magnitude {largest:.3g}, beyond float32's range "
        f"({float(np.finfo(np.float32).max):.3g}), in which images are computed; rescale them "
        "(e.g. to [0, 1]).")


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
    if y.size and float(y.max()) > MAX_LABEL:
        raise ValueError(
            f"{path}: {key} has label {y.max()}; labels are class indices 0..num_classes-1 and must "
            f"be at most {MAX_LABEL}.")
    return y.astype(np.int32)


def _check_test_labels(path: str, y_train: np.ndarray, y_test: np.ndarray) -> int:
    """The number of classes, ``max(y_train) + 1``, refusing test labels the training set lacks.

    A stray test label would otherwise silently widen the model's head to classes never trained.
    """
    num_classes = int(y_train.max()) + 1
    outside = np.unique(y_test[y_test >= num_classes])
    if outside.size:
        shown = ", ".join(str(v) for v in outside[:10]) + (", ..." if outside.size > 10 else "")
        count = int(np.sum(y_test >= num_classes))
        raise ValueError(
            f"{path}: y_test has {count} label(s) outside the training labels' range "
            f"[0, {num_classes - 1}]: {shown}; every test class must occur in y_train (the model "
            f"has max(y_train) + 1 = {num_classes} classes). Fix or drop those test examples.")
    return num_classes


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
        (uint8 or float32), int32 labels, and ``max(y_train) + 1``.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If a key is missing, a dtype is non-numeric, a split is
            empty, images have the wrong rank, differ in shape or dtype between
            splits, or hold NaN/inf (also after the cast to float32), labels are
            non-integer, negative or huge, a test label exceeds the training labels,
            x and y lengths differ, or the file is not a readable .npz archive
            (garbage, a pickle, a single .npy, truncated, bad CRC).
    """
    arrays = _read_arrays(path)
    x_tr, y_tr = _check_split(path, "train", arrays)
    x_te, y_te = _check_split(path, "test", arrays)
    if x_tr.shape[1:] != x_te.shape[1:] or x_tr.dtype != x_te.dtype:
        raise ValueError(
            f"{path}: x_train images are {x_tr.dtype} {x_tr.shape[1:]} but "
            f"x_test images {x_te.dtype} {x_te.shape[1:]}; both splits must "
            "share dtype and [H, W, C].")
    num_classes = _check_test_labels(path, y_tr, y_te)
    return x_tr, y_tr, x_te, y_te, num_classes


def _check_client_ids(path: str, ids: np.ndarray, num_train: int) -> np.ndarray:
    """Validates the ``client_id`` array and returns it as int64 ``[N]``.

    Float ids are refused even when whole-numbered: an id is a name, and a float column is more likely
    a feature or a label stored under the wrong key than a client.
    """
    key, allowed = CLIENT_ID_KEY, "client ids must be integers >= 0, one per training example"
    if ids.dtype.kind not in "iu":
        raise ValueError(
            f"{path}: {key} has dtype {ids.dtype}; {allowed} (an integer dtype such as int32 or int64).")
    if ids.ndim != 1 or len(ids) != num_train:
        raise ValueError(
            f"{path}: {key} has shape {ids.shape} but y_train has {num_train} labels; {allowed}, "
            f"shape ({num_train},).")
    if ids.size and ids.min() < 0:
        row = int(np.argmax(ids < 0))
        raise ValueError(
            f"{path}: {key} has negative id {int(ids[row])} (training example {row}); {allowed}.")
    if ids.size and ids.dtype == np.uint64 and ids.max() > np.iinfo(np.int64).max:
        raise ValueError(
            f"{path}: {key} has id {int(ids.max())}; {allowed} and at most {np.iinfo(np.int64).max}.")
    return ids.astype(np.int64)


def load_npz_client_ids(path: str, num_train: int) -> np.ndarray:
    """Reads and validates the ``client_id`` array of an ``.npz`` dataset.

    Args:
        path: Path of the ``.npz`` file (already read by :func:`load_npz_arrays`).
        num_train: Number of training examples (``len(y_train)``).

    Returns:
        int64 ``[num_train]``: the client id of each training example, in file order.

    Raises:
        ValueError: Naming the file and ``client_id`` when the array is missing, not of an integer dtype,
            not one id per training example, negative, beyond int64, or damaged.
    """
    with _open_npz(path) as archive:
        if CLIENT_ID_KEY not in archive.files:
            raise ValueError(
                f"{path}: data.partition='natural' needs an array {CLIENT_ID_KEY!r} (an integer client "
                f"id >= 0 for each of the {num_train} training examples), found keys "
                f"{sorted(archive.files)}; add it (numpy.savez(..., {CLIENT_ID_KEY}=ids)) or use "
                "another data.partition.")
        ids = _read_member(path, archive, CLIENT_ID_KEY)
    return _check_client_ids(path, ids, num_train)
