"""One static description of the supernet's layers, read by masks, cost, memory and subnet slicing.

The supernet (`model.Supernet`) is a 3x3 stem, stages of residual blocks and a dense head. Every layer
with parameters is described here once, at full (supernet) width, together with what an arch changes
about it:

* a block's conv1 (3x3, the stage's stride on the first block) maps the block input to the block's
  *middle width*, which the arch's expand index chooses: its output width is elastic;
* its conv2 (3x3, stride 1) maps the middle width back to the stage width: its input width is elastic;
* the first block of every stage has a 1x1 projection shortcut, run after average pooling by the stride;
* every block but a stage's first can be skipped (the arch's depth), which removes all of its layers.

`supernet_layers(space)` lists them in forward order. A layer's `path` is its module path in the params
pytree (the names `model.Supernet` gives its modules, so checkpoints keep loading). The layer's
`widths(mids)` and `kept(depth)` say what one concrete arch uses of it; the arch's middle widths come from
`space.block_mids` / `subnet.subnet_shape`.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional, Sequence

from superfed_jax.supernet.ofa_resnet import space as space_lib

CONV, LINEAR = "conv", "linear"


def block_name(stage: int, block: int) -> str:
    """Parameter-tree name of a block, shared by the supernet, its masks and dense subnets."""
    return f"stage{stage}_block{block}"


def conv_out_size(size: int, kernel: int, stride: int) -> int:
    """Output size of a convolution with symmetric padding (k - 1) // 2, as in `conv.conv2d`."""
    pad = (kernel - 1) // 2
    return (size + 2 * pad - kernel) // stride + 1


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer with parameters, at the supernet's full width.

    Attributes:
      path: module path in the params pytree, e.g. ("stage1_block0", "conv1") or ("head",).
      kind: CONV (a bias-free square convolution, kernel [k, k, in, out]) or LINEAR (kernel [in, out]
        and bias [out]).
      kernel: spatial kernel size (1 for a linear layer).
      stride: the convolution's stride (1 for a linear layer).
      in_channels: input channels at full width.
      out_channels: output channels at full width.
      input_size: height and width of the layer's (square) input; 1 for the head, which reads the
        globally pooled features.
      pool_stride: stride of the average pooling applied to the input before the layer (the projection
        shortcut's downsampling; 1 = none). `input_size` is the size after that pooling.
      stage: stage index of the layer's block; None for the stem and the head.
      block: block index within the stage; None for the stem and the head.
      block_index: flat block index (stage * blocks_per_stage + block), the index into an arch's
        `expand` and into `space.block_mids`; None for the stem and the head.
      elastic_in: the input width is the block's elastic middle width (conv2).
      elastic_out: the output width is the block's elastic middle width (conv1).
      skippable: the arch's depth can drop the layer's block (every block but a stage's first).
    """

    path: tuple[str, ...]
    kind: str
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    input_size: int
    pool_stride: int = 1
    stage: Optional[int] = None
    block: Optional[int] = None
    block_index: Optional[int] = None
    elastic_in: bool = False
    elastic_out: bool = False
    skippable: bool = False

    @property
    def name(self) -> str:
        """The last module name of the path: 'stem', 'conv1', 'conv2', 'shortcut' or 'head'."""
        return self.path[-1]

    @property
    def output_size(self) -> int:
        """Height and width of the layer's output."""
        return conv_out_size(self.input_size, self.kernel, self.stride)

    @property
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Full-width shape of every parameter of the layer, by parameter name."""
        if self.kind == CONV:
            return {"kernel": (self.kernel, self.kernel, self.in_channels, self.out_channels)}
        return {"kernel": (self.in_channels, self.out_channels), "bias": (self.out_channels,)}

    def widths(self, mids: Sequence[int]) -> tuple[int, int]:
        """(input, output) channels the layer has in a subnet whose block middle widths are `mids`.

        `mids` is indexed by flat block index (e.g. `SubnetShape.mids`); layers without an elastic side
        keep their full widths.
        """
        mid = None if self.block_index is None else int(mids[self.block_index])
        return (mid if self.elastic_in else self.in_channels,
                mid if self.elastic_out else self.out_channels)

    def kept(self, depth: Sequence[int]) -> bool:
        """Whether a subnet with per-stage depth indices `depth` uses this layer."""
        return not self.skippable or self.block <= int(depth[self.stage])


@functools.lru_cache(maxsize=None)
def supernet_layers(space: space_lib.SearchSpace) -> tuple[Layer, ...]:
    """Every layer with parameters of the supernet of `space`, in forward order.

    Skipped blocks are the identity and a stage's first block is always kept, so each block's input
    width and resolution are the same in every subnet: they are fixed here by the space alone.
    """
    size = space.input_size
    layers = [Layer(("stem",), CONV, 3, 1, space.input_channels, space.stem_width, size)]
    cin = space.stem_width
    for s, (width, stage_stride) in enumerate(zip(space.stage_widths, space.stage_strides)):
        mid = space.max_mids[s]
        for b in range(space.blocks_per_stage):
            stride = stage_stride if b == 0 else 1
            out = conv_out_size(size, 3, stride)
            name = block_name(s, b)
            where = dict(stage=s, block=b, block_index=s * space.blocks_per_stage + b, skippable=b > 0)
            layers.append(Layer((name, "conv1"), CONV, 3, stride, cin, mid, size, elastic_out=True,
                                **where))
            layers.append(Layer((name, "conv2"), CONV, 3, 1, mid, width, out, elastic_in=True, **where))
            if b == 0:
                # Average pooling by the stride (ceil mode) gives the conv1 output's resolution.
                layers.append(Layer((name, "shortcut"), CONV, 1, 1, cin, width, out, pool_stride=stride,
                                    **where))
            size, cin = out, width
    layers.append(Layer(("head",), LINEAR, 1, 1, cin, space.num_classes, 1))
    return tuple(layers)


def kept_layers(space: space_lib.SearchSpace, depth: Sequence[int]) -> tuple[Layer, ...]:
    """The layers a subnet with per-stage depth indices `depth` (concrete ints) uses, in forward order."""
    return tuple(layer for layer in supernet_layers(space) if layer.kept(depth))
