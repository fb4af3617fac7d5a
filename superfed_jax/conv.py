"""Two interchangeable implementations of a 2-D convolution (NHWC inputs, HWIO kernels).

* ``"xla"``: ``lax.conv_general_dilated``; the natural choice on GPU/TPU.
* ``"im2col"``: the k*k shifted (strided) slices of the padded input concatenated along channels, then one
  matrix product. XLA:CPU runs convolution gradients very slowly inside loop bodies (`lax.scan`) and turns
  vmapped per-client kernels into slow grouped convolutions, while batched matrix products stay fast
  (shared/spec/performance-notes.md), so this form is what makes a whole federated round fast on CPU.

Padding is symmetric (k - 1) // 2 on each side, as in PyTorch's ``padding=1`` for 3x3 kernels; XLA's "SAME"
would pad a stride-2 convolution asymmetrically and shift the sampling grid.
"""
import jax
import jax.numpy as jnp
from jax import lax

CONV_IMPLS = ("xla", "im2col")


def conv2d(x: jax.Array, kernel: jax.Array, stride: int, impl: str) -> jax.Array:
    """Convolves ``x`` [N, H, W, Cin] with ``kernel`` [k, k, Cin, Cout]; returns [N, Ho, Wo, Cout]."""
    if impl == "xla":
        return _conv_xla(x, kernel, stride)
    if impl == "im2col":
        return _conv_im2col(x, kernel, stride)
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


def _conv_im2col(x, kernel, stride):
    size, _, in_channels, out_channels = kernel.shape
    pad = _padding(size)
    if pad:
        x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out_h = (x.shape[1] - size) // stride + 1
    out_w = (x.shape[2] - size) // stride + 1
    # Column order (row offset, column offset, input channel) matches the HWIO kernel flattened row-major.
    patches = [x[:, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride, :]
               for i in range(size) for j in range(size)]
    columns = patches[0] if len(patches) == 1 else jnp.concatenate(patches, axis=-1)
    return columns @ kernel.reshape(size * size * in_channels, out_channels)
