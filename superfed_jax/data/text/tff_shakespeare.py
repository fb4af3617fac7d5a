"""Reads TensorFlow Federated's Shakespeare archive (``shakespeare.tar.bz2``) as next-character windows.

The archive (what ``tff.simulation.datasets.shakespeare.load_data()`` downloads) holds two HDF5 files,
``shakespeare_train.h5`` and ``shakespeare_test.h5``. Each has a root group ``examples`` with one group
per client (a speaking role of a play), and in each client group a dataset ``snippets``: a 1-D array of
byte strings, UTF-8 lines of that role.

TFF's recipe turns them into token windows:

* ids: 0 is padding, TFF's 86 characters are 1..86 (in TFF's order, :data:`TFF_CHARS`), 87 is ``<bos>``,
  88 ``<eos>`` and 89 ``<oov>`` (any other character): 90 ids;
* each snippet becomes ``[bos] + ids + [eos]``, right-padded with 0 to a multiple of 81 tokens and cut into
  81-token pieces; a piece gives the input ``piece[:80]`` and the targets ``piece[1:]``;
* targets that are padding are not scored (-1). Every piece holds at least one real token, but a piece
  whose only real token is its first one (the ``<eos>`` of a snippet one token past a multiple of 81) has
  no scored target; such windows are kept, as in TFF's recipe, and counted in the notes.

The natural clients are the training file's client groups in sorted name order; a client with no
training window (no snippet) is dropped with a note. The test windows of all clients, those absent from
training included, are pooled. There is no validation split.

The archive is read in memory (nothing is extracted to disk), and the folder form reads the two files
in place. Reading needs h5py (``pip install 'superfed_jax[text]'``), imported only when a file is read.
"""
import io
import os
import tarfile
from typing import List, Tuple

import numpy as np

from superfed_jax import _extras
from superfed_jax.data.text.tokens import IGNORE, TokenData

__all__ = ["BOS", "EOS", "OOV", "PAD", "PIECE", "SEQ_LEN", "TEST_FILE", "TFF_CHARS", "TRAIN_FILE",
           "load_tff_shakespeare"]

TRAIN_FILE = "shakespeare_train.h5"
TEST_FILE = "shakespeare_test.h5"
# TFF's character vocabulary, in TFF's order (the order of its Shakespeare text generation tutorial);
# character i of this string has id i + 1.
TFF_CHARS = ("dhlptx@DHLPTX $(,048cgkoswCGKOSW[_#'/37;?bfjnrvzBFJNRVZ\"&*.26:\n"
             "aeimquyAEIMQUY]!%)-159\r")
PAD = 0
BOS = len(TFF_CHARS) + 1  # 87
EOS = BOS + 1  # 88
OOV = EOS + 1  # 89
SEQ_LEN = 80
PIECE = SEQ_LEN + 1
VOCAB = ("<pad>",) + tuple(TFF_CHARS) + ("<bos>", "<eos>", "<oov>")
# How many client names a note lists before "...".
_NAMES_SHOWN = 5
_EXPECTED = (f"TFF's shakespeare.tar.bz2, or a folder holding {TRAIN_FILE} and {TEST_FILE}")

# Character code (< 128; TFF's characters are all ASCII) -> id; everything else is <oov>.
_ASCII_IDS = np.full(128, OOV, np.int32)
for _i, _c in enumerate(TFF_CHARS):
    _ASCII_IDS[ord(_c)] = _i + 1
del _i, _c


def _names(names: List[str]) -> str:
    shown = ", ".join(names[:_NAMES_SHOWN])
    return shown + (", ..." if len(names) > _NAMES_SHOWN else "")


def _open_sources(path: str) -> Tuple[Tuple[str, object], Tuple[str, object]]:
    """((where, file) of train, (where, file) of test): paths in a folder, or in-memory members."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file or folder; expected {_EXPECTED}.")
    if os.path.isdir(path):
        files = [os.path.join(path, name) for name in (TRAIN_FILE, TEST_FILE)]
        missing = [name for name, file in zip((TRAIN_FILE, TEST_FILE), files) if not os.path.isfile(file)]
        if missing:
            raise FileNotFoundError(
                f"{path}: the folder has no {' and no '.join(missing)}; expected {_EXPECTED}.")
        return (files[0], files[0]), (files[1], files[1])
    try:
        archive = tarfile.open(path, "r:*")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ValueError(f"{path}: not a readable tar archive ({type(e).__name__}: {e}); expected "
                         f"{_EXPECTED}.") from e
    with archive:
        try:
            members = [m for m in archive.getmembers() if m.isfile()]
        except (tarfile.TarError, EOFError, OSError) as e:
            raise ValueError(f"{path}: damaged or truncated archive ({type(e).__name__}: {e}); "
                             "download or copy it again.") from e
        sources = []
        for name in (TRAIN_FILE, TEST_FILE):
            found = [m for m in members if os.path.basename(m.name) == name]
            if len(found) != 1:
                problem = "has no" if not found else f"has {len(found)} members named"
                raise ValueError(
                    f"{path}: the archive {problem} {name}; expected {_EXPECTED} (members: "
                    f"{_names(sorted(m.name for m in members)) or 'none'}).")
            where = f"{path}:{found[0].name}"
            try:
                data = archive.extractfile(found[0]).read()
            except (tarfile.TarError, EOFError, OSError) as e:
                raise ValueError(f"{where}: damaged or truncated archive member ({type(e).__name__}: "
                                 f"{e}); download or copy the archive again.") from e
            sources.append((where, io.BytesIO(data)))
    return sources[0], sources[1]


def _read_clients(h5py, where: str, file) -> Tuple[List[str], List[List[str]]]:
    """(client names in sorted order, each client's snippets as str) of one h5 file."""
    try:
        handle = h5py.File(file, "r")
    except OSError as e:
        raise ValueError(f"{where}: not a readable HDF5 file ({e}); expected {_EXPECTED}.") from e
    with handle:
        examples = handle.get("examples")
        if not isinstance(examples, h5py.Group):
            found = sorted(handle.keys())
            raise ValueError(
                f"{where}: no group 'examples' at the root (found {found}); TFF's Shakespeare h5 holds "
                "examples/<client>/snippets.")
        names = sorted(examples.keys())
        clients = []
        for name in names:
            group = examples[name]
            snippets = group.get("snippets") if isinstance(group, h5py.Group) else None
            if not isinstance(snippets, h5py.Dataset):
                raise ValueError(
                    f"{where}: client {name!r} has no dataset 'snippets' (examples/{name}/snippets); "
                    "each client group must hold its lines as a 1-D array of byte strings.")
            is_text = snippets.dtype.kind == "S" or h5py.check_string_dtype(snippets.dtype) is not None
            if snippets.ndim != 1 or not is_text:
                raise ValueError(
                    f"{where}: examples/{name}/snippets has shape {snippets.shape} and dtype "
                    f"{snippets.dtype}; expected a 1-D array of byte strings (UTF-8 lines).")
            texts = []
            for i, raw in enumerate(snippets[()]):
                raw = raw if isinstance(raw, bytes) else str(raw).encode("utf-8")
                try:
                    texts.append(raw.decode("utf-8"))
                except UnicodeDecodeError as e:
                    raise ValueError(
                        f"{where}: client {name!r}, snippet {i} is not UTF-8 text ({e}).") from e
            clients.append(texts)
    return names, clients


def _windows(clients: List[List[str]]):
    """TFF's recipe over every snippet: (x, y, client of each window, ids, character codes)."""
    texts = [text for snippets in clients for text in snippets]
    owner = np.repeat(np.arange(len(clients), dtype=np.int64), [len(s) for s in clients])
    lengths = np.array([len(text) for text in texts], np.int64)
    codes = np.frombuffer("".join(texts).encode("utf-32-le"), np.uint32)
    ids = np.where(codes < 128, _ASCII_IDS[np.minimum(codes, 127)], OOV).astype(np.int32)
    pieces = (lengths + 2 + PIECE - 1) // PIECE  # [bos] + text + [eos], rounded up to whole pieces
    starts = PIECE * (np.cumsum(pieces) - pieces)  # where each snippet begins in the padded buffer
    buffer = np.full(int(pieces.sum()) * PIECE, PAD, np.int32)
    buffer[starts] = BOS
    buffer[starts + lengths + 1] = EOS
    char_starts = np.cumsum(lengths) - lengths
    within = np.arange(codes.shape[0], dtype=np.int64) - np.repeat(char_starts, lengths)
    buffer[np.repeat(starts + 1, lengths) + within] = ids
    rows = buffer.reshape(-1, PIECE)
    x = np.ascontiguousarray(rows[:, :SEQ_LEN])
    y = np.ascontiguousarray(rows[:, 1:])
    y[y == PAD] = IGNORE
    return x, y, np.repeat(owner, pieces), ids, codes


def _oov_note(split: str, ids: np.ndarray, codes: np.ndarray) -> List[str]:
    unknown = codes[ids == OOV]
    if unknown.size == 0:
        return []
    chars = "".join(chr(c) for c in np.unique(unknown)[:20])
    return [f"{split}: {unknown.size} characters outside TFF's {len(TFF_CHARS)}-character vocabulary "
            f"became <oov> (id {OOV}): {chars!r}."]


def load_tff_shakespeare(path: str) -> TokenData:
    """Reads TFF's Shakespeare (archive or folder of the two h5 files) as 80-token windows.

    Args:
      path: TFF's ``shakespeare.tar.bz2`` (any tar compression), or a folder holding
        ``shakespeare_train.h5`` and ``shakespeare_test.h5``.

    Returns:
      A :class:`TokenData` with 90 ids, natural clients (client groups of the training file with at
      least one training window, in sorted order), pooled test windows and no validation split.

    Raises:
      FileNotFoundError: ``path`` does not exist, or the folder lacks one of the two files.
      ValueError: the archive lacks one of the two files or is damaged; an h5 file is unreadable, has
        no ``examples`` group, or a client without a 1-D byte-string ``snippets`` dataset; a snippet is
        not UTF-8; the training or test split has no window.
      ImportError: h5py is not installed (the message says what to install).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file or folder; expected {_EXPECTED}.")
    h5py = _extras.require("h5py", "text")
    (train_where, train_file), (test_where, test_file) = _open_sources(path)
    names, train_clients = _read_clients(h5py, train_where, train_file)
    _, test_clients = _read_clients(h5py, test_where, test_file)

    x_train, y_train, owner, train_ids, train_codes = _windows(train_clients)
    x_test, y_test, _, test_ids, test_codes = _windows(test_clients)
    for where, x in ((train_where, x_train), (test_where, x_test)):
        if x.shape[0] == 0:
            raise ValueError(f"{where}: no snippets in any client, so the split has no window; "
                             f"expected {_EXPECTED}.")

    has_windows = np.bincount(owner, minlength=len(names)) > 0
    kept = np.flatnonzero(has_windows)
    new_index = np.full(len(names), -1, np.int64)
    new_index[kept] = np.arange(kept.size)
    notes = []
    dropped = [names[i] for i in np.flatnonzero(~has_windows)]
    if dropped:
        notes.append(f"{train_where}: {len(dropped)} of {len(names)} clients have no training window "
                     f"and were dropped: {_names(dropped)}.")
    notes += _oov_note("train", train_ids, train_codes) + _oov_note("test", test_ids, test_codes)
    for split, y in (("train", y_train), ("test", y_test)):
        unscored = int(np.count_nonzero((y == IGNORE).all(axis=1)))
        if unscored:
            notes.append(f"{split}: {unscored} of {y.shape[0]} windows have no scored target (the "
                         "last piece of a snippet whose only real token is its input <eos>); kept, as "
                         "in TFF's recipe.")
    return TokenData(
        x_train=x_train, y_train=y_train, client_train=new_index[owner],
        x_val=None, y_val=None, x_test=x_test, y_test=y_test, vocab=VOCAB,
        client_names=tuple(names[i] for i in kept), notes=tuple(notes))
