"""The elastic TCN as a `supernet.family.Family`: the language-model family of the text tasks.

The reference's `ElasticTCN` (SuperFed/SuperFedNAS text tasks, tcn.md 2): a tied embedding, `levels`
residual blocks of weight-normalised dilated causal convolutions and a decoder at every position. Elastic:
a global depth (the deepest blocks dropped) and each block's middle width. Every method delegates to this
folder's modules (space, model, sliced, masks, cost, subnet); this file binds them to one space and dtype.
"""
import dataclasses
import functools
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from superfed_jax.supernet import family as family_lib
from superfed_jax.supernet.tcn import cost
from superfed_jax.supernet.tcn import masks as masks_lib
from superfed_jax.supernet.tcn import model as model_lib
from superfed_jax.supernet.tcn import sliced as sliced_lib
from superfed_jax.supernet.tcn import space as space_lib
from superfed_jax.supernet.tcn import subnet

SPACE_FIELDS = space_lib.SPACE_FIELDS

# Forward MACs per token of the supernet from which 'auto' slices side by side on one CPU device.
# Measured on the 2-core CPU machine (docs/text.md, "Speed"): at the reference's Shakespeare width (3.7
# MMACs per token) one client step of the smallest subnet runs 4-7x faster sliced
# (benchmarks/tcn_step.py); at channels 128 (0.31 MMACs) rounds run 1.6x faster sliced but the ~20 s of
# extra compile is repaid only after about 80 rounds, so an 8-round run finished first masked.
SLICED_MIN_SUPERNET_MACS = 1e6
TCNArch = space_lib.TCNArch
TCNSpace = space_lib.TCNSpace

# Jitted here (space and dtype static) so that calls outside a compiled program, as in evaluation loops and
# tests, run one compiled program instead of dispatching every small operation; inside `jit` they inline.
_forward = jax.jit(model_lib.forward, static_argnums=(0, 5))
_sliced_forward = jax.jit(sliced_lib.forward, static_argnums=(0, 6))
_dense_forward = jax.jit(model_lib.dense_forward, static_argnums=(2,))
_init = jax.jit(model_lib.init_params, static_argnums=(0, 2))
_masks = jax.jit(masks_lib.arch_masks, static_argnums=(0,))


@dataclasses.dataclass(frozen=True)
class ElasticTCN(family_lib.Family):
    """The elastic TCN over token windows (tcn.md 2).

    Attributes:
      space: the supernet and its elastic choices (`space.TCNSpace`), with the data's window and vocabulary.
      dtype: compute dtype of convolutions and the decoder (`family.DTYPES`); params stay float32.
    """

    space: space_lib.TCNSpace = space_lib.TCNSpace()
    dtype: str = "float32"

    name = "tcn"
    batch_kind = family_lib.TOKENS
    cost_unit = "token"
    metrics = ("accuracy", "loss", "perplexity")

    def __post_init__(self):
        if self.dtype not in family_lib.DTYPES:
            raise ValueError(f"model.dtype={self.dtype!r}: allowed values are {list(family_lib.DTYPES)}")

    # ------------------------------------------------------------------------------------------ config

    @classmethod
    def space_fields(cls) -> tuple:
        """The `space.KEY` fields of `space.SPACE_FIELDS`."""
        return SPACE_FIELDS

    @classmethod
    def smoke_space(cls) -> dict:
        """Two 16-channel levels, depth (0, 1), widths 4 and 16."""
        return dict(channels=16, levels=2, depth_choices=(0, 1), expand_choices=(0.25, 1.0))

    @classmethod
    def from_config(cls, space: Mapping[str, Any], *, data: Optional[family_lib.DataShape] = None,
                    conv_impl: str = "xla", dtype: str = "float32") -> "ElasticTCN":
        """`conv_impl` is accepted and ignored: the TCN's 1-D convolutions always use XLA's."""
        del conv_impl
        fields = dict(space)
        if data is not None:
            if len(data.input_shape) != 1:
                raise ValueError(f"the TCN takes token windows [T]; the data's examples have shape "
                                 f"{tuple(data.input_shape)}")
            fields.update(input_shape=tuple(data.input_shape), num_classes=int(data.num_classes))
        try:
            return cls(space_lib.TCNSpace(**fields), dtype)
        except TypeError as error:  # an unknown field name
            raise ValueError(f"config.space: {error}; the fields of {cls.__name__} are "
                             f"{[f.key for f in SPACE_FIELDS]}") from None

    def space_dict(self) -> dict:
        """The space as JSON-ready field values (lists for tuples); `from_config` reads it back."""
        fields = dataclasses.asdict(self.space)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}

    @property
    def data_shape(self) -> family_lib.DataShape:
        """The window [T] and the vocabulary V."""
        return family_lib.DataShape(self.space.input_shape, self.space.num_classes)

    # ------------------------------------------------------------------------------------------ archs

    def smallest(self) -> TCNArch:
        """The shallowest depth, the narrowest middle width in every block."""
        return space_lib.smallest(self.space)

    def largest(self) -> TCNArch:
        """The whole supernet: the deepest depth, full width everywhere."""
        return space_lib.largest(self.space)

    def arch_bounds(self) -> TCNArch:
        """Exclusive bounds: `len(depth_choices)` and `len(expand_choices)` per block."""
        return space_lib.arch_bounds(self.space)

    def canonical(self, arch) -> TCNArch:
        """The expand indices of dropped blocks set to 0 (jittable, any leading axes)."""
        return space_lib.canonical(self.space, arch)

    def validate(self, arch) -> None:
        """ValueError naming the problem when a concrete arch is outside the space."""
        space_lib.validate(self.space, arch)

    def arch_to_json(self, arch) -> dict:
        """{"d": depth, "e": ratio} when every kept block has the same ratio, else "e" lists `levels`
        ratios (dropped blocks' as the smallest choice)."""
        return space_lib.arch_to_json(self.space, arch)

    def arch_from_json(self, spec) -> TCNArch:
        """Parses {"d": D, "e": ratio or list of `levels` ratios}; ValueError saying what is allowed."""
        return space_lib.arch_from_json(self.space, spec)

    def num_subnets(self) -> int:
        """Distinct subnets: the sum over depth choices of |expand_choices| ** (blocks kept)."""
        return space_lib.num_subnets(self.space)

    def default_tracked(self) -> dict:
        """smallest, small, medium, large, largest (`space.default_tracked`)."""
        return space_lib.default_tracked(self.space)

    def arch_help(self) -> str:
        """What an arch's JSON form may be, in words."""
        return space_lib.allowed(self.space)

    # ------------------------------------------------------------------------------------------ supernet

    def init(self, key, out_sharding=None) -> dict:
        """The supernet's params at full size, initialised as the reference does (`model.init_params`)."""
        mids = (self.space.mid_max,) * self.space.levels
        return jax.jit(functools.partial(model_lib.init_params, self.space, mids=mids),
                       out_shardings=out_sharding)(key)

    def apply(self, params, inputs, arch, *, train=False, rng=None):
        """Logits [B, T, V]; dropout (embedding, both convolutions of every block) when `train` and `rng`."""
        return _forward(self.space, params, inputs, arch, rng if train else None, jnp.dtype(self.dtype))

    def sliced_pays_off(self) -> bool:
        """Sliced for a supernet of at least `SLICED_MIN_SUPERNET_MACS` per token (see there)."""
        return self.macs(self.largest()) >= SLICED_MIN_SUPERNET_MACS

    @property
    def sliced(self) -> family_lib.SlicedExecution:
        """Envelope: `sliced.Envelope(blocks, expand)`; params are trained as they are (no pieces)."""
        space, dtype = self.space, jnp.dtype(self.dtype)

        def apply(params, inputs, arch, envelope, train=False, rng=None):
            return _sliced_forward(space, params, inputs, arch, envelope, rng if train else None, dtype)

        def identity(params):
            return params

        return family_lib.SlicedExecution(envelope=functools.partial(sliced_lib.envelope, space),
                                          to_pieces=identity, from_pieces=identity, apply=apply)

    def masks(self, arch) -> dict:
        """The broadcastable masks of one arch (`masks.arch_masks`; jittable)."""
        return _masks(self.space, arch)

    # ------------------------------------------------------------------------------------------ cost

    def macs(self, arch) -> int:
        """Forward MACs per token of one concrete arch (`cost.py`)."""
        return cost.macs(self.space, arch)

    def params(self, arch) -> int:
        """Parameters of one concrete arch's dense subnet, the tied matrix once."""
        return cost.params(self.space, arch)

    def macs_batch(self, archs) -> np.ndarray:
        """Exact int64 MACs per token of a concrete batch of archs."""
        return cost.costs(self.space, np, archs, np.int64)[0]

    def params_batch(self, archs) -> np.ndarray:
        """Exact int64 parameter counts of a concrete batch of archs."""
        return cost.costs(self.space, np, archs, np.int64)[1]

    def macs_array(self, archs) -> jax.Array:
        """Jittable float32 MACs per token of (batches of) traced archs."""
        return cost.macs_array(self.space, archs)

    def params_array(self, archs) -> jax.Array:
        """Jittable int32 parameter counts of (batches of) traced archs."""
        return cost.params_array(self.space, archs)

    def cost_conventions(self, **conventions) -> dict:
        """What `cost_batch` counts, in words (no conventions to choose)."""
        family_lib._no_conventions(self, conventions)
        return {"macs": "forward multiply-accumulates of one token: 2*C*mid*k per kept block plus the "
                        "decoder C*V (embedding lookup, biases, activations free)",
                "params": "the subnet's parameters, the tied embedding/decoder matrix counted once"}

    # ------------------------------------------------------------------------------------------ subnets

    def extract(self, params, arch) -> dict:
        """The dense params of a concrete arch: kept blocks only, middle widths sliced (`subnet.extract`)."""
        return subnet.extract(self.space, params, arch)

    def embed(self, dense_params, arch, params) -> dict:
        """Writes a dense subnet back into its supernet positions (`subnet.embed`)."""
        return subnet.embed(self.space, dense_params, arch, params)

    def dense_apply(self, dense_params, inputs, arch):
        """The standalone subnet's forward pass (no dropout); its shapes say its blocks and widths."""
        del arch
        return _dense_forward(dense_params, inputs, jnp.dtype(self.dtype))

    def dense_init(self, key, inputs, arch) -> dict:
        """Only the dense subnet, initialised like the supernet (fan-in bounds of the supernet's shape)."""
        del inputs
        return _init(self.space, key, tuple(subnet.subnet_mids(self.space, arch)))

    def dense_description(self, arch) -> dict:
        """{"blocks": kept blocks, "mids": their middle widths}."""
        mids = subnet.subnet_mids(self.space, arch)
        return {"blocks": len(mids), "mids": mids}

    # ------------------------------------------------------------------------------------------ memory

    def activation_elements(self) -> int:
        """Per example (a window of T tokens): the embedding output and its dropout (2 C); per block the
        conv1 output, its ReLU-and-mask and dropout (3 mid_max), the conv2 output, its dropout and the
        residual sum (3 C); the logits and their gradient (2 V)."""
        s = self.space
        per_token = 2 * s.channels + s.levels * (3 * s.mid_max + 3 * s.channels) + 2 * s.num_classes
        return s.window * per_token
