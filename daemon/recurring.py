"""Bounded logging of a problem that keeps recurring (a broker that refuses the daemon, a
snapshot that cannot be written): said when it appears or changes, then at most once per
interval with a count, so a failure that lasts for days stays visible without flooding."""

from __future__ import annotations

import time

REMIND_EVERY = 600.0
"""Seconds between reminders of an unchanged problem."""


class RecurringProblem:
    """Decides which occurrences of a recurring problem deserve a log line."""

    def __init__(self, interval: float = REMIND_EVERY) -> None:
        self.interval = interval
        self.current: str | None = None
        self._said_at = 0.0
        self._repeats = 0

    def report(self, problem: str) -> str | None:
        """The line to log for this occurrence of `problem`, or None to stay quiet."""
        now = time.monotonic()
        if problem == self.current and now - self._said_at < self.interval:
            self._repeats += 1
            return None
        line = problem
        if problem == self.current and self._repeats:
            line = f"{problem} (still; {self._repeats} more times since the last report)"
        self.current, self._said_at, self._repeats = problem, now, 0
        return line

    def clear(self) -> str | None:
        """The problem went away: return the one that was current, if any."""
        previous, self.current, self._repeats = self.current, None, 0
        return previous
