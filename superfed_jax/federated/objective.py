"""What the supernet is trained and evaluated on: raw images in, normalized (and augmented) in here.

`make_loss_fn` is the local training objective every client minimizes (augmentation, forward pass of
the masked supernet, summed cross-entropy); `make_logits_fn` is the evaluation forward pass (no
augmentation). Both take raw images as stored on the device, so normalization happens once, inside
the compiled program. Training runs the masked supernet or its sliced execution (`model.execution`,
`supernet/ofa_resnet/sliced.py`); evaluation always runs the masked one.
"""
from superfed_jax.data import augment
from superfed_jax.federated import client as client_lib
from superfed_jax.supernet.ofa_resnet import model as model_lib
from superfed_jax.supernet.ofa_resnet import sliced


def make_logits_fn(model: model_lib.Supernet, mean, std):
    """`logits_fn(params, raw_images, arch)`: normalization then the masked supernet."""
    def logits_fn(params, images, arch):
        return model.apply({"params": params}, augment.normalize(images, mean, std), arch)
    return logits_fn


def make_forward_fn(model: model_lib.Supernet, execution: str = "masked"):
    """`forward(params, images, arch) -> logits` of the resolved execution ('masked' or 'sliced').

    For 'sliced' the arch argument is the pair `(arch, envelope)` that the client layouts pass when given
    a `chunk_envelope` (`client.vmap_clients`, `client.make_side_by_side_update`).
    """
    if execution == "masked":
        return lambda params, images, arch: model.apply({"params": params}, images, arch)
    if execution == "sliced":
        return lambda params, images, arch_and_envelope: sliced.apply(model, params, images,
                                                                      *arch_and_envelope)
    raise ValueError(f"model.execution={execution!r}: allowed here are 'masked' and 'sliced' "
                     "('auto' is resolved by run/build.py before the objective is built)")


def make_loss_fn(model: model_lib.Supernet, mean, std, data_config, execution: str = "masked"):
    """`loss_fn(params, arch, raw_images, labels, weights, key)`: augmentation, forward, summed CE.

    `data_config` is the config's `data` section (crop_padding, flip, cutout_size). `execution` as for
    `make_forward_fn`: with 'sliced', `arch` is `(arch, envelope)`.
    """
    forward = make_forward_fn(model, execution)

    def loss_fn(params, arch, images, labels, weights, key):
        inputs = augment.augment_batch(key, images, mean, std, crop_padding=data_config.crop_padding,
                                       flip=data_config.flip, cutout_size=data_config.cutout_size)
        logits = forward(params, inputs, arch)
        return client_lib.cross_entropy(logits, labels, weights)
    return loss_fn
