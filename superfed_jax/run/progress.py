"""The run's console line: rounds, loss, rate, ETA and the latest validation accuracies (stderr).

It says what is happening at every moment of a run, including the silent ones:

* the round and the evaluation are compiled ahead of the first round (`Progress.compile` with
  `build.compile_ahead`), with a line before and its duration after: tens of seconds with nothing else
  on screen otherwise (50 s for `configs/digits.py:smoke`, 125 s for `configs/digits.py`, on the
  project's 2-core AMD EPYC machine shared with other jobs, jax 0.10.2), and says when the programs were
  loaded from the persistent compilation cache instead (`superfed_jax/_compilation_cache.py`);
* rates and ETAs count rounds from the end of that compilation, so the first line already has a rate, and
  the last line of a run (round T/T) says `done` instead of an ETA;
* validation accuracies are labelled `val`, and when the line is for a later round than the evaluation
  they come from, they say which round they were measured at (`val@25`). A run whose headline metric is
  not accuracy (`eval.metric`) shows that metric, named: `val perplexity smallest=41.203 ...`.
* a run with differential privacy (`dp.noise_multiplier` > 0) adds the privacy spent up to that
  evaluation, from its record: `dp eps=3.21 delta=1e-05` (`dp@25 ...` on a later round's line).
"""
import math
import sys
import time
from typing import Callable, Mapping, Optional

from superfed_jax.federated import metric as metric_lib


def format_seconds(seconds: float) -> str:
    """Compact h/m/s rendering, e.g. 3725 -> '1h02m05s'."""
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def validation_text(accuracies: Mapping[str, float], measured_at: int, line_round: int,
                    metric: metric_lib.Metric = metric_lib.ACCURACY) -> str:
    """`val smallest=0.912 ...`, or `val@25 smallest=0.912 ...` on the line of a round after round 25.

    Args:
      accuracies: tracked arch name -> validation accuracy (NaN when the run has no validation split), or
        the value of another `metric`, whose name then follows the label (`val perplexity smallest=...`).
      measured_at: the round after which they were evaluated.
      line_round: the round the line is about.
      metric: what the values are.
    """
    label = "val" if measured_at == line_round else f"val@{measured_at}"
    if metric.name != metric_lib.ACCURACY.name:
        label += f" {metric.name}"
    return " ".join([label] + [f"{name}={value:.3f}" for name, value in accuracies.items()])


def privacy_text(epsilon: float, delta: float, measured_at: int, line_round: int) -> str:
    """`dp eps=3.21 delta=1e-05`: the (epsilon, delta) of user-level DP spent by the rounds up to the
    evaluation after round `measured_at` (`dp@25 ...` on the line of a later round, like `val@25`)."""
    label = "dp" if measured_at == line_round else f"dp@{measured_at}"
    return f"{label} eps={epsilon:.2f} delta={delta:g}"


def record_privacy(record: Mapping) -> Optional[tuple[float, float]]:
    """(epsilon, delta) of an evaluation record of a run with differential privacy; None for any other
    run (its records have no `dp_epsilon`, docs/run_outputs.md)."""
    if "dp_epsilon" not in record:
        return None
    return float(record["dp_epsilon"]), float(record["dp_delta"])


def record_accuracies(record: Mapping, tracked, metric: metric_lib.Metric = metric_lib.ACCURACY) -> dict:
    """Tracked arch name -> `<name>/val_accuracy` (or the metric's) of an evaluation record (NaN if the
    record lacks it)."""
    return {name: float(record.get(metric.key(name, "val"), math.nan)) for name in tracked}


class Progress:
    """The progress line of rounds `start+1 .. total`: one line per `update` (overwritten on a terminal)."""

    def __init__(self, total: int, start: int = 0, stream=sys.stderr,
                 metric: metric_lib.Metric = metric_lib.ACCURACY):
        self.total, self.start, self.stream, self.metric = total, start, stream, metric
        self.t0 = time.perf_counter()
        self.loop_t0 = self.t0  # rates count from here: the end of compilation once `compile` ran
        self.tty = stream.isatty()
        self.evaluation: Optional[tuple[int, dict]] = None  # (round, accuracies) of the latest one
        self.privacy: Optional[tuple[float, float]] = None  # (epsilon, delta) at that evaluation, if DP
        self.shown: Optional[tuple[int, float]] = None  # (round, loss) of the line on screen

    def _write(self, line: str) -> None:
        self.stream.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        self.stream.flush()

    def compile(self, compile_fn: Callable, *args) -> Optional[float]:
        """Runs `compile_fn(*args)` (e.g. `build.compile_ahead`) before the first round, saying so before
        and after, and starts the rate's clock after it.

        A text `compile_fn` returns follows the seconds in brackets (`... 6.2 s (loaded from the compilation
        cache)`); None or '' adds nothing. Nothing is compiled when no round is left to run
        (a resumed run that had finished). Returns the seconds taken, or None.
        """
        if self.start >= self.total:
            return None
        self.stream.write("compiling the round and the evaluation (first time only) ...")
        self.stream.flush()
        began = time.perf_counter()
        said = compile_fn(*args)
        self.loop_t0 = time.perf_counter()
        seconds = self.loop_t0 - began
        self.stream.write(f" {seconds:.1f} s" + (f" ({said})" if said else "") + "\n")
        self.stream.flush()
        return seconds

    def line(self, done: int, loss: float, now: float) -> str:
        """The text of the line for `done` rounds at time `now` (`time.perf_counter`)."""
        since = now - self.loop_t0
        rate = (done - self.start) / since if since > 0 else math.inf
        if done >= self.total:
            eta = "done"
        else:
            eta = f"eta {format_seconds((self.total - done) / rate)}" if math.isfinite(rate) else "eta ?"
        text = (f"round {done}/{self.total} | loss {loss:.4f} | {rate:.2f} rounds/s | "
                f"elapsed {format_seconds(now - self.t0)} | {eta}")
        if self.evaluation is not None:
            text += " | " + validation_text(self.evaluation[1], self.evaluation[0], done, self.metric)
            if self.privacy is not None:
                text += " | " + privacy_text(*self.privacy, self.evaluation[0], done)
        return text

    def update(self, done: int, loss: float) -> None:
        """Shows the line for `done` rounds completed, with `loss` the latest training loss."""
        self.shown = (done, loss)
        self._write(self.line(done, loss, time.perf_counter()))

    def evaluated(self, done: int, accuracies: Mapping[str, float],
                  privacy: Optional[tuple[float, float]] = None) -> None:
        """Records the validation accuracies measured after round `done` (and the privacy spent up to
        it, (epsilon, delta), for a run with differential privacy); later lines show them.

        When the last line is for round `done` itself (the evaluation ran right after it), they are shown
        at once, so that round, the last one included, is seen with its own accuracies rather than the
        previous evaluation's: a terminal's line is redrawn with them; a log (not a terminal) gets a short
        line `round 25/150 | val ...` rather than the whole line again.
        """
        self.evaluation, self.privacy = (done, dict(accuracies)), privacy
        if self.shown is None or self.shown[0] != done:
            return
        if self.tty:
            self.update(*self.shown)
        else:
            text = f"round {done}/{self.total} | {validation_text(accuracies, done, done, self.metric)}"
            if privacy is not None:
                text += " | " + privacy_text(*privacy, done, done)
            self._write(text)

    def note_record(self, record: Mapping, tracked) -> None:
        """`evaluated` for a record of metrics.jsonl: its round, the tracked validation accuracies (or
        values of the run's metric) and, with differential privacy, its epsilon and delta."""
        self.evaluated(int(record["round"]), record_accuracies(record, tracked, self.metric),
                       record_privacy(record))

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()
