"""Signals for every long-running command, installed in one place.

`capture_signals` installs one handler for the given signals and puts the
previous handlers back afterwards (as uvicorn's `capture_signals` does), so
`run`, `record` and `demo` all stop the same way. Off the main thread, where
Python cannot install handlers, it does nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def capture_signals(
    on_signal: Callable[[signal.Signals], None],
    signals: Sequence[signal.Signals] = STOP_SIGNALS,
) -> Iterator[None]:
    """Call `on_signal(sig)` for each of `signals` while the block runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        on_signal(signal.Signals(signum))

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
