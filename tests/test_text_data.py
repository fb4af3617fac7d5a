"""The text readers (superfed_jax/data/text): token windows, TFF's Shakespeare h5, LEAF JSON, word text.

Every input is built here in tmp_path (tiny h5 files, a tar.bz2, JSON and text files) and every expected
array is written out by hand, so the tests need neither the real archives nor network access.
"""
import json
import sys
import tarfile

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from superfed_jax.data.text import (TokenData, load_leaf_shakespeare, load_tff_shakespeare,
                                    load_word_text, stream_windows)
from superfed_jax.data.text import tff_shakespeare as tff

h5py = pytest.importorskip("h5py")

N = -1  # a target that is not scored


def row(*parts, length=80, fill=0):
    """A row of `length` ids: the concatenated parts, padded with `fill`."""
    values = [v for part in parts for v in (part if isinstance(part, list) else [part])]
    assert len(values) <= length
    return values + [fill] * (length - len(values))


# ----------------------------------------------------------------------------------- stream_windows


STREAM = np.arange(10, 20)  # tokens 10..19; the target at stream position p is 10 + p


def test_windows_with_a_shifted_final_window():
    x, y = stream_windows(STREAM, 4, 2)  # starts 0, 2, 4 and the final one at 10 - 1 - 4 = 5
    np.testing.assert_array_equal(x, [[10, 11, 12, 13], [12, 13, 14, 15], [14, 15, 16, 17],
                                      [15, 16, 17, 18]])
    np.testing.assert_array_equal(y, [[11, 12, 13, 14], [N, N, 15, 16], [N, N, 17, 18],
                                      [N, N, N, 19]])
    assert x.dtype == np.int32 and y.dtype == np.int32


def test_windows_that_fit_exactly_need_no_final_window():
    x, y = stream_windows(STREAM[:9], 4, 2)  # targets 1..8: windows at 0, 2, 4 score them all
    np.testing.assert_array_equal(x, [[10, 11, 12, 13], [12, 13, 14, 15], [14, 15, 16, 17]])
    np.testing.assert_array_equal(y, [[11, 12, 13, 14], [N, N, 15, 16], [N, N, 17, 18]])


def test_windows_without_context_do_not_overlap_but_the_last():
    x, y = stream_windows(STREAM, 3, 3)  # starts 0, 3, 6 (targets 1..9), nothing left
    np.testing.assert_array_equal(x, [[10, 11, 12], [13, 14, 15], [16, 17, 18]])
    np.testing.assert_array_equal(y, [[11, 12, 13], [14, 15, 16], [17, 18, 19]])
    x, y = stream_windows(STREAM[:9], 3, 3)  # starts 0, 3; targets 7-8 left: final window at 5
    np.testing.assert_array_equal(x, [[10, 11, 12], [13, 14, 15], [15, 16, 17]])
    np.testing.assert_array_equal(y, [[11, 12, 13], [14, 15, 16], [N, 17, 18]])


def test_a_stream_of_exactly_one_window():
    x, y = stream_windows(STREAM[:5], 4, 1)
    np.testing.assert_array_equal(x, [[10, 11, 12, 13]])
    np.testing.assert_array_equal(y, [[11, 12, 13, 14]])


def test_a_short_stream_is_one_padded_window():
    x, y = stream_windows(STREAM[:3], 5, 2)
    np.testing.assert_array_equal(x, [[10, 11, 12, 0, 0]])
    np.testing.assert_array_equal(y, [[11, 12, N, N, N]])


@pytest.mark.parametrize("length", [0, 1])
def test_a_stream_without_targets_has_no_window(length):
    x, y = stream_windows(STREAM[:length], 4, 2)
    assert x.shape == y.shape == (0, 4)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 60), st.integers(1, 12), st.data())
def test_every_target_is_scored_exactly_once(length, seq_len, data):
    scored = data.draw(st.integers(1, seq_len))
    rng = np.random.default_rng(length * 1000 + seq_len * 10 + scored)
    stream = rng.permutation(1000)[:length] + 1  # distinct ids: a target's value says its position
    position = {int(v): p for p, v in enumerate(stream)}
    x, y = stream_windows(stream, seq_len, scored)
    assert x.shape == y.shape and x.shape[1] == seq_len
    hit = y >= 0
    targets = sorted(position[int(v)] for v in y[hit])
    assert targets == list(range(1, length))  # each of stream[1:] once, nothing else
    for i in range(x.shape[0]):  # each window is a contiguous run of the stream, targets one ahead
        real = x[i][x[i] > 0]
        start = position[int(real[0])]
        np.testing.assert_array_equal(real, stream[start:start + real.size])
        for t in np.flatnonzero(hit[i]):
            assert position[int(y[i, t])] == position[int(x[i, t])] + 1
            if i > 0:  # every window after the first keeps seq_len - scored positions of context
                assert t >= seq_len - scored


@pytest.mark.parametrize("stream, seq_len, scored, problem", [
    (np.zeros((2, 3), np.int32), 4, 2, "1-D"),
    (np.array([0.5, 1.0]), 4, 2, "integer token ids"),
    (np.array([3, -1, 2]), 4, 2, "token ids must lie"),
    (STREAM, 0, 1, "seq_len must be"),
    (STREAM, 4, 0, "scored must be"),
    (STREAM, 4, 5, "scored must be"),
    (STREAM, 4.0, 2, "seq_len must be"),
])
def test_stream_windows_refuses_bad_arguments(stream, seq_len, scored, problem):
    with pytest.raises(ValueError, match=problem):
        stream_windows(stream, seq_len, scored)


# ------------------------------------------------------------------------------ TFF Shakespeare h5

# Ids of the characters used below, from TFF's order "dhlptx@...": d=1, h=2, p=4, t=5; bos 87, eos 88,
# oov 89, pad 0.
D, H, P, T, BOS, EOS, OOV = 1, 2, 4, 5, 87, 88, 89

TRAIN = {  # client -> snippets (UTF-8 text)
    "A_ROLE": ["h" * 100, "d}\u00e9"],  # 100 chars: two pieces; '}' and 'é' are outside the vocabulary
    "B_ROLE": ["", "dh"],  # an empty snippet is [bos, eos]
    "C_ROLE": [],  # no training snippet: dropped
}
TEST = {
    "A_ROLE": ["p"],
    "C_ROLE": ["t" * 80],  # 82 tokens: the second piece is [eos, pad...], no scored target
}


def write_h5(file, clients, raw=None):
    """An h5 in TFF's layout: examples/<client>/snippets, fixed-length byte strings."""
    with h5py.File(file, "w") as f:
        examples = f.create_group("examples")
        for name, snippets in clients.items():
            data = [s.encode("utf-8") for s in snippets]
            examples.create_group(name).create_dataset(
                "snippets", data=np.array(data, dtype=f"S{max([len(d) for d in data] + [1])}"))
        if raw:
            for name, data in raw.items():
                examples.create_group(name).create_dataset("snippets", data=data)
    return file


def write_folder(folder, train=TRAIN, test=TEST):
    folder.mkdir(exist_ok=True)
    write_h5(folder / tff.TRAIN_FILE, train)
    write_h5(folder / tff.TEST_FILE, test)
    return folder


def write_archive(tmp_path, names=(tff.TRAIN_FILE, tff.TEST_FILE), prefix=""):
    folder = write_folder(tmp_path / "h5")
    archive = tmp_path / "shakespeare.tar.bz2"
    with tarfile.open(archive, "w:bz2") as tar:
        for name in names:
            tar.add(folder / name, arcname=prefix + name)
    return archive


EXPECTED_TRAIN_X = [
    row(BOS, [H] * 79),  # A, "h"*100, piece 1 = [bos, chars 0..79]: x = bos + chars 0..78
    row([H] * 20, EOS),  # piece 2 = [chars 80..99, eos, pad * 60]
    row(BOS, D, OOV, OOV, EOS),  # A, "d}é"
    row(BOS, EOS),  # B, ""
    row(BOS, D, H, EOS),  # B, "dh"
]
EXPECTED_TRAIN_Y = [
    row([H] * 80, fill=N),
    row([H] * 19, EOS, fill=N),
    row(D, OOV, OOV, EOS, fill=N),
    row(EOS, fill=N),
    row(D, H, EOS, fill=N),
]


def test_tff_recipe_by_hand(tmp_path):
    data = load_tff_shakespeare(str(write_folder(tmp_path / "data")))
    assert isinstance(data, TokenData)
    # "h"*100 -> [bos, h*100, eos, pad*60] = 162 tokens = 2 pieces of 81: [bos, h*80] and
    # [h*20, eos, pad*60]; x = piece[:80], y = piece[1:] with pad targets -1.
    np.testing.assert_array_equal(data.x_train, EXPECTED_TRAIN_X)
    np.testing.assert_array_equal(data.y_train, EXPECTED_TRAIN_Y)
    np.testing.assert_array_equal(data.client_train, [0, 0, 0, 1, 1])
    assert data.client_names == ("A_ROLE", "B_ROLE")
    np.testing.assert_array_equal(data.x_test, [row(BOS, P, EOS), row(BOS, [T] * 79), row(EOS)])
    np.testing.assert_array_equal(data.y_test, [row(P, EOS, fill=N), row([T] * 80, fill=N),
                                                row(fill=N)])
    assert data.x_val is None and data.y_val is None
    assert data.x_train.dtype == np.int32 and data.y_train.dtype == np.int32
    assert data.client_train.dtype == np.int64
    assert len(data.vocab) == 90
    assert data.vocab[:3] == ("<pad>", "d", "h") and data.vocab[87:] == ("<bos>", "<eos>", "<oov>")
    notes = "\n".join(data.notes)
    assert "1 of 3 clients have no training window and were dropped: C_ROLE" in notes
    assert "2 characters outside" in notes and "'}\u00e9'" in notes
    assert "test: 1 of 3 windows have no scored target" in notes


def test_tff_archive_reads_like_the_folder(tmp_path):
    from_folder = load_tff_shakespeare(str(write_folder(tmp_path / "h5")))
    from_archive = load_tff_shakespeare(str(write_archive(tmp_path)))
    for field in ("x_train", "y_train", "client_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(from_folder, field), getattr(from_archive, field))
    assert from_archive.vocab == from_folder.vocab
    assert from_archive.client_names == from_folder.client_names
    assert len(from_archive.notes) == len(from_folder.notes)  # the same notes, naming another source
    assert "shakespeare.tar.bz2:shakespeare_train.h5: 1 of 3 clients" in from_archive.notes[0]
    assert not (tmp_path / tff.TRAIN_FILE).exists()  # nothing extracted next to the archive


def test_tff_archive_members_in_a_subfolder(tmp_path):
    data = load_tff_shakespeare(str(write_archive(tmp_path, prefix="shakespeare/")))
    np.testing.assert_array_equal(data.x_train, EXPECTED_TRAIN_X)


def test_tff_test_clients_absent_from_training_still_count(tmp_path):
    # C_ROLE has no training snippet; its test windows are pooled all the same (rows 2-3 above).
    data = load_tff_shakespeare(str(write_folder(tmp_path / "data")))
    assert data.x_test.shape[0] == 3 and "C_ROLE" not in data.client_names


def test_tff_vlen_strings_are_read_too(tmp_path):
    folder = write_folder(tmp_path / "data")
    with h5py.File(folder / tff.TRAIN_FILE, "w") as f:
        f.create_dataset("examples/X/snippets", data=["dh", ""], dtype=h5py.string_dtype())
    data = load_tff_shakespeare(str(folder))
    np.testing.assert_array_equal(data.x_train, [row(BOS, D, H, EOS), row(BOS, EOS)])
    assert data.client_names == ("X",)


def test_tff_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_tff_shakespeare(str(tmp_path / "nowhere.tar.bz2"))


def test_tff_folder_without_the_test_file(tmp_path):
    folder = write_folder(tmp_path / "data")
    (folder / tff.TEST_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="no shakespeare_test.h5"):
        load_tff_shakespeare(str(folder))


def test_tff_archive_without_the_two_files(tmp_path):
    archive = write_archive(tmp_path, names=(tff.TRAIN_FILE,))
    with pytest.raises(ValueError, match="archive has no shakespeare_test.h5") as error:
        load_tff_shakespeare(str(archive))
    assert str(archive) in str(error.value)


def test_tff_not_an_archive(tmp_path):
    file = tmp_path / "shakespeare.tar.bz2"
    file.write_text("not an archive")
    with pytest.raises(ValueError, match="not a readable tar archive"):
        load_tff_shakespeare(str(file))


def test_tff_not_an_h5_file(tmp_path):
    folder = write_folder(tmp_path / "data")
    (folder / tff.TEST_FILE).write_bytes(b"garbage" * 10)
    with pytest.raises(ValueError, match="shakespeare_test.h5: not a readable HDF5 file"):
        load_tff_shakespeare(str(folder))


def test_tff_h5_without_examples(tmp_path):
    folder = write_folder(tmp_path / "data")
    with h5py.File(folder / tff.TRAIN_FILE, "w") as f:
        f.create_group("clients")
    with pytest.raises(ValueError, match=r"shakespeare_train.h5: no group 'examples' .*'clients'"):
        load_tff_shakespeare(str(folder))


def test_tff_client_without_snippets(tmp_path):
    folder = write_folder(tmp_path / "data")
    with h5py.File(folder / tff.TRAIN_FILE, "a") as f:
        f.create_group("examples/D_ROLE").create_dataset("lines", data=np.array([b"x"]))
    with pytest.raises(ValueError, match="client 'D_ROLE' has no dataset 'snippets'"):
        load_tff_shakespeare(str(folder))


def test_tff_snippets_that_are_not_strings(tmp_path):
    folder = write_folder(tmp_path / "data")
    write_h5(folder / tff.TRAIN_FILE, {}, raw={"D_ROLE": np.arange(3)})
    with pytest.raises(ValueError, match="examples/D_ROLE/snippets has shape .* expected a 1-D array"):
        load_tff_shakespeare(str(folder))


def test_tff_bytes_that_are_not_utf8(tmp_path):
    folder = write_folder(tmp_path / "data")
    write_h5(folder / tff.TEST_FILE, {}, raw={"D_ROLE": np.array([b"ok", b"bad \xff"])})
    with pytest.raises(ValueError, match="client 'D_ROLE', snippet 1 is not UTF-8"):
        load_tff_shakespeare(str(folder))


@pytest.mark.parametrize("split", ["train", "test"])
def test_tff_empty_split(tmp_path, split):
    train, test = (({"A": []}, TEST) if split == "train" else (TRAIN, {}))
    folder = write_folder(tmp_path / "data", train, test)
    with pytest.raises(ValueError, match=f"shakespeare_{split}.h5: no snippets in any client"):
        load_tff_shakespeare(str(folder))


def test_tff_without_h5py(tmp_path, monkeypatch):
    folder = write_folder(tmp_path / "data")
    for name in [name for name in sys.modules if name == "h5py" or name.startswith("h5py.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install 'superfed_jax\[text\]'") as error:
        load_tff_shakespeare(str(folder))
    assert "h5py" in str(error.value) and isinstance(error.value.__cause__, ImportError)


# ------------------------------------------------------------------------------------ LEAF JSON

# LEAF ids: '\n' 0, ' ' 1, 'A' 25, 'a' 53, 'b' 54, 'z' 78, '}' 79.
X_A = "a" * 80
X_B = "A" * 40 + " " * 40
X_C = "z" * 79 + "\n"


def write_leaf(root, train_files, test_files):
    for split, files in (("train", train_files), ("test", test_files)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (root / split / name).write_text(
                content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return root


def leaf_file(users):
    """LEAF's shape from {user: [(x, y), ...]}."""
    return {"users": list(users), "num_samples": [len(v) for v in users.values()],
            "hierarchies": [], "user_data": {u: {"x": [x for x, _ in v], "y": [y for _, y in v]}
                                              for u, v in users.items()}}


LEAF_TRAIN = {  # read in sorted name order: a_first.json, then b_second.json
    "b_second.json": leaf_file({"u3": [(X_C, "}")]}),
    "a_first.json": leaf_file({"u1": [(X_A, "b"), (X_B, "a")], "u2": []}),
}
LEAF_TEST = {"test.json": leaf_file({"u2": [(X_B, "\n")], "u1": [(X_A, "z")]})}


def test_leaf_by_hand(tmp_path):
    data = load_leaf_shakespeare(str(write_leaf(tmp_path, LEAF_TRAIN, LEAF_TEST)))
    np.testing.assert_array_equal(data.x_train, [[53] * 80, [25] * 40 + [1] * 40, [78] * 79 + [0]])
    np.testing.assert_array_equal(data.y_train, [[N] * 79 + [54], [N] * 79 + [53], [N] * 79 + [79]])
    np.testing.assert_array_equal(data.client_train, [0, 0, 1])
    assert data.client_names == ("u1", "u3")
    np.testing.assert_array_equal(data.x_test, [[25] * 40 + [1] * 40, [53] * 80])
    np.testing.assert_array_equal(data.y_test, [[N] * 79 + [0], [N] * 79 + [78]])
    assert data.x_val is None and data.y_val is None
    assert len(data.vocab) == 80 and data.vocab[0] == "\n" and data.vocab[79] == "}"
    assert data.x_train.dtype == np.int32 and data.client_train.dtype == np.int64
    assert data.notes == (f"{tmp_path / 'train'}: 1 of 3 users have no training example and were "
                          "dropped: u2.",)


def test_leaf_user_in_two_files_is_one_client(tmp_path):
    train = {"a.json": leaf_file({"u1": [(X_A, "b")]}), "b.json": leaf_file({"u2": [(X_B, "a")],
                                                                             "u1": [(X_C, "a")]})}
    data = load_leaf_shakespeare(str(write_leaf(tmp_path, train, LEAF_TEST)))
    np.testing.assert_array_equal(data.client_train, [0, 1, 0])
    assert data.client_names == ("u1", "u2") and data.notes == ()


def bad_user(**data):
    return {"users": ["u1"], "user_data": {"u1": data}}


@pytest.mark.parametrize("content, problem", [
    ("{not json", "not a JSON file"),
    ({"user_data": {}}, "needs the keys 'users' and 'user_data'"),
    ({"users": ["u1"]}, "needs the keys 'users' and 'user_data'"),
    ({"users": ["u1"], "user_data": {}}, "user 'u1' of 'users' has no entry in 'user_data'"),
    (bad_user(x=[X_A]), r"user_data\['u1'\] is not"),
    (bad_user(x=[X_A, X_B], y=["a"]), "user 'u1' has 2 x strings but 1 y strings"),
    (bad_user(x=[X_A, "abc"], y=["a", "b"]), "user 'u1', example 1: x has 3 characters, expected"),
    (bad_user(x=[X_A], y=["ab"]), "user 'u1', example 0: y has 2 characters, expected one"),
    (bad_user(x=[X_A], y=[5]), "user 'u1', example 0: y has int, expected one"),
    (bad_user(x=[X_A, "a" * 7 + "@" + "a" * 72], y=["a", "b"]),
     r"user 'u1', example 1: x holds the character '@' \(U\+0040\), which is not in LEAF"),
    (bad_user(x=[X_A], y=["\u00e9"]), r"example 0: y holds the character '\u00e9'"),
])
def test_leaf_bad_json(tmp_path, content, problem):
    write_leaf(tmp_path, {"a.json": leaf_file({"u0": [(X_A, "a")]}), "bad.json": content}, LEAF_TEST)
    with pytest.raises(ValueError, match=problem) as error:
        load_leaf_shakespeare(str(tmp_path))
    assert "bad.json" in str(error.value)


def test_leaf_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_leaf_shakespeare(str(tmp_path / "nowhere"))


def test_leaf_missing_test_folder(tmp_path):
    (tmp_path / "test").mkdir()
    write_leaf(tmp_path, LEAF_TRAIN, {})
    (tmp_path / "test").rmdir()
    with pytest.raises(FileNotFoundError, match="test: no such folder"):
        load_leaf_shakespeare(str(tmp_path))


@pytest.mark.parametrize("split", ["train", "test"])
def test_leaf_folder_without_json(tmp_path, split):
    files = {"notes.txt": "hello"}
    write_leaf(tmp_path, files if split == "train" else LEAF_TRAIN, files if split == "test" else LEAF_TEST)
    with pytest.raises(FileNotFoundError, match=f"{split}: no \\*.json file in the folder"):
        load_leaf_shakespeare(str(tmp_path))


@pytest.mark.parametrize("split", ["train", "test"])
def test_leaf_empty_split(tmp_path, split):
    empty = {"e.json": leaf_file({"u9": []})}
    write_leaf(tmp_path, empty if split == "train" else LEAF_TRAIN, empty if split == "test" else LEAF_TEST)
    with pytest.raises(ValueError, match=f"{split}: no example in any user"):
        load_leaf_shakespeare(str(tmp_path))


# ------------------------------------------------------------------------------------ word text


def write_text(folder, train="a b a\n\nc b\n", valid="a z\n", test="q c"):
    folder.mkdir(exist_ok=True)
    for name, text in (("train.txt", train), ("valid.txt", valid), ("test.txt", test)):
        if text is not None:
            (folder / name).write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return folder


def test_word_text_by_hand(tmp_path):
    # train tokens: a b a <eos> <eos> c b <eos> -> vocab a 0, b 1, <eos> 2, c 3; stream 0 1 0 2 2 3 1 2.
    # valid "a z" -> 0 <unk> 2 and test "q c" (no final newline) -> <unk> 3 2, <unk> appended as 4.
    data = load_word_text(str(write_text(tmp_path / "ptb")), seq_len=4, scored=2)
    assert data.vocab == ("a", "b", "<eos>", "c", "<unk>")
    np.testing.assert_array_equal(data.x_train, [[0, 1, 0, 2], [0, 2, 2, 3], [2, 2, 3, 1]])
    np.testing.assert_array_equal(data.y_train, [[1, 0, 2, 2], [N, N, 3, 1], [N, N, N, 2]])
    np.testing.assert_array_equal(data.x_val, [[0, 4, 2, 0]])
    np.testing.assert_array_equal(data.y_val, [[4, 2, N, N]])
    np.testing.assert_array_equal(data.x_test, [[4, 3, 2, 0]])
    np.testing.assert_array_equal(data.y_test, [[3, 2, N, N]])
    assert data.client_train is None and data.client_names is None and data.notes == ()
    assert data.x_train.dtype == np.int32 and data.y_val.dtype == np.int32


def test_word_text_keeps_the_training_unk_and_adds_none_unneeded(tmp_path):
    data = load_word_text(str(write_text(tmp_path / "a", train="x <unk> y\n", valid="y q\n")),
                          seq_len=3, scored=1)
    assert data.vocab == ("x", "<unk>", "y", "<eos>")
    np.testing.assert_array_equal(data.x_val, [[2, 1, 3]])
    data = load_word_text(str(write_text(tmp_path / "b", train="x y\n", valid="y\n", test="x\n")),
                          seq_len=3, scored=1)
    assert data.vocab == ("x", "y", "<eos>")


def test_word_text_default_windows(tmp_path):
    words = " ".join(f"w{i}" for i in range(199))  # 199 words + <eos> = a stream of 200 tokens
    data = load_word_text(str(write_text(tmp_path / "ptb", train=words + "\n")))
    assert data.x_train.shape == (4, 80)  # starts 0, 40, 80 (targets 1..160), 119 (targets 161..199)
    assert (data.y_train >= 0).sum() == 199


def test_word_text_vocabulary_cap(tmp_path):
    folder = write_text(tmp_path / "ptb")
    assert len(load_word_text(str(folder), seq_len=4, scored=2, max_vocab=5).vocab) == 5
    with pytest.raises(ValueError, match="vocabulary has 5 tokens .*more than max_vocab=4"):
        load_word_text(str(folder), seq_len=4, scored=2, max_vocab=4)
    with pytest.raises(ValueError, match="max_vocab must be an integer >= 0"):
        load_word_text(str(folder), max_vocab=-1)


def test_word_text_missing_path_and_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_word_text(str(tmp_path / "nowhere"))
    folder = write_text(tmp_path / "ptb", valid=None)
    with pytest.raises(FileNotFoundError, match="no valid.txt in the folder"):
        load_word_text(str(folder))


@pytest.mark.parametrize("text", ["", " \n\n  \t\n"])
def test_word_text_file_without_tokens(tmp_path, text):
    folder = write_text(tmp_path / "ptb", test=text)
    with pytest.raises(ValueError, match="test.txt: the file has no tokens"):
        load_word_text(str(folder))


def test_word_text_not_utf8(tmp_path):
    folder = write_text(tmp_path / "ptb", train=b"a \xff b\n")
    with pytest.raises(ValueError, match="train.txt: not UTF-8 text"):
        load_word_text(str(folder))


def test_word_text_bad_windows(tmp_path):
    with pytest.raises(ValueError, match="scored must be"):
        load_word_text(str(write_text(tmp_path / "ptb")), seq_len=4, scored=5)
