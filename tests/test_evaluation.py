"""Multi-arch evaluation (`federated.evaluation`) against a plain per-arch loop over dense subnets.

`make_evaluate_fn` evaluates several archs of the masked supernet in one program, on a split padded to
whole batches. The reference here slices each arch out as a `subnet.DenseSubnet`, runs it on the whole
split at once (no batches, no padding, no vmap) and computes accuracy and mean cross-entropy in float64
NumPy. The splits are sized so that the last batch is partial: padding counted as data would change
every figure. A hand-checkable case (zero weights, a chosen head bias) pins the figures to closed forms.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tiny_setup
from superfed_jax.data import augment
from superfed_jax.federated import evaluation
from superfed_jax.federated import objective
from superfed_jax.supernet.ofa_resnet import space as space_lib
from superfed_jax.supernet.ofa_resnet import subnet as subnet_lib
from superfed_jax.supernet.ofa_resnet.family import OFAResNet

SPACE = tiny_setup.SPACE
NUM_EXAMPLES = 37  # 4 batches of 8 and a last one of 5 (3 padding rows)
BATCH_SIZE = 8


def supernet_logits(params, images, arch):
    """The driver's `logits_fn`: the library's normalization, then the masked supernet."""
    return tiny_setup.MODEL.apply({"params": params}, augment.normalize(images, tiny_setup.MEAN, tiny_setup.STD),
                                  arch)


EVALUATE = jax.jit(evaluation.make_evaluate_fn(supernet_logits))


def arch_list() -> list:
    """The fixed extremes, a middle arch and random draws: archs of different depths and widths."""
    random = space_lib.sample(SPACE, jax.random.key(7), (4,))
    return [space_lib.smallest(SPACE), space_lib.largest(SPACE), tiny_setup.MEDIUM] + [
        jax.tree.map(lambda x: np.asarray(x[i]), random) for i in range(4)]


def random_split(seed: int, count: int = NUM_EXAMPLES):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, SPACE.input_size, SPACE.input_size, SPACE.input_channels),
                          dtype=np.uint8)
    labels = rng.integers(0, SPACE.num_classes, count).astype(np.int32)
    return images, labels


def dense_logits(params, arch, images) -> np.ndarray:
    """Logits of the sliced dense subnet on the whole split (NumPy normalization, XLA convolutions)."""
    net = subnet_lib.DenseSubnet(SPACE, subnet_lib.subnet_shape(SPACE, arch), conv_impl="xla")
    dense_params = subnet_lib.extract(SPACE, params, arch)
    return np.asarray(net.apply({"params": dense_params}, jnp.asarray(tiny_setup.normalize(images))))


def reference_metrics(logits: np.ndarray, labels: np.ndarray):
    """(accuracy, mean cross-entropy) of one arch in float64: the fraction of argmax hits, -log softmax."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    losses = -log_probs[np.arange(len(labels)), labels]
    return float(np.mean(logits.argmax(axis=1) == labels)), float(np.mean(losses))


def top_two_gap(logits: np.ndarray) -> float:
    """The smallest margin between the best and second-best logit over the split."""
    ordered = np.sort(logits, axis=1)
    return float(np.min(ordered[:, -1] - ordered[:, -2]))


def evaluate(params, archs, images, labels, batch_size=BATCH_SIZE):
    eval_set = evaluation.make_eval_set(images, labels, batch_size)
    accuracy, loss = EVALUATE(tiny_setup.as_jnp(params), space_lib.stack(archs), eval_set)
    return np.asarray(accuracy), np.asarray(loss)


# ------------------------------------------------------------------------------------ make_eval_set


@pytest.mark.parametrize("count,batch_size,num_batches", [(37, 8, 5), (40, 8, 5), (3, 8, 1), (0, 4, 1)])
def test_eval_set_pads_to_whole_batches_keeping_order(count, batch_size, num_batches):
    images, labels = random_split(1, count)
    eval_set = evaluation.make_eval_set(images, labels, batch_size)
    assert eval_set.images.shape == (num_batches, batch_size) + images.shape[1:]
    assert eval_set.labels.shape == eval_set.weights.shape == (num_batches, batch_size)
    assert eval_set.labels.dtype == np.int32 and eval_set.images.dtype == images.dtype
    flat_images = np.asarray(eval_set.images).reshape((-1,) + images.shape[1:])
    np.testing.assert_array_equal(flat_images[:count], images)
    np.testing.assert_array_equal(np.asarray(eval_set.labels).reshape(-1)[:count], labels)
    weights = np.asarray(eval_set.weights).reshape(-1)
    np.testing.assert_array_equal(weights, np.arange(num_batches * batch_size) < count)


# ------------------------------------------------------------------------------------ make_evaluate_fn


def test_every_arch_matches_its_dense_subnet_on_a_split_with_a_partial_batch():
    params = tiny_setup.init_params(3)
    images, labels = random_split(2)
    archs = arch_list()
    accuracy, loss = evaluate(params, archs, images, labels)
    assert accuracy.shape == loss.shape == (len(archs),)
    expected = []
    for arch in archs:
        logits = dense_logits(params, arch, images)
        # Argmax agreement needs a margin well above the masked/dense rounding difference (~1e-6).
        assert top_two_gap(logits) > 1e-4, "reseed the split: a near tie makes accuracy rounding-dependent"
        expected.append(reference_metrics(logits, labels))
    expected_accuracy, expected_loss = np.array(expected).T
    np.testing.assert_allclose(accuracy, expected_accuracy, rtol=0, atol=1e-6)  # one example is 1/37
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    # The archs really evaluate differently (else one wrong arch index could hide).
    assert np.ptp(expected_loss) > 1e-3


@pytest.mark.parametrize("batch_size", [1, 37, 64])
def test_batch_size_does_not_change_the_result(batch_size):
    """Whole split in one batch, one partial batch larger than the split, one example per batch (each
    batch size is a compile; several batches with a partial last one are the test above)."""
    params = tiny_setup.init_params(3)
    images, labels = random_split(2)
    archs = arch_list()[:3]
    accuracy, loss = evaluate(params, archs, images, labels, batch_size)
    expected = np.array([reference_metrics(dense_logits(params, a, images), labels) for a in archs]).T
    np.testing.assert_allclose(accuracy, expected[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(loss, expected[1], rtol=1e-5)


def constant_logit_params(bias):
    """Supernet params whose every subnet outputs `bias` for every image: all weights zero but the head bias.

    With zero kernels every activation is zero, so the pooled features and the head's matmul are zero too.
    """
    params = jax.tree.map(np.zeros_like, tiny_setup.init_params(0))
    params["head"]["bias"] = np.asarray(bias, np.float32)
    return params


def test_hand_checkable_accuracy_and_loss_with_constant_logits():
    """Logits (0, ln 3, 0): every arch predicts class 1 with probability 3/5, the others 1/5 each.

    13 examples in batches of 4 (a last batch of 1, 3 padding rows with label 0), 7 of them of class 1:
    accuracy 7/13 and mean loss (7 ln(5/3) + 6 ln 5) / 13. Counting the padding would give 7/16.
    """
    labels = np.array([1, 0, 1, 2, 1, 1, 0, 2, 1, 2, 1, 0, 1], np.int32)
    images = np.random.default_rng(5).integers(0, 256, (13, SPACE.input_size, SPACE.input_size, 1),
                                               dtype=np.uint8)
    params = constant_logit_params([0.0, np.log(3.0), 0.0])
    archs = arch_list()
    accuracy, loss = evaluate(params, archs, images, labels, batch_size=4)
    np.testing.assert_allclose(accuracy, np.full(len(archs), 7 / 13), rtol=1e-6)
    np.testing.assert_allclose(loss, np.full(len(archs), (7 * np.log(5 / 3) + 6 * np.log(5)) / 13), rtol=1e-5)


def test_labels_matching_one_arch_give_it_the_chosen_accuracy():
    """Labels copied from the largest subnet's predictions on the first 20 examples, shifted elsewhere:
    the largest arch scores exactly 20/37, whatever its weights."""
    params = tiny_setup.init_params(4)
    images, _ = random_split(6)
    largest = space_lib.largest(SPACE)
    predicted = dense_logits(params, largest, images).argmax(axis=1)
    labels = np.where(np.arange(NUM_EXAMPLES) < 20, predicted, (predicted + 1) % SPACE.num_classes)
    accuracy, _ = evaluate(params, [space_lib.smallest(SPACE), largest], images, labels.astype(np.int32))
    assert accuracy[1] == pytest.approx(20 / NUM_EXAMPLES, abs=1e-7)


def test_empty_split_gives_zero_not_nan():
    """No examples: one batch of padding, accuracy and loss 0 (the count is clamped to 1)."""
    images, labels = random_split(1, 0)
    accuracy, loss = evaluate(tiny_setup.init_params(0), arch_list()[:2], images, labels, batch_size=4)
    np.testing.assert_array_equal(accuracy, [0.0, 0.0])
    np.testing.assert_array_equal(loss, [0.0, 0.0])


# ------------------------------------------------------------------------------- token-shaped labels


def test_labels_with_a_position_axis_are_averaged_over_every_real_position():
    """Token windows: labels [N, T]. Accuracy and loss are means over the N * T real positions (the
    padding windows of the last batch count nothing), checked against a float64 NumPy loop."""
    count, window, classes = 5, 3, 4
    rng = np.random.default_rng(11)
    inputs = rng.integers(0, 6, (count, window)).astype(np.int32)
    labels = rng.integers(0, classes, (count, window)).astype(np.int32)
    table = rng.standard_normal((2, 6, classes)).astype(np.float32)  # per "arch": a logit row per token

    def logits_fn(params, tokens, arch):
        return params[arch][tokens]  # [B, T, classes]

    eval_set = evaluation.make_eval_set(inputs, labels, 2)  # 3 batches of 2 windows, one padding window
    assert eval_set.labels.shape == eval_set.weights.shape == (3, 2, window)
    np.testing.assert_array_equal(np.asarray(eval_set.weights).reshape(-1, window).sum(axis=1),
                                  [window] * count + [0])
    accuracy, loss = jax.jit(evaluation.make_evaluate_fn(logits_fn))(table, jnp.arange(2), eval_set)
    for arch in range(2):
        logits = table[arch][inputs].astype(np.float64).reshape(-1, classes)
        flat = labels.reshape(-1)
        shifted = logits - logits.max(axis=1, keepdims=True)
        losses = -(shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True)))[np.arange(flat.size), flat]
        assert accuracy[arch] == pytest.approx(np.mean(logits.argmax(axis=1) == flat), abs=1e-7)
        assert loss[arch] == pytest.approx(np.mean(losses), rel=1e-5)


# ------------------------------------------------------------------------------- evaluate_tracked


class _LanguageLike(OFAResNet):
    """The tiny OFA-ResNet declaring a language model's metrics, so its evaluation adds perplexity."""

    metrics = ("accuracy", "loss", "perplexity")


def test_evaluate_tracked_adds_perplexity_for_a_family_whose_metrics_include_it():
    family = _LanguageLike(SPACE, tiny_setup.CONV_IMPL)
    params = tiny_setup.as_jnp(tiny_setup.init_params(3))
    images, labels = random_split(2)
    evaluate = jax.jit(evaluation.make_evaluate_fn(
        objective.make_logits_fn(family, tiny_setup.MEAN, tiny_setup.STD)))
    tracked = {"smallest": family.smallest(), "medium": tiny_setup.MEDIUM}
    eval_sets = {"val": evaluation.make_eval_set(images, labels, BATCH_SIZE),
                 "test": evaluation.make_eval_set(images[:20], labels[:20], BATCH_SIZE)}
    record = evaluation.evaluate_tracked(evaluate, params, tracked, eval_sets, family.metrics)
    assert set(record) == {f"{name}/{split}_{metric}" for name in tracked for split in eval_sets
                           for metric in ("accuracy", "loss", "perplexity")}
    for name in tracked:
        for split in eval_sets:
            loss = record[f"{name}/{split}_loss"]
            assert record[f"{name}/{split}_perplexity"] == math.exp(loss) and loss > 0
    # The loss is the split's mean cross-entropy, as without perplexity.
    expected = reference_metrics(dense_logits(params, tiny_setup.MEDIUM, images), labels)
    assert record["medium/val_loss"] == pytest.approx(expected[1], rel=1e-5)
    # A family without it (the OFA-ResNet's metrics, the default) gets the same record less perplexity.
    plain = evaluation.evaluate_tracked(evaluate, params, tracked, eval_sets)
    assert OFAResNet.metrics == ("accuracy", "loss")
    assert plain == {key: value for key, value in record.items() if not key.endswith("_perplexity")}
    assert evaluation.evaluate_tracked(evaluate, params, tracked, eval_sets, OFAResNet.metrics) == plain
