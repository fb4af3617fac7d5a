"""Reads LEAF's Shakespeare JSON files (the data of SuperFed's Shakespeare runs) as 80-character windows.

``path`` is a folder with ``train/`` and ``test/`` subfolders, LEAF's ``data/shakespeare/data`` layout.
Every ``*.json`` file of a subfolder is read, in sorted file-name order. A file holds ``users`` (a list of
names) and ``user_data`` (name -> ``{"x": [...], "y": [...]}``); ``num_samples`` may be present and
``hierarchies`` is ignored. Each ``x`` is a string of 80 characters and each ``y`` the one character that
follows it.

The vocabulary is LEAF's 80 characters (:data:`LEAF_CHARS`: newline, space, punctuation, digits, A-Z,
a-z and '}'), id = position; there is no padding or out-of-vocabulary id, so any other character is an
error. An example's input is the 80 ids of ``x``; its targets are -1 at positions 0..78 and the id of
``y`` at position 79: only the next character after the whole window is scored, as in the reference
(whose targets are ``x[1:] + y`` but whose loss and accuracy read only the last position).

The natural clients are the users with at least one training example, in their order of appearance in
the training files (a user listed again in a later file adds to the same client); users without one are
dropped with a note. All test examples, of any user, are pooled. There is no validation split.
"""
import glob
import json
import os
from typing import Dict, List, Tuple

import numpy as np

from superfed_jax.data.text.tokens import IGNORE, TokenData

__all__ = ["LEAF_CHARS", "SEQ_LEN", "load_leaf_shakespeare"]

LEAF_CHARS = "\n !\"&'(),-.0123456789:;>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz}"
SEQ_LEN = 80
_NAMES_SHOWN = 5
_EXPECTED = ("a folder with train/ and test/ subfolders of LEAF Shakespeare JSON files "
             "({'users': [...], 'user_data': {user: {'x': [80-character strings], "
             "'y': [1-character strings]}}})")

# Character code (< 128; LEAF's characters are all ASCII) -> id, -1 for a character outside LEAF_CHARS.
_ASCII_IDS = np.full(128, -1, np.int32)
for _i, _c in enumerate(LEAF_CHARS):
    _ASCII_IDS[ord(_c)] = _i
del _i, _c


def _ids(text: str) -> np.ndarray:
    """The LEAF ids of the characters of `text`, -1 for a character outside the alphabet."""
    codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    return np.where(codes < 128, _ASCII_IDS[np.minimum(codes, 127)], -1).astype(np.int32)


def _json_files(path: str, split: str) -> List[str]:
    folder = os.path.join(path, split)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: no such folder; expected {_EXPECTED}.")
    files = sorted(glob.glob(os.path.join(glob.escape(folder), "*.json")))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.json file in the folder; expected {_EXPECTED}.")
    return files


def _check_user(file: str, user: str, data) -> Tuple[list, list]:
    """The user's (x, y) lists, checked for LEAF's shape (without the per-character check)."""
    if not isinstance(data, dict) or not isinstance(data.get("x"), list) or not isinstance(
            data.get("y"), list):
        raise ValueError(f"{file}: user_data[{user!r}] is not {{'x': [...], 'y': [...]}}; expected "
                         f"{_EXPECTED}.")
    x, y = data["x"], data["y"]
    if len(x) != len(y):
        raise ValueError(f"{file}: user {user!r} has {len(x)} x strings but {len(y)} y strings; each "
                         "x needs the one character that follows it.")
    for i, s in enumerate(x):
        if not isinstance(s, str) or len(s) != SEQ_LEN:
            got = f"{len(s)} characters" if isinstance(s, str) else type(s).__name__
            raise ValueError(f"{file}: user {user!r}, example {i}: x has {got}, expected a string of "
                             f"{SEQ_LEN} characters.")
    for i, s in enumerate(y):
        if not isinstance(s, str) or len(s) != 1:
            got = f"{len(s)} characters" if isinstance(s, str) else type(s).__name__
            raise ValueError(f"{file}: user {user!r}, example {i}: y has {got}, expected one "
                             "character.")
    return x, y


def _encode_user(file: str, user: str, x: list, y: list) -> Tuple[np.ndarray, np.ndarray]:
    """(x ids [n, 80], y ids [n]) of one user, refusing a character outside LEAF's alphabet."""
    x_ids = _ids("".join(x)).reshape(len(x), SEQ_LEN)
    y_ids = _ids("".join(y))
    for ids, strings, name in ((x_ids, x, "x"), (y_ids, y, "y")):
        if (ids < 0).any():
            flat = int(np.argmax(ids.reshape(-1) < 0))
            example, at = divmod(flat, SEQ_LEN if name == "x" else 1)
            char = strings[example][at]
            raise ValueError(
                f"{file}: user {user!r}, example {example}: {name} holds the character {char!r} "
                f"(U+{ord(char):04X}), which is not in LEAF's {len(LEAF_CHARS)}-character alphabet.")
    return x_ids, y_ids


def _read_split(path: str, split: str) -> List[Tuple[str, str, np.ndarray, np.ndarray]]:
    """[(file, user, x ids, y ids)] over every user entry of every file of one split, in order."""
    entries = []
    for file in _json_files(path, split):
        try:
            with open(file, encoding="utf-8") as f:
                content = json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{file}: not a JSON file ({type(e).__name__}: {e}); expected "
                             f"{_EXPECTED}.") from e
        if not isinstance(content, dict) or "users" not in content or "user_data" not in content:
            found = sorted(content) if isinstance(content, dict) else type(content).__name__
            raise ValueError(f"{file}: needs the keys 'users' and 'user_data' (found {found}); "
                             f"expected {_EXPECTED}.")
        users, user_data = content["users"], content["user_data"]
        if not isinstance(users, list) or not isinstance(user_data, dict):
            raise ValueError(f"{file}: 'users' must be a list and 'user_data' an object; expected "
                             f"{_EXPECTED}.")
        for user in users:
            if not isinstance(user, str) or user not in user_data:
                raise ValueError(f"{file}: user {user!r} of 'users' has no entry in 'user_data'.")
            x, y = _check_user(file, user, user_data[user])
            entries.append((file, user, *_encode_user(file, user, x, y)))
    return entries


def _stack(entries) -> Tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([e[2] for e in entries]) if entries else np.zeros((0, SEQ_LEN), np.int32)
    last = np.concatenate([e[3] for e in entries]) if entries else np.zeros(0, np.int32)
    y = np.full(x.shape, IGNORE, np.int32)
    y[:, -1] = last
    return x.astype(np.int32, copy=False), y


def load_leaf_shakespeare(path: str) -> TokenData:
    """Reads LEAF's Shakespeare train/ and test/ JSON folders as 80-character windows.

    Args:
      path: a folder holding ``train/`` and ``test/``, each with one or more LEAF JSON files.

    Returns:
      A :class:`TokenData` with LEAF's 80 ids, one client per user with training examples (order of
      appearance), the last position of each window scored, pooled test examples, no validation split.

    Raises:
      FileNotFoundError: ``path``, ``train/`` or ``test/`` is missing, or a subfolder has no ``*.json``.
      ValueError: a file is not JSON or not LEAF's shape (no ``users``/``user_data``, a user without
        data, ``x`` and ``y`` of different lengths, an ``x`` not of 80 characters, a ``y`` not of one),
        a character outside LEAF's alphabet, or a split with no example.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        what = "not a folder" if os.path.exists(path) else "no such folder"
        raise FileNotFoundError(f"{path}: {what}; expected {_EXPECTED}.")
    train = _read_split(path, "train")
    test = _read_split(path, "test")
    for split, entries in (("train", train), ("test", test)):
        if not any(e[2].shape[0] for e in entries):
            raise ValueError(f"{os.path.join(path, split)}: no example in any user of any file; "
                             f"expected {_EXPECTED}.")

    client_of: Dict[str, int] = {}
    listed: Dict[str, None] = {}  # every training user, in order of appearance
    for _, user, x_ids, _ in train:
        listed.setdefault(user)
        if x_ids.shape[0] and user not in client_of:
            client_of[user] = len(client_of)
    kept = [e for e in train if e[2].shape[0]]
    x_train, y_train = _stack(kept)
    client_train = np.repeat(np.array([client_of[e[1]] for e in kept], np.int64),
                             [e[2].shape[0] for e in kept])
    x_test, y_test = _stack(test)
    notes = []
    dropped = [user for user in listed if user not in client_of]
    if dropped:
        shown = ", ".join(dropped[:_NAMES_SHOWN]) + (", ..." if len(dropped) > _NAMES_SHOWN else "")
        notes.append(f"{os.path.join(path, 'train')}: {len(dropped)} of {len(listed)} users have no "
                     f"training example and were dropped: {shown}.")
    return TokenData(
        x_train=x_train, y_train=y_train, client_train=client_train,
        x_val=None, y_val=None, x_test=x_test, y_test=y_test, vocab=tuple(LEAF_CHARS),
        client_names=tuple(client_of), notes=tuple(notes))
