"""Deterministic crash points for the tests of crash windows: the process kills itself (SIGKILL) at a named
point when the environment variable SUPERFED_KILL_AT names it.

A sleep followed by a kill lands anywhere; a test of "killed after its first metrics row but before its first
checkpoint" must land exactly there, every time. The driver calls `reached(point)` at the moments worth
testing; it costs one dictionary lookup when the variable is unset, which is always outside the tests.

Points (N: a round number):
  record:N   just after the evaluation record of round N reached metrics.jsonl (flushed), before any
             checkpoint of that round is written.
"""
import os
import signal

__all__ = ["KILL_VARIABLE", "reached"]

KILL_VARIABLE = "SUPERFED_KILL_AT"


def reached(point: str) -> None:
    """Kills this process with SIGKILL (no handler, no cleanup: a power cut) if SUPERFED_KILL_AT == point."""
    if os.environ.get(KILL_VARIABLE) == point:
        os.kill(os.getpid(), signal.SIGKILL)
