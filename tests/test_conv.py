"""Tests for superfed_jax.supernet.conv: the 'xla' and 'im2col' convolutions against each other and a NumPy loop.

Padding must be symmetric (k - 1) // 2 as in PyTorch's ``padding=1`` (docs/algorithm.md section 2), not XLA's
"SAME", which pads a stride-2 convolution of an even input asymmetrically.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superfed_jax.supernet import conv


def loop_conv(x, kernel, stride):
    """Slow float64 reference: explicit loops over output pixels and kernel taps, PyTorch padding."""
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    k = kernel.shape[0]
    pad = (k - 1) // 2
    n, h, w, _ = x.shape
    padded = np.zeros((n, h + 2 * pad, w + 2 * pad, x.shape[3]))
    padded[:, pad:pad + h, pad:pad + w] = x
    out_h = (h + 2 * pad - k) // stride + 1
    out_w = (w + 2 * pad - k) // stride + 1
    out = np.zeros((n, out_h, out_w, kernel.shape[3]))
    for i in range(out_h):
        for j in range(out_w):
            for di in range(k):
                for dj in range(k):
                    pixel = padded[:, i * stride + di, j * stride + dj, :]  # [n, cin]
                    out[:, i, j, :] += pixel @ kernel[di, dj]
    return out


def _random(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


CASES = [(k, s, size) for k in (1, 3) for s in (1, 2) for size in (7, 8)]


@pytest.mark.parametrize("k, stride, size", CASES)
def test_impls_agree_with_loop_reference_and_each_other(k, stride, size):
    x = _random((2, size, size, 3), 0)
    kernel = _random((k, k, 3, 5), 1)
    expected = loop_conv(x, kernel, stride)
    out_size = (size + 2 * ((k - 1) // 2) - k) // stride + 1
    assert expected.shape == (2, out_size, out_size, 5)
    for impl in conv.CONV_IMPLS:
        got = np.asarray(jax.jit(conv.conv2d, static_argnums=(2, 3))(x, kernel, stride, impl))
        assert got.shape == expected.shape, impl
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=impl)


@pytest.mark.parametrize("k, stride, size", CASES)
def test_impls_have_equal_gradients(k, stride, size):
    """Gradients of a random scalar function of the output, wrt input and kernel, agree across impls."""
    x = _random((2, size, size, 4), 2)
    kernel = _random((k, k, 4, 6), 3)
    out_size = (size + 2 * ((k - 1) // 2) - k) // stride + 1
    weights = _random((2, out_size, out_size, 6), 4)

    def scalar(x, kernel, impl):
        return jnp.sum(jnp.tanh(conv.conv2d(x, kernel, stride, impl)) * weights)

    results = {impl: jax.jit(jax.value_and_grad(scalar, argnums=(0, 1)), static_argnums=2)(
        x, kernel, impl) for impl in conv.CONV_IMPLS}
    (v_xla, (gx_xla, gk_xla)), (v_col, (gx_col, gk_col)) = results["xla"], results["im2col"]
    np.testing.assert_allclose(v_col, v_xla, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(gx_col, gx_xla, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gk_col, gk_xla, rtol=1e-4, atol=1e-4)
    assert np.abs(np.asarray(gx_xla)).max() > 1e-2 and np.abs(np.asarray(gk_xla)).max() > 1e-2


@pytest.mark.parametrize("impl", conv.CONV_IMPLS)
def test_stride2_sampling_grid_is_pytorch_padding(impl):
    """8x8, 3x3, stride 2 -> 4x4 whose windows start at rows/cols 0, 2, 4, 6 of the 1-padded grid.

    With only the top-left tap set, output[i, j] = padded[2i, 2j] = x[2i - 1, 2j - 1] (0 on the border);
    XLA's SAME would pad (0, 1) and give x[2i, 2j] instead.
    """
    x = np.arange(64, dtype=np.float32).reshape(1, 8, 8, 1) + 1.0
    kernel = np.zeros((3, 3, 1, 1), np.float32)
    kernel[0, 0, 0, 0] = 1.0
    got = np.asarray(conv.conv2d(x, kernel, 2, impl))[0, :, :, 0]
    expected = np.zeros((4, 4), np.float32)
    for i in range(1, 4):
        for j in range(1, 4):
            expected[i, j] = x[0, 2 * i - 1, 2 * j - 1, 0]
    np.testing.assert_array_equal(got, expected)
    # The centre tap samples x at rows/cols 0, 2, 4, 6.
    kernel = np.zeros((3, 3, 1, 1), np.float32)
    kernel[1, 1, 0, 0] = 1.0
    got = np.asarray(conv.conv2d(x, kernel, 2, impl))[0, :, :, 0]
    np.testing.assert_array_equal(got, x[0, 0:8:2, 0:8:2, 0])


@pytest.mark.parametrize("impl", conv.CONV_IMPLS)
def test_hand_computed_3x3_box_filter(impl):
    """An all-ones 3x3 kernel on a 3x3 all-ones image counts in-bounds neighbours (zero padding)."""
    x = np.ones((1, 3, 3, 1), np.float32)
    kernel = np.ones((3, 3, 1, 1), np.float32)
    got = np.asarray(conv.conv2d(x, kernel, 1, impl))[0, :, :, 0]
    np.testing.assert_array_equal(got, [[4, 6, 4], [6, 9, 6], [4, 6, 4]])


@pytest.mark.parametrize("impl", ["XLA", "im2col ", "", "cudnn", None])
def test_unknown_impl_raises(impl):
    x = np.ones((1, 4, 4, 1), np.float32)
    kernel = np.ones((3, 3, 1, 1), np.float32)
    with pytest.raises(ValueError, match="xla.*im2col"):
        conv.conv2d(x, kernel, 1, impl)
