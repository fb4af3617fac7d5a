"""Activation elements of one OFA-ResNet training step per example, for the up-front memory estimate.

`superfed_jax/run/memory.py` holds the estimate of a round (params-sized copies, clients in flight) and
reads this family's part through `Family.activation_elements`: every feature map of the *supernet* forward
pass (the masked supernet computes max-width tensors whatever the arch), the backward pass's working set,
and for matrix-product convolutions their k*k channel expansions.
"""
from superfed_jax.supernet.ofa_resnet import layers as layers_lib
from superfed_jax.supernet.ofa_resnet import space as space_lib


def _feature_maps(space: space_lib.SearchSpace):
    """Yields the elements per example of every feature map the supernet's forward pass makes.

    Each convolution output and each non-linearity / add / select output is counted once: those are the
    values autodiff keeps for the backward pass (a ReLU's gradient needs its input or output).
    """
    yield space.input_size ** 2 * space.input_channels  # the augmented input
    for layer in layers_lib.supernet_layers(space):
        if layer.kind != layers_lib.CONV:
            continue  # the head's values are counted in `activation_elements`
        out = layer.output_size ** 2 * layer.out_channels
        if layer.name == "shortcut":
            if layer.pool_stride > 1:
                yield layer.input_size ** 2 * layer.in_channels  # the average pool
            yield out  # the 1x1 projection (no ReLU)
            continue
        yield from (out, out)  # the conv, its ReLU (conv1's also applies the channel mask)
        if layer.name == "conv2":  # the block's end: residual add, ReLU, identity select if skippable
            yield from [out] * (3 if layer.skippable else 2)


def _convs(space: space_lib.SearchSpace):
    """Yields (cin, cout, input size, stride) of every 3x3 convolution of the supernet."""
    for layer in layers_lib.supernet_layers(space):
        if layer.kind == layers_lib.CONV and layer.kernel == 3:
            yield layer.in_channels, layer.out_channels, layer.input_size, layer.stride


def _expansions(space: space_lib.SearchSpace) -> list[int]:
    """Elements per example of the k*k expansion of every matrix-product 3x3 convolution.

    conv.py expands the narrow side: the input's 9*cin channels at output resolution when cin <= cout,
    else the output's 9*cout channels at input resolution.
    """
    sizes = []
    for cin, cout, size, stride in _convs(space):
        out = layers_lib.conv_out_size(size, 3, stride)
        sizes.append(9 * cin * out * out if cin <= cout else 9 * cout * size * size)
    return sizes


def activation_elements(space: space_lib.SearchSpace, conv_impl: str = "im2col") -> int:
    """Activation elements per example of one training step (forward values kept + backward working set).

    With "im2col" the forward's k*k expansion of every convolution stays alive until the backward pass
    (XLA shares it with the weight gradient's identical expansion); "xla_mmgrad" builds them only in the
    backward pass, one at a time; "xla" has none (a GPU convolution's workspace is not counted).
    """
    maps = list(_feature_maps(space))
    head = space.stage_widths[-1] + 2 * space.num_classes  # pooled features, logits, softmax
    working = 2 * max(maps)  # gradient of the largest map and of its input, alive together
    expansions = _expansions(space)
    if conv_impl == "im2col":
        working += sum(expansions)
    elif conv_impl == "xla_mmgrad":
        working += max(expansions)
    return sum(maps) + head + working
