"""A one-line progress display with rate and ETA for long runs (stderr, no dependency)."""
import sys
import time


def format_seconds(seconds: float) -> str:
    """Compact h/m/s rendering, e.g. 3725 -> '1h02m05s'."""
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    """Tracks rounds done; the ETA excludes the first update, which includes compilation."""

    def __init__(self, total: int, start: int = 0, stream=sys.stderr):
        self.total, self.start, self.stream = total, start, stream
        self.t0 = time.perf_counter()
        self.first = None  # (rounds, time) at the first update, after compilation
        self.extra = ""
        self.tty = stream.isatty()

    def update(self, done: int, loss: float) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = (done, now)
        rounds, since = done - self.first[0], now - self.first[1]
        rate = rounds / since if since > 0 and rounds > 0 else 0.0
        eta = format_seconds((self.total - done) / rate) if rate else "?"
        line = (f"round {done}/{self.total} | loss {loss:.4f} | {rate:.2f} rounds/s | "
                f"elapsed {format_seconds(now - self.t0)} | eta {eta}{self.extra}")
        self.stream.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """Appends `text` (e.g. the latest validation accuracies) to following lines."""
        self.extra = f" | {text}"

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()
