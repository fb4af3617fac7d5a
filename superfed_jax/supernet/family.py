"""A supernet family: everything the federated round, the run, the reports and post-training need of a model.

The rest of the package never imports a family's own modules; it holds a `Family` object and calls the
methods below. A family object is one supernet *and* its elastic space, bound to the data's input shape and
classes and to how it computes (convolution implementation, dtype). It is frozen and hashable, so it can be
a static argument of `jax.jit` and a key of caches. docs/families.md says how to write one; the
OFA-ResNet of the image tasks (`supernet/ofa_resnet/`) is the first implementation.

Terms used in every docstring:

* **arch**: one subnet as a pytree of integer arrays (e.g. the ResNet's `Arch(depth, expand)`), usable as a
  traced value inside `jit` and `vmap`, so one compiled program serves every subnet. A *batch* of archs has
  the same pytree with leading axes on every leaf (`stack`). Every leaf element is a choice index in
  `[0, bound)`, where `arch_bounds()` gives the bounds: that is what uniform sampling and the evolutionary
  search draw from.
* **params**: the supernet's parameters at full size, a nested dict of arrays.
* **inputs / labels / weights**: one batch. Images are `[B, H, W, C]` with integer labels `[B]` and
  per-example weights `[B]`; token windows are `[B, T]` with targets `[B, T]` and per-position weights
  `[B, T]` (`batch_kind`). `apply` returns logits of shape `labels.shape + (classes,)`.
* **masks**: a pytree with the params' structure whose float32 leaves broadcast against their parameter:
  1 where the arch uses the element, 0 elsewhere. They weight the aggregation (`aggregation.masked_mean`).

How a family is found from a config (`model.family`): a registered name (`FAMILIES`) or an import path
`package.module:ClassName` to a user's own `Family` subclass (`family_class`).
"""
from __future__ import annotations

import abc
import json
from typing import Any, ClassVar, Mapping, NamedTuple, Optional, Sequence

import jax
import numpy as np

from superfed_jax import _import_path

# Registered families: config name -> import path of its `Family` class. Imported on first use, so a run
# of one family loads none of the others' code.
FAMILIES = {
    "ofa_resnet": "superfed_jax.supernet.ofa_resnet.family:OFAResNet",
    "tcn": "superfed_jax.supernet.tcn.family:ElasticTCN",
}
DEFAULT_FAMILY = "ofa_resnet"

# `model.dtype`: compute dtypes of a forward pass; params stay float32.
DTYPES = ("float32", "bfloat16")
# `model.execution`: 'masked' runs the full-width supernet with masks (every family has it); 'sliced' a
# family's own execution that computes only what a group of clients uses (`Family.sliced`); 'auto' picks.
EXECUTIONS = ("masked", "sliced", "auto")
# `Family.batch_kind`.
IMAGES, TOKENS = "images", "tokens"


class DataShape(NamedTuple):
    """What a family needs to know of a dataset: one example's input shape and the number of classes."""

    input_shape: tuple  # e.g. (32, 32, 3) for images, (80,) for token windows
    num_classes: int  # classes of the head (the vocabulary of a language model)


class SlicedExecution(NamedTuple):
    """A family's sliced execution: computing only what a group of clients trains (`model.execution`).

    Attributes:
      envelope: `envelope(archs) -> envelope`, what a batch of archs (leading client axis) needs; a pytree,
        computed once per group of clients (outside the per-client `vmap`).
      to_pieces: `to_pieces(params) -> pieces`, the params in the form the sliced forward trains (split once
        per client; may be the identity).
      from_pieces: the inverse of `to_pieces`.
      apply: `apply(pieces_or_params, inputs, arch, envelope, train, rng) -> logits`, equal to the masked
        forward of `arch` for any envelope that covers it.
    """

    envelope: Any
    to_pieces: Any
    from_pieces: Any
    apply: Any


class Family(abc.ABC):
    """A supernet family bound to one space, data shape and computation (module docstring).

    Subclasses are frozen dataclasses (hashable). Class attributes:
      name: the registered name, written in run files (e.g. 'ofa_resnet').
      batch_kind: `IMAGES` or `TOKENS` (what `apply` takes, and which augmentation a run uses).
      cost_unit: what `macs` counts per: 'image' or 'token'.
      metrics: what evaluation reports per arch and split: 'accuracy' and 'loss', and 'perplexity' for a
        language model (exp of the mean loss per weighted position).
    """

    name: ClassVar[str]
    batch_kind: ClassVar[str] = IMAGES
    cost_unit: ClassVar[str] = "image"
    metrics: ClassVar[tuple] = ("accuracy", "loss")

    # ------------------------------------------------------------------------------------------------
    # Construction from a config.

    @classmethod
    @abc.abstractmethod
    def space_fields(cls) -> tuple:
        """The family's `space` section of the config: `superfed_jax._fields.Field` entries named
        'space.KEY', each with its default, one-line doc, check and resume rule."""

    @classmethod
    @abc.abstractmethod
    def from_config(cls, space: Mapping[str, Any], *, data: Optional[DataShape] = None,
                    conv_impl: str = "xla", dtype: str = "float32") -> "Family":
        """The family of a config's `space` section (a mapping of the `space_fields` keys).

        `data` replaces the space's own input shape and classes by the dataset's (None keeps the config's
        values, for cost commands that read no data). Raises ValueError naming a bad field.
        """

    @classmethod
    def smoke_space(cls) -> dict:
        """`space` overrides of the config variant `:smoke` (a seconds-long try): a tiny space of this
        family. The default, {}, keeps the config's space."""
        return {}

    @abc.abstractmethod
    def space_dict(self) -> dict:
        """The space as JSON-ready `space_fields` values (with the data's shape); `from_config` reads it back."""

    @property
    @abc.abstractmethod
    def data_shape(self) -> DataShape:
        """The input shape of one example and the classes of the head."""

    # ------------------------------------------------------------------------------------------------
    # The space of archs.

    @abc.abstractmethod
    def smallest(self):
        """The smallest subnet (NumPy leaves)."""

    @abc.abstractmethod
    def largest(self):
        """The largest subnet, the whole supernet (NumPy leaves)."""

    @abc.abstractmethod
    def arch_bounds(self):
        """An arch pytree of exclusive upper bounds: every leaf element of an arch lies in [0, bound)."""

    def sample(self, key: jax.Array, shape: Sequence[int] = ()):
        """Uniformly random archs with leading `shape` (each choice index uniform in its bounds); jittable."""
        leaves, treedef = jax.tree.flatten(self.arch_bounds())
        keys = jax.random.split(key, len(leaves))
        drawn = [jax.random.randint(k, tuple(shape) + np.shape(b), 0, np.asarray(b)).astype(np.int32)
                 for k, b in zip(keys, leaves)]
        return jax.tree.unflatten(treedef, drawn)

    @abc.abstractmethod
    def canonical(self, arch):
        """The same subnet with every choice that has no effect set to 0 (jittable, any leading axes), so
        two encodings of one subnet compare equal."""

    @abc.abstractmethod
    def validate(self, arch) -> None:
        """Raises ValueError naming the problem if a concrete arch (any leading axes) is outside the space."""

    @abc.abstractmethod
    def arch_to_json(self, arch) -> Any:
        """The published JSON form of one concrete arch (e.g. the ResNet's {"d": [...], "e": ...})."""

    @abc.abstractmethod
    def arch_from_json(self, spec: Any):
        """Parses and validates the JSON form; ValueError saying what is allowed."""

    @abc.abstractmethod
    def num_subnets(self) -> int:
        """The exact number of distinct subnets."""

    @abc.abstractmethod
    def default_tracked(self) -> dict:
        """name -> arch evaluated during training, smallest to largest; its names ('smallest', 'largest',
        ...) are what configs and command lines may use instead of an arch's JSON form."""

    # ------------------------------------------------------------------------------------------------
    # The supernet.

    @abc.abstractmethod
    def init(self, key: jax.Array, out_sharding=None) -> dict:
        """Initial supernet params at full size (jitted; `out_sharding` places them where they live)."""

    @abc.abstractmethod
    def apply(self, params, inputs, arch, *, train: bool = False, rng: Optional[jax.Array] = None):
        """The masked forward pass of one arch on a batch: logits. `rng` drives dropout when `train`."""

    @property
    def sliced(self) -> Optional[SlicedExecution]:
        """The family's sliced execution, or None when it has only the masked one."""
        return None

    def sliced_pays_off(self) -> bool:
        """Whether `model.execution='auto'` runs the sliced execution for clients side by side on one CPU
        device: only where a whole run was measured to finish sooner sliced, its longer compile included
        (docs/performance.md 16). Elsewhere (vmapped clients, accelerators) 'auto' stays masked until
        measured. The default, False, keeps a family masked; a family with `sliced` overrides it with its
        own measured rule."""
        return False

    @abc.abstractmethod
    def masks(self, arch) -> dict:
        """The broadcastable mask pytree of one arch (jittable; vmap it for a batch)."""

    # ------------------------------------------------------------------------------------------------
    # Exact cost, per `cost_unit`.

    @abc.abstractmethod
    def macs(self, arch) -> int:
        """Forward multiply-accumulates of one concrete arch per `cost_unit` (Python int)."""

    @abc.abstractmethod
    def params(self, arch) -> int:
        """Parameters of one concrete arch's dense subnet (Python int)."""

    @abc.abstractmethod
    def macs_batch(self, archs) -> np.ndarray:
        """Exact int64 MACs of a concrete batch of archs (leading axes), on the host."""

    @abc.abstractmethod
    def params_batch(self, archs) -> np.ndarray:
        """Exact int64 parameter counts of a concrete batch of archs, on the host."""

    @abc.abstractmethod
    def macs_array(self, archs) -> jax.Array:
        """Jittable float32 MACs of (batches of) traced archs."""

    @abc.abstractmethod
    def params_array(self, archs) -> jax.Array:
        """Jittable int32 parameter counts of (batches of) traced archs."""

    def cost_summary(self, arch) -> dict:
        """The JSON-ready cost of one arch that `superfed-cost` prints; families may add their own
        conventions (e.g. the paper's counting of frozen BatchNorm pairs)."""
        arch_macs = self.macs(arch)
        return {"arch": self.arch_to_json(arch), "macs": arch_macs, "gmacs": arch_macs / 1e9,
                "params": self.params(arch)}

    # ------------------------------------------------------------------------------------------------
    # Optional hooks for the cost reports and command lines; the defaults serve any family.

    def cost_batch(self, archs, **conventions) -> tuple:
        """(MACs, params) of a concrete batch of archs as the cost reports count them: exact int64 arrays
        shaped like the batch's leading axes.

        `conventions` are a family's own counting options, documented by it (the OFA-ResNet's
        `count_padding` and `bn_affine`, its paper's conventions). The default has none (ValueError for any)
        and counts `macs_batch` and `params_batch`.
        """
        _no_conventions(self, conventions)
        return self.macs_batch(archs), self.params_batch(archs)

    def cost_conventions(self, **conventions) -> dict:
        """What `cost_batch` counts under `conventions`, in words: {'macs': ..., 'params': ...}, in that
        order (the cost report's 'conventions')."""
        _no_conventions(self, conventions)
        return {"macs": f"forward multiply-accumulates of one {self.cost_unit} (`Family.macs`)",
                "params": "the subnet's parameters (`Family.params`)"}

    def paper_baseline(self) -> Optional[list]:
        """The archs a published cost comparison trains independently with FedAvg, when this family's space
        is the one it was published for (the cost report's default baseline); None, the default, otherwise:
        the report then compares with the `default_tracked` archs."""
        return None

    def arch_help(self) -> str:
        """One line saying what an arch's JSON form may be, for error messages (default: an example)."""
        return f"give the arch's JSON form, e.g. {json.dumps(self.arch_to_json(self.smallest()))}"

    # ------------------------------------------------------------------------------------------------
    # Dense subnets (export, search, deployment).

    @abc.abstractmethod
    def extract(self, params, arch) -> dict:
        """The dense params of a concrete arch, cut out of the supernet's."""

    @abc.abstractmethod
    def embed(self, dense_params, arch, params) -> dict:
        """Writes a dense subnet's params back into their supernet positions; other entries are kept."""

    @abc.abstractmethod
    def dense_apply(self, dense_params, inputs, arch):
        """The forward pass of a concrete arch's standalone dense subnet (compiles per arch)."""

    def dense_init(self, key: jax.Array, inputs, arch) -> dict:
        """Initial params of a concrete arch's standalone dense subnet, the structure and shapes that
        `extract` gives and `dense_apply` takes; `inputs` is an example batch (only its shape and dtype
        matter). Loading an export restores its params into `jax.eval_shape` of this, with no supernet.

        The default cuts them out of a freshly initialised supernet; families override it to build only
        the dense subnet (the OFA-ResNet does).
        """
        del inputs
        return self.extract(self.init(key), arch)

    def dense_description(self, arch) -> dict:
        """JSON-ready facts about a concrete arch's dense subnet that an export's model.json records next
        to the arch's JSON form, for people and other tools (nothing reads them back); default none. The
        OFA-ResNet gives {"subnet_shape": {"depth": [...], "mids": [...]}}.
        """
        del arch
        return {}

    # ------------------------------------------------------------------------------------------------
    # Memory.

    @abc.abstractmethod
    def activation_elements(self) -> int:
        """Activation elements per example of one training step of the supernet (forward values kept for
        the backward pass plus the backward's working set), for the up-front memory estimate."""


def _no_conventions(family: Family, conventions: Mapping[str, Any]) -> None:
    if conventions:
        raise ValueError(f"the {family.name} family has no cost conventions {sorted(conventions)}")


def family_class(name: str) -> type:
    """The `Family` subclass that `model.family` names: a registered name or 'package.module:ClassName'.

    Raises:
      ValueError: naming the value and what is allowed, when it cannot be found or is not a Family.
    """
    allowed = f"allowed are {list(FAMILIES)} or an import path 'package.module:ClassName'"
    found = _import_path.load("model.family", FAMILIES.get(name, name), allowed, "family")
    if not (isinstance(found, type) and issubclass(found, Family)):
        raise ValueError(f"model.family={name!r}: {FAMILIES.get(name, name)} is not a subclass of "
                         "superfed_jax.supernet.family.Family")
    return found


def family_ref(family: Family) -> str:
    """How files name a family so that `family_class` finds it again: its registered name, or the import
    path 'module:ClassName' of a user's own class."""
    cls = type(family)
    path = f"{cls.__module__}:{cls.__qualname__}"
    return next((name for name, registered in FAMILIES.items() if registered == path), path)


def stack(archs: Sequence[Any]):
    """Stacks concrete archs (of any family) along a new leading axis (NumPy leaves)."""
    return jax.tree.map(lambda *leaves: np.stack([np.asarray(x) for x in leaves]), *archs)


def unstack(archs) -> list:
    """The archs of a concrete batch with one leading axis, one by one."""
    leaves, treedef = jax.tree.flatten(jax.tree.map(np.asarray, archs))
    return [jax.tree.unflatten(treedef, [leaf[i] for leaf in leaves]) for i in range(len(leaves[0]))]


def gene_bounds(family: Family) -> np.ndarray:
    """int64 [G]: the exclusive bound of every choice of an arch, in the order of `to_genes`."""
    return np.concatenate([np.asarray(b, np.int64).reshape(-1) for b in jax.tree.leaves(family.arch_bounds())])


def to_genes(family: Family, archs) -> np.ndarray:
    """The choice indices of concrete archs as one int32 vector each ([..., G]), leaves in pytree order."""
    parts = []
    for leaf, bound in zip(jax.tree.leaves(archs), jax.tree.leaves(family.arch_bounds())):
        leaf = np.asarray(leaf, np.int64)
        lead = leaf.shape[:leaf.ndim - np.ndim(bound)]
        parts.append(leaf.reshape(lead + (int(np.size(bound)),)))
    return np.concatenate(parts, axis=-1).astype(np.int32)


def from_genes(family: Family, genes: np.ndarray):
    """Inverse of `to_genes`: archs (int32 NumPy leaves) from gene vectors [..., G]."""
    genes = np.asarray(genes)
    bounds, treedef = jax.tree.flatten(family.arch_bounds())
    leaves, start = [], 0
    for bound in bounds:
        size = int(np.size(bound))
        leaves.append(genes[..., start:start + size].reshape(genes.shape[:-1] + np.shape(bound))
                      .astype(np.int32))
        start += size
    return jax.tree.unflatten(treedef, leaves)
