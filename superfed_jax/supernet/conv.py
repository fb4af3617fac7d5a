"""Interchangeable implementations of a 2-D convolution (NHWC inputs, HWIO kernels).

* ``"xla"``: ``lax.conv_general_dilated`` forward and backward; the natural choice on GPU/TPU.
* ``"im2col"``: forward and backward written as matrix products (a `custom_vjp`). XLA:CPU runs convolution
  gradients very slowly inside loop bodies (`lax.scan`) and turns vmapped per-client kernels into slow grouped
  convolutions, while (batched) matrix products stay fast (docs/performance.md 3). Safe under
  `vmap` over clients.
* ``"xla_mmgrad"``: ``lax.conv_general_dilated`` forward (fast on XLA:CPU, also inside loops) with the
  matrix-product backward of ``"im2col"``. The fastest on CPU when clients are *not* vmapped
  (`fl.chunk_size=1`); under `vmap` its forward becomes a grouped convolution, so use ``"im2col"`` there.

The matrix-product forms never materialize the k*k-fold expansion of the *wide* side of a convolution: of the
two dual formulations

  A (im2col):  out = columns(x) @ K[k*k*Cin, Cout]        the expansion has k*k*Cin channels
  B (shift):   out = sum_t shift_t(x @ K[Cin, k*k*Cout])  the expansion has k*k*Cout channels

the forward uses A when Cin <= Cout and B otherwise, and the backward uses the dual pair, so every expanded
tensor has k*k*min(Cin, Cout) channels (a residual block's middle width). Plain autodiff of A is much slower:
its input gradient is a sum of k*k padded slices that XLA:CPU fuses, duplicated, into several consumers.

Padding is symmetric (k - 1) // 2 on each side, as in PyTorch's ``padding=1`` for 3x3 kernels; XLA's "SAME"
would pad a stride-2 convolution asymmetrically and shift the sampling grid.
"""
import functools

import jax
import jax.numpy as jnp
from jax import lax

CONV_IMPLS = ("xla", "im2col", "xla_mmgrad")


def conv2d(x: jax.Array, kernel: jax.Array, stride: int, impl: str) -> jax.Array:
    """Convolves ``x`` [N, H, W, Cin] with ``kernel`` [k, k, Cin, Cout]; returns [N, Ho, Wo, Cout]."""
    if impl == "xla":
        return _conv_xla(x, kernel, stride)
    if impl == "im2col":
        return _conv_matmul(x, kernel, stride)
    if impl == "xla_mmgrad":
        return _conv_xla_mmgrad(x, kernel, stride)
    raise ValueError(f"model.conv_impl={impl!r}: allowed values are {list(CONV_IMPLS)}")


def _padding(kernel_size: int) -> int:
    return (kernel_size - 1) // 2


def _conv_xla(x, kernel, stride):
    if kernel.shape[:2] == (1, 1) and stride == 1:
        # A 1x1 conv is a matmul. Written as one because XLA:CPU miscompiles a vmapped (per-client) 1x1
        # conv whose client axis is sharded over devices: wrong values or a feature_group_count error
        # (tests/test_round.py::test_client_sharded_forward_matches_unsharded).
        return x @ kernel[0, 0]
    pad = _padding(kernel.shape[0])
    return lax.conv_general_dilated(x, kernel, window_strides=(stride, stride),
                                    padding=((pad, pad), (pad, pad)),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _out_size(size_in, kernel_size, stride):
    return (size_in + 2 * _padding(kernel_size) - kernel_size) // stride + 1


def _matmul(a, b):
    """a [..., K] @ b [K, M] as one 2-D matrix product."""
    return (a.reshape(-1, a.shape[-1]) @ b).reshape(a.shape[:-1] + (b.shape[-1],))


def _weight_matmul(a, b):
    """sum over all leading positions of a[..., K]^T b[..., M] -> [K, M]."""
    return lax.dot_general(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]),
                           (((0,), (0,)), ((), ())))


def _columns(x, size, stride):
    """im2col: [N, H, W, C] -> [N, Ho, Wo, size*size*C], column order (row offset, col offset, channel)."""
    pad = _padding(size)
    if pad:
        x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out_h = (x.shape[1] - size) // stride + 1
    out_w = (x.shape[2] - size) // stride + 1
    patches = [x[:, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride, :]
               for i in range(size) for j in range(size)]
    return patches[0] if len(patches) == 1 else jnp.concatenate(patches, axis=-1)


def _place(y, size, stride, i, j, height, width):
    """[N, Ho, Wo, C] -> [N, H, W, C]: y[ho, wo] moved to input position (stride*ho + i - p, stride*wo + j - p)
    (zeros elsewhere); the transpose of taking tap (i, j) of the columns."""
    pad = _padding(size)
    out_h, out_w = y.shape[1], y.shape[2]
    return lax.pad(y, jnp.zeros((), y.dtype), (
        (0, 0, 0),
        (i - pad, height - 1 - (stride * (out_h - 1) + i - pad), stride - 1),
        (j - pad, width - 1 - (stride * (out_w - 1) + j - pad), stride - 1),
        (0, 0, 0)))


def _gather_taps(z, size, stride, out_h, out_w):
    """z [N, H, W, size*size, C] (per-tap products at input positions) -> [N, Ho, Wo, C]: the sum over taps
    t = (i, j) of z[stride*ho + i - p, stride*wo + j - p, t] (formulation B's forward)."""
    pad = _padding(size)
    if pad:
        z = jnp.pad(z, ((0, 0), (pad, pad), (pad, pad), (0, 0), (0, 0)))
    out = None
    for i in range(size):
        for j in range(size):
            tap = z[:, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride,
                    i * size + j, :]
            out = tap if out is None else out + tap
    return out


def _expand_input(kernel) -> bool:
    """Formulation A (expand the input) when the input is the narrow side."""
    return kernel.shape[2] <= kernel.shape[3]


def _matmul_forward(x, kernel, stride):
    size, _, in_channels, out_channels = kernel.shape
    if size == 1 and stride == 1:
        return _matmul(x, kernel.reshape(in_channels, out_channels))
    if _expand_input(kernel):
        return _matmul(_columns(x, size, stride), kernel.reshape(size * size * in_channels, out_channels))
    n, height, width, _ = x.shape
    z = _matmul(x, kernel.transpose(2, 0, 1, 3).reshape(in_channels, size * size * out_channels))
    return _gather_taps(z.reshape(n, height, width, size * size, out_channels), size, stride,
                        _out_size(height, size, stride), _out_size(width, size, stride))


def _matmul_backward(stride, residuals, dy):
    """(dx, dkernel) of the convolution as matrix products; expansions on the narrow side only."""
    x, kernel = residuals
    size, _, in_channels, out_channels = kernel.shape
    _, height, width, _ = x.shape
    if size == 1 and stride == 1:
        kernel_2d = kernel.reshape(in_channels, out_channels)
        return _matmul(dy, kernel_2d.T), _weight_matmul(x, dy).reshape(kernel.shape)
    taps = [(i, j) for i in range(size) for j in range(size)]
    if _expand_input(kernel):
        # dW = columns(x)^T dY;  dX = col2im(dY K^T): each tap's [.., Cin] slice placed back and summed.
        kernel_2d = kernel.reshape(size * size * in_channels, out_channels)
        dkernel = _weight_matmul(_columns(x, size, stride), dy).reshape(kernel.shape)
        dcolumns = _matmul(dy, kernel_2d.T).reshape(dy.shape[:3] + (size * size, in_channels))
        dx = sum(_place(dcolumns[:, :, :, t, :], size, stride, i, j, height, width)
                 for t, (i, j) in enumerate(taps))
    else:
        # dY placed at every tap's input positions: [N, H, W, size*size*Cout] (Cout is the narrow side).
        shifted = jnp.concatenate([_place(dy, size, stride, i, j, height, width) for i, j in taps], axis=-1)
        dkernel = _weight_matmul(x, shifted).reshape(in_channels, size, size, out_channels)
        dkernel = dkernel.transpose(1, 2, 0, 3)
        dx = _matmul(shifted, kernel.transpose(0, 1, 3, 2).reshape(size * size * out_channels, in_channels))
    return dx, dkernel


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_matmul(x, kernel, stride):
    return _matmul_forward(x, kernel, stride)


_conv_matmul.defvjp(lambda x, kernel, stride: (_matmul_forward(x, kernel, stride), (x, kernel)),
                    _matmul_backward)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_xla_mmgrad(x, kernel, stride):
    return _conv_xla(x, kernel, stride)


_conv_xla_mmgrad.defvjp(lambda x, kernel, stride: (_conv_xla(x, kernel, stride), (x, kernel)),
                        _matmul_backward)
