"""Accuracy and loss of several subnets at once (docs/algorithm.md section 7).

The tracked archs are evaluated together: one pass over the data, `vmap` over archs inside, so a whole
evaluation is one compiled program whatever the archs are. Forward passes only, so looping over batches
with `lax.map` is cheap on every backend.

Labels may have more than one axis (token windows: [B, T]); accuracy and loss are then means over every
weighted position. A family whose `metrics` include 'perplexity' (a language model) also gets exp(loss).
"""
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from superfed_jax.federated import metric as metric_lib
from superfed_jax.federated import sharding
from superfed_jax.supernet import family as family_lib


class EvalSet(NamedTuple):
    """A split padded to whole batches: images [nb, B, ...], labels [nb, B, ...] (>= 0), weights shaped
    like the labels (0 = padding or a position that is not scored)."""

    images: jax.Array
    labels: jax.Array
    weights: jax.Array


def make_eval_set(images: np.ndarray, labels: np.ndarray, batch_size: int) -> EvalSet:
    """Pads a split to a multiple of `batch_size` and reshapes it into batches (host side, once).

    A negative label marks a position that is not scored (text windows): its weight is 0 and its label
    becomes 0, so accuracy and loss are means over the scored positions only.
    """
    count = len(labels)
    num_batches = max(1, -(-count // batch_size))
    pad = num_batches * batch_size - count
    images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
    labels = np.concatenate([labels, np.zeros((pad,) + labels.shape[1:], labels.dtype)]).astype(np.int32)
    weights = (np.arange(num_batches * batch_size) < count).astype(np.float32)
    weights = np.where(labels >= 0, weights.reshape((-1,) + (1,) * (labels.ndim - 1)), 0.0).astype(np.float32)
    labels = np.maximum(labels, 0)
    shape = (num_batches, batch_size)
    return EvalSet(images.reshape(shape + images.shape[1:]), labels.reshape(shape + labels.shape[1:]),
                   weights.reshape(shape + labels.shape[1:]))


def make_evaluate_fn(logits_fn: Callable) -> Callable:
    """Builds `evaluate(params, archs, eval_set) -> (accuracy [A], loss [A])`.

    Args:
      logits_fn: `logits_fn(params, inputs, arch) -> logits [B, ..., classes]` for one arch on raw inputs
        (normalization included).

    Accuracy and loss are means over the weighted labels (every position of a token window).
    """

    def evaluate(params, archs, eval_set: EvalSet):
        def batch_sums(batch):
            images, labels, weights = batch
            logits = jax.vmap(lambda a: logits_fn(params, images, a))(archs)  # [A, B, ..., classes]
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels[None])
            correct = (jnp.argmax(logits, -1) == labels[None]).astype(jnp.float32)
            axes = tuple(range(1, losses.ndim))  # every axis but the archs'
            return jnp.sum(correct * weights, axes), jnp.sum(losses * weights, axes)

        correct, losses = jax.lax.map(batch_sums, tuple(eval_set))
        count = jnp.maximum(jnp.sum(eval_set.weights), 1.0)
        return jnp.sum(correct, 0) / count, jnp.sum(losses, 0) / count

    return evaluate


def evaluate_tracked(evaluate, params, tracked: dict, eval_sets: dict,
                     metrics: Sequence[str] = ("accuracy", "loss")) -> dict:
    """`<arch>/<split>_accuracy` and `<arch>/<split>_loss` of every tracked arch on every split.

    Args:
      evaluate: a (jitted) function of `make_evaluate_fn`.
      params: the supernet params.
      tracked: name -> arch, evaluated together in one call per split.
      eval_sets: split name ('val', 'test') -> `EvalSet`.
      metrics: the family's `metrics`; with 'perplexity' among them, `<arch>/<split>_perplexity` =
        exp(loss) is added too.
    """
    archs = family_lib.stack(list(tracked.values()))
    record = {}
    for split, eval_set in eval_sets.items():
        accuracy, loss = sharding.to_host(evaluate(params, archs, eval_set))
        for i, name in enumerate(tracked):
            record[f"{name}/{split}_accuracy"] = float(accuracy[i])
            record[f"{name}/{split}_loss"] = float(loss[i])
            if "perplexity" in metrics:
                # exp(loss); inf past the largest float (a diverged loss), NaN for NaN
                record[f"{name}/{split}_perplexity"] = metric_lib.PERPLEXITY.from_loss(record[f"{name}/{split}_loss"])
    return record
