"""After the test suite: name and end every process it started that is still running.

`.ci/test` exports STYLEFINDER_TEST_RUN=<id> before pytest; every process the suite starts
inherits it (browsers through their drivers, servers, Ray's daemons and workers, the victims of
kill tests and their children), even once re-parented to init. This finds those processes by that
variable in /proc/<pid>/environ, never by a name, so nothing of another run or of the user's is
touched; it waits a little for ones already on their way out, then prints one line per process
left, ends them (SIGTERM, then SIGKILL) and exits 1. Exit 0: nothing was left.

usage: python .ci/leftovers.py RUN_ID [--grace SECONDS]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

VARIABLE = "STYLEFINDER_TEST_RUN"


def _ancestors() -> set[int]:
    """This process and the ones that started it (.ci/test's shell carries the variable too)."""
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


def marked(run_id: str) -> dict[int, str]:
    """pid -> command line of every process whose environment holds VARIABLE=run_id."""
    wanted = f"{VARIABLE}={run_id}".encode()
    found, skip = {}, _ancestors()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            if wanted not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone, or not ours to read
            continue
        if command.strip():  # zombies have no command line: their parent reaps them
            found[int(entry.name)] = command.strip()
    return found


def end(pids: list[int], wait: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_id")
    parser.add_argument("--grace", type=float, default=10.0,
                        help="seconds to wait for processes already exiting (default 10)")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.grace
    left = marked(args.run_id)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = marked(args.run_id)
    if not left:
        return 0
    for pid, command in sorted(left.items()):
        print(f"error: left running by the test suite: pid {pid}: {command[:200]}", file=sys.stderr)
    end(list(left))
    print(f"error: {len(left)} processes were left running by the test suite; ended them", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
