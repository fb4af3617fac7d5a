"""data.partition='natural': one client per client id of an `.npz` file's `client_id` array (issue 20
item 7). Unit tests of the split, the loader, the validation and the messages, on small files written
here, then one smoke run and one refused run of the training command."""
import json
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from superfed_jax import config as config_lib
from superfed_jax import validation
from superfed_jax.data import load_dataset, npz
from superfed_jax.data import partition as P
from superfed_jax.data.dataset import holdout_indices, holdout_validation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _arrays(client_id=None, n=12):
    """A tiny npz dataset whose training image `i` has every pixel equal to `i`: a row is recognisable
    after the validation hold-out reorders nothing but removes some."""
    x_train = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None], (n, 4, 4)).copy()
    arrays = dict(x_train=x_train, y_train=np.arange(n) % 3,
                  x_test=np.zeros((3, 4, 4), np.uint8), y_test=np.array([0, 1, 2]))
    if client_id is not None:
        arrays["client_id"] = client_id
    return arrays


def _write(path, **arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


def _data_config(path, partition="natural", val_fraction=0.0):
    return ml_collections.ConfigDict(dict(name="npz", path=path, archive="", tfds_data_dir="",
                                          val_fraction=val_fraction, partition=partition))


# ------------------------------------------------------------------------------------------ the split


def test_non_contiguous_ids_give_one_client_each_in_increasing_id_order():
    ids = np.array([100, 3, 7, 3, 100, 7, 7, 3, 100])
    split = P.natural_partition(ids, min_size=1)
    np.testing.assert_array_equal(split.ids, [3, 7, 100])
    assert split.num_clients == 3 and split.dropped_examples == 0
    # Client 0 is id 3, client 1 id 7, client 2 id 100; each holds exactly its rows, in file order.
    assert [p.tolist() for p in split.parts] == [[1, 3, 7], [2, 5, 6], [0, 4, 8]]
    assert all(p.dtype == np.int64 for p in split.parts)
    assert P.natural_note(split) == ""
    assert P.make_partition(np.zeros(9, int), 3, "natural", seed=0, min_size=1, client_ids=ids)[2].tolist() \
        == [0, 4, 8]


def test_the_split_is_the_same_for_every_seed():
    ids = np.repeat([4, 9], 6)
    parts = [P.make_partition(np.zeros(12, int), 2, "natural", seed, min_size=1, client_ids=ids)
             for seed in (0, 1)]
    assert [p.tolist() for p in parts[0]] == [p.tolist() for p in parts[1]]


def test_small_clients_are_dropped_with_a_note(capsys):
    ids = np.array([5] * 4 + [8] * 2 + [1] * 3 + [42] * 1)
    parts = P.make_partition(np.zeros(10, int), 2, "natural", seed=0, min_size=3, client_ids=ids)
    assert [p.tolist() for p in parts] == [[6, 7, 8], [0, 1, 2, 3]]  # ids 1 and 5; 8 and 42 dropped
    err = capsys.readouterr().err
    assert err.startswith("note: data.partition='natural': dropped 2 of 4 clients with fewer than "
                          "data.min_client_size=3 training examples (ids 8, 42; 3 examples in all")
    assert "2 clients remain" in err


def test_the_note_names_at_most_ten_ids():
    split = P.natural_partition(np.concatenate([np.arange(12), np.full(5, 99)]), min_size=2)
    note = P.natural_note(split)
    assert "dropped 12 of 13 clients" in note
    assert "(ids 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...; 12 examples" in note


def test_a_client_count_other_than_the_data_s_is_an_error_naming_both():
    ids = np.array([3] * 5 + [7] * 5 + [9] * 1)
    split = P.natural_partition(ids, min_size=2)
    assert P.natural_problem(split, 2) == ""
    message = P.natural_problem(split, 20)
    assert message.startswith("fl.num_clients=20: data.partition='natural' takes the clients from the data, "
                              "which gives 2 ")
    assert "after dropping 1 with fewer than data.min_client_size=2" in message
    assert message.endswith("set fl.num_clients=2")
    with pytest.raises(ValueError, match="^fl.num_clients=20: .* set fl.num_clients=2$"):
        P.make_partition(np.zeros(11, int), 20, "natural", seed=0, min_size=2, client_ids=ids)


def test_dropping_every_client_names_the_largest():
    split = P.natural_partition(np.array([1, 1, 2, 2, 2]), min_size=10)
    assert split.num_clients == 0 and split.dropped_examples == 5
    assert P.natural_problem(split, 2) == (
        "data.min_client_size=10: data.partition='natural' drops every one of the 2 clients of the data "
        "(the largest holds 3 training examples); lower data.min_client_size to at most 3")


def test_make_partition_needs_one_id_per_example():
    with pytest.raises(ValueError, match="needs the client id of each of the 4 training examples, got none"):
        P.make_partition(np.zeros(4, int), 1, "natural", seed=0)
    with pytest.raises(ValueError, match="got 3"):
        P.make_partition(np.zeros(4, int), 1, "natural", seed=0, client_ids=np.zeros(3, int))


# ------------------------------------------------------------------------------------------ loading


def test_ids_follow_the_rows_that_stay_in_training(tmp_path):
    n = 40
    ids = (np.arange(n) * 7) % 5 + 10  # an id the test can recompute from the row
    path = _write(tmp_path / "d.npz", **_arrays(ids, n))
    dataset = load_dataset(_data_config(path, val_fraction=0.25), seed=3)
    rows = dataset.x_train[:, 0, 0, 0].astype(int)  # each training image's original row
    assert len(rows) == 30 and len(dataset.y_val) == 10
    np.testing.assert_array_equal(dataset.client_train, (rows * 7) % 5 + 10)
    assert dataset.client_train.dtype == np.int64
    # The rows kept are holdout_validation's own, for the same seed.
    train_idx, val_idx = holdout_indices(n, 0.25, 3)
    np.testing.assert_array_equal(rows, train_idx)
    np.testing.assert_array_equal(holdout_validation(np.arange(n), np.arange(n), 0.25, 3)[2], val_idx)


def test_ids_are_read_only_for_a_natural_partition(tmp_path):
    # A float client_id would be refused by a natural partition; any other partition never reads it.
    path = _write(tmp_path / "d.npz", **_arrays(np.linspace(0, 1, 12)))
    assert load_dataset(_data_config(path, partition="dirichlet"), seed=0).client_train is None
    config = _data_config(path)
    del config["partition"]  # an export's evaluation loads the data without a partition
    assert load_dataset(config, seed=0).client_train is None


BAD_IDS = {
    "negative": (np.array([0, 1, 2, -4] + [1] * 8), "has negative id -4 (training example 3)"),
    "float": (np.arange(12) * 0.5, "has dtype float64"),
    "whole_floats": (np.arange(12, dtype=np.float32), "has dtype float32"),
    "bool": (np.arange(12) % 2 == 0, "has dtype bool"),
    "short": (np.arange(11), "has shape (11,) but y_train has 12 labels"),
    "long": (np.arange(13), "has shape (13,) but y_train has 12 labels"),
    "two_d": (np.arange(12).reshape(12, 1), "has shape (12, 1) but y_train has 12 labels"),
    "huge_uint64": (np.array([2 ** 63] + [1] * 11, np.uint64), f"has id {2 ** 63}"),
}


@pytest.mark.parametrize("ids, problem", BAD_IDS.values(), ids=list(BAD_IDS))
def test_bad_ids_are_one_clean_error_naming_file_array_value_and_what_is_allowed(tmp_path, ids, problem):
    path = _write(tmp_path / "d.npz", **_arrays(ids))
    with pytest.raises(ValueError) as info:
        load_dataset(_data_config(path), seed=0)
    message = str(info.value)
    assert message.startswith(f"{path}: client_id {problem}"), message
    assert "client ids must be integers >= 0, one per training example" in message


def test_a_missing_client_id_names_the_array_and_the_keys_found(tmp_path):
    path = _write(tmp_path / "d.npz", **_arrays())
    with pytest.raises(ValueError) as info:
        load_dataset(_data_config(path), seed=0)
    assert str(info.value).startswith(f"{path}: data.partition='natural' needs an array 'client_id' (an "
                                      "integer client id >= 0 for each of the 12 training examples), found "
                                      "keys ['x_test', 'x_train', 'y_test', 'y_train']")


def test_a_pickled_client_id_is_refused(tmp_path):
    path = _write(tmp_path / "d.npz", **_arrays(np.array([object()] * 12)))
    with pytest.raises(ValueError, match="client_id has a non-numeric \\(object\\) dtype"):
        npz.load_npz_client_ids(path, 12)


@pytest.mark.parametrize("name", ["digits", "cifar10", "cifar100"])
def test_datasets_without_ids_refuse_a_natural_partition(name):
    expected = (f"data.partition='natural': makes one client per client id, and only data.name 'npz' "
                f"(an array 'client_id' in the .npz file), 'shakespeare' and 'leaf_shakespeare' (one client "
                f"per speaking role) carry ids; data.name={name!r} has none.")
    config = config_lib.base_config()
    config.data.update(name=name, partition="natural")
    with pytest.raises(ValueError) as info:
        validation.check_config(config, check_files=False)
    assert [line for line in str(info.value).splitlines() if line.startswith(expected)]
    with pytest.raises(ValueError) as info:  # before any data is read: no CIFAR files exist here
        load_dataset(ml_collections.ConfigDict(dict(name=name, partition="natural")), seed=0)
    assert str(info.value).startswith(expected)


def test_placed_clients_hold_their_own_rows_after_the_hold_out(tmp_path, capsys):
    """File -> hold-out -> natural split -> the device's index table: client k trains exactly the kept
    rows of the k-th smallest id (the image of row i has pixels i, so a placed row names its origin)."""
    from superfed_jax.federated import placement, sharding
    n = 60
    ids = np.where(np.arange(n) < 3, 500, (np.arange(n) * 7) % 4 * 10 + 5)  # ids 5, 15, 25, 35 and 500
    path = _write(tmp_path / "d.npz", **_arrays(ids, n))
    config = config_lib.base_config()
    config.data.update(name="npz", path=path, partition="natural", val_fraction=0.2, min_client_size=4)
    config.fl.update(num_clients=4, clients_per_round=2)
    dataset = load_dataset(config.data, config.seed)
    data = placement.place_federated_data(dataset, config, sharding.make_mesh())
    table, sizes = np.asarray(data.index_table), np.asarray(data.sizes)
    images = np.asarray(data.images)[:, 0, 0, 0].astype(int)  # original row of every placed image
    kept_rows = holdout_indices(n, 0.2, config.seed)[0]
    for k, client in enumerate([5, 15, 25, 35]):
        expected = [row for row in kept_rows if ids[row] == client]
        assert images[table[k, :sizes[k]]].tolist() == expected
    held = [row for row in kept_rows if ids[row] == 500]  # id 500 keeps fewer than 4 rows: dropped
    assert 0 < len(held) < 4 and sizes.sum() == len(kept_rows) - len(held)
    assert "dropped 1 of 5 clients" in capsys.readouterr().err


# ------------------------------------------------------------------------------ against the data


def _natural_config(num_clients, clients_per_round, min_client_size=2):
    config = config_lib.base_config()
    config.data.update(name="npz", partition="natural", min_client_size=min_client_size)
    config.fl.update(num_clients=num_clients, clients_per_round=clients_per_round)
    return config


def _problems(config, split) -> list:
    with pytest.raises(ValueError) as info:
        validation.check_against_data(config, 11, natural=split)
    return str(info.value).splitlines()


def test_validation_takes_the_client_count_from_the_data():
    split = P.natural_partition(np.array([3] * 5 + [7] * 5 + [9] * 1), min_size=2)
    validation.check_against_data(_natural_config(2, 2), 11, natural=split)
    # The default 20 clients and 8 per round against 2 clients: both named, with the numbers.
    [clients, per_round] = _problems(_natural_config(20, 8), split)
    assert clients.startswith("fl.num_clients=20: data.partition='natural' takes the clients from the data, "
                              "which gives 2") and clients.endswith("set fl.num_clients=2")
    assert per_round == ("fl.clients_per_round=8: more than the 2 clients data.partition='natural' takes "
                         "from the data; need at most 2")
    [line] = _problems(_natural_config(2, 2, min_client_size=6), P.natural_partition(
        np.array([3] * 5 + [7] * 5 + [9] * 1), min_size=6))
    assert line.startswith("data.min_client_size=6: data.partition='natural' drops every one of the 3")


# ------------------------------------------------------------------------------- the command line


def _launch(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one CPU device, as a user's plain run
    return subprocess.run([sys.executable, "launch.py", "--config=configs/digits.py:smoke", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def _natural_npz(tmp_path) -> str:
    """80 training examples of 5 clients with ids 3, 7, 12, 100 (19 to 20 each) and 55 (1, dropped)."""
    rng = np.random.default_rng(1)
    ids = np.concatenate([np.repeat([3, 7, 100], 20), np.repeat(12, 19), [55]])
    return _write(tmp_path / "natural.npz", x_train=rng.integers(0, 256, (80, 6, 6), dtype=np.uint8),
                  y_train=np.arange(80) % 3, x_test=rng.integers(0, 256, (20, 6, 6), dtype=np.uint8),
                  y_test=np.arange(20) % 3, client_id=rng.permutation(ids))


def test_a_natural_run_trains_the_data_s_clients(tmp_path):
    workdir = tmp_path / "run"
    result = _launch("--config.data.name=npz", f"--config.data.path={_natural_npz(tmp_path)}",
                     "--config.data.partition=natural", "--config.data.min_client_size=5",
                     "--config.fl.num_clients=4", f"--workdir={workdir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "note: data.partition='natural': dropped 1 of 5 clients with fewer than " \
           "data.min_client_size=5 training examples (id 55; 1 example in all" in result.stderr
    assert json.load(open(workdir / "config.json"))["fl"]["num_clients"] == 4
    assert [json.loads(line)["round"] for line in open(workdir / "metrics.jsonl")] == [1, 2]


def test_a_wrong_client_count_stops_the_command_with_one_error(tmp_path):
    workdir = tmp_path / "run"
    result = _launch("--config.data.name=npz", f"--config.data.path={_natural_npz(tmp_path)}",
                     "--config.data.partition=natural", "--config.data.min_client_size=5",
                     "--config.fl.num_clients=5", f"--workdir={workdir}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.startswith("error: fl.num_clients=5: data.partition='natural' takes the clients "
                                    "from the data, which gives 4 "), result.stderr
    assert "set fl.num_clients=4" in result.stderr and "Traceback" not in result.stderr
    assert not (workdir / "metrics.jsonl").exists()
