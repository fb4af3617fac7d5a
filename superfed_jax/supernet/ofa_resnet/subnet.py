"""Dense standalone subnets: slice an arch out of the supernet, and put it back.

A subnet is always a first-k slice (docs/algorithm.md 2.1): the first depth+1 blocks of each stage, the first
`mid` output filters of each kept block's conv1 and the matching first `mid` input channels of its conv2.
`DenseSubnet` is an ordinary Flax model with exactly those shapes; it compiles per arch, which is fine for
export and deployment (training always uses the masked `model.Supernet`). Which parameters are sliced, and
on which side, is read from `layers.supernet_layers`.
"""
import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from superfed_jax.supernet.ofa_resnet import layers as layers_lib
from superfed_jax.supernet.ofa_resnet import model as model_lib
from superfed_jax.supernet.ofa_resnet import space as space_lib


@dataclasses.dataclass(frozen=True)
class SubnetShape:
    """Static (hashable) shape of one subnet: depth index per stage and middle width per block."""

    depth: tuple[int, ...]
    mids: tuple[int, ...]

    def kept_blocks(self, space: space_lib.SearchSpace):
        """Yields (stage, block, flat block index) of every kept block."""
        for s, depth in enumerate(self.depth):
            for b in range(depth + 1):
                yield s, b, s * space.blocks_per_stage + b


def subnet_shape(space: space_lib.SearchSpace, arch: space_lib.Arch) -> SubnetShape:
    """The static shape of a concrete (not traced) arch."""
    space_lib.validate(space, arch)
    # NumPy, not `space.block_mids`: this must work on concrete archs inside a jit trace too.
    stage_of_block = np.repeat(np.arange(space.num_stages), space.blocks_per_stage)
    mids = space.mid_table[stage_of_block, np.asarray(arch.expand)]
    return SubnetShape(depth=tuple(int(d) for d in np.asarray(arch.depth)),
                       mids=tuple(int(m) for m in mids))


class DenseSubnet(nn.Module):
    """A standalone subnet with exact (sliced) shapes; `__call__(images) -> logits`."""

    space: space_lib.SearchSpace
    shape: SubnetShape
    conv_impl: str = "xla"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images):
        space = self.space
        x = nn.relu(model_lib.Conv(space.stem_width, 3, 1, self.conv_impl, self.dtype, name="stem")(images))
        for s, b, index in self.shape.kept_blocks(space):
            stride = space.stage_strides[s] if b == 0 else 1
            x = model_lib.Block(self.shape.mids[index], space.stage_widths[s], stride, projection=b == 0,
                                conv_impl=self.conv_impl, dtype=self.dtype,
                                name=model_lib.block_name(s, b))(x)
        features = jnp.mean(x, axis=(1, 2))
        return model_lib.Dense(space.num_classes, self.dtype, name="head")(features).astype(jnp.float32)


def _elastic_slice(layer: layers_lib.Layer, mid: int) -> tuple:
    """Index of the first `mid` channels of a kernel on the layer's elastic side."""
    if layer.elastic_out:
        return (..., slice(None, mid))
    return (..., slice(None, mid), slice(None))  # elastic input: the kernel's second-to-last axis


def _get(tree, path: tuple[str, ...]):
    """The entry of a nested dict at `path`."""
    for name in path:
        tree = tree[name]
    return tree


def _put(tree: dict, path: tuple[str, ...], value) -> None:
    """Sets `tree[path]` to `value`, copying (or creating) the dicts along the path: the caller's input
    trees share those dicts and must not change."""
    *parents, last = path
    for name in parents:
        tree[name] = dict(tree.get(name, {}))
        tree = tree[name]
    tree[last] = value


def _block_layers(space: space_lib.SearchSpace, shape: SubnetShape):
    """The kept layers that belong to a block (the stem and the head are never sliced)."""
    return [layer for layer in layers_lib.kept_layers(space, shape.depth) if layer.block_index is not None]


def extract(space: space_lib.SearchSpace, params, arch: space_lib.Arch):
    """Slices the supernet params of a concrete arch into `DenseSubnet` params."""
    shape = subnet_shape(space, arch)
    dense = {"stem": params["stem"], "head": params["head"]}
    for layer in _block_layers(space, shape):
        module = _get(params, layer.path)
        if layer.elastic_in or layer.elastic_out:
            index = _elastic_slice(layer, shape.mids[layer.block_index])
            module = {"kernel": module["kernel"][index]}
        _put(dense, layer.path, module)
    return dense


def embed(space: space_lib.SearchSpace, dense_params, arch: space_lib.Arch, supernet_params):
    """Writes `DenseSubnet` params back into their supernet positions; other entries are kept."""
    shape = subnet_shape(space, arch)
    merged = jax.tree.map(jnp.asarray, supernet_params)  # a fresh tree; NumPy leaves gain `.at`
    merged["stem"], merged["head"] = dense_params["stem"], dense_params["head"]
    for layer in _block_layers(space, shape):
        module = _get(dense_params, layer.path)
        if layer.elastic_in or layer.elastic_out:
            index = _elastic_slice(layer, shape.mids[layer.block_index])
            module = {"kernel": _get(merged, layer.path)["kernel"].at[index].set(module["kernel"])}
        _put(merged, layer.path, module)
    return merged
