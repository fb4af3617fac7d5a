"""Splits a training set across federated clients (host-side, NumPy).

Three synthetic schemes, each seeded only through ``np.random.default_rng(seed)``,
and the data's own clients:

* ``dirichlet``: the label-skewed "hetero" split used by SuperFed and FedML
  (after Yurochkin et al., 2019). For each class, a Dirichlet(alpha) draw over
  clients decides how the class is shared; a client that already holds its
  fair share ``N / num_clients`` gets nothing more, which keeps client sizes
  from running away. Small ``alpha`` gives few classes per client, large
  ``alpha`` near-identical class mixes. The whole draw is repeated until
  every client holds at least ``min_size`` examples.
* ``iid``: a uniformly random near-equal split.
* ``shards``: McMahan et al.'s pathological split; sort by label, cut into
  equal shards, deal each client ``shards_per_client`` random shards.
* ``contiguous``: the examples in file order cut into near-equal consecutive
  parts, as the reference splits one text stream (Penn Treebank) into K
  clients. No randomness.
* ``natural``: one client per distinct client id the data gives its training
  examples (an ``.npz`` file's ``client_id`` array), in increasing id order;
  clients with fewer than ``min_size`` examples are dropped, with a note. No
  randomness: the clients are the data's.

:func:`client_index_table` packs the result into one padded int32 table that
can live on device.
"""
import sys
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "NaturalSplit",
    "PARTITION_METHODS",
    "client_index_table",
    "dirichlet_partition",
    "contiguous_partition",
    "iid_partition",
    "label_skew",
    "make_partition",
    "natural_note",
    "natural_partition",
    "natural_problem",
    "shards_partition",
    "skew_warning",
]

PARTITION_METHODS = ("dirichlet", "iid", "shards", "contiguous", "natural")
# The splits that read one class label per example; token windows (labels [N, T]) have none.
LABEL_METHODS = ("dirichlet", "shards")
# Ids named in the note about dropped natural clients; the rest are counted only.
_IDS_SHOWN = 10

# Below the paper's most skewed setting (alpha = 0.1) by a factor of ten: a value this small is more likely
# a typo than a plan, so its split is reported.
_TINY_ALPHA = 0.01
# A client whose largest class holds this share of its examples counts as holding a single class.
_SINGLE_CLASS_SHARE = 0.95


def _split_class(idx_k, proportions, sizes, cap):
    """Shares one class's (shuffled) indices among clients; returns the pieces.

    Args:
        idx_k: Indices of the class's examples, already shuffled.
        proportions: Dirichlet draw over clients.
        sizes: Examples each client holds so far.
        cap: Fair share ``N / num_clients``; clients at or above it get none.
    """
    p = np.where(sizes < cap, proportions, 0.0)
    total = p.sum()
    if total <= 0.0:
        # Only when the draw underflowed to zero on every open client (tiny
        # alpha); share evenly among them instead of dividing by zero.
        p, total = (sizes < cap).astype(np.float64), np.sum(sizes < cap)
    cuts = (np.cumsum(p / total) * len(idx_k)).astype(int)[:-1]
    return np.split(idx_k, cuts)


def _dirichlet_attempt(class_indices, num_clients, alpha, rng):
    """One pass over the classes; returns each client's list of pieces."""
    pieces: List[List[np.ndarray]] = [[] for _ in range(num_clients)]
    sizes = np.zeros(num_clients, dtype=np.int64)
    cap = sum(len(idx) for idx in class_indices) / num_clients
    for idx in class_indices:
        idx_k = idx.copy()  # shuffled per attempt, as a fresh draw
        rng.shuffle(idx_k)
        proportions = rng.dirichlet(np.full(num_clients, alpha))
        for j, piece in enumerate(_split_class(idx_k, proportions, sizes, cap)):
            pieces[j].append(piece)
            sizes[j] += len(piece)
    return pieces, sizes


def _dirichlet_error(n, num_clients, alpha, min_size, tries):
    """The error for a Dirichlet split that cannot meet ``min_size``."""
    return ValueError(
        f"dirichlet partition cannot give every one of {num_clients} clients "
        f"at least min_size={min_size} examples ({n} examples, alpha={alpha}, "
        f"{tries} attempts). Use fewer clients (fl.num_clients), a larger "
        "alpha (data.alpha) or a smaller min size (data.min_client_size).")


def dirichlet_partition(
    labels: np.ndarray,
    num_clients: int,
    alpha: float,
    seed: int,
    min_size: int = 10,
    max_tries: int = 1000,
) -> List[np.ndarray]:
    """Label-skewed Dirichlet split, as in SuperFed / FedML's "hetero" split.

    Args:
        labels: ``[N]`` integer labels in ``[0, K)``.
        num_clients: Number of clients.
        alpha: Dirichlet concentration (> 0); smaller is more skewed.
        seed: Seed of the split.
        min_size: Fewest examples any client may hold.
        max_tries: Attempts before giving up.

    Returns:
        One int64 index array per client, each shuffled; together they hold
        every index exactly once.

    Raises:
        ValueError: If ``alpha`` is not positive, or no attempt within
            ``max_tries`` gives every client ``min_size`` examples.
    """
    labels = np.asarray(labels)
    if not alpha > 0:
        raise ValueError(f"data.alpha must be > 0, got {alpha!r}.")
    if min_size * num_clients > len(labels):
        raise _dirichlet_error(len(labels), num_clients, alpha, min_size, 0)
    rng = np.random.default_rng(seed)
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    # Found once: retries then cost only shuffles and draws.
    class_indices = [np.flatnonzero(labels == k) for k in range(num_classes)]
    for _ in range(max_tries):
        pieces, sizes = _dirichlet_attempt(class_indices, num_clients, alpha, rng)
        if sizes.min() >= min_size:
            parts = [np.concatenate(p).astype(np.int64) for p in pieces]
            for part in parts:
                rng.shuffle(part)
            return parts
    raise _dirichlet_error(len(labels), num_clients, alpha, min_size, max_tries)


def iid_partition(num_examples: int, num_clients: int, seed: int) -> List[np.ndarray]:
    """Uniformly random split into near-equal parts (sizes differ by <= 1).

    Args:
        num_examples: Number of examples ``N``.
        num_clients: Number of clients.
        seed: Seed of the split.

    Returns:
        One int64 index array per client.
    """
    perm = np.random.default_rng(seed).permutation(num_examples)
    return [part.astype(np.int64) for part in np.array_split(perm, num_clients)]


def contiguous_partition(num_examples: int, num_clients: int) -> List[np.ndarray]:
    """Consecutive near-equal parts in file order (sizes differ by <= 1, larger parts first).

    The reference cuts a text stream into K equal consecutive chunks (dropping the last N mod K
    tokens); here windows of the stream are cut instead, and none is dropped.

    Args:
        num_examples: Number of examples ``N``.
        num_clients: Number of clients.

    Returns:
        One int64 index array per client: client k holds a run of consecutive rows.
    """
    return [part.astype(np.int64) for part in np.array_split(np.arange(num_examples), num_clients)]


def shards_partition(
    labels: np.ndarray, num_clients: int, shards_per_client: int, seed: int
) -> List[np.ndarray]:
    """Pathological non-IID split: each client gets a few label-sorted shards.

    Args:
        labels: ``[N]`` integer labels.
        num_clients: Number of clients.
        shards_per_client: Shards dealt to each client.
        seed: Seed of the dealing.

    Returns:
        One int64 index array per client.

    Raises:
        ValueError: If there are more shards than examples.
    """
    num_shards = num_clients * shards_per_client
    if shards_per_client < 1 or num_shards > len(labels):
        raise ValueError(
            f"shards partition needs 1 <= data.shards_per_client and "
            f"num_clients * shards_per_client <= {len(labels)} examples, got "
            f"{num_clients} * {shards_per_client}.")
    # Stable sort: equal labels keep index order, so only `seed` varies shards.
    shards = np.array_split(np.argsort(labels, kind="stable"), num_shards)
    order = np.random.default_rng(seed).permutation(num_shards)
    dealt = order.reshape(num_clients, shards_per_client)
    return [np.concatenate([shards[s] for s in row]).astype(np.int64) for row in dealt]


class NaturalSplit(NamedTuple):
    """The clients of a natural partition: every distinct client id of the training rows.

    Attributes:
        ids: int64 ``[M]``, every distinct id, increasing.
        sizes: int64 ``[M]``, the training examples of each id.
        kept: bool ``[M]``, whether the id holds at least ``min_size`` examples (and is a client).
        parts: The row indices of each kept id, in id order; rows in file order.
        min_size: The fewest examples a kept client holds (``data.min_client_size``).
    """

    ids: np.ndarray
    sizes: np.ndarray
    kept: np.ndarray
    parts: List[np.ndarray]
    min_size: int

    @property
    def num_clients(self) -> int:
        """The clients kept: what ``fl.num_clients`` must be."""
        return int(self.kept.sum())

    @property
    def dropped_examples(self) -> int:
        """The training examples of the dropped ids, which no client trains on."""
        return int(self.sizes[~self.kept].sum())


def natural_partition(client_ids: np.ndarray, min_size: int) -> NaturalSplit:
    """One client per distinct id in ``client_ids``, dropping ids with fewer than ``min_size`` examples.

    Ids need not be contiguous ({3, 7, 100} gives clients 0, 1, 2 in that order). A tiny client would
    train on a handful of examples for all its local epochs, yet its update is averaged in like any other
    client's; ``min_size`` is the same floor the Dirichlet split enforces by redrawing.

    Args:
        client_ids: ``[N]`` non-negative integer client id of each training example.
        min_size: Fewest examples a client must hold to be kept (>= 1).

    Returns:
        The :class:`NaturalSplit`; its ``parts`` hold every row of a kept id exactly once.
    """
    ids, inverse, sizes = np.unique(np.asarray(client_ids), return_inverse=True, return_counts=True)
    # A stable sort groups the rows by id and keeps each client's rows in file order.
    rows = np.argsort(inverse.reshape(-1), kind="stable")
    groups = np.split(rows, np.cumsum(sizes)[:-1]) if len(ids) else []
    kept = sizes >= min_size
    parts = [group.astype(np.int64) for group, keep in zip(groups, kept) if keep]
    return NaturalSplit(ids.astype(np.int64), sizes.astype(np.int64), kept, parts, int(min_size))


def _id_list(ids: np.ndarray) -> str:
    """Up to `_IDS_SHOWN` ids, comma-separated, with '...' when there are more."""
    shown = ", ".join(str(int(i)) for i in ids[:_IDS_SHOWN])
    return shown + (", ..." if len(ids) > _IDS_SHOWN else "")


def natural_note(split: NaturalSplit) -> str:
    """The note on the clients a natural partition dropped ('' when it dropped none)."""
    dropped = split.ids[~split.kept]
    if not len(dropped):
        return ""
    examples = split.dropped_examples
    return (f"note: data.partition='natural': dropped {len(dropped)} of {len(split.ids)} clients with "
            f"fewer than data.min_client_size={split.min_size} training examples "
            f"(id{'s' if len(dropped) > 1 else ''} {_id_list(dropped)}; {examples} "
            f"example{'s' if examples > 1 else ''} in all, which no client trains on); "
            f"{split.num_clients} clients remain")


def natural_problem(split: NaturalSplit, num_clients: Optional[int]) -> str:
    """Why ``split`` cannot be the run's clients ('' when it can), as one 'field=value: ...' line.

    ``fl.num_clients`` must equal the clients kept: the config then records the run's client count, which
    the dry run, the cost report and a resume read without the data. ``num_clients`` None skips that check.
    """
    if not split.num_clients:
        largest = int(split.sizes.max(initial=0))
        return (f"data.min_client_size={split.min_size}: data.partition='natural' drops every one of the "
                f"{len(split.ids)} clients of the data (the largest holds {largest} training examples); "
                f"lower data.min_client_size to at most {largest}")
    if num_clients is None or num_clients == split.num_clients:
        return ""
    dropped = len(split.ids) - split.num_clients
    also = (f", after dropping {dropped} with fewer than data.min_client_size={split.min_size} "
            "examples" if dropped else "")
    return (f"fl.num_clients={num_clients}: data.partition='natural' takes the clients from the data, "
            f"which gives {split.num_clients} (one per distinct client id of the training rows{also}); "
            f"set fl.num_clients={split.num_clients}")


def label_skew(labels: np.ndarray, parts: Sequence[np.ndarray]) -> dict:
    """How label-skewed a split is, measured on the split itself.

    Args:
        labels: ``[N]`` integer labels.
        parts: One index array per client (non-empty).

    Returns:
        ``mean_top_share``: the share of a client's examples in its largest class, averaged over
        clients; ``overall_top_share``: the same share for the whole training set (what an IID split
        gives); ``single_class_clients``: clients whose largest class holds at least 95% of their
        examples; ``num_clients``.
    """
    labels = np.asarray(labels)
    top = [np.bincount(labels[p]).max() / len(p) for p in parts if len(p)]
    return {"mean_top_share": float(np.mean(top)) if top else 0.0,
            "overall_top_share": float(np.bincount(labels).max() / len(labels)) if len(labels) else 0.0,
            "single_class_clients": int(sum(t >= _SINGLE_CLASS_SHARE for t in top)),
            "num_clients": len(parts)}


def skew_warning(labels: np.ndarray, parts: Sequence[np.ndarray], alpha: float) -> str:
    """A warning with the measured skew when a Dirichlet split is extreme, else ''.

    Extreme: ``alpha`` below 0.01 (ten times below the paper's most skewed 0.1), or more than half of
    the clients holding a single class (at least 95% of their examples). Classes in the data: at least two.
    """
    skew = label_skew(labels, parts)
    if len(np.unique(labels)) < 2:
        return ""
    mostly_single = skew["single_class_clients"] * 2 > skew["num_clients"]
    if alpha >= _TINY_ALPHA and not mostly_single:
        return ""
    return (f"warning: data.alpha={alpha:g} gives an extremely label-skewed split: "
            f"{skew['single_class_clients']} of {skew['num_clients']} clients hold a single class "
            f"(>= {_SINGLE_CLASS_SHARE:.0%} of their examples); a client's largest class holds "
            f"{skew['mean_top_share']:.0%} of its examples on average ({skew['overall_top_share']:.0%} "
            "in the whole training set). If that is not intended, use a larger data.alpha (the paper "
            "uses 100, 1 and 0.1).")


def make_partition(
    labels: np.ndarray,
    num_clients: int,
    method: str,
    seed: int,
    alpha: float = 0.5,
    shards_per_client: int = 2,
    min_size: int = 10,
    client_ids: Optional[np.ndarray] = None,
) -> List[np.ndarray]:
    """Splits examples across clients with the named method.

    Args:
        labels: ``[N]`` integer training labels.
        num_clients: Number of clients (1..N); for ``natural`` it must be the
            number of clients the data gives (`natural_problem`).
        method: One of :data:`PARTITION_METHODS`.
        seed: Seed of the split (unused by ``natural``).
        alpha: Dirichlet concentration (``dirichlet`` only).
        shards_per_client: Shards per client (``shards`` only).
        min_size: Fewest examples per client (``dirichlet``: redrawn until
            met; ``natural``: smaller clients are dropped).
        client_ids: ``[N]`` client id of each example (``natural`` only).

    Returns:
        One int64 index array per client. An extremely skewed Dirichlet split
        (`skew_warning`) is reported on stderr with its measured skew, and the
        clients a natural split drops (`natural_note`) with their count.

    Raises:
        ValueError: For an unknown method, ``num_clients`` outside ``[1, N]``,
            or a request the method cannot meet.
    """
    labels = np.asarray(labels)
    if method == "natural":  # the data's clients: checked against their own count, not against N
        return _natural_parts(labels, num_clients, min_size, client_ids)
    if not 1 <= num_clients <= len(labels):
        raise ValueError(
            f"Cannot split {len(labels)} examples among fl.num_clients="
            f"{num_clients} clients; need 1 <= num_clients <= {len(labels)}.")
    if method in LABEL_METHODS and labels.ndim > 1:
        raise ValueError(
            f"data.partition={method!r} splits by class label, and these examples are token windows "
            "with a target per position (no class per example); use 'contiguous', 'iid' or "
            "'natural' (data with client ids).")
    if method == "dirichlet":
        parts = dirichlet_partition(labels, num_clients, alpha, seed, min_size)
        warning = skew_warning(labels, parts, alpha)
        if warning:
            print(warning, file=sys.stderr, flush=True)
        return parts
    if method == "iid":
        return iid_partition(len(labels), num_clients, seed)
    if method == "contiguous":
        return contiguous_partition(len(labels), num_clients)
    if method == "shards":
        return shards_partition(labels, num_clients, shards_per_client, seed)
    raise ValueError(
        f"Unknown data.partition={method!r}; expected one of {list(PARTITION_METHODS)}.")


def _natural_parts(labels, num_clients: int, min_size: int, client_ids) -> List[np.ndarray]:
    """`make_partition`'s natural split: checks the ids and the client count, prints the note."""
    if client_ids is None or len(client_ids) != len(labels):
        given = "none" if client_ids is None else f"{len(client_ids)}"
        raise ValueError(
            f"data.partition='natural' needs the client id of each of the {len(labels)} training "
            f"examples, got {given} (load the data with data.partition='natural').")
    split = natural_partition(client_ids, min_size)
    problem = natural_problem(split, num_clients)
    if problem:
        raise ValueError(problem)
    note = natural_note(split)
    if note:
        print(note, file=sys.stderr, flush=True)
    return split.parts


def client_index_table(parts: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """Packs per-client index lists into a padded table for the device.

    Args:
        parts: One index array per client.

    Returns:
        ``(table, sizes)``: int32 ``[K, max_size]`` with client ``k``'s
        indices in ``table[k, :sizes[k]]`` and zeros after (a valid index,
        so gathers stay in bounds; mask with ``sizes``), and int32 ``[K]``.
    """
    sizes = np.array([len(p) for p in parts], dtype=np.int32)
    table = np.zeros((len(parts), int(sizes.max(initial=0))), dtype=np.int32)
    for k, part in enumerate(parts):
        table[k, : len(part)] = part
    return table, sizes
