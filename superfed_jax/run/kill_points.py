"""Deterministic crash points for the tests of crash windows: the process kills itself (SIGKILL) at a named
point when the environment variable SUPERFED_KILL_AT names it (`SUPERFED_KILL_AT=NAME:SIGINT` sends itself
that signal instead, as a user's Ctrl-C at that very moment).

A sleep followed by a kill lands anywhere; a test of "killed after its first metrics row but before its first
checkpoint" must land exactly there, every time. The driver calls `reached(point)` at the moments worth
testing; it costs one dictionary lookup when the variable is unset, which is always outside the tests.

Points (N: a round number):
  start      the training command's first moment after its signal handler is installed, before anything
             heavy is imported (superfed_jax/run/launch.py).
  record:N   just after the evaluation record of round N reached metrics.jsonl (flushed), before any
             checkpoint of that round is written.
"""
import os
import signal

__all__ = ["KILL_VARIABLE", "reached"]

KILL_VARIABLE = "SUPERFED_KILL_AT"


def reached(point: str) -> None:
    """Kills this process with SIGKILL (no handler, no cleanup: a power cut) if SUPERFED_KILL_AT == point;
    sends it the signal named after a colon instead (`start:SIGINT`)."""
    name, signal_name = _point_and_signal(os.environ.get(KILL_VARIABLE, ""))
    if name == point:
        os.kill(os.getpid(), getattr(signal, signal_name) if signal_name else signal.SIGKILL)


def _point_and_signal(value: str) -> tuple[str, str]:
    """('record:3', '') for 'record:3'; ('start', 'SIGINT') for 'start:SIGINT' (a point's own ':N' stays)."""
    name, _, signal_name = value.rpartition(":")
    if signal_name.startswith("SIG"):
        return name, signal_name
    return value, ""
