"""Graceful preemption: SIGTERM / SIGINT finish the current round, checkpoint, and exit resumable.

Cloud TPU VMs and shared GPU hosts send SIGTERM before taking a machine away; users press Ctrl-C. Either
way the round in flight is completed, a checkpoint is written, and `Interrupted` is raised so the entry
point can exit with `EXIT_INTERRUPTED`. A second signal while the first is being handled stops at once
(KeyboardInterrupt), for a user who really means it.
"""
import contextlib
import os
import signal
import sys

# EX_TEMPFAIL from sysexits.h: "temporary failure, the user is invited to retry".
EXIT_INTERRUPTED = 75
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(Exception):
    """The run stopped on a signal after checkpointing round `round`; rerunning the command resumes it."""

    def __init__(self, signal_name: str, round_: int, workdir: str):
        super().__init__(f"interrupted, resumable: {signal_name} received; checkpoint saved after round "
                         f"{round_} in {workdir}; rerun the same command to continue")
        self.round = round_


class Stopped(BaseException):
    """A termination signal outside the round loop (start-up, compilation, restore, the final report).

    A BaseException, as KeyboardInterrupt: no `except Exception` on the way (a checkpoint restore that
    tolerates damaged files) may take it for an ordinary error.
    """

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal_name = signal_name


def stopped_message(signal_name: str, newest_checkpoint: int | None, workdir: str) -> str:
    """What a run stopped outside the round loop tells the user: nothing to clean, how to go on."""
    if newest_checkpoint is None:
        kept = "no round had been checkpointed, so nothing is lost and there is nothing to clean up"
        then = "rerun the same command to start the run"
    else:
        kept = (f"the checkpoint after round {newest_checkpoint} in {workdir} is intact and there is "
                "nothing to clean up")
        then = "rerun the same command to continue from it"
    return f"interrupted, resumable: {signal_name} received outside a training round; {kept}; {then}"


def starting_message(signal_name: str) -> str:
    """What the training command says of a signal before its run started (imports, flags, the config)."""
    return (f"interrupted: {signal_name} received while the command was starting, before the run began; "
            "nothing was written; rerun the same command to start the run")


def exit_on_termination_while_starting() -> None:
    """From now on, SIGTERM/SIGINT end the process with one line and `EXIT_INTERRUPTED`.

    For the training command's first moments: it calls this before importing anything heavy (absl, JAX,
    the config file), where Python's default would print a KeyboardInterrupt traceback (SIGINT) or die
    without a word (SIGTERM). Nothing has been written yet, so the handler ends the process on the spot
    (`os._exit`) instead of raising: an exception raised by a signal handler is swallowed, traceback
    printed, when the signal lands in a garbage-collector callback (JAX registers one, and after a long
    import most signals land there), and the command then went on to train. The run itself replaces
    these handlers (`stop_on_termination`, `catch_termination`).
    """

    def leave(signum, frame):
        del frame
        exit_now(starting_message(signal.Signals(signum).name))

    for s in _SIGNALS:
        signal.signal(s, leave)


def ignore_termination() -> None:
    """SIGTERM/SIGINT do nothing from now on: for the last moments of a command whose run has ended and
    reported (the start-up handler's "nothing was written" would then be wrong)."""
    for s in _SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def exit_now(message: str) -> None:
    """Prints `message` on stderr and ends the process with `EXIT_INTERRUPTED`, skipping any cleanup.

    Skipping Python's shutdown is the point: a signal during XLA's compilation left its threads running,
    and the interpreter's finalization then crashed under them ("Fatal Python error: Segmentation fault",
    exit -11) after the one-line message.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    print(message, file=sys.stderr, flush=True)
    os._exit(EXIT_INTERRUPTED)


@contextlib.contextmanager
def stop_on_termination(message_of_lost=None):
    """Within the block, SIGTERM/SIGINT raise `Stopped` at once (nothing to finish before a round).

    `message_of_lost(stopped)`: what to print when Python swallows that `Stopped` (raised inside a
    garbage-collector callback or a `__del__`, Python reports it as "Exception ignored" and carries on);
    the process then ends there with that message and `EXIT_INTERRUPTED`, as a SIGKILL would (which every
    file of a run survives), instead of ignoring the user's interrupt.
    """

    def stop(signum, frame):
        del frame
        raise Stopped(signal.Signals(signum).name)

    previous = {s: signal.signal(s, stop) for s in _SIGNALS}
    previous_unraisable = sys.unraisablehook

    def unraisable(report):
        if isinstance(report.exc_value, Stopped) and message_of_lost is not None:
            exit_now(message_of_lost(report.exc_value))
        previous_unraisable(report)

    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        sys.unraisablehook = previous_unraisable
        for s, handler in previous.items():
            signal.signal(s, handler)


class SignalFlag:
    """Records the first termination signal; `name` is None until one arrives."""

    def __init__(self):
        self.name = None

    def handle(self, signum, frame):
        del frame
        if self.name is not None:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopping without a checkpoint")
        self.name = signal.Signals(signum).name


@contextlib.contextmanager
def catch_termination():
    """Within the block, SIGTERM/SIGINT set the yielded flag instead of killing the process."""
    flag = SignalFlag()
    previous = {s: signal.signal(s, flag.handle) for s in _SIGNALS}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
