"""Reads a word-level corpus in Penn Treebank's text layout as windows over one token stream per split.

``path`` is a folder with ``train.txt``, ``valid.txt`` and ``test.txt`` (UTF-8). Each line is a sentence
of whitespace-separated tokens; ``<eos>`` is appended at the end of every line, so a blank line gives
only ``<eos>``. This is how the standard (Mikolov) PTB files are read by the word-level TCN code.

The vocabulary is the training file's tokens in order of first appearance (``<eos>`` included). A word
of the validation or test file that is not in it becomes ``<unk>``, which is appended to the vocabulary
only when the training file lacks it and some word needs it (PTB's training file has ``<unk>``).

Each split is one stream, cut by :func:`~superfed_jax.data.text.tokens.stream_windows` into windows of
``seq_len`` tokens that score ``scored`` new targets each (every target once). There are no natural
clients: ``client_train`` is None and the caller splits the training windows (contiguously, as the
reference splits the stream).
"""
import os
from typing import Dict, List

import numpy as np

from superfed_jax.data.text.tokens import TokenData, stream_windows

__all__ = ["EOS", "FILES", "UNK", "load_word_text"]

EOS = "<eos>"
UNK = "<unk>"
FILES = ("train.txt", "valid.txt", "test.txt")
_EXPECTED = ("a folder with train.txt, valid.txt and test.txt (Penn Treebank layout: one sentence per "
             "line, whitespace-separated tokens)")


def _read_tokens(file: str) -> List[str]:
    """The tokens of a text file, ``<eos>`` after every line."""
    tokens: List[str] = []
    words = 0
    try:
        with open(file, encoding="utf-8") as f:
            for line in f:
                line_words = line.split()
                words += len(line_words)
                tokens.extend(line_words)
                tokens.append(EOS)
    except UnicodeDecodeError as e:
        raise ValueError(f"{file}: not UTF-8 text ({e}); expected {_EXPECTED}.") from e
    if words == 0:
        raise ValueError(f"{file}: the file has no tokens (only whitespace or nothing); expected "
                         f"{_EXPECTED}.")
    return tokens


def load_word_text(path: str, *, seq_len: int = 80, scored: int = 40, max_vocab: int = 0) -> TokenData:
    """Reads train/valid/test text files as token windows.

    Args:
      path: the folder holding ``train.txt``, ``valid.txt`` and ``test.txt``.
      seq_len: window length.
      scored: targets scored per window after the first (see ``stream_windows``).
      max_vocab: the largest vocabulary accepted (``<unk>`` included if added); 0 for no cap.

    Returns:
      A :class:`TokenData` without clients, with a validation split.

    Raises:
      FileNotFoundError: ``path`` or one of the three files is missing.
      ValueError: a file is not UTF-8 or has no tokens; the vocabulary is larger than ``max_vocab``;
        a bad ``seq_len``, ``scored`` or ``max_vocab``.
    """
    path = os.fspath(path)
    if isinstance(max_vocab, bool) or not isinstance(max_vocab, (int, np.integer)) or max_vocab < 0:
        raise ValueError(f"load_word_text: max_vocab must be an integer >= 0 (0: no cap), got "
                         f"{max_vocab!r}.")
    if not os.path.isdir(path):
        what = "not a folder" if os.path.exists(path) else "no such folder"
        raise FileNotFoundError(f"{path}: {what}; expected {_EXPECTED}.")
    files = [os.path.join(path, name) for name in FILES]
    missing = [name for name, file in zip(FILES, files) if not os.path.isfile(file)]
    if missing:
        raise FileNotFoundError(f"{path}: no {' and no '.join(missing)} in the folder; expected "
                                f"{_EXPECTED}.")
    stream_windows(np.zeros(0, np.int32), seq_len, scored)  # checks seq_len and scored before reading
    train, valid, test = (_read_tokens(file) for file in files)

    index: Dict[str, int] = {token: i for i, token in enumerate(dict.fromkeys(train))}
    vocab = list(index)
    train_ids = np.fromiter((index[t] for t in train), np.int64, len(train))
    held_out = []
    for tokens in (valid, test):
        ids = np.fromiter((index.get(t, -1) for t in tokens), np.int64, len(tokens))
        if (ids < 0).any():
            if UNK not in index:
                index[UNK] = len(vocab)
                vocab.append(UNK)
            ids[ids < 0] = index[UNK]
        held_out.append(ids)
    if max_vocab and len(vocab) > max_vocab:
        raise ValueError(f"{files[0]}: the vocabulary has {len(vocab)} tokens"
                         f"{' (<unk> included)' if UNK in vocab else ''}, more than max_vocab="
                         f"{max_vocab}; raise the cap (0: none) or use a smaller corpus.")
    x_train, y_train = stream_windows(train_ids, seq_len, scored)
    x_val, y_val = stream_windows(held_out[0], seq_len, scored)
    x_test, y_test = stream_windows(held_out[1], seq_len, scored)
    return TokenData(
        x_train=x_train, y_train=y_train, client_train=None, x_val=x_val, y_val=y_val,
        x_test=x_test, y_test=y_test, vocab=tuple(vocab), client_names=None, notes=())
