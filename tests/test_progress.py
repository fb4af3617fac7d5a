"""The progress line (superfed_jax/run/progress.py) on a clock the test moves by hand.

Rates, ETAs and labels are checked against hand computations: the compile step is announced and excluded
from the rate, the first line of a run already has a rate, the last line says `done` (never
`0.00 rounds/s | eta ?`), and validation accuracies say which round they were measured at.
"""
import io
import math

import pytest

from superfed_jax.run import progress


class Clock:
    """A stand-in for `time.perf_counter` that moves only when told."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(progress.time, "perf_counter", fake)
    return fake


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


ACCURACIES = {"smallest": 0.9123, "largest": 0.95}


def test_compile_is_announced_timed_and_left_out_of_the_rate(clock):
    stream = io.StringIO()
    bar = progress.Progress(4, stream=stream)
    calls = []

    def compile_step(*args):
        calls.append(args)
        clock.now += 30.0  # a 30 s compile

    assert bar.compile(compile_step, "round", "data") == pytest.approx(30.0)
    assert calls == [("round", "data")]
    clock.now += 2.0  # round 1 takes 2 s
    bar.update(1, 2.3)
    clock.now += 2.0
    bar.update(2, 2.2)
    compile_line, first, second = lines(stream)
    assert compile_line == "compiling the round and the evaluation (first time only) ... 30.0 s"
    # 1 round in the 2 s since the compilation ended: 0.50 rounds/s, 3 rounds left -> 6 s; the elapsed
    # time counts the compilation (32 s).
    assert first == "round 1/4 | loss 2.3000 | 0.50 rounds/s | elapsed 0m32s | eta 0m06s"
    assert second == "round 2/4 | loss 2.2000 | 0.50 rounds/s | elapsed 0m34s | eta 0m04s"


def test_what_the_compile_step_says_follows_its_seconds(clock):
    # train.compile_ahead returns a note when the programs came from the persistent compilation cache.
    stream = io.StringIO()

    def loaded():
        clock.now += 4.0
        return "loaded from the compilation cache"

    assert progress.Progress(4, stream=stream).compile(loaded) == pytest.approx(4.0)
    assert lines(stream) == ["compiling the round and the evaluation (first time only) ... 4.0 s "
                             "(loaded from the compilation cache)"]


def test_nothing_compiles_when_no_round_is_left(clock):
    stream = io.StringIO()
    bar = progress.Progress(5, start=5, stream=stream)
    assert bar.compile(lambda: pytest.fail("compiled a finished run")) is None
    assert stream.getvalue() == ""


def test_a_two_round_run_never_shows_a_zero_rate_or_an_unknown_eta(clock):
    stream = io.StringIO()
    bar = progress.Progress(2, stream=stream)
    bar.compile(lambda: None)
    for done in (1, 2):
        clock.now += 0.25
        bar.update(done, 2.3)
        bar.evaluated(done, ACCURACIES)
    text = stream.getvalue()
    assert "0.00 rounds/s" not in text and "eta ?" not in text
    assert lines(stream)[-2:] == [
        "round 2/2 | loss 2.3000 | 4.00 rounds/s | elapsed 0m00s | done | val@1 smallest=0.912 largest=0.950",
        "round 2/2 | val smallest=0.912 largest=0.950"]


def test_resumed_run_counts_only_its_own_rounds(clock):
    stream = io.StringIO()
    bar = progress.Progress(20, start=10, stream=stream)
    clock.now += 10.0  # rounds 11..15 in 10 s
    bar.update(15, 1.0)
    assert "| 0.50 rounds/s |" in lines(stream)[-1] and lines(stream)[-1].endswith("eta 0m10s")


def test_accuracies_are_validation_and_say_when_they_are_older_than_the_line(clock):
    stream = io.StringIO()
    bar = progress.Progress(150, stream=stream)
    clock.now += 1.0
    bar.update(20, 2.0)
    assert "val" not in lines(stream)[-1]  # no evaluation yet: nothing to show
    bar.update(25, 1.9)
    bar.evaluated(25, ACCURACIES)  # the evaluation right after the last line's round: shown at once
    assert len(lines(stream)) == 3
    assert lines(stream)[-1] == "round 25/150 | val smallest=0.912 largest=0.950"
    bar.update(30, 1.8)  # a later line shows the same accuracies, saying they are of round 25
    assert lines(stream)[-1].endswith("| val@25 smallest=0.912 largest=0.950")
    bar.evaluated(35, {"smallest": 0.5, "largest": 0.6})  # evaluated at a round whose line is not shown
    assert len(lines(stream)) == 4  # nothing rewritten; the next line carries them
    bar.update(40, 1.7)
    assert lines(stream)[-1].endswith("| val@35 smallest=0.500 largest=0.600")


def test_a_terminal_line_is_rewritten_in_place(clock):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    bar = progress.Progress(2, stream=stream)
    clock.now += 1.0
    bar.update(1, 2.0)
    bar.evaluated(1, ACCURACIES)
    bar.close()
    assert "\n" not in stream.getvalue()[:-1]  # one line, redrawn with '\r', ended by close()
    redrawn = stream.getvalue().split("\r")[-1]
    assert stream.getvalue().count("\r") == 2 and redrawn.startswith("round 1/2 | loss 2.0000 |")
    assert redrawn.endswith("| val smallest=0.912 largest=0.950\x1b[K\n")


def test_record_accuracies_reads_the_tracked_validation_accuracies():
    record = {"round": 5, "smallest/val_accuracy": 0.25, "smallest/test_accuracy": 0.9}
    accuracies = progress.record_accuracies(record, ["smallest", "largest"])
    assert accuracies["smallest"] == 0.25 and math.isnan(accuracies["largest"])  # no validation split
    assert progress.validation_text(accuracies, 5, 10) == "val@5 smallest=0.250 largest=nan"


def test_a_run_with_differential_privacy_shows_the_privacy_spent(clock):
    stream = io.StringIO()
    bar = progress.Progress(150, stream=stream)
    clock.now += 1.0
    bar.update(25, 1.9)
    record = {"round": 25, "smallest/val_accuracy": 0.912, "largest/val_accuracy": 0.95,
              "dp_epsilon": 3.2071, "dp_delta": 1e-5}
    bar.note_record(record, ["smallest", "largest"])
    assert lines(stream)[-1] == "round 25/150 | val smallest=0.912 largest=0.950 | dp eps=3.21 delta=1e-05"
    bar.update(30, 1.8)  # a later line: the privacy spent up to the evaluation it shows, labelled so
    assert lines(stream)[-1].endswith("| val@25 smallest=0.912 largest=0.950 | dp@25 eps=3.21 delta=1e-05")


def test_a_record_without_privacy_fields_shows_none():
    assert progress.record_privacy({"round": 5, "smallest/val_accuracy": 0.25}) is None
    assert progress.record_privacy({"round": 5, "dp_epsilon": 2.0, "dp_delta": 1e-6}) == (2.0, 1e-6)
