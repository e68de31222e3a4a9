"""Which browser processes a collection started, written down, so a later run can end them.

The reaper ends a killed collection's chromedriver and Chromium. Should the reaper die with it
(the OOM killer, a whole process group killed), the next collection into the same image folder
ends them: every run writes `.browsers-<pid>.json` there (its own pid and start time, and each
browser process's), rewrites it as the browser starts processes, and deletes it when it ends.
A record whose run is no longer alive names what that run left: those processes, and the ones
they started since the record was written, are ended, each only if the process with that pid
still has the recorded start time (or descends from one that has), so a pid reused since by
anything else is never touched, and no process is ever found by its name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from pathlib import Path

from datasets.reaper import descendants, start_time

log = logging.getLogger(__name__)

PREFIX = ".browsers-"


class BrowserRecord:
    """This run's record in `folder`: `update()` after the browser starts processes, `close()` at the end."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / f"{PREFIX}{os.getpid()}.json"

    def update(self) -> None:
        started = descendants(os.getpid())
        record = {"run": [os.getpid(), start_time(os.getpid())],
                  "processes": [[pid, started] for pid, started in sorted(started.items())]}
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self.path)

    def close(self) -> None:
        self.path.unlink(missing_ok=True)


def end_stale_browsers(folder: str | os.PathLike) -> list[int]:
    """End what earlier runs recorded in `folder` and left running; their pids."""
    ended = []
    for path in sorted(Path(folder).glob(f"{PREFIX}*.json")):
        try:
            record = json.loads(path.read_text())
            run_pid, run_started = record["run"]
            processes = [(int(pid), str(started)) for pid, started in record["processes"]]
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("%s: not a browser record; removed", path)
            path.unlink(missing_ok=True)
            continue
        if start_time(run_pid) == run_started:
            continue  # that run is still going: its browsers are its own
        # The recorded processes still alive, and what they started since the record was last
        # written (Chromium starts renderers per page): their tree is whole while they live.
        alive = {pid: started for pid, started in processes if start_time(pid) == started}
        for pid in list(alive):
            alive.update(descendants(pid))
        for pid, started in alive.items():
            if start_time(pid) == started:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                    ended.append(pid)
        path.unlink(missing_ok=True)
    if ended:
        log.warning("ended %d browser processes an earlier collection left running (pids %s)", len(ended),
                    ", ".join(map(str, ended)))
    return ended
