"""The OFA-ResNet as a `supernet.family.Family`: the interface the rest of the package talks to.

Every method delegates to this folder's modules (space, model, sliced, masks, cost, subnet, memory); this
file only binds them to one space, convolution implementation and dtype, and declares the family's `space`
config fields. An arch is `space.Arch(depth [num_stages], expand [num_blocks])`; its JSON form is the
paper's `{"d": [...], "e": ratio or list}`.
"""
import dataclasses
import functools
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from superfed_jax._fields import Field, Range
from superfed_jax.supernet import family as family_lib
from superfed_jax.supernet.ofa_resnet import cost
from superfed_jax.supernet.ofa_resnet import masks as masks_lib
from superfed_jax.supernet.ofa_resnet import memory
from superfed_jax.supernet.ofa_resnet import model as model_lib
from superfed_jax.supernet.ofa_resnet import sliced as sliced_lib
from superfed_jax.supernet.ofa_resnet import space as space_lib
from superfed_jax.supernet.ofa_resnet import subnet

_AT_LEAST_1 = Range(1)

SPACE_FIELDS = (
    Field("space.stem_width", 64, "stem conv output channels", "int", _AT_LEAST_1),
    Field("space.stage_widths", (256, 512, 1024, 2048), "output channels per stage", "ints"),
    Field("space.stage_strides", (1, 2, 2, 2), "stride of each stage's first block (1 or 2)", "ints"),
    Field("space.blocks_per_stage", 3, "supernet depth per stage; an arch keeps 1..blocks_per_stage of "
          "them", "int", _AT_LEAST_1),
    Field("space.expand_choices", (0.10, 0.14, 0.18, 0.22, 0.25), "middle width = "
          "make_divisible(width * e, divisor), strictly increasing in (0, 1]", "numbers"),
    Field("space.divisor", 8, "rounding of middle widths (use 1 for small spaces, so choices stay "
          "distinct)", "int", _AT_LEAST_1),
    Field("space.input_size", 32, "image height = width", "int", _AT_LEAST_1),
    Field("space.input_channels", 3, "image channels", "int", _AT_LEAST_1),
    Field("space.num_classes", 10, "classes of the head", "int", _AT_LEAST_1),
)


# docs/algorithm.md 2.3: the 9 archs the paper trains independently with FedAvg for its cost comparison,
# defined on its CIFAR space (`PAPER_SPACE`, the default space).
PAPER_BASELINE = (
    {"d": [0, 0, 0, 0], "e": 0.10},
    {"d": [0, 0, 0, 1], "e": 0.14},
    {"d": [0, 1, 0, 1], "e": 0.14},
    {"d": [0, 1, 1, 1], "e": 0.14},
    {"d": [1, 1, 1, 1], "e": 0.18},
    {"d": [1, 1, 1, 2], "e": 0.22},
    {"d": [1, 2, 1, 2], "e": 0.22},
    {"d": [1, 2, 2, 2], "e": 0.22},
    {"d": [2, 2, 2, 2], "e": 0.25},
)
PAPER_SPACE = space_lib.SearchSpace()


# Forward MACs per image of the supernet from which 'auto' slices side by side on one CPU device. Measured
# (docs/performance.md 16, benchmarks/RESULTS.md): a 150-round digits run (1.7-MMAC supernet) finishes
# first masked, its longer compile outweighing what sliced rounds save; the paper's CIFAR supernet (3.4
# GMACs) runs 1.5-1.6x faster per round sliced (CIFAR-shaped rounds at alpha 100 and 0.1) and repays its
# ~20 s of extra compile within a few rounds. Between the two, unmeasured.
SLICED_MIN_SUPERNET_MACS = 100e6

@dataclasses.dataclass(frozen=True)
class OFAResNet(family_lib.Family):
    """The no-normalization once-for-all ResNet of the image tasks (docs/algorithm.md 2).

    Attributes:
      space: the elastic space (`space.SearchSpace`), with the data's input shape and classes.
      conv_impl: how convolutions compute (`supernet.conv.CONV_IMPLS`).
      dtype: compute dtype of convolutions and matmuls (`family.DTYPES`); params stay float32.
    """

    space: space_lib.SearchSpace = space_lib.SearchSpace()
    conv_impl: str = "xla"
    dtype: str = "float32"

    name = "ofa_resnet"
    batch_kind = family_lib.IMAGES
    cost_unit = "image"

    # ------------------------------------------------------------------------------------------ config

    @classmethod
    def space_fields(cls) -> tuple:
        return SPACE_FIELDS

    @classmethod
    def smoke_space(cls) -> dict:
        """Two stages of narrow blocks: stem 4, stages 32 and 64 wide, 2 blocks each, divisor 1 (the
        config's expand choices are kept)."""
        return dict(stem_width=4, stage_widths=(32, 64), stage_strides=(1, 2), blocks_per_stage=2, divisor=1)

    @classmethod
    def from_config(cls, space: Mapping[str, Any], *, data: Optional[family_lib.DataShape] = None,
                    conv_impl: str = "xla", dtype: str = "float32") -> "OFAResNet":
        fields = dict(space)
        if data is not None:
            if len(data.input_shape) != 3 or data.input_shape[0] != data.input_shape[1]:
                raise ValueError(f"the OFA-ResNet takes square images [H, W, C]; the data's examples "
                                 f"have shape {tuple(data.input_shape)}")
            fields.update(input_size=int(data.input_shape[0]), input_channels=int(data.input_shape[2]),
                          num_classes=int(data.num_classes))
        try:
            return cls(space_lib.SearchSpace(**fields), conv_impl, dtype)
        except TypeError as error:  # an unknown or missing field name
            raise ValueError(f"config.space: {error}") from None

    def space_dict(self) -> dict:
        fields = dataclasses.asdict(self.space)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}

    @property
    def data_shape(self) -> family_lib.DataShape:
        s = self.space
        return family_lib.DataShape((s.input_size, s.input_size, s.input_channels), s.num_classes)

    # ------------------------------------------------------------------------------------------ archs

    def smallest(self) -> space_lib.Arch:
        return space_lib.smallest(self.space)

    def largest(self) -> space_lib.Arch:
        return space_lib.largest(self.space)

    def arch_bounds(self) -> space_lib.Arch:
        s = self.space
        return space_lib.Arch(depth=np.full(s.num_stages, s.blocks_per_stage, np.int32),
                              expand=np.full(s.num_blocks, s.num_expand_choices, np.int32))

    def sample(self, key, shape=()) -> space_lib.Arch:
        return space_lib.sample(self.space, key, shape)  # the same draws as before the interface

    def canonical(self, arch) -> space_lib.Arch:
        return space_lib.canonical(self.space, arch)

    def validate(self, arch) -> None:
        space_lib.validate(self.space, arch)

    def arch_to_json(self, arch) -> dict:
        return space_lib.arch_to_dict(self.space, arch)

    def arch_from_json(self, spec) -> space_lib.Arch:
        return space_lib.arch_from_dict(self.space, spec)

    def num_subnets(self) -> int:
        return space_lib.num_unique_subnets(self.space)

    def default_tracked(self) -> dict:
        return space_lib.default_tracked(self.space)

    # ------------------------------------------------------------------------------------------ model

    @functools.cached_property
    def model(self) -> model_lib.Supernet:
        """The masked supernet as a Flax module."""
        return model_lib.Supernet(self.space, self.conv_impl, jnp.dtype(self.dtype))

    def init(self, key, out_sharding=None) -> dict:
        return model_lib.init_params(self.space, key, self.conv_impl, out_sharding=out_sharding)

    def apply(self, params, inputs, arch, *, train=False, rng=None):
        del train, rng  # no dropout, no normalization: training and evaluation compute the same
        return self.model.apply({"params": params}, inputs, arch)

    def sliced_pays_off(self) -> bool:
        """Sliced for a supernet of at least `SLICED_MIN_SUPERNET_MACS` per image (see there)."""
        return self.macs(self.largest()) >= SLICED_MIN_SUPERNET_MACS

    @property
    def sliced(self) -> family_lib.SlicedExecution:
        space, impl, dtype = self.space, self.conv_impl, jnp.dtype(self.dtype)

        def apply(params, inputs, arch, envelope, train=False, rng=None):
            del train, rng
            return sliced_lib.forward(space, params, inputs, arch, envelope, impl, dtype)

        return family_lib.SlicedExecution(
            envelope=functools.partial(sliced_lib.chunk_envelope, space),
            to_pieces=functools.partial(sliced_lib.to_pieces, space),
            from_pieces=functools.partial(sliced_lib.from_pieces, space), apply=apply)

    def masks(self, arch) -> dict:
        return masks_lib.arch_masks(self.space, arch)

    # ------------------------------------------------------------------------------------------ cost

    def macs(self, arch) -> int:
        return cost.macs(self.space, arch)

    def params(self, arch) -> int:
        return cost.params(self.space, arch)

    def macs_batch(self, archs) -> np.ndarray:
        return cost.macs_batch(self.space, archs.depth, archs.expand)

    def params_batch(self, archs) -> np.ndarray:
        return cost.params_batch(self.space, archs.depth, archs.expand)

    def macs_array(self, archs) -> jax.Array:
        return cost.macs_array(self.space, archs)

    def params_array(self, archs) -> jax.Array:
        return cost.params_array(self.space, archs)

    def cost_summary(self, arch) -> dict:
        """Also the paper's conventions: MACs without padding taps, params with frozen BatchNorm pairs."""
        return cost.size_summary(self.space, arch)

    def cost_batch(self, archs, *, count_padding: bool = True, bn_affine: bool = False) -> tuple:
        """`count_padding`: count kernel taps on the zero padding in MACs (the paper's convention, default);
        `bn_affine`: count the reference code's frozen BatchNorm affine pairs in params (the paper's table)
        or not (default: the parameters this model has). See `cost.py`."""
        return (cost.macs_batch(self.space, archs.depth, archs.expand, count_padding=count_padding),
                cost.params_batch(self.space, archs.depth, archs.expand, bn_affine=bn_affine))

    def cost_conventions(self, *, count_padding: bool = True, bn_affine: bool = False) -> dict:
        return {
            "macs": "forward multiply-accumulates of one image; conv = Cin*k*k*Cout*Hout*Wout "
                    + ("(padding taps counted, the paper's convention)" if count_padding
                       else "(only taps on real input)") + ", dense = in*out; ReLU, pooling, adds free",
            "params": "the subnet's parameters " + ("including the reference code's frozen BN affine pairs "
                                                    "(the paper's table)" if bn_affine
                                                    else "as this model has them (no BN affine pairs)"),
        }

    def paper_baseline(self) -> Optional[list]:
        """The paper's 9 archs (docs/algorithm.md 2.3) on the paper's CIFAR space, any number of classes."""
        if dataclasses.replace(self.space, num_classes=PAPER_SPACE.num_classes) != PAPER_SPACE:
            return None
        return [self.arch_from_json(spec) for spec in PAPER_BASELINE]

    def arch_help(self) -> str:
        return space_lib._allowed(self.space)  # the same words as the parse errors of its archs

    # ------------------------------------------------------------------------------------------ subnets

    def extract(self, params, arch) -> dict:
        return subnet.extract(self.space, params, arch)

    def embed(self, dense_params, arch, params) -> dict:
        return subnet.embed(self.space, dense_params, arch, params)

    def dense_model(self, arch) -> subnet.DenseSubnet:
        """The standalone Flax model of a concrete arch."""
        return subnet.DenseSubnet(self.space, subnet.subnet_shape(self.space, arch), self.conv_impl,
                                  jnp.dtype(self.dtype))

    def dense_apply(self, dense_params, inputs, arch):
        return self.dense_model(arch).apply({"params": dense_params}, inputs)

    def dense_init(self, key, inputs, arch) -> dict:
        return self.dense_model(arch).init(key, inputs)["params"]

    def dense_description(self, arch) -> dict:
        shape = subnet.subnet_shape(self.space, arch)
        return {"subnet_shape": {"depth": list(shape.depth), "mids": list(shape.mids)}}

    # ------------------------------------------------------------------------------------------ memory

    def activation_elements(self) -> int:
        return memory.activation_elements(self.space, self.conv_impl)
