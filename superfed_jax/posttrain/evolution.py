"""Evolution over archs under a feasibility constraint: gene operations, `evolve` and the Pareto front.

Khare et al., "SuperFed: Weight Shared Federated Learning", arXiv 2301.10879 (docs/algorithm.md section 9):
the subnet to deploy is chosen by evolution over archs. One generation keeps the top `parent_ratio` of the
population as parents, adds `mutation_ratio` of the population as mutants of random parents (every gene
resampled with probability `mutate_prob`) and fills the rest with uniform crossovers of two random parents
(defaults, from the paper: population 100, parents 25%, mutants 20%, resample probability 0.1). A child
that fails `feasible_fn` (breaks the budget) is redrawn, at most `max_tries` times, then it is a copy of a
parent, so no infeasible arch ever enters a population or the results.

An arch is a vector of *genes*: its choice indices in the family's order (`supernet.family.to_genes`).
This module knows nothing of budgets, of any particular supernet family or of data: feasibility and
fitness come in as functions (`superfed_jax.posttrain.search` builds them from a budget and the trained
supernet), and the NumPy generator passed in is the only source of randomness.
"""
from typing import Callable, NamedTuple

import numpy as np

from superfed_jax.supernet import family as family_lib


# ----------------------------------------------------------------------------------------------------
# Archs as gene vectors [..., G]: every choice index of an arch, leaves in pytree order
# (`supernet.family.to_genes` / `from_genes` / `gene_bounds`).


def canonical_genes(family: family_lib.Family, genes: np.ndarray) -> np.ndarray:
    """Genes with every choice that has no effect set to 0 (`Family.canonical`): one vector per subnet."""
    return family_lib.to_genes(family, family.canonical(family_lib.from_genes(family, genes)))


def random_genes(family: family_lib.Family, rng: np.random.Generator, count: int) -> np.ndarray:
    """int32 [count, G]: uniformly random archs."""
    bounds = family_lib.gene_bounds(family)
    return rng.integers(0, bounds, size=(count, len(bounds))).astype(np.int32)


def mutate(family: family_lib.Family, rng: np.random.Generator, genes: np.ndarray,
           prob: float) -> np.ndarray:
    """Resamples every gene of every row independently with probability `prob`."""
    resample = rng.random(genes.shape) < prob
    return np.where(resample, random_genes(family, rng, len(genes)), genes)


def crossover(rng: np.random.Generator, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Uniform crossover: every gene from `first` or `second` with probability 1/2."""
    return np.where(rng.random(first.shape) < 0.5, first, second)


# ----------------------------------------------------------------------------------------------------
# Evolution.


class EvolutionSettings(NamedTuple):
    """Sizes and probabilities of the evolution (defaults: docs/algorithm.md section 9)."""

    population: int = 100
    generations: int = 20
    parent_ratio: float = 0.25  # top share of a population kept as parents
    mutation_ratio: float = 0.2  # share of the next population made by mutation
    mutate_prob: float = 0.1  # per-gene resample probability of a mutation
    max_tries: int = 100  # draws of a child before it falls back to a copy of a parent

    @property
    def num_parents(self) -> int:
        """Parents kept from each population."""
        return int(round(self.parent_ratio * self.population))

    @property
    def num_mutants(self) -> int:
        """Mutants in each new population; crossovers fill the rest."""
        return int(round(self.mutation_ratio * self.population))


def check_evolution(settings: EvolutionSettings) -> None:
    """Raises ValueError naming the bad setting."""
    if settings.population < 1 or settings.generations < 0 or settings.max_tries < 1:
        raise ValueError(f"population={settings.population}, generations={settings.generations}, "
                         f"max_tries={settings.max_tries}: need population >= 1, generations >= 0, "
                         "max_tries >= 1")
    if settings.num_parents < 1:
        raise ValueError(f"parent_ratio={settings.parent_ratio} of population={settings.population} "
                         "keeps no parent; raise parent_ratio")
    if not 0 <= settings.mutate_prob <= 1 or settings.mutation_ratio < 0:
        raise ValueError(f"mutate_prob={settings.mutate_prob} must be in [0, 1] and "
                         f"mutation_ratio={settings.mutation_ratio} at least 0")
    if settings.num_parents + settings.num_mutants > settings.population:
        raise ValueError(f"parent_ratio={settings.parent_ratio} + mutation_ratio="
                         f"{settings.mutation_ratio} exceed the whole population")


def fill_feasible(propose_fn: Callable, fallback_fn: Callable, feasible_fn: Callable, count: int,
                  max_tries: int) -> np.ndarray:
    """`count` feasible gene vectors: proposals that pass `feasible_fn`, topped up by `fallback_fn`.

    Args:
      propose_fn: `propose_fn(n) -> genes [n, G]`, fresh candidates.
      fallback_fn: `fallback_fn(n) -> genes [n, G]`, known-feasible vectors for what `max_tries` rounds
        of proposals did not find.
      feasible_fn: `feasible_fn(genes [n, G]) -> bool [n]`.
      count: vectors wanted.
      max_tries: rounds of proposals (each proposes as many as are still missing).
    """
    found, missing = [], count
    for _ in range(max_tries):
        if missing == 0:
            break
        candidates = propose_fn(missing)
        candidates = candidates[feasible_fn(candidates)]
        found.append(candidates)
        missing -= len(candidates)
    if missing or not found:  # `not found`: count 0, and the fallback gives the [0, G] shape
        found.append(fallback_fn(missing))
    return np.concatenate(found, axis=0)


def next_population(family: family_lib.Family, settings: EvolutionSettings, rng: np.random.Generator,
                    population: np.ndarray, fitness: np.ndarray, feasible_fn: Callable) -> np.ndarray:
    """Parents (the fittest), then mutants of random parents, then crossovers of two random parents."""
    parents = population[np.argsort(-fitness, kind="stable")[:settings.num_parents]]
    pick = lambda n: parents[rng.integers(len(parents), size=n)]  # noqa: E731
    mutants = fill_feasible(lambda n: mutate(family, rng, pick(n), settings.mutate_prob), pick,
                            feasible_fn, settings.num_mutants, settings.max_tries)
    crossovers = fill_feasible(lambda n: crossover(rng, pick(n), pick(n)), pick, feasible_fn,
                               settings.population - len(parents) - len(mutants), settings.max_tries)
    return np.concatenate([parents, mutants, crossovers], axis=0)


class Evolution(NamedTuple):
    """Every distinct subnet that entered a population, in first-seen order, and its fitness."""

    genes: np.ndarray  # int32 [M, G], canonical
    fitness: np.ndarray  # float64 [M]
    best_per_generation: list  # the best fitness found so far, after each evaluated population


def evolve(family: family_lib.Family, settings: EvolutionSettings, rng: np.random.Generator,
           feasible_fn: Callable, fitness_fn: Callable) -> Evolution:
    """Runs the evolution: a random feasible population, then `settings.generations` new ones.

    Args:
      family: the supernet family (its archs and their genes).
      settings: population sizes and probabilities.
      rng: the only source of randomness.
      feasible_fn: `feasible_fn(genes [n, G]) -> bool [n]`; the family's smallest arch must pass.
      fitness_fn: `fitness_fn(genes [n, G]) -> float [n]`, higher is better.
    """
    smallest = family_lib.to_genes(family, family.smallest())
    population = fill_feasible(lambda n: random_genes(family, rng, n),
                               lambda n: np.repeat(smallest[None], n, axis=0), feasible_fn,
                               settings.population, settings.max_tries)
    archive, history = {}, []
    for generation in range(settings.generations + 1):
        fitness = np.asarray(fitness_fn(population), np.float64)
        for genes, value in zip(canonical_genes(family, population), fitness):
            archive.setdefault(genes.tobytes(), (genes, value))
        history.append(max(value for _, value in archive.values()))
        if generation < settings.generations:
            population = next_population(family, settings, rng, population, fitness, feasible_fn)
    genes, fitness = zip(*archive.values())
    return Evolution(np.stack(genes), np.asarray(fitness), history)


def pareto_front(metric: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats (metric <= and accuracy >=, one strictly), by metric.

    `accuracy` is any fitness where higher is better: a lower-is-better value (perplexity) comes in as its
    negative (`federated.metric.Metric.score`), as the search's fitness does.

    Of points with equal metric and accuracy the first is kept; the last index is the most accurate point
    (the cheapest among equally accurate ones).
    """
    front, best = [], -np.inf
    for index in np.lexsort((-accuracy, metric)):  # metric ascending, then accuracy descending
        if accuracy[index] > best:
            front.append(int(index))
            best = accuracy[index]
    return np.asarray(front, np.int64)
