"""A batch's progress: counters, and how they are shown (a rich bar, plain lines, nothing).

The runner only bumps counters (a few integer adds per row); showing them is a timer's
job: rich's live bar redraws 4 times a second on stderr when stderr is a terminal, a
timer thread prints a plain line every `PLAIN_EVERY_S` otherwise (so rows that take
minutes still show the batch is alive), and `--quiet`/`--json` show nothing.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TextIO

PLAIN_EVERY_S = 10.0


@dataclass
class Counts:
    """What a batch has done so far (this process), and what it found before."""

    total: int = 0  # good rows in the inputs file
    skipped: int = 0  # bad rows, reported and skipped
    done_before: int = 0  # rows finished by earlier runs of the batch
    succeeded: int = 0
    failed: int = 0  # any other final status (failed, budget_exceeded per run, error)
    running: int = 0
    queued_now: int = 0  # rows stopped mid-way (daily budget, Ctrl-C): resumed later
    spent_usd: float = 0.0
    started_at: float = field(default_factory=time.perf_counter)

    @property
    def done(self) -> int:
        return self.succeeded + self.failed

    @property
    def remaining(self) -> int:
        """Rows not done yet: queued (stopped mid-way or never started) or running."""
        return self.total - self.done_before - self.done

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.started_at
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta_s(self) -> float | None:
        rate = self.rate()
        return (self.remaining / rate) if rate > 0 else None

    def line(self) -> str:
        eta = self.eta_s()
        return (
            f"{self.done_before + self.done:,}/{self.total:,} rows done "
            f"({self.succeeded:,} ok, {self.failed:,} failed), {self.running:,} running, "
            f"${self.spent_usd:.{2 if self.spent_usd >= 100 else 6}f} spent, "
            f"{self.rate():.1f} runs/s" + (f", ETA {_duration(eta)}" if eta is not None else "")
        )


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Mode(StrEnum):
    """How progress is shown."""

    LIVE = "live"  # rich's bar, redrawn in place (stderr is a terminal)
    PLAIN = "plain"  # a line every PLAIN_EVERY_S (stderr is a file or a pipe)
    NONE = "none"  # --quiet, --json


class Display:
    """Shows `Counts` while a batch runs: `start()` before, `stop()` after."""

    def __init__(self, counts: Counts, mode: Mode | str, stream: TextIO | None = None):
        self.counts = counts
        self.mode = Mode(mode)
        self.stream = stream or sys.stderr
        self._live: Any = None
        self._last = 0.0
        self._stopped = threading.Event()
        self._timer: threading.Thread | None = None

    @classmethod
    def choose(cls, counts: Counts, quiet: bool) -> Display:
        if quiet:
            return cls(counts, Mode.NONE)
        return cls(counts, Mode.LIVE if sys.stderr.isatty() else Mode.PLAIN)

    def start(self) -> None:
        self._last = time.perf_counter()
        if self.mode == Mode.PLAIN:
            self._stopped.clear()
            # A daemon thread: it only reads counters, and must never keep a
            # finished (or Ctrl-C'd) batch process alive.
            self._timer = threading.Thread(target=self._every, name="batch-progress", daemon=True)
            self._timer.start()
        if self.mode == Mode.LIVE:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.stream)
            self._live = Live(
                get_renderable=self._render,
                console=console,
                refresh_per_second=4,
                transient=False,
            )
            self._live.start()

    def _every(self) -> None:
        """The timer: a plain line every PLAIN_EVERY_S until `stop()`."""
        while not self._stopped.wait(max(PLAIN_EVERY_S, 0.05)):
            self.tick()

    def tick(self) -> None:
        """A plain line when one is due (the timer calls it)."""
        if self.mode == Mode.PLAIN and time.perf_counter() - self._last >= PLAIN_EVERY_S:
            self._last = time.perf_counter()
            print(f"batch: {self.counts.line()}", file=self.stream, flush=True)

    def stop(self) -> None:
        self._stopped.set()
        if self._timer is not None:
            self._timer.join(timeout=1.0)  # it wakes at once; never wait on a stuck stream
            self._timer = None
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _render(self) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        counts = self.counts
        grid = Table.grid(padding=(0, 1))
        total = max(counts.total, 1)
        grid.add_row(
            ProgressBar(total=total, completed=counts.done_before + counts.done, width=40),
            counts.line(),
        )
        return grid
