"""Splits a training set across federated clients (host-side, NumPy).

Three schemes, each seeded only through ``np.random.default_rng(seed)``:

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

:func:`client_index_table` packs the result into one padded int32 table that
can live on device.
"""
import sys
from typing import List, Sequence, Tuple

import numpy as np

__all__ = [
    "PARTITION_METHODS",
    "client_index_table",
    "dirichlet_partition",
    "iid_partition",
    "label_skew",
    "make_partition",
    "shards_partition",
    "skew_warning",
]

PARTITION_METHODS = ("dirichlet", "iid", "shards")

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
) -> List[np.ndarray]:
    """Splits examples across clients with the named method.

    Args:
        labels: ``[N]`` integer training labels.
        num_clients: Number of clients (1..N).
        method: One of :data:`PARTITION_METHODS`.
        seed: Seed of the split.
        alpha: Dirichlet concentration (``dirichlet`` only).
        shards_per_client: Shards per client (``shards`` only).
        min_size: Fewest examples per client (``dirichlet`` only).

    Returns:
        One int64 index array per client. An extremely skewed Dirichlet split
        (`skew_warning`) is reported on stderr with its measured skew.

    Raises:
        ValueError: For an unknown method, ``num_clients`` outside ``[1, N]``,
            or a request the method cannot meet.
    """
    labels = np.asarray(labels)
    if not 1 <= num_clients <= len(labels):
        raise ValueError(
            f"Cannot split {len(labels)} examples among fl.num_clients="
            f"{num_clients} clients; need 1 <= num_clients <= {len(labels)}.")
    if method == "dirichlet":
        parts = dirichlet_partition(labels, num_clients, alpha, seed, min_size)
        warning = skew_warning(labels, parts, alpha)
        if warning:
            print(warning, file=sys.stderr, flush=True)
        return parts
    if method == "iid":
        return iid_partition(len(labels), num_clients, seed)
    if method == "shards":
        return shards_partition(labels, num_clients, shards_per_client, seed)
    raise ValueError(
        f"Unknown data.partition={method!r}; expected one of {list(PARTITION_METHODS)}.")


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
