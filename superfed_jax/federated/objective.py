"""What the supernet is trained and evaluated on: raw inputs in, normalized (and augmented) in here.

`make_loss_fn` is the local training objective every client minimizes (augmentation, forward pass of
the family's supernet, summed cross-entropy); `make_logits_fn` is the evaluation forward pass (no
augmentation). Both take the inputs as stored on the device, so normalization happens once, inside the
compiled program. Images (`family.batch_kind == IMAGES`) are normalized, and augmented for training;
token windows go to the family as they are. Training runs the masked supernet or the family's sliced
execution (`model.execution`, `Family.sliced`) with `train=True` and a dropout key; evaluation always
runs the masked one with `train=False`.
"""
import jax

from superfed_jax.data import augment
from superfed_jax.federated import client as client_lib
from superfed_jax.supernet import family as family_lib

# `fold_in(step key, stream)`: the dropout key of a training step, independent of its augmentation key
# (the step key itself, as before dropout existed, so augmentation draws are unchanged).
_DROPOUT_STREAM = 1


def _normalize_fn(family: family_lib.Family, mean, std):
    """`normalize(raw_inputs)`: images scaled and normalized per channel, other inputs unchanged."""
    if family.batch_kind == family_lib.IMAGES:
        return lambda images: augment.normalize(images, mean, std)
    return lambda inputs: inputs


def make_logits_fn(family: family_lib.Family, mean, std):
    """`logits_fn(params, raw_inputs, arch)`: normalization (images) then the masked forward pass."""
    normalize = _normalize_fn(family, mean, std)

    def logits_fn(params, inputs, arch):
        return family.apply(params, normalize(inputs), arch, train=False)
    return logits_fn


def make_forward_fn(family: family_lib.Family, execution: str = "masked"):
    """`forward(params, inputs, arch, *, train=False, rng=None) -> logits` of the resolved execution.

    `execution` is 'masked' or 'sliced'. For 'sliced' the arch argument is the pair `(arch, envelope)` that
    the client layouts pass when given the family's envelope (`client.vmap_clients`,
    `client.make_side_by_side_update`).
    """
    if execution == "masked":
        def masked(params, inputs, arch, *, train=False, rng=None):
            return family.apply(params, inputs, arch, train=train, rng=rng)
        return masked
    if execution == "sliced":
        sliced = family.sliced
        if sliced is None:
            raise ValueError(f"model.execution='sliced': the family {family.name!r} has no sliced execution; "
                             "use 'masked' or 'auto'")

        def sliced_forward(params, inputs, arch_and_envelope, *, train=False, rng=None):
            arch, envelope = arch_and_envelope
            return sliced.apply(params, inputs, arch, envelope, train, rng)
        return sliced_forward
    raise ValueError(f"model.execution={execution!r}: allowed here are 'masked' and 'sliced' "
                     "('auto' is resolved by run/build.py before the objective is built)")


def make_loss_fn(family: family_lib.Family, mean, std, data_config, execution: str = "masked"):
    """`loss_fn(params, arch, raw_inputs, labels, weights, key)`: augmentation, forward, summed CE.

    `data_config` is the config's `data` section (crop_padding, flip, cutout_size), read for images only.
    `execution` as for `make_forward_fn`: with 'sliced', `arch` is `(arch, envelope)`. `key` is the step's
    key: it drives the augmentation, and a key folded from it the family's dropout (`train=True`).
    """
    forward = make_forward_fn(family, execution)
    if family.batch_kind == family_lib.IMAGES:
        def prepare(key, images):
            return augment.augment_batch(key, images, mean, std, crop_padding=data_config.crop_padding,
                                         flip=data_config.flip, cutout_size=data_config.cutout_size)
    else:
        def prepare(key, inputs):
            del key
            return inputs

    def loss_fn(params, arch, inputs, labels, weights, key):
        logits = forward(params, prepare(key, inputs), arch, train=True,
                         rng=jax.random.fold_in(key, _DROPOUT_STREAM))
        return client_lib.cross_entropy(logits, labels, weights)
    return loss_fn
