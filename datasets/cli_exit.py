"""How every command line ends: quietly when the reader of its output goes away.

`python -m inference.similar a.png | head -1` closes the pipe while the command may still write;
Python then raises BrokenPipeError at the next write or at its final flush of stdout, and prints
a traceback. Each CLI's `__main__` goes through `run_main` instead: the broken pipe ends the
command with status 141, what a shell reports for a process that SIGPIPE ended, and no traceback.
The command's own files are written before its output, so there is nothing to clean up.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


def run_main(main: Callable[[], int | None]) -> NoReturn:
    """`sys.exit(main())`, except that a closed stdout ends the command quietly."""
    try:
        code = main()
        sys.stdout.flush()  # buffered output meets the closed pipe here, inside the try
    except BrokenPipeError:
        # Python flushes stdout once more at exit: point it at /dev/null so that flush cannot fail.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        sys.exit(EXIT_BROKEN_PIPE)
    sys.exit(code)
