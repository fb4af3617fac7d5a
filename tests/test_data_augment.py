"""Tests for the on-device augmentation in superfed_jax.data.augment."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superfed_jax.data import augment as A
from superfed_jax.data.dataset import to_unit_float

MEAN = np.array([0.5, 0.4, 0.3], np.float32)
STD = np.array([0.2, 0.25, 0.3], np.float32)
# One setting with every step on, shared by tests so it compiles once.
FULL = dict(crop_padding=2, flip=True, cutout_size=4)


def _images(b=16, h=12, w=10, seed=0):
    """Random uint8 images: distinct enough that windows are identifiable."""
    return np.random.default_rng(seed).integers(0, 256, (b, h, w, 3), dtype=np.uint8)


def _unnormalize(out):
    return np.asarray(out) * STD + MEAN


def _window_offsets(out_img, src_img, pad):
    """All (dy, dx) whose window of the zero-padded source equals the output."""
    h, w, _ = src_img.shape
    padded = np.pad(src_img, ((pad, pad), (pad, pad), (0, 0)))
    return [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
            if np.allclose(padded[dy:dy + h, dx:dx + w], out_img, atol=1e-5)]


def test_to_unit_float_scales_uint8_and_keeps_floats():
    np.testing.assert_allclose(to_unit_float(np.array([0, 51, 255], np.uint8)), [0, 0.2, 1])
    x = np.array([3.5, -1.0], np.float64)
    out = to_unit_float(x)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, x)
    with pytest.raises(TypeError, match="int32"):
        to_unit_float(np.array([1], np.int32))


def test_normalize_matches_numpy():
    x = _images()
    expected = (x.astype(np.float32) / 255.0 - MEAN) / STD
    np.testing.assert_allclose(A.normalize(x, MEAN, STD), expected, rtol=1e-5, atol=1e-5)


def test_shape_dtype_and_all_off_equals_normalize():
    x = _images()
    out = A.augment_batch(jax.random.key(0), x, MEAN, STD,
                          crop_padding=0, flip=False, cutout_size=0)
    assert out.shape == x.shape and out.dtype == jnp.float32
    # XLA may fuse /255 differently from the eager op: float32 rounding only.
    np.testing.assert_allclose(out, A.normalize(x, MEAN, STD), rtol=1e-6, atol=1e-6)
    full = A.augment_batch(jax.random.key(0), x, MEAN, STD, **FULL)
    assert full.shape == x.shape and full.dtype == jnp.float32


def test_crop_is_a_window_of_the_zero_padded_image():
    x = _images(b=32)
    pad = 3
    out = A.augment_batch(jax.random.key(1), x, MEAN, STD,
                          crop_padding=pad, flip=False, cutout_size=0)
    src = x.astype(np.float32) / 255.0
    offsets = []
    for i in range(len(x)):
        found = _window_offsets(_unnormalize(out[i]), src[i], pad)
        assert len(found) == 1, f"example {i}: windows {found}"
        offsets.append(found[0])
    # Offsets are drawn per example and cover both ends of the range.
    assert len(set(offsets)) > 8
    flat = np.array(offsets).ravel()
    assert flat.min() >= 0 and flat.max() <= 2 * pad


def test_crop_padding_is_black_in_pixel_space():
    # Padding happens before normalisation, so padded pixels map to -mean/std.
    x = np.full((64, 6, 6, 3), 255, np.uint8)
    out = _unnormalize(A.augment_batch(jax.random.key(2), x, MEAN, STD,
                                       crop_padding=2, flip=False, cutout_size=0))
    assert np.all(np.isclose(out, 0.0, atol=1e-5) | np.isclose(out, 1.0, atol=1e-5))
    assert np.any(np.isclose(out, 0.0, atol=1e-5))


def test_flip_mirrors_about_half_the_images():
    x = _images(b=64)
    out = _unnormalize(A.augment_batch(jax.random.key(3), x, MEAN, STD,
                                       crop_padding=0, flip=True, cutout_size=0))
    src = x.astype(np.float32) / 255.0
    flipped = 0
    for i in range(len(x)):
        same = np.allclose(out[i], src[i], atol=1e-5)
        mirrored = np.allclose(out[i], src[i][:, ::-1], atol=1e-5)
        assert same != mirrored
        flipped += mirrored
    assert 16 <= flipped <= 48


def _possible_span(lo, hi, extent, size):
    """Whether [lo, hi) is the clip of [c - size//2, c - size//2 + size) for some c."""
    return any(max(c - size // 2, 0) == lo and min(c - size // 2 + size, extent) == hi
               for c in range(extent))


def test_cutout_zeroes_a_clipped_square_after_normalization():
    h, w, size = 12, 10, 6
    # Images equal to the mean normalise to 0; use ones instead so that only
    # Cutout can produce zeros: (1 - 0) / 1 = 1.
    x = np.ones((128, h, w, 3), np.float32)
    out = np.asarray(A.augment_batch(jax.random.key(4), x, np.zeros(3), np.ones(3),
                                     crop_padding=0, flip=False, cutout_size=size))
    full_squares = 0
    for img in out:
        zero = img == 0.0
        assert np.all(zero == zero[..., :1])  # every channel cut alike
        rows = np.flatnonzero(zero[..., 0].any(axis=1))
        cols = np.flatnonzero(zero[..., 0].any(axis=0))
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        expected = np.zeros((h, w), bool)
        expected[r0:r1, c0:c1] = True
        np.testing.assert_array_equal(zero[..., 0], expected)  # a filled rectangle
        assert np.all(img[~zero] == 1.0)
        assert _possible_span(r0, r1, h, size) and _possible_span(c0, c1, w, size)
        full_squares += (r1 - r0, c1 - c0) == (size, size)
    assert 0 < full_squares < len(out)  # some interior, some clipped


def test_cutout_applies_after_normalization():
    # With a non-zero mean, the cut region is exactly 0 in normalised space
    # (not -mean/std, which is where zero pixels would land).
    x = np.full((8, 8, 8, 3), 200, np.uint8)
    out = np.asarray(A.augment_batch(jax.random.key(5), x, MEAN, STD,
                                     crop_padding=0, flip=False, cutout_size=4))
    assert np.all(np.isclose(out, 0.0) | np.isclose(out, (200 / 255 - MEAN) / STD))
    assert np.any(out == 0.0)


def test_determinism_from_key_and_jit():
    x = _images()
    a = A.augment_batch(jax.random.key(7), x, MEAN, STD, **FULL)
    b = A.augment_batch(jax.random.key(7), x, MEAN, STD, **FULL)
    c = A.augment_batch(jax.random.key(8), x, MEAN, STD, **FULL)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Inside a caller's jit (how training uses it) the result is the same.
    jitted = jax.jit(lambda k, imgs: A.augment_batch(k, imgs, MEAN, STD, **FULL))
    np.testing.assert_allclose(jitted(jax.random.key(7), x), a, rtol=1e-6, atol=1e-6)


def test_example_i_uses_split_key_i():
    # Per-example keys come from jax.random.split(key, B): example i of the
    # batch equals augmenting image i alone with the i-th split key.
    x = _images()
    key = jax.random.key(9)
    out = A.augment_batch(key, x, MEAN, STD, **FULL)
    one = jax.jit(jax.vmap(lambda k, img: A._augment_one(k, img, MEAN, STD, 2, True, 4)))
    np.testing.assert_allclose(out, one(jax.random.split(key, len(x)), to_unit_float(x)),
                               rtol=1e-6, atol=1e-6)
