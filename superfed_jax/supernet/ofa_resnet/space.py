"""The elastic search space of the SuperFed supernet family, and archs as integer arrays.

Khare et al., "SuperFed: Weight Shared Federated Learning", arXiv 2301.10879, uses the once-for-all
ResNet family: per stage a depth (how many of its blocks are kept) and per block an expand ratio
(the width of the block's middle convolution). An *arch* is encoded as two integer arrays so that it can
be a traced value inside `jax.jit` (one compiled program serves every arch):

* ``depth``:  int32 [num_stages], values in [0, blocks_per_stage); stage s keeps blocks 0..depth[s].
* ``expand``: int32 [num_stages * blocks_per_stage], indices into ``space.expand_choices``.

Batches of archs simply carry leading axes on both arrays.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

_EXPAND_TOLERANCE = 1e-6


def make_divisible(value: float, divisor: int) -> int:
    """Rounds ``value`` to the nearest multiple of ``divisor`` (at least ``divisor``).

    Adds one ``divisor`` when rounding fell more than 10% below ``value``; this is the rule that gives
    the paper's middle widths (e.g. 256 * 0.14 = 35.84 -> 32 is too small -> 40).
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Shape of the supernet family. Defaults are the paper's CIFAR space (docs/algorithm.md section 2).

    Attributes:
      stem_width: output channels of the 3x3 stem convolution.
      stage_widths: output channels of each stage's blocks.
      stage_strides: stride of each stage's first block.
      blocks_per_stage: blocks of every stage in the supernet (the depth choices are 1..this).
      expand_choices: expand ratios of a block's middle width, increasing.
      divisor: middle widths are rounded to multiples of this (8 in the paper; use 1 or 2 for small
        widths, or the choices collapse).
      input_size: height and width of the (square) input images.
      input_channels: channels of the input images.
      num_classes: outputs of the classifier head.
    """

    stem_width: int = 64
    stage_widths: tuple[int, ...] = (256, 512, 1024, 2048)
    stage_strides: tuple[int, ...] = (1, 2, 2, 2)
    blocks_per_stage: int = 3
    expand_choices: tuple[float, ...] = (0.10, 0.14, 0.18, 0.22, 0.25)
    divisor: int = 8
    input_size: int = 32
    input_channels: int = 3
    num_classes: int = 10

    def __post_init__(self):
        # Tuples keep the space hashable (it is a static argument of jitted functions).
        for name in ("stage_widths", "stage_strides", "expand_choices"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _check_space(self)

    @property
    def num_stages(self) -> int:
        return len(self.stage_widths)

    @property
    def num_blocks(self) -> int:
        return self.num_stages * self.blocks_per_stage

    @property
    def num_expand_choices(self) -> int:
        return len(self.expand_choices)

    @property
    def mid_table(self) -> np.ndarray:
        """int [num_stages, num_expand_choices]: middle width of a block per stage and expand index."""
        return np.array([[make_divisible(w * e, self.divisor) for e in self.expand_choices]
                         for w in self.stage_widths], dtype=np.int32)

    @property
    def max_mids(self) -> tuple[int, ...]:
        """Middle width of each stage's blocks in the supernet (the weight shapes)."""
        return tuple(int(m) for m in self.mid_table.max(axis=1))


def _check_space(space: SearchSpace) -> None:
    """Raises ValueError naming the bad field of a search space."""
    positive = {"stem_width": space.stem_width, "blocks_per_stage": space.blocks_per_stage,
                "divisor": space.divisor, "input_size": space.input_size,
                "input_channels": space.input_channels, "num_classes": space.num_classes}
    for name, value in positive.items():
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"space.{name}={value!r}: must be a positive integer")
    if not space.stage_widths or any(w < 1 for w in space.stage_widths):
        raise ValueError(f"space.stage_widths={space.stage_widths}: must be positive integers")
    if len(space.stage_strides) != len(space.stage_widths) or any(
            s not in (1, 2) for s in space.stage_strides):
        raise ValueError(f"space.stage_strides={space.stage_strides}: need one stride (1 or 2) per "
                         f"stage, {len(space.stage_widths)} stages")
    choices = space.expand_choices
    if not choices or any(not 0 < e <= 1 for e in choices) or list(choices) != sorted(set(choices)):
        raise ValueError(f"space.expand_choices={choices}: must be strictly increasing values in (0, 1]")
    for width, mids in zip(space.stage_widths, space.mid_table):
        if len(set(mids.tolist())) != len(mids):
            raise ValueError(
                f"space.expand_choices={choices} with space.divisor={space.divisor} give repeated "
                f"middle widths {mids.tolist()} for stage width {width}; use a smaller divisor or "
                "wider stages so every expand choice is a distinct subnet")


@flax.struct.dataclass
class Arch:
    """One arch (or a batch of them, with leading axes) as integer arrays; a pytree."""

    depth: jax.Array  # int32 [..., num_stages]
    expand: jax.Array  # int32 [..., num_blocks]


def smallest(space: SearchSpace) -> Arch:
    """The smallest subnet: one block per stage, smallest expand ratio everywhere."""
    return Arch(depth=np.zeros(space.num_stages, np.int32), expand=np.zeros(space.num_blocks, np.int32))


def largest(space: SearchSpace) -> Arch:
    """The largest subnet, i.e. the whole supernet."""
    return Arch(depth=np.full(space.num_stages, space.blocks_per_stage - 1, np.int32),
                expand=np.full(space.num_blocks, space.num_expand_choices - 1, np.int32))


def sample(space: SearchSpace, key: jax.Array, shape: Sequence[int] = ()) -> Arch:
    """Uniformly random archs (every depth and every block's expand index uniform); jittable."""
    depth_key, expand_key = jax.random.split(key)
    shape = tuple(shape)
    depth = jax.random.randint(depth_key, shape + (space.num_stages,), 0, space.blocks_per_stage)
    expand = jax.random.randint(expand_key, shape + (space.num_blocks,), 0, space.num_expand_choices)
    return Arch(depth=depth.astype(jnp.int32), expand=expand.astype(jnp.int32))


def block_active(space: SearchSpace, arch: Arch) -> jax.Array:
    """bool [..., num_blocks]: whether each block is kept (block b of stage s is kept iff b <= depth[s])."""
    position = jnp.arange(space.blocks_per_stage)
    active = position <= jnp.asarray(arch.depth)[..., None]  # [..., stages, blocks]
    return active.reshape(active.shape[:-2] + (space.num_blocks,))


def block_mids(space: SearchSpace, arch: Arch) -> jax.Array:
    """int32 [..., num_blocks]: the middle width of every block (also of skipped blocks)."""
    stage_of_block = np.repeat(np.arange(space.num_stages), space.blocks_per_stage)
    return jnp.asarray(space.mid_table)[stage_of_block, jnp.asarray(arch.expand)]


def stack(archs: Sequence[Arch]) -> Arch:
    """Stacks archs along a new leading axis."""
    return jax.tree.map(lambda *leaves: np.stack([np.asarray(x) for x in leaves]), *archs)


def num_unique_subnets(space: SearchSpace) -> int:
    """Exact number of distinct subnets: per stage sum over depths of E^(blocks kept), multiplied."""
    per_stage = sum(space.num_expand_choices ** kept for kept in range(1, space.blocks_per_stage + 1))
    return per_stage ** space.num_stages


def canonical(space: SearchSpace, arch: Arch) -> Arch:
    """The same subnet with the (ignored) expand indices of skipped blocks set to 0."""
    expand = jnp.where(block_active(space, arch), arch.expand, 0).astype(jnp.int32)
    return Arch(depth=jnp.asarray(arch.depth, jnp.int32), expand=expand)


# ----------------------------------------------------------------------------------------------------
# The paper's JSON form {"d": [0, 1, 0, 1], "e": 0.14} (e a scalar or one value per block).


def _allowed(space: SearchSpace) -> str:
    return (f"'d' is a list of {space.num_stages} integers in 0..{space.blocks_per_stage - 1}; "
            f"'e' is one of {list(space.expand_choices)} or a list of {space.num_blocks} of them")


def arch_from_dict(space: SearchSpace, spec: Mapping[str, Any]) -> Arch:
    """Parses and validates ``{"d": [...], "e": scalar or list}``; ValueError names the problem."""
    if not isinstance(spec, Mapping) or set(spec) != {"d", "e"}:
        raise ValueError(f"arch {spec!r}: need exactly the keys 'd' and 'e'; {_allowed(space)}")
    depth, expand = spec["d"], spec["e"]
    if (not isinstance(depth, (list, tuple)) or len(depth) != space.num_stages
            or any(isinstance(d, bool) or not isinstance(d, int) for d in depth)):
        raise ValueError(f"arch 'd'={depth!r}: {_allowed(space)}")
    bad_depth = [d for d in depth if not 0 <= d < space.blocks_per_stage]
    if bad_depth:
        raise ValueError(f"arch 'd'={depth!r}: depth {bad_depth[0]} out of range; {_allowed(space)}")
    if isinstance(expand, (int, float)) and not isinstance(expand, bool):
        expand = [expand] * space.num_blocks
    if not isinstance(expand, (list, tuple)) or len(expand) != space.num_blocks:
        raise ValueError(f"arch 'e'={spec['e']!r}: {_allowed(space)}")
    return Arch(depth=np.asarray(depth, np.int32),
                expand=np.asarray([_expand_index(space, e) for e in expand], np.int32))


def _expand_index(space: SearchSpace, value: Any) -> int:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for index, choice in enumerate(space.expand_choices):
            if math.isclose(value, choice, abs_tol=_EXPAND_TOLERANCE):
                return index
    raise ValueError(f"arch expand ratio {value!r} is not in the space; {_allowed(space)}")


def parse_arch(space: SearchSpace, text: str) -> Arch:
    """Parses the JSON text of an arch, e.g. ``'{"d":[0,1,0,1],"e":0.14}'``."""
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"arch {text!r} is not valid JSON ({error}); {_allowed(space)}") from None
    return arch_from_dict(space, spec)


def arch_to_dict(space: SearchSpace, arch: Arch) -> dict[str, Any]:
    """The JSON form of one arch; ``e`` is a scalar when all kept blocks share one ratio."""
    arch = jax.tree.map(np.asarray, canonical(space, arch))
    active = np.asarray(block_active(space, arch))
    ratios = [space.expand_choices[i] for i in arch.expand.tolist()]
    kept = {r for r, a in zip(ratios, active) if a}
    expand = kept.pop() if len(kept) == 1 else ratios
    return {"d": arch.depth.tolist(), "e": expand}


def validate(space: SearchSpace, arch: Arch) -> None:
    """Raises ValueError if a concrete arch is outside the space."""
    depth, expand = np.asarray(arch.depth), np.asarray(arch.expand)
    if depth.shape[-1:] != (space.num_stages,) or expand.shape[-1:] != (space.num_blocks,):
        raise ValueError(f"arch shapes depth {depth.shape}, expand {expand.shape}: need trailing "
                         f"axes ({space.num_stages},) and ({space.num_blocks},)")
    if depth.min() < 0 or depth.max() >= space.blocks_per_stage:
        raise ValueError(f"arch depth values {depth.tolist()}: allowed 0..{space.blocks_per_stage - 1}")
    if expand.min() < 0 or expand.max() >= space.num_expand_choices:
        raise ValueError(f"arch expand indices {expand.tolist()}: allowed "
                         f"0..{space.num_expand_choices - 1} (ratios {list(space.expand_choices)})")


def default_tracked(space: SearchSpace) -> dict[str, Arch]:
    """The archs evaluated during training (docs/algorithm.md 7), smallest to largest.

    For the paper space: smallest {[0,0,0,0], 0.10}, small {[0,1,0,1], 0.14}, medium {[1,1,1,1], 0.18},
    largest {[2,2,2,2], 0.25}; other spaces get the analogous depths and expand indices.
    """
    one_more = min(1, space.blocks_per_stage - 1)
    expand = lambda i: np.full(space.num_blocks, min(i, space.num_expand_choices - 1), np.int32)  # noqa: E731
    alternating = np.array([one_more * (s % 2) for s in range(space.num_stages)], np.int32)
    return {"smallest": smallest(space),
            "small": Arch(depth=alternating, expand=expand(1)),
            "medium": Arch(depth=np.full(space.num_stages, one_more, np.int32), expand=expand(2)),
            "largest": largest(space)}
