"""The elastic TCN's space: its config fields, the arch pytree, JSON forms and subnet counting.

A TCN supernet has `levels` residual blocks of dilated causal convolutions (block i has dilation 2^i).
An arch chooses

* a global depth d from `depth_choices`: the first `levels - max(depth_choices) + d` blocks are kept, the
  deepest (largest-dilation) ones are dropped;
* per block an expand ratio e from `expand_choices`: the block's middle width is round(channels * e)
  (Python's round: ties to even), the first that many channels of its first convolution.

As integer arrays (so one compiled program serves every arch): `TCNArch(depth [] index into depth_choices,
expand [levels] index into expand_choices)`. The JSON form is the reference code's
`{"d": value of depth_choices, "e": one ratio or a list of `levels` ratios}`.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from superfed_jax._fields import Field, Range

# How far a JSON ratio may be from a choice and still name it (JSON floats round-trip exactly; this only
# forgives ratios written with fewer digits, e.g. computed values).
_RATIO_TOLERANCE = 1e-9

SPACE_FIELDS = (
    Field("space.channels", 600, "embedding width = block width C (the tied decoder reads it too)", "int",
          Range(1)),
    Field("space.levels", 4, "temporal blocks of the supernet; block i has dilation 2^i", "int", Range(1)),
    Field("space.kernel_size", 3, "kernel taps of every causal convolution", "int", Range(1)),
    Field("space.depth_choices", (0, 1, 2), "depth d keeps the first levels - max(choices) + d blocks; "
          "strictly increasing ints >= 0, max <= levels - 1", "ints"),
    Field("space.expand_choices", (0.1, 0.2, 0.25, 0.5, 1.0), "a block's middle width = round(channels * e); "
          "strictly increasing in (0, 1]", "numbers"),
    Field("space.dropout", 0.45, "dropout rate after both convolutions of a block (training only)", "number",
          Range(0, 1, high_open=True)),
    Field("space.emb_dropout", 0.25, "dropout rate of the embedding output (training only)", "number",
          Range(0, 1, high_open=True)),
    Field("space.input_shape", (80,), "token window length [T] (the data's replaces it)", "ints"),
    Field("space.num_classes", 10000, "vocabulary size V (the data's replaces it)", "int", Range(1)),
)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class TCNSpace:
    """The supernet's shape and elastic choices; one field per `space.KEY` of SPACE_FIELDS.

    Defaults are the PTB word model of the reference (V 10000, C 600, 4 levels, k 3).
    """

    channels: int = 600
    levels: int = 4
    kernel_size: int = 3
    depth_choices: tuple = (0, 1, 2)
    expand_choices: tuple = (0.1, 0.2, 0.25, 0.5, 1.0)
    dropout: float = 0.45
    emb_dropout: float = 0.25
    input_shape: tuple = (80,)
    num_classes: int = 10000

    def __post_init__(self):
        # Tuples (and plain Python numbers) keep the space hashable and its JSON form stable.
        for key in ("depth_choices", "expand_choices", "input_shape"):
            value = getattr(self, key)
            if not isinstance(value, (tuple, list)):
                raise ValueError(f"space.{key}={value!r}: must be a list")
            object.__setattr__(self, key, tuple(value))
        _check(self)
        object.__setattr__(self, "depth_choices", tuple(int(d) for d in self.depth_choices))
        object.__setattr__(self, "expand_choices", tuple(float(e) for e in self.expand_choices))
        object.__setattr__(self, "input_shape", tuple(int(t) for t in self.input_shape))
        object.__setattr__(self, "dropout", float(self.dropout))
        object.__setattr__(self, "emb_dropout", float(self.emb_dropout))

    @property
    def mids(self) -> tuple:
        """Middle width of each expand choice: round(channels * e), increasing."""
        return tuple(round(self.channels * e) for e in self.expand_choices)

    @property
    def mid_max(self) -> int:
        """The supernet's middle width (the widest choice)."""
        return self.mids[-1]

    @property
    def min_blocks(self) -> int:
        """Blocks every arch keeps (the first ones)."""
        return self.levels - max(self.depth_choices)

    @property
    def kept_blocks(self) -> tuple:
        """Blocks kept by each depth choice."""
        return tuple(self.min_blocks + d for d in self.depth_choices)

    @property
    def window(self) -> int:
        """Tokens per example (T)."""
        return self.input_shape[0]


def _check(space: TCNSpace) -> None:
    """ValueError naming the first bad field, its value and what is allowed."""
    for key in ("channels", "levels", "kernel_size", "num_classes"):
        value = getattr(space, key)
        if not _is_int(value) or value < 1:
            raise ValueError(f"space.{key}={value!r}: must be a positive integer")
    for key in ("dropout", "emb_dropout"):
        value = getattr(space, key)
        if not _is_number(value) or not 0 <= value < 1:
            raise ValueError(f"space.{key}={value!r}: must be a number in [0, 1)")
    d = space.depth_choices
    if (not d or not all(_is_int(x) and x >= 0 for x in d) or list(d) != sorted(set(d))
            or max(d) > space.levels - 1):
        raise ValueError(f"space.depth_choices={d}: must be strictly increasing integers >= 0 with the "
                         f"largest <= levels - 1 = {space.levels - 1}")
    e = space.expand_choices
    if (not e or not all(_is_number(x) and 0 < x <= 1 for x in e) or list(e) != sorted(set(e))):
        raise ValueError(f"space.expand_choices={e}: must be strictly increasing numbers in (0, 1]")
    mids = [round(space.channels * float(x)) for x in e]
    if mids[0] < 1 or len(set(mids)) != len(mids):
        raise ValueError(f"space.expand_choices={e}: with channels={space.channels} the middle widths "
                         f"round(channels * e) are {mids}; they must be >= 1 and distinct")
    if len(space.input_shape) != 1 or not _is_int(space.input_shape[0]) or space.input_shape[0] < 1:
        raise ValueError(f"space.input_shape={space.input_shape}: must be a token window length [T]")


@flax.struct.dataclass
class TCNArch:
    """One arch, or a batch of them with leading axes on both leaves."""

    depth: jax.Array  # int32 [...]: index into depth_choices
    expand: jax.Array  # int32 [..., levels]: index into expand_choices per block


def smallest(space: TCNSpace) -> TCNArch:
    """The shallowest depth, the narrowest width everywhere."""
    return TCNArch(np.int32(0), np.zeros(space.levels, np.int32))


def largest(space: TCNSpace) -> TCNArch:
    """Every block at full width: the supernet."""
    return TCNArch(np.int32(len(space.depth_choices) - 1),
                   np.full(space.levels, len(space.expand_choices) - 1, np.int32))


def arch_bounds(space: TCNSpace) -> TCNArch:
    """Exclusive bounds of every choice index."""
    return TCNArch(np.int32(len(space.depth_choices)), np.full(space.levels, len(space.expand_choices), np.int32))


def kept(space: TCNSpace, arch, xp=jnp):
    """bool [..., levels]: which blocks the arch keeps (xp: jax.numpy for traced archs, or NumPy)."""
    count = xp.asarray(space.kept_blocks, np.int32)[xp.asarray(arch.depth)]
    return xp.arange(space.levels) < count[..., None]


def canonical(space: TCNSpace, arch) -> TCNArch:
    """The expand index of a dropped block has no effect: set to 0."""
    return TCNArch(jnp.asarray(arch.depth, jnp.int32),
                   jnp.where(kept(space, arch), jnp.asarray(arch.expand), 0).astype(jnp.int32))


def validate(space: TCNSpace, arch) -> None:
    """ValueError if a concrete arch (any leading axes) is outside the space."""
    depth, expand = np.asarray(arch.depth), np.asarray(arch.expand)
    if expand.shape[-1:] != (space.levels,) or depth.shape != expand.shape[:-1]:
        raise ValueError(f"arch shapes depth {depth.shape}, expand {expand.shape}: need [...] and "
                         f"[..., {space.levels}]")
    if np.any(depth < 0) or np.any(depth >= len(space.depth_choices)):
        raise ValueError(f"arch depth indices {depth.tolist()}: allowed 0..{len(space.depth_choices) - 1}")
    if np.any(expand < 0) or np.any(expand >= len(space.expand_choices)):
        raise ValueError(f"arch expand indices {expand.tolist()}: allowed "
                         f"0..{len(space.expand_choices) - 1}")


def allowed(space: TCNSpace) -> str:
    """What an arch's JSON form may be, in words."""
    return (f"need {{\"d\": D, \"e\": E}} with D one of {list(space.depth_choices)} and E one ratio or a list "
            f"of {space.levels} ratios (one per block; dropped blocks' are ignored) from "
            f"{list(space.expand_choices)}")


def arch_to_json(space: TCNSpace, arch) -> dict:
    """{"d": depth value, "e": ratio}: one ratio when every kept block has the same, else a list of
    `levels` ratios, the dropped blocks' written as the smallest choice (their canonical value)."""
    arch = jax.tree.map(np.asarray, arch)
    depth = int(arch.depth)
    n = space.kept_blocks[depth]
    ratios = [space.expand_choices[int(i)] for i in arch.expand[:n]]
    e: Any = ratios[0] if len(set(ratios)) == 1 else ratios + [space.expand_choices[0]] * (space.levels - n)
    return {"d": space.depth_choices[depth], "e": e}


def _ratio_index(space: TCNSpace, value) -> int:
    if _is_number(value):
        for i, choice in enumerate(space.expand_choices):
            if math.isclose(float(value), choice, rel_tol=0, abs_tol=_RATIO_TOLERANCE):
                return i
    raise ValueError(f"arch e {value!r} is not a choice: {allowed(space)}")


def arch_from_json(space: TCNSpace, spec) -> TCNArch:
    """Parses the JSON form (both e forms); ValueError saying what is allowed."""
    if not isinstance(spec, dict) or set(spec) != {"d", "e"}:
        raise ValueError(f"arch {spec!r}: {allowed(space)}")
    d, e = spec["d"], spec["e"]
    if not _is_int(d) or d not in space.depth_choices:
        raise ValueError(f"arch d={d!r}: {allowed(space)}")
    if _is_number(e):
        e = [e] * space.levels
    if not isinstance(e, (list, tuple)) or len(e) != space.levels:
        raise ValueError(f"arch e={spec['e']!r}: {allowed(space)}")
    return TCNArch(np.int32(space.depth_choices.index(d)),
                   np.asarray([_ratio_index(space, x) for x in e], np.int32))


def num_subnets(space: TCNSpace) -> int:
    """Distinct subnets: a depth keeping n blocks leaves n free expand choices."""
    return sum(len(space.expand_choices) ** n for n in space.kept_blocks)


def default_tracked(space: TCNSpace) -> dict:
    """smallest, small (middle depth, e nearest 0.2), medium (middle depth, e nearest 0.5), large (middle
    depth, widest), largest (the supernet). In small spaces an intermediate name whose subnet equals the
    smallest's, the largest's or an earlier name's is left out; 'smallest' and 'largest' are always there
    (configs and command lines use them)."""
    def nearest(target):  # ties go to the narrower choice
        return min(range(len(space.expand_choices)), key=lambda i: (abs(space.expand_choices[i] - target), i))

    def arch(depth, expand):
        return TCNArch(np.int32(depth), np.full(space.levels, expand, np.int32))

    def key(a):
        return int(a.depth), np.asarray(canonical(space, a).expand).tobytes()

    middle, deepest, widest = len(space.depth_choices) // 2, len(space.depth_choices) - 1, \
        len(space.expand_choices) - 1
    ends = {"smallest": arch(0, 0), "largest": arch(deepest, widest)}
    seen = {key(a) for a in ends.values()}
    tracked = {"smallest": ends["smallest"]}
    for name, candidate in (("small", arch(middle, nearest(0.2))), ("medium", arch(middle, nearest(0.5))),
                            ("large", arch(middle, widest))):
        if key(candidate) not in seen:
            seen.add(key(candidate))
            tracked[name] = candidate
    tracked["largest"] = ends["largest"]
    return tracked
