"""Progress of a pass on stderr: a bar redrawn in place on a terminal, a log line per batch elsewhere
(a CronJob's log should not fill up with carriage returns)."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

log = logging.getLogger(__name__)

REDRAW_SECONDS = 0.1
BAR_WIDTH = 30


class Progress:
    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty()
        self.total = 0
        self.done = 0
        self._drawn = 0.0

    def start(self, total: int) -> None:
        self.total = total
        self.done = 0
        log.info("%s: %d messages in the mailbox", self.label, total)

    def step(self) -> None:
        """One message handled; called from the thread that talks to the mailbox."""
        self.done += 1
        if self.terminal and time.monotonic() - self._drawn >= REDRAW_SECONDS:
            self._draw("")

    def batch(self, summary: str) -> None:
        if self.terminal:
            self._draw(summary)
        else:
            log.info("%s: %d/%d messages; %s", self.label, self.done, self.total, summary)

    def finish(self, summary: str) -> None:
        if self.terminal and self.total:
            self._draw(summary)
            self.stream.write("\n")
        log.info("%s: pass finished; %s", self.label, summary)

    def _draw(self, summary: str) -> None:
        filled = BAR_WIDTH * self.done // self.total if self.total else BAR_WIDTH
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total} {summary}\x1b[K")
        self.stream.flush()
        self._drawn = time.monotonic()
