"""A watchdog that ends what a process started once that process is gone, however it died.

Ray started from a driver ends its GCS server and raylet with the driver (they share its fate),
but its per-node agents are re-parented to init and live on after a `kill -9` of the driver
(measured with Ray 2.60). The reaper is a small process in a session of its own that
snapshots the driver's new descendants (pid and start time) every half second, and holds the read
end of a pipe whose only write end is the driver's. When the pipe closes (the driver exited
or was killed) it kills every snapshotted process still alive with the same start time, and
exits. A driver that ends cleanly stops its children first, so the reaper finds nothing left.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

_POLL_SECONDS = 0.5


def start_time(pid: int) -> str | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # A zombie has ended (only its exit status waits for its parent): as good as gone.
    return fields[19] if len(fields) > 19 and fields[0] != "Z" else None


def descendants(root: int) -> dict[int, str]:
    """{pid: start time} of every process below `root`, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            started = start_time(child)
            if started is not None:
                found[child] = started
                todo.append(child)
    return found


def watch(parent: int, fd: int) -> None:
    """The reaper's loop (run in its own process): snapshot, and on EOF kill the snapshot."""
    import select
    import signal

    before = descendants(parent)  # what the driver had already started is not ours to end
    known: dict[int, str] = {}
    while True:
        ready, _, _ = select.select([fd], [], [], _POLL_SECONDS)
        if ready and not os.read(fd, 1):
            break
        known.update((pid, started) for pid, started in descendants(parent).items()
                     if before.get(pid) != started)
        known = {pid: started for pid, started in known.items() if start_time(pid) == started}
    for pid, started in known.items():
        if pid != os.getpid() and start_time(pid) == started:
            with contextlib.suppress(OSError):  # gone already
                os.kill(pid, signal.SIGKILL)


class Reaper:
    """`with Reaper():` around work that starts processes which must not outlive this one."""

    def __enter__(self) -> Reaper:
        if not Path("/proc/self/stat").exists():  # not Linux: nothing to watch with
            self.process, self._write = None, None
            return self
        read, self._write = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-c", "import sys; from datasets.reaper import watch; "
             "watch(int(sys.argv[1]), int(sys.argv[2]))", str(os.getpid()), str(read)],
            pass_fds=(read,), start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[1])
        os.close(read)
        return self

    def __exit__(self, *exc) -> None:
        if self._write is not None:
            os.close(self._write)
            self.process.wait(timeout=30)
