"""The privacy spent by a run with user-level differential privacy (docs/algorithm.md 4.3.2).

With `dp.clip_norm` S > 0 and `dp.noise_multiplier` z > 0, every round releases a noised sum: each of
the P sampled clients (a "user") contributes a vector of L2 norm at most S, and the server adds Gaussian
noise of standard deviation z * S to every element of the sum (the aggregation, docs/algorithm.md 4.3).
The round samples exactly P = fl.clients_per_round of the K = fl.num_clients clients uniformly without
replacement (`sampling.sample_clients`), independently of the data. This module turns those numbers into
epsilon at a given delta with Google's `dp-accounting` (the extra 'dp'): T rounds are T compositions of a
fixed-size subsampled Gaussian, accounted with Renyi DP (Wang, Balle and Kasiviswanathan, "Subsampled
Renyi Differential Privacy and Analytical Moments Accountant", AISTATS 2019, Theorem 27).

Two choices, both forced by what the round does:

* **Neighbouring relation: replace one user.** Sampling a fixed number P of K clients is only analysed
  under REPLACE_ONE (the client count K is public; a neighbouring population has one client's data
  swapped for anyone else's). Add-or-remove with Poisson sampling would describe another round, one with
  a random number of clients.
* **The noise multiplier the accountant gets is z / 2.** Replacing one client changes the sum by up to
  2S (its contribution +v becomes some -v, both of norm <= S), so the L2 sensitivity is 2S and the noise,
  z * S, is z / 2 times the sensitivity. dp-accounting 0.6.0 hands `GaussianDpEvent.noise_multiplier`
  under REPLACE_ONE directly to formulas written for std / L2-sensitivity (its RDP of the unsampled
  Gaussian is alpha / (2 sigma^2); `_compute_rdp_sample_wor_gaussian` documents sigma as "the ratio of the
  standard deviation of the Gaussian noise to the l2-sensitivity"), although the event's docstring
  defines the multiplier as std / per-record norm bound. This is google/differential-privacy issue #378
  (open, with the fix proposed in pull request #464). Passing z itself would understate the RDP by a
  factor of 4. Because a later release may apply the factor itself, `_multiplier_for_library` checks the
  installed library's convention once (with public calls only) and passes z / 2 or z accordingly, so an
  upgrade can make the accounting neither optimistic nor doubly pessimistic; an unknown convention is an
  error rather than a guess.

Everything here is pure Python on the host: it reads only the config's numbers and the round, so a
resumed run writes exactly the epsilons the uninterrupted run would have written.
"""
import functools
import math
from collections.abc import Iterable, Mapping
from typing import Any

from superfed_jax import _extras

__all__ = ["EPSILON_KEY", "DELTA_KEY", "accounting", "is_private", "dp_event", "epsilon",
           "epsilon_schedule", "record_fields"]

# The keys of an evaluation record of metrics.jsonl (docs/run_outputs.md).
EPSILON_KEY = "dp_epsilon"
DELTA_KEY = "dp_delta"

# Orders at which the convention probe compares RDP: any few orders > 1 tell the two conventions apart.
_PROBE_ORDERS = (2.0, 4.0, 8.0)
_PROBE_DELTA = 1e-5


def accounting():
    """The `dp_accounting` module, or an ImportError naming the extra 'dp' that installs it."""
    return _extras.require("dp_accounting", "dp")


def _probe_epsilon(relation_name: str, event) -> float:
    """Epsilon of one `event` under the neighbouring relation named `relation_name`, at the probe's
    orders and delta (a small, fixed grid: enough to compare two conventions, fast)."""
    dpa = accounting()
    relation = getattr(dpa.NeighboringRelation, relation_name)
    accountant = dpa.rdp.RdpAccountant(list(_PROBE_ORDERS), relation)
    accountant.compose(event)
    return accountant.get_epsilon(_PROBE_DELTA)


@functools.cache
def _library_sensitivity_factor() -> float:
    """The multiple of the per-record norm bound that the installed dp-accounting takes as the L2
    sensitivity under REPLACE_ONE: 1.0 if it reads `GaussianDpEvent.noise_multiplier` as std /
    L2-sensitivity (0.6.0, issue #378: the caller must halve z), 2.0 if it doubles the bound itself.

    Found with public calls only: both events `dp_event` builds, at P == K (the Gaussian alone, and a
    fixed-size sample of a whole population, which reaches the subsampled formulas' own Gaussian case),
    under REPLACE_ONE against the Gaussian under ADD_OR_REMOVE_ONE, whose multiplier is std / sensitivity
    by definition. Both must agree on one convention.

    Raises:
      RuntimeError: the library matches neither convention; accounting would be a guess.
    """
    dpa = accounting()
    replaced = [_probe_epsilon("REPLACE_ONE", event) for event in (
        dpa.GaussianDpEvent(1.0), dpa.SampledWithoutReplacementDpEvent(2, 2, dpa.GaussianDpEvent(1.0)))]
    for factor in (1.0, 2.0):
        reference = _probe_epsilon("ADD_OR_REMOVE_ONE", dpa.GaussianDpEvent(1.0 / factor))
        if all(math.isclose(value, reference, rel_tol=1e-9) for value in replaced):
            return factor
    raise RuntimeError(
        "the installed dp-accounting accounts the Gaussian mechanism under REPLACE_ONE in a way "
        "superfed_jax does not know (neither std / sensitivity nor std / per-record bound, for both the "
        "plain and the fully sampled Gaussian); the privacy spent cannot be reported reliably. Install "
        "dp-accounting 0.6.0: pip install 'dp-accounting==0.6.0'")


def _multiplier_for_library(noise_multiplier: float) -> float:
    """The multiplier to give dp-accounting's Gaussian event for noise z * S on a sum of vectors of norm
    <= S under REPLACE_ONE: z / 2 where the library expects std / L2-sensitivity (the sensitivity is 2S),
    z where it applies the factor 2 itself (see the module docstring)."""
    return noise_multiplier * _library_sensitivity_factor() / 2.0


def _check_arguments(noise_multiplier: float, num_clients: int, clients_per_round: int,
                     rounds: int) -> None:
    """ValueError for arguments that describe no run (the config's validation catches them earlier)."""
    if not noise_multiplier >= 0:  # NaN too
        raise ValueError(f"noise_multiplier={noise_multiplier!r}: must be >= 0")
    if not 1 <= clients_per_round <= num_clients:
        raise ValueError(f"clients_per_round={clients_per_round!r}: must be between 1 and "
                         f"num_clients={num_clients!r}")
    if rounds < 0:
        raise ValueError(f"rounds={rounds!r}: must be >= 0")


def dp_event(noise_multiplier: float, num_clients: int, clients_per_round: int, rounds: int):
    """The `dp_accounting.DpEvent` of `rounds` rounds, for any accountant of dp-accounting that supports
    REPLACE_ONE (RDP here; a PLD accountant for a tighter bound).

    Each round is a Gaussian mechanism on the sum over a fixed-size sample of `clients_per_round` of the
    `num_clients` clients, drawn without replacement; with every client in every round (P == K) nothing
    is subsampled and the round is the Gaussian alone. The Gaussian's multiplier is the one the library
    needs for noise `noise_multiplier` * S on vectors of norm <= S (`_multiplier_for_library`: z / 2
    with dp-accounting 0.6.0).

    Args:
      noise_multiplier: z, the noise's standard deviation over the clip norm (`dp.noise_multiplier`).
      num_clients: K (`fl.num_clients`).
      clients_per_round: P (`fl.clients_per_round`), 1 <= P <= K.
      rounds: T >= 0.
    """
    _check_arguments(noise_multiplier, num_clients, clients_per_round, rounds)
    dpa = accounting()
    gaussian = dpa.GaussianDpEvent(_multiplier_for_library(noise_multiplier))
    if clients_per_round == num_clients:
        one_round = gaussian
    else:
        one_round = dpa.SampledWithoutReplacementDpEvent(num_clients, clients_per_round, gaussian)
    return dpa.SelfComposedDpEvent(one_round, rounds)


@functools.lru_cache(maxsize=1024)
def _cached_epsilon(noise_multiplier: float, num_clients: int, clients_per_round: int, rounds: int,
                    delta: float) -> float:
    """`epsilon` itself, cached: a run asks for the same (config, round) on every report it writes."""
    if rounds == 0:
        return 0.0  # nothing released yet
    if noise_multiplier == 0:
        return math.inf  # a noiseless sum of clipped updates is not differentially private at all
    sampled = _rdp_epsilon(dp_event(noise_multiplier, num_clients, clients_per_round, rounds), delta)
    if clients_per_round == num_clients:
        return sampled
    # Sampling never weakens privacy: a sampled round is the unsampled Gaussian run on a random part of
    # the population, and coupling the two samples of neighbouring populations (they differ in at most the
    # one replaced client) bounds the mixture's Renyi divergence by the unsampled one (joint convexity).
    # Theorem 27's bound is loose when P is close to K (9 of 10 clients: above the unsampled Gaussian's),
    # so the smaller of the two valid epsilons is the one to report.
    unsampled = _rdp_epsilon(dp_event(noise_multiplier, clients_per_round, clients_per_round, rounds), delta)
    return min(sampled, unsampled)


def _rdp_epsilon(event, delta: float) -> float:
    """Epsilon at `delta` of `event` by dp-accounting's RDP accountant under REPLACE_ONE."""
    dpa = accounting()
    # dp-accounting's default orders (0.1 steps up to 11, integers to 63, then 128 ... 1024) cover both a
    # few rounds with little noise (large eps, small orders) and many rounds with much noise.
    accountant = dpa.rdp.RdpAccountant(neighboring_relation=dpa.NeighboringRelation.REPLACE_ONE)
    accountant.compose(event)
    return float(accountant.get_epsilon(delta))


def epsilon(noise_multiplier: float, num_clients: int, clients_per_round: int, rounds: int,
            delta: float) -> float:
    """The epsilon of user-level (epsilon, delta)-DP after `rounds` rounds (RDP accountant, REPLACE_ONE).

    A client is a user: the guarantee covers everything a client holds, across all the rounds it is
    sampled in. 0.0 after no round; inf without noise. The smaller of the subsampled bound (`dp_event`)
    and the bound without amplification by sampling, both valid: the first is loose when P is close to K.

    Args:
      noise_multiplier: z >= 0 (`dp.noise_multiplier`); the noise's std is z times the clip norm.
      num_clients: K (`fl.num_clients`).
      clients_per_round: P (`fl.clients_per_round`), sampled uniformly without replacement every round.
      rounds: T >= 0 rounds run.
      delta: in (0, 1) (`dp.delta`).

    Raises:
      ValueError: a negative multiplier or round count, P outside 1..K, delta outside (0, 1).
      ImportError: dp-accounting is not installed (the extra 'dp').
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta={delta!r}: must be in (0, 1)")
    _check_arguments(noise_multiplier, num_clients, clients_per_round, rounds)
    return _cached_epsilon(float(noise_multiplier), int(num_clients), int(clients_per_round), int(rounds),
                           float(delta))


def epsilon_schedule(noise_multiplier: float, num_clients: int, clients_per_round: int,
                     rounds: Iterable[int], delta: float) -> list[float]:
    """`epsilon` after each of `rounds` (e.g. the evaluated rounds of a run), in their order.

    Each value is the privacy spent by all rounds up to that one: the models released at earlier
    evaluations are covered by the later values, which never decrease.
    """
    return [epsilon(noise_multiplier, num_clients, clients_per_round, r, delta) for r in rounds]


def _dp_section(config: Any) -> Mapping:
    """The config's `dp` section as a mapping; empty for a config saved before the section existed (its
    runs had no differential privacy). Accepts a ConfigDict or the nested dicts of config.json."""
    section = config.get("dp") if hasattr(config, "get") else None
    return section if section is not None else {}


def is_private(config: Any) -> bool:
    """Whether the run adds noise (`dp.noise_multiplier` > 0), and so reports the privacy it spends.

    Clipping alone (`dp.clip_norm` > 0 without noise) bounds each client's influence but gives no
    differential privacy (epsilon would be infinite), so nothing is reported for it.
    """
    return float(_dp_section(config).get("noise_multiplier", 0.0)) > 0


def record_fields(config: Any, round_: int) -> dict:
    """The privacy fields of the evaluation record after round `round_`: `dp_epsilon` (spent by rounds
    1..round_) and `dp_delta`, or {} when the run adds no noise (its records are unchanged).

    Args:
      config: the run's config (ConfigDict or the nested dicts of config.json): `dp.noise_multiplier`,
        `dp.delta`, `fl.num_clients`, `fl.clients_per_round`.
      round_: rounds completed.
    """
    if not is_private(config):
        return {}
    dp, fl = _dp_section(config), config["fl"]
    delta = float(dp.get("delta"))
    return {EPSILON_KEY: epsilon(float(dp.get("noise_multiplier")), int(fl["num_clients"]),
                                 int(fl["clients_per_round"]), int(round_), delta),
            DELTA_KEY: delta}
