"""Per-round records: `round_clock.RoundClock` (when rounds finished) and `metrics.round_rows`."""
import time

import jax
import jax.numpy as jnp
import pytest

from superfed_jax.run import metrics
from superfed_jax.run import round_clock


def test_rows_join_host_metrics_and_stamps_round_by_round():
    host = [{"beta": 0.5, "train_loss": 1.0, "clients_nonfinite": 0},
            {"beta": 0.25, "train_loss": float("nan"), "clients_nonfinite": 2}]
    stamps = {4: (100.0, 30.0), 5: (100.5, 0.5)}
    assert metrics.round_rows(host, 4, stamps) == [
        {"round": 4, "beta": 0.5, "train_loss": 1.0, "clients_nonfinite": 0, "seconds": 30.0,
         "wall_time": 100.0},
        {"round": 5, "beta": 0.25, "train_loss": host[1]["train_loss"], "clients_nonfinite": 2,
         "seconds": 0.5, "wall_time": 100.5}]
    with pytest.raises(KeyError):  # a round without a stamp is a bug, not a row with a made-up time
        metrics.round_rows(host, 5, stamps)


def test_the_clock_stamps_each_round_when_its_outputs_are_ready():
    """Rounds of 0.2 s each (host callbacks that sleep) are stamped in order as they end; the first
    counts from start(), as the first round of a session (its compilation) does."""
    @jax.jit
    def slow_round(x):
        return jax.pure_callback(lambda v: (time.sleep(0.2), v + 1)[1], jax.ShapeDtypeStruct((), x.dtype), x)

    x = slow_round(jnp.float32(0)).block_until_ready()  # compiled before the clock starts
    clock = round_clock.RoundClock()
    clock.start()
    started, before = time.time(), time.perf_counter()
    time.sleep(0.1)  # as a compilation before the first round is dispatched
    for r in (1, 2, 3):
        x = slow_round(x)
        clock.watch(r, {"x": x})
    assert float(x) == 4.0
    stamps = clock.stamps_through(3)
    elapsed = time.perf_counter() - before
    assert sorted(stamps) == [1, 2, 3]
    seconds = [stamps[r][1] for r in (1, 2, 3)]
    # A round is never seen finished before it is (the thread may see it late on a busy machine, which
    # moves time from one round to the next): round k ends at least 0.1 + 0.2 k s after the start.
    assert all(sum(seconds[:k]) >= 0.1 + 0.2 * k - 0.01 for k in (1, 2, 3)), seconds
    assert sum(seconds) <= elapsed + 0.01  # consecutive: no time counted twice
    walls = [stamps[r][0] for r in (1, 2, 3)]
    assert started < walls[0] < walls[1] < walls[2] <= time.time()
    assert walls[2] - walls[1] == pytest.approx(seconds[2], abs=0.05)
    assert clock.stamps_through(3) == {}  # taken once
    clock.close()


def test_a_round_never_watched_is_an_error_not_a_hang():
    clock = round_clock.RoundClock()
    clock.start()
    with pytest.raises(RuntimeError, match="round 1 was not observed"):
        clock.stamps_through(1, timeout=0.1)
    clock.close()
