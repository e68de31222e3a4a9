"""SIGINT and SIGTERM as a request to stop at the next safe point, and a second one as "now".

Long commands (a collection, a training run, an import) install `stop_on_signals()` around their
work and look at the request where stopping loses nothing: between titles, between images,
between epochs. Waits that politeness or back-off impose go through `StopRequest.sleep`, which
raises `Stopped` as soon as a stop is asked for instead of finishing the pause. A second signal
raises SystemExit(128 + signal) at once: committed work is safe, since every command writes
through transactions and renames. The exit status of a stopped command is 128 + the signal's
number (130 for Ctrl-C, 143 for SIGTERM), as a shell reports a process the signal ended.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(Exception):
    """Raised from a wait once a stop was asked for: the caller abandons what it was doing."""


class StopRequest:
    def __init__(self) -> None:
        self.signum: int | None = None
        self._event = threading.Event()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "nothing"

    @property
    def exit_code(self) -> int:
        return 128 + self.signum if self.signum else 0

    def request(self, signum: int) -> None:
        self.signum = signum
        self._event.set()

    def check(self) -> None:
        """Raise Stopped if a stop was asked for."""
        if self.requested:
            raise Stopped(self.name)

    def sleep(self, seconds: float) -> None:
        """time.sleep that a stop request cuts short, raising Stopped."""
        if self._event.wait(max(0.0, seconds)):
            raise Stopped(self.name)


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """SIGINT and SIGTERM set the request (once); a second one exits at once. Main thread only."""
    stop = StopRequest()

    def handle(signum: int, frame) -> None:
        if stop.requested:
            raise SystemExit(128 + signum)
        stop.request(signum)

    previous = {number: signal.signal(number, handle) for number in SIGNALS}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
