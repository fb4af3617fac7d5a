"""On-device CIFAR-style training augmentation (jnp, jittable, per example).

Order, each step switchable by a static argument:

1. random crop: zero-pad by ``crop_padding`` on each side (in [0, 1] pixel
   scale, so the padding is black) and cut a window of the original size;
2. random horizontal flip with probability 1/2;
3. per-channel normalisation ``(x - mean) / std``;
4. Cutout (DeVries & Taylor, 2017): a ``cutout_size`` square whose centre is
   uniform over the image's pixels, clipped at the borders, set to 0 - the
   dataset mean, since it happens after normalisation.

Every random choice comes from the key passed in; the batch is handled by
``vmap`` over per-example keys from ``jax.random.split(key, B)``. Switches
are Python values fixed at trace time; nothing branches on data.
"""
import functools

import jax
import jax.numpy as jnp

from superfed_jax.data.dataset import to_unit_float

__all__ = ["augment_batch", "cutout", "normalize", "random_crop", "random_flip"]


def normalize(images, mean, std):
    """Scales images to unit float and normalises each channel.

    Args:
        images: ``[..., C]`` uint8 or float images.
        mean: ``[C]`` per-channel mean (unit-float scale).
        std: ``[C]`` per-channel standard deviation.

    Returns:
        float32 ``(to_unit_float(images) - mean) / std``.
    """
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return (to_unit_float(images) - mean) / std


def random_crop(key, image, padding: int):
    """Crops a random ``H x W`` window from the image zero-padded by ``padding``.

    Args:
        key: PRNG key.
        image: ``[H, W, C]`` float image.
        padding: Pixels of zeros added on each side; offsets are uniform in
            ``[0, 2 * padding]`` along each axis.

    Returns:
        ``[H, W, C]`` crop.
    """
    h, w, c = image.shape
    padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(key, (2,), 0, 2 * padding + 1)
    return jax.lax.dynamic_slice(padded, (offsets[0], offsets[1], 0), (h, w, c))


def random_flip(key, image):
    """Mirrors the image left-right with probability 1/2.

    Args:
        key: PRNG key.
        image: ``[H, W, C]`` image.

    Returns:
        The image or its mirror.
    """
    return jnp.where(jax.random.bernoulli(key), image[:, ::-1, :], image)


def cutout(key, image, size: int):
    """Zeroes a ``size x size`` square centred on a uniform random pixel.

    The square spans rows ``[cy - size // 2, cy - size // 2 + size)`` (columns
    alike), clipped to the image, so near a border less than ``size**2``
    pixels are cut, as in the original Cutout.

    Args:
        key: PRNG key.
        image: ``[H, W, C]`` image.
        size: Side of the square.

    Returns:
        The image with the square set to 0 in every channel.
    """
    h, w, _ = image.shape
    key_y, key_x = jax.random.split(key)
    top = jax.random.randint(key_y, (), 0, h) - size // 2
    left = jax.random.randint(key_x, (), 0, w) - size // 2
    rows = jnp.arange(h)[:, None]
    cols = jnp.arange(w)[None, :]
    inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return jnp.where(inside[:, :, None], 0.0, image)


def _augment_one(key, image, mean, std, crop_padding, flip, cutout_size):
    """Augments one ``[H, W, C]`` unit-float image; see :func:`augment_batch`."""
    key_crop, key_flip, key_cut = jax.random.split(key, 3)
    if crop_padding > 0:
        image = random_crop(key_crop, image, crop_padding)
    if flip:
        image = random_flip(key_flip, image)
    image = normalize(image, mean, std)
    if cutout_size > 0:
        image = cutout(key_cut, image, cutout_size)
    return image


# Jitted here so that eager callers (tests, notebooks) compile once per
# shape and switch setting instead of dispatching every op; inside a caller's
# jit this is inlined as usual.
@functools.partial(jax.jit, static_argnames=("crop_padding", "flip", "cutout_size"))
def augment_batch(key, images, mean, std, *, crop_padding: int, flip: bool,
                  cutout_size: int):
    """Crop, flip, normalise and Cutout a batch, independently per example.

    Args:
        key: PRNG key; example ``i`` uses ``jax.random.split(key, B)[i]``.
        images: ``[B, H, W, C]`` uint8 or float images.
        mean: ``[C]`` per-channel mean (unit-float scale).
        std: ``[C]`` per-channel standard deviation.
        crop_padding: Zero padding for the random crop; 0 disables the crop.
        flip: Whether to flip horizontally at random.
        cutout_size: Side of the Cutout square; 0 disables Cutout.

    Returns:
        float32 ``[B, H, W, C]`` augmented, normalised images.
    """
    images = to_unit_float(images)
    keys = jax.random.split(key, images.shape[0])
    one = lambda k, x: _augment_one(k, x, mean, std, crop_padding, flip, cutout_size)
    return jax.vmap(one)(keys, images)
