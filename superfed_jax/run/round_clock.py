"""When each round finished, observed without making the training loop wait for the device.

The driver dispatches rounds asynchronously and reads their metrics only every few rounds, so the loop
itself never knows when one round ended. `RoundClock` hands each round's outputs to a background thread
that waits for them (`jax.block_until_ready`, which releases the GIL, so dispatching the next rounds goes
on meanwhile) and notes the wall-clock time the moment they are ready. So

* ``wall_time`` of a round is the Unix time (seconds, UTC) at which its outputs were observed ready;
* ``seconds`` of a round is the wall-clock time between the previous round's completion and its own: the
  round's computation plus whatever the device or the host did between the two (an evaluation or a
  checkpoint after the previous round, a slow dispatch). The first round of a session counts from
  `start()`, which the driver calls after compiling the round and the evaluation ahead of time, so no
  round's time holds a compilation.

    clock = RoundClock()
    clock.start()
    for round in ...:
        state, metrics = round_fn(state, data)
        clock.watch(round, metrics)
    stamps = clock.stamps_through(last_round)   # {round: (wall_time, seconds)}
    clock.close()
"""
import queue
import threading
import time

import jax

__all__ = ["RoundClock"]


class RoundClock:
    """Completion times of rounds, observed in order by a daemon thread; see the module docstring."""

    def __init__(self):
        self._waiting = queue.Queue()  # (round, outputs) in dispatch order; None stops the thread
        self._stamps = {}  # round -> (wall_time, seconds)
        self._ready = threading.Condition()
        self._previous = None  # perf_counter at the last completion (or at start)
        self._observed = None  # the newest round observed finished
        self._failure = None
        self._thread = threading.Thread(target=self._observe, name="round-clock", daemon=True)

    def start(self) -> None:
        """Starts the clock just before the session's first round is dispatched."""
        self._previous = time.perf_counter()
        self._thread.start()

    def watch(self, round_: int, outputs) -> None:
        """Notes a dispatched round; `outputs` (any pytree of its arrays) are ready when it has finished."""
        self._waiting.put((round_, outputs))

    def _observe(self) -> None:
        while (item := self._waiting.get()) is not None:
            round_, outputs = item
            try:
                jax.block_until_ready(outputs)
            except Exception as error:  # the round failed; the loop sees the same error when it reads it
                with self._ready:
                    self._failure = error
                    self._ready.notify_all()
                return
            now, wall_time = time.perf_counter(), time.time()
            with self._ready:
                self._stamps[round_] = (wall_time, now - self._previous)
                self._previous, self._observed = now, round_
                self._ready.notify_all()

    def stamps_through(self, round_: int, timeout: float = 600.0) -> dict:
        """{round: (wall_time, seconds)} of every watched round <= `round_` not yet taken; takes them.

        Called after the loop has read those rounds' metrics, so they are finished and the wait is only
        for the thread to note them.

        Raises:
          RuntimeError: a round's outputs failed, or `round_` was not noted within `timeout` seconds.
        """
        with self._ready:
            observed = lambda: self._observed is not None and self._observed >= round_  # noqa: E731
            if not self._ready.wait_for(lambda: observed() or self._failure is not None, timeout=timeout):
                raise RuntimeError(f"round {round_} was not observed finished within {timeout} s")
            if not observed():
                raise RuntimeError(f"waiting for round {round_} failed: {self._failure}")
            taken = {r: stamp for r, stamp in self._stamps.items() if r <= round_}
            for r in taken:
                del self._stamps[r]
        return taken

    def close(self) -> None:
        """Stops the thread once the rounds already watched are observed (it is a daemon either way)."""
        self._waiting.put(None)
