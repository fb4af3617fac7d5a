"""Token windows in training and evaluation: a target of -1 is a position that is not scored.

Hand-computed references: the cross-entropy of a few positions written out with logsumexp, an evaluation
set whose weights are counted by hand, and a step on a batch with nothing scored that must change nothing.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from superfed_jax.data import dataset as dataset_lib
from superfed_jax.data import partition
from superfed_jax.federated import client, evaluation


def _hand_ce(logits, label):
    return math.log(sum(math.exp(v) for v in logits)) - logits[label]


def test_unscored_positions_add_nothing_to_the_loss():
    logits = np.array([[[1.0, 2.0, 0.5], [0.0, 0.0, 3.0], [2.0, -1.0, 0.0]],
                       [[0.3, 0.2, 0.1], [1.0, 1.0, 1.0], [5.0, 0.0, 0.0]]], np.float32)
    labels = np.array([[-1, 2, 0], [1, -1, -1]], np.int32)
    weights = np.array([1.0, 0.5], np.float32)  # per example, applied to each of its positions
    expected = _hand_ce(logits[0, 1], 2) + _hand_ce(logits[0, 2], 0) + 0.5 * _hand_ce(logits[1, 0], 1)
    got = float(client.cross_entropy(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(weights)))
    assert abs(got - expected) < 1e-5
    np.testing.assert_array_equal(client.scored_weights(jnp.asarray(labels), jnp.asarray(weights)),
                                  [[0.0, 1.0, 1.0], [0.5, 0.0, 0.0]])


def test_image_labels_keep_their_example_weights():
    weights = jnp.asarray([1.0, 0.0, 1.0])
    np.testing.assert_array_equal(client.scored_weights(jnp.asarray([3, 0, 7]), weights), weights)


def _linear_loss(params, arch, inputs, labels, weights, key):
    del arch, key
    logits = params["w"][inputs]  # [B, T, V]: a lookup table as the model
    return client.cross_entropy(logits, labels, weights)


def test_a_step_is_a_mean_over_scored_positions_and_a_step_with_none_changes_nothing():
    params = {"w": jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32)}
    optimizer = optax.sgd(1.0)
    step = client.make_train_step(_linear_loss, optimizer)
    inputs = jnp.asarray([[0, 1, 2], [3, 0, 1]])
    labels = jnp.asarray([[-1, -1, 2], [-1, -1, 0]])
    new, _, loss = step(params, optimizer.init(params), None, inputs, labels, jnp.ones(2), None)
    w = np.asarray(params["w"])
    expected = (_hand_ce(w[2], 2) + _hand_ce(w[1], 0)) / 2  # two scored positions
    assert abs(float(loss) - expected) < 1e-5
    # Rows 0 and 3 are only context: no gradient reaches them.
    np.testing.assert_array_equal(np.asarray(new["w"])[[0, 3]], w[[0, 3]])
    nothing = jnp.full_like(labels, -1)
    same, _, _ = step(params, optimizer.init(params), None, inputs, nothing, jnp.ones(2), None)
    np.testing.assert_array_equal(np.asarray(same["w"]), w)


def test_evaluation_counts_scored_positions_only():
    inputs = np.array([[0, 1], [1, 2], [2, 3]], np.int32)
    labels = np.array([[-1, 1], [2, -1], [0, 0]], np.int32)
    eval_set = evaluation.make_eval_set(inputs, labels, batch_size=2)  # 2 batches, one padded row
    assert eval_set.labels.min() >= 0
    np.testing.assert_array_equal(eval_set.weights.reshape(-1, 2),
                                  [[0, 1], [1, 0], [1, 1], [0, 0]])
    table = jnp.asarray(np.eye(4, dtype=np.float32)[[1, 2, 0, 3]] * 10)  # token t predicts table[t]
    evaluate = evaluation.make_evaluate_fn(lambda params, x, arch: params[x])
    accuracy, loss = evaluate(table, jnp.zeros((1,)), eval_set)
    # Scored (input -> target): 1 -> 1 (predicts 2: wrong), 1 -> 2 (right), 2 -> 0 (right), 3 -> 0
    # (predicts 3: wrong).
    assert abs(float(accuracy[0]) - 0.5) < 1e-6
    ce_right, ce_wrong = _hand_ce([10, 0, 0, 0], 0), _hand_ce([10, 0, 0, 0], 1)
    assert abs(float(loss[0]) - (ce_right + ce_wrong) / 2) < 1e-4  # mean of 2 right and 2 wrong


def test_contiguous_partition_cuts_file_order_into_near_equal_runs():
    parts = partition.make_partition(np.zeros((10, 4), np.int32), 3, "contiguous", seed=0)
    assert [p.tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]


def test_label_splits_refuse_token_windows():
    import pytest
    for method in ("dirichlet", "shards"):
        with pytest.raises(ValueError, match=f"data.partition='{method}' splits by class label"):
            partition.make_partition(np.zeros((10, 4), np.int32), 2, method, seed=0)


def test_per_client_hold_out_keeps_every_client():
    ids = np.array([0] * 10 + [1] * 1 + [2] * 3 + [5] * 25)
    train, val = dataset_lib.holdout_per_client(ids, 0.2, seed=3)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(ids)))
    held = {c: int(np.sum(ids[val] == c)) for c in (0, 1, 2, 5)}
    assert held == {0: 2, 1: 0, 2: 0, 5: 5}  # floor(0.2 * n) per client
    assert set(ids[train].tolist()) == {0, 1, 2, 5}
    again = dataset_lib.holdout_per_client(ids, 0.2, seed=3)
    np.testing.assert_array_equal(again[1], val)
    assert not np.array_equal(dataset_lib.holdout_per_client(ids, 0.2, seed=4)[1], val)


def test_fewer_windows_than_clients_is_refused():
    import pytest
    with pytest.raises(ValueError, match="Cannot split 3 examples among fl.num_clients=5"):
        partition.make_partition(np.zeros((3, 4), np.int32), 5, "contiguous", seed=0)


def test_perplexity_is_exp_of_the_mean_loss_per_scored_position_by_hand():
    inputs = np.array([[0, 1], [1, 2], [2, 3]], np.int32)
    labels = np.array([[-1, 1], [2, -1], [0, 0]], np.int32)
    table = jnp.asarray(np.eye(4, dtype=np.float32)[[1, 2, 0, 3]] * 10)
    evaluate = jax.jit(evaluation.make_evaluate_fn(lambda params, x, arch: params[x]))
    record = evaluation.evaluate_tracked(evaluate, table, {"only": jnp.zeros(())},
                                         {"test": evaluation.make_eval_set(inputs, labels, 2)},
                                         metrics=("accuracy", "loss", "perplexity"))
    # Scored: two right (cross-entropy ln(e^10 + 3) - 10) and two wrong (ln(e^10 + 3)).
    right, wrong = _hand_ce([10, 0, 0, 0], 0), _hand_ce([10, 0, 0, 0], 1)
    assert record["only/test_perplexity"] == pytest.approx(math.exp((right + wrong) / 2), rel=1e-5)
    assert record["only/test_accuracy"] == pytest.approx(0.5)
