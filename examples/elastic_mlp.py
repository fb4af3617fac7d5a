"""A complete user-written supernet family: an MLP with elastic depth and width (docs/families.md).

Copy this file to start your own family. It flattens `[B, H, W, C]` images (e.g. the 8x8 digits) and runs
`hidden_layers` dense layers of up to `max(width_choices)` units, then a dense head. An arch chooses

* depth: how many hidden layers run (1..hidden_layers). The rest are skipped: a skipped layer passes its
  input through, so the head reads the last layer that ran;
* width: per hidden layer, how many of its units are kept: the first k, k one of `width_choices`.

As the arch pytree `MLPArch(depth [], width [hidden_layers])` of choice indices, and as JSON
`{"depth": 2, "width": [32, 64]}`: one width per layer that runs (or one number for all of them).

    python launch.py --config=configs/digits.py --config.model.family=examples.elastic_mlp:ElasticMLP

tests/test_example_family.py runs the family contract (tests/family_contract.py) on it: do the same for yours.
"""
import dataclasses
import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from superfed_jax._fields import Field, Range
from superfed_jax.supernet import family as family_lib


def _positive_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


SPACE_FIELDS = (
    Field("space.hidden_layers", 3, "hidden layers of the supernet; an arch runs the first 1..hidden_layers",
          "int", Range(1)),
    Field("space.width_choices", (16, 32, 48, 64), "units a hidden layer may keep (its first k), strictly "
          "increasing", "ints"),
    Field("space.input_shape", (8, 8, 1), "image shape [H, W, C] (the data's replaces it)", "ints"),
    Field("space.num_classes", 10, "classes of the head (the data's replaces it)", "int", Range(1)),
)


@flax.struct.dataclass
class MLPArch:
    """One arch, or a batch of them with leading axes on both leaves."""

    depth: jax.Array  # int32 [...]: hidden layers that run, minus 1
    width: jax.Array  # int32 [..., hidden_layers]: index into width_choices per layer


@dataclasses.dataclass(frozen=True)
class ElasticMLP(family_lib.Family):
    """The family: one dataclass field per `space.KEY` of SPACE_FIELDS, plus the compute dtype."""

    hidden_layers: int = 3
    width_choices: tuple = (16, 32, 48, 64)
    input_shape: tuple = (8, 8, 1)
    num_classes: int = 10
    dtype: str = "float32"  # compute dtype of the matrix products; params stay float32

    name = "elastic_mlp"

    def __post_init__(self):
        for key in ("width_choices", "input_shape"):  # tuples keep the family hashable
            object.__setattr__(self, key, tuple(getattr(self, key)))
        for key in ("hidden_layers", "num_classes"):
            if not _positive_int(getattr(self, key)):
                raise ValueError(f"space.{key}={getattr(self, key)!r}: must be a positive integer")
        w = self.width_choices
        if not w or not all(map(_positive_int, w)) or list(w) != sorted(set(w)):
            raise ValueError(f"space.width_choices={w}: must be strictly increasing positive integers")
        if len(self.input_shape) != 3 or not all(map(_positive_int, self.input_shape)):
            raise ValueError(f"space.input_shape={self.input_shape}: must be an image shape [H, W, C]")
        if self.dtype not in family_lib.DTYPES:
            raise ValueError(f"model.dtype={self.dtype!r}: allowed values are {list(family_lib.DTYPES)}")

    # ---------------------------------------------------------------------------------------- config

    @classmethod
    def space_fields(cls):
        return SPACE_FIELDS

    @classmethod
    def smoke_space(cls):  # the space of the `:smoke` config variant (a first try)
        return {"hidden_layers": 2, "width_choices": (8, 16)}

    @classmethod
    def from_config(cls, space, *, data=None, conv_impl="xla", dtype="float32"):
        del conv_impl  # no convolutions
        fields = dict(space)
        if data is not None:
            fields.update(input_shape=tuple(data.input_shape), num_classes=int(data.num_classes))
        try:
            return cls(**fields, dtype=dtype)
        except TypeError as error:  # an unknown field name
            raise ValueError(f"config.space: {error}; the fields of {cls.__name__} are "
                             f"{[f.key for f in SPACE_FIELDS]}") from None

    def space_dict(self):
        return {"hidden_layers": self.hidden_layers, "width_choices": list(self.width_choices),
                "input_shape": list(self.input_shape), "num_classes": self.num_classes}

    @property
    def data_shape(self):
        return family_lib.DataShape(self.input_shape, self.num_classes)

    # ----------------------------------------------------------------------------------------- archs

    def smallest(self):
        return MLPArch(np.int32(0), np.zeros(self.hidden_layers, np.int32))

    def largest(self):
        return MLPArch(np.int32(self.hidden_layers - 1),
                       np.full(self.hidden_layers, len(self.width_choices) - 1, np.int32))

    def arch_bounds(self):
        return MLPArch(np.int32(self.hidden_layers),
                       np.full(self.hidden_layers, len(self.width_choices), np.int32))

    def _runs(self, arch):
        """bool [..., hidden_layers]: which hidden layers run."""
        return jnp.arange(self.hidden_layers) <= jnp.asarray(arch.depth)[..., None]

    def canonical(self, arch):  # the width of a skipped layer has no effect
        return MLPArch(jnp.asarray(arch.depth, jnp.int32),
                       jnp.where(self._runs(arch), arch.width, 0).astype(jnp.int32))

    def validate(self, arch):
        depth, width = np.asarray(arch.depth), np.asarray(arch.width)
        if width.shape[-1:] != (self.hidden_layers,) or depth.shape != width.shape[:-1]:
            raise ValueError(f"arch shapes depth {depth.shape}, width {width.shape}: need [...] and "
                             f"[..., {self.hidden_layers}]")
        if np.any(depth < 0) or np.any(depth >= self.hidden_layers):
            raise ValueError(f"arch depth indices {depth.tolist()}: allowed 0..{self.hidden_layers - 1}")
        if np.any(width < 0) or np.any(width >= len(self.width_choices)):
            raise ValueError(f"arch width indices {width.tolist()}: allowed 0..{len(self.width_choices) - 1}")

    def _allowed(self):
        return (f"need {{\"depth\": D, \"width\": [one width per layer that runs] or one width}} with D in "
                f"1..{self.hidden_layers} and widths from {list(self.width_choices)}")

    def arch_to_json(self, arch):
        arch = jax.tree.map(np.asarray, arch)
        depth = int(arch.depth) + 1
        return {"depth": depth, "width": [self.width_choices[i] for i in arch.width[:depth].tolist()]}

    def arch_from_json(self, spec):
        if not isinstance(spec, dict) or set(spec) != {"depth", "width"}:
            raise ValueError(f"arch {spec!r}: {self._allowed()}")
        depth, width = spec["depth"], spec["width"]
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= self.hidden_layers:
            raise ValueError(f"arch depth={depth!r}: {self._allowed()}")
        if isinstance(width, int) and not isinstance(width, bool):
            width = [width] * depth
        if not isinstance(width, (list, tuple)) or len(width) != depth:
            raise ValueError(f"arch width={spec['width']!r} for depth {depth}: {self._allowed()}")
        for w in width:
            if isinstance(w, bool) or not isinstance(w, int) or w not in self.width_choices:
                raise ValueError(f"arch width {w!r} is not a choice: {self._allowed()}")
        indices = [self.width_choices.index(w) for w in width] + [0] * (self.hidden_layers - depth)
        return MLPArch(np.int32(depth - 1), np.asarray(indices, np.int32))

    def num_subnets(self):  # depth d leaves d free widths
        return sum(len(self.width_choices) ** d for d in range(1, self.hidden_layers + 1))

    def default_tracked(self):
        def arch(depth, width):  # choice indices; every layer the same width
            return MLPArch(np.int32(depth), np.full(self.hidden_layers, width, np.int32))

        last, widest = self.hidden_layers - 1, len(self.width_choices) - 1
        return {"smallest": arch(0, 0), "small": arch(last // 2, min(1, widest)),
                "medium": arch(last, (widest + 1) // 2), "largest": arch(last, widest)}

    # ---------------------------------------------------------------------------------------- layers

    def _layers(self, widths):
        """(name, fan_in, fan_out) of each dense layer when hidden layers of `widths` run."""
        features = [math.prod(self.input_shape), *widths, self.num_classes]
        names = [f"hidden_{i}" for i in range(len(widths))] + ["head"]
        return list(zip(names, features[:-1], features[1:]))

    def _dense_layers(self, arch):  # the dense subnet of one concrete arch
        arch = jax.tree.map(np.asarray, arch)
        return self._layers([self.width_choices[i] for i in arch.width[:int(arch.depth) + 1].tolist()])

    def _supernet_layers(self):
        return self._layers([max(self.width_choices)] * self.hidden_layers)

    def _matmul(self, x, layer):
        dtype = jnp.dtype(self.dtype)
        return jnp.dot(x.astype(dtype), layer["w"].astype(dtype),
                       preferred_element_type=jnp.float32) + layer["b"]

    # -------------------------------------------------------------------------------------- supernet

    def init(self, key, out_sharding=None):
        def init(key):  # PyTorch's default: uniform in +-1/sqrt(fan_in), weights and biases
            params = {}
            layers = self._supernet_layers()
            for (name, fan_in, fan_out), k in zip(layers, jax.random.split(key, len(layers))):
                bound, (kw, kb) = 1 / math.sqrt(fan_in), jax.random.split(k)
                params[name] = {"w": jax.random.uniform(kw, (fan_in, fan_out), jnp.float32, -bound, bound),
                                "b": jax.random.uniform(kb, (fan_out,), jnp.float32, -bound, bound)}
            return params
        return jax.jit(init, out_shardings=out_sharding)(key)

    def _units(self, arch):
        """bool [hidden_layers, max width]: which units of each hidden layer the arch uses."""
        widths = jnp.asarray(self.width_choices)[arch.width]
        return self._runs(arch)[:, None] & (jnp.arange(max(self.width_choices)) < widths[:, None])

    def apply(self, params, inputs, arch, *, train=False, rng=None):
        del train, rng  # no dropout
        x, units = inputs.reshape(inputs.shape[0], -1), self._units(arch)
        for i in range(self.hidden_layers):
            # jnp.where, not a product: a masked unit is exactly 0 even if its pre-activation is not finite.
            y = jnp.where(units[i], jax.nn.relu(self._matmul(x, params[f"hidden_{i}"])), 0.0)
            x = y if i == 0 else jnp.where(i <= arch.depth, y, x)  # a skipped layer passes x through
        return self._matmul(x, params["head"])

    def masks(self, arch):
        units = self._units(arch).astype(jnp.float32)
        masks = {"hidden_0": {"w": units[0][None, :], "b": units[0]}}
        for i in range(1, self.hidden_layers):  # rows: the units of the layer before; columns: its own
            masks[f"hidden_{i}"] = {"w": units[i - 1][:, None] * units[i][None, :], "b": units[i]}
        last = jnp.take(units, jnp.asarray(arch.depth), axis=0)  # the units the head reads
        masks["head"] = {"w": last[:, None], "b": jnp.ones((1,), jnp.float32)}
        return masks

    # ------------------------------------------------------------------------------ cost, per image

    def macs(self, arch):  # a dense layer costs fan_in * fan_out multiply-accumulates
        return sum(fan_in * fan_out for _, fan_in, fan_out in self._dense_layers(arch))

    def params(self, arch):  # weights and biases
        return sum(fan_in * fan_out + fan_out for _, fan_in, fan_out in self._dense_layers(arch))

    def _costs(self, xp, archs, dtype):
        """(MACs, params) of archs with any leading axes; xp is NumPy (exact, host) or jax.numpy (traced)."""
        widths = xp.asarray(self.width_choices, dtype)[xp.asarray(archs.width)]  # [..., hidden_layers]
        depth = xp.asarray(archs.depth)
        k = xp.where(xp.arange(self.hidden_layers) <= depth[..., None], widths, 0)  # 0 if skipped
        last = xp.take_along_axis(widths, depth[..., None], axis=-1)[..., 0]
        macs = (math.prod(self.input_shape) * k[..., 0] + xp.sum(k[..., :-1] * k[..., 1:], axis=-1)
                + last * self.num_classes)
        return macs, macs + xp.sum(k, axis=-1) + self.num_classes

    def macs_batch(self, archs):
        return self._costs(np, archs, np.int64)[0]

    def params_batch(self, archs):
        return self._costs(np, archs, np.int64)[1]

    def macs_array(self, archs):
        return self._costs(jnp, archs, jnp.float32)[0]

    def params_array(self, archs):
        return self._costs(jnp, archs, jnp.int32)[1]

    # --------------------------------------------------------------------------------- dense subnets

    def extract(self, params, arch):
        return {name: {"w": params[name]["w"][:fan_in, :fan_out], "b": params[name]["b"][:fan_out]}
                for name, fan_in, fan_out in self._dense_layers(arch)}

    def embed(self, dense_params, arch, params):
        params = {name: dict(layer) for name, layer in params.items()}  # the caller's stays as it was
        for name, fan_in, fan_out in self._dense_layers(arch):
            w, b = jnp.asarray(params[name]["w"]), jnp.asarray(params[name]["b"])
            params[name] = {"w": w.at[:fan_in, :fan_out].set(dense_params[name]["w"]),
                            "b": b.at[:fan_out].set(dense_params[name]["b"])}
        return params

    def dense_apply(self, dense_params, inputs, arch):
        x = inputs.reshape(inputs.shape[0], -1)
        for name, _, _ in self._dense_layers(arch)[:-1]:
            x = jax.nn.relu(self._matmul(x, dense_params[name]))
        return self._matmul(x, dense_params["head"])

    def activation_elements(self):
        """Per example: the input, each hidden layer's product, ReLU-and-mask and skip select, the logits,
        and as the backward's working set the gradients of two layers' outputs."""
        width = max(self.width_choices)
        return (math.prod(self.input_shape) + 3 * width * self.hidden_layers + self.num_classes
                + 2 * max(width, self.num_classes))
