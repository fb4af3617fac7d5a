"""Graceful preemption: SIGTERM / SIGINT finish the current round, checkpoint, and exit resumable.

Cloud TPU VMs and shared GPU hosts send SIGTERM before taking a machine away; users press Ctrl-C. Either
way the round in flight is completed, a checkpoint is written, and `Interrupted` is raised so the entry
point can exit with `EXIT_INTERRUPTED`. A second signal while the first is being handled stops at once
(KeyboardInterrupt), for a user who really means it.
"""
import contextlib
import signal

# EX_TEMPFAIL from sysexits.h: "temporary failure, the user is invited to retry".
EXIT_INTERRUPTED = 75
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(Exception):
    """The run stopped on a signal after checkpointing round `round`; rerunning the command resumes it."""

    def __init__(self, signal_name: str, round_: int, workdir: str):
        super().__init__(f"interrupted, resumable: {signal_name} received; checkpoint saved after round "
                         f"{round_} in {workdir}; rerun the same command to continue")
        self.round = round_


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
