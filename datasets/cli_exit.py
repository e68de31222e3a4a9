"""How every command line ends: quietly when the reader of its output goes away, and in one line
when a signal stops it.

`python -m inference.similar a.png | head -1` closes the pipe while the command may still write;
Python then raises BrokenPipeError at the next write or at its final flush of stdout, and prints
a traceback. Each CLI's `__main__` goes through `run_main` instead: the broken pipe ends the
command with status 141, what a shell reports for a process that SIGPIPE ended, and no traceback.

SIGINT (Ctrl-C) and SIGTERM end a command that has no stopping point of its own (an import, an
enroll, a report) with one line and status 130 or 143. They interrupt it where it is: what it
writes is committed by transactions and renames, as it is against a kill, so the catalog, bundle
or report is left as it was or as the last commit made it. Commands that stop at a point of
their own (collectors, training, the server) install their handlers inside `main`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


FORCE_AFTER = 5.0  # seconds the unwinding may take before the command ends regardless


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt: library code's `except Exception` lets it by."""


def _stop_line(signum: int, command: str) -> str:
    return (f"stopped by {signal.Signals(signum).name}: {command} left what it writes as last committed, "
            "never half written; run it again to finish")


def _interrupt(command: str) -> Callable:
    def handle(signum: int, frame) -> None:
        # An exception raised from a signal handler is lost when it lands in a finalizer (Python
        # prints "Exception ignored" and goes on), and unwinding may hang: a timer then ends the
        # command as a kill would, which everything it writes survives by design.
        def force() -> None:
            print(_stop_line(signum, command), file=sys.stderr, flush=True)
            os._exit(128 + signum)

        timer = threading.Timer(FORCE_AFTER, force)
        timer.daemon = True
        timer.start()
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    return handle


def run_main(main: Callable[[], int | None]) -> NoReturn:
    """`sys.exit(main())`, except that a closed stdout ends the command quietly, and SIGINT or
    SIGTERM in one line."""
    command = _command(main)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt(command))
    default_hook = sys.unraisablehook

    def quiet_stop(unraisable) -> None:  # the stop landed in a finalizer: the timer will end it
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            default_hook(unraisable)

    sys.unraisablehook = quiet_stop
    try:
        code = main()
        sys.stdout.flush()  # buffered output meets the closed pipe here, inside the try
    except BrokenPipeError:
        # Python flushes stdout once more at exit: point it at /dev/null so that flush cannot fail.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        sys.exit(EXIT_BROKEN_PIPE)
    except KeyboardInterrupt as stop:
        signum = signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT
        print(_stop_line(signum, command), file=sys.stderr)
        sys.exit(128 + signum)
    sys.exit(code)


def _command(main: Callable) -> str:
    """`python -m PACKAGE.MODULE` as the user typed it (a `-m` run's module is `__main__`)."""
    module = main.__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec else os.path.basename(sys.argv[0])
    return f"python -m {module.removesuffix('.__main__').removesuffix('.cli')}"
