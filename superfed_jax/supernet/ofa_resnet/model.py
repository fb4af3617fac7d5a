"""The weight-shared supernet (docs/algorithm.md section 2): a no-normalization ResNet whose subnets are masks.

Topology (Khare et al., arXiv 2301.10879, the once-for-all ResNet for 32x32 inputs): a 3x3 stem, stages of
residual blocks, global average pooling and a dense head. A block computes

    branch = relu(conv3x3(mid -> width)(relu(conv3x3_stride(cin -> mid)(x))))
    out = relu(branch + shortcut(x))

with a projection shortcut (average pool by the stride, then a 1x1 conv) on every stage's first block.

The forward pass takes the arch as integer arrays (`space.Arch`), so one compiled program serves every
subnet: the middle channels beyond a block's width are multiplied by zero, and skipped blocks pass their
input through. With no normalization, momentum or weight decay this is exactly the sliced dense subnet:
masked weights receive zero gradient (tested against `subnet.DenseSubnet`).
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from superfed_jax.supernet import conv
from superfed_jax.supernet import family as family_lib
from superfed_jax.supernet.ofa_resnet import layers
from superfed_jax.supernet.ofa_resnet import space as space_lib

# Compute dtypes of convolutions and matmuls (`model.dtype`, passed through `jnp.dtype`); params stay float32.
DTYPES = family_lib.DTYPES


def torch_uniform(fan_in: int):
    """PyTorch's default init for conv and linear layers: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    The published runs train a no-norm net at lr 0.1; this init (fan_in of the *max* shape) is part of what
    makes that stable, so it is reproduced rather than Flax's lecun_normal.
    """
    bound = 1.0 / np.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class Conv(nn.Module):
    """Bias-free square convolution with PyTorch init and a selectable implementation (`conv.CONV_IMPLS`)."""

    features: int
    kernel_size: int
    stride: int = 1
    impl: str = "xla"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        in_channels = x.shape[-1]
        fan_in = self.kernel_size * self.kernel_size * in_channels
        kernel = self.param("kernel", torch_uniform(fan_in),
                            (self.kernel_size, self.kernel_size, in_channels, self.features))
        return conv.conv2d(x.astype(self.dtype), kernel.astype(self.dtype), self.stride, self.impl)


class Dense(nn.Module):
    """Linear layer with PyTorch init for kernel and bias."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        init = torch_uniform(x.shape[-1])
        kernel = self.param("kernel", init, (x.shape[-1], self.features))
        bias = self.param("bias", init, (self.features,))
        return x.astype(self.dtype) @ kernel.astype(self.dtype) + bias.astype(self.dtype)


def avg_pool(x: jax.Array, stride: int) -> jax.Array:
    """Average pooling with window = stride, ceil mode (the projection shortcut's downsampling).

    Matches the 3x3 stride-s conv's ceil(H / s) output rows; a partial last window averages only its
    in-bounds pixels, as PyTorch's `AvgPool2d(ceil_mode=True)` in the reference code does. Written as a
    reshape and a sum rather than `reduce_window`, whose gradient is costlier inside loops on XLA:CPU.
    """
    if stride == 1:
        return x
    n, h, w, c = x.shape
    pad_h, pad_w = -h % stride, -w % stride
    out_h, out_w = (h + pad_h) // stride, (w + pad_w) // stride
    x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
    sums = x.reshape(n, out_h, stride, out_w, stride, c).sum(axis=(2, 4))
    counts = np.pad(np.ones((h, w)), ((0, pad_h), (0, pad_w))).reshape(out_h, stride, out_w, stride)
    return sums / counts.sum(axis=(1, 3))[None, :, :, None].astype(sums.dtype)


class Block(nn.Module):
    """Residual block; `mid` channels beyond the arch's width are zeroed by `channel_mask` [mid]."""

    mid: int
    width: int
    stride: int
    projection: bool
    conv_impl: str = "xla"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, channel_mask=None):
        conv_ = lambda f, k, s, name: Conv(f, k, s, self.conv_impl, self.dtype, name=name)  # noqa: E731
        hidden = nn.relu(conv_(self.mid, 3, self.stride, "conv1")(x))
        if channel_mask is not None:
            # `where`, not a product: masked channels are exactly 0 even if an activation is not finite.
            hidden = jnp.where(channel_mask, hidden, 0)
        branch = nn.relu(conv_(self.width, 3, 1, "conv2")(hidden))
        shortcut = x
        if self.projection:
            shortcut = conv_(self.width, 1, 1, "shortcut")(avg_pool(x, self.stride))
        return nn.relu(branch + shortcut)


# Defined with the layer description (`layers.py`), which names every parameter path; kept here too
# because callers know it as `model.block_name`.
block_name = layers.block_name


class Supernet(nn.Module):
    """The full supernet; `__call__(images [N,H,W,C], arch) -> logits [N, classes]` for one arch.

    Apply it to a batch of archs with `jax.vmap`. Parameters always have the supernet's maximum shapes.
    """

    space: space_lib.SearchSpace
    conv_impl: str = "xla"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, arch: space_lib.Arch):
        space = self.space
        active = space_lib.block_active(space, arch)
        mids = space_lib.block_mids(space, arch)
        x = nn.relu(Conv(space.stem_width, 3, 1, self.conv_impl, self.dtype, name="stem")(images))
        for s, (width, stride) in enumerate(zip(space.stage_widths, space.stage_strides)):
            mid_max = space.max_mids[s]
            for b in range(space.blocks_per_stage):
                index = s * space.blocks_per_stage + b
                channel_mask = jnp.arange(mid_max) < mids[index]
                block = Block(mid_max, width, stride if b == 0 else 1, projection=b == 0,
                              conv_impl=self.conv_impl, dtype=self.dtype, name=block_name(s, b))
                out = block(x, channel_mask)
                # The first block of a stage is always kept; a skipped block is the identity.
                x = out if b == 0 else jnp.where(active[index], out, x)
        features = jnp.mean(x, axis=(1, 2))
        return Dense(space.num_classes, self.dtype, name="head")(features).astype(jnp.float32)


def init_params(space: space_lib.SearchSpace, key: jax.Array, conv_impl: str = "xla", out_sharding=None):
    """Initial supernet parameters (a plain nested dict, no `{'params': ...}` wrapper).

    Jitted: eager Flax init dispatches every op of a forward pass one by one (tens of seconds on CPU).
    `out_sharding` lets the params be born where they will live (e.g. replicated over a mesh).
    """
    images = jnp.zeros((1, space.input_size, space.input_size, space.input_channels), jnp.float32)
    model = Supernet(space, conv_impl)
    init = jax.jit(lambda k: model.init(k, images, space_lib.largest(space))["params"],
                   out_shardings=out_sharding)
    return init(key)
