"""Image downloads in a few threads, overlapping the collecting thread's polite waits.

The collecting thread reads the site one request at a time and spends most of its time waiting
its 4-7 s turn. Downloads run meanwhile in worker threads, each taking its turn at its CDN host's
gate (a few in flight per host, collectors/politeness.py). The bytes come back through a queue
and are stored by the collecting thread, whenever it waits (`wait` is the session's sleep): the
catalog's SQLite connection belongs to that thread, and each image stays one transaction, so a
kill loses at most the downloads in flight. A title is complete once its last image is stored.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tqdm import tqdm

from collectors.fetching import BlockedByRobots, FetchError, Session
from collectors.records import ImageLink, Summary, TitleRecord
from collectors.store import CatalogStore
from datasets.stop_signals import StopRequest

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2  # how often a wait looks at a stop request while no download finishes


class Cancelled(Exception):
    """A download abandoned because the run is ending (a stop request)."""


@dataclass(eq=False)
class TitleJob:
    """One title's images on their way into the catalog."""

    record: TitleRecord
    title_id: int
    known: bool  # the catalog held the title before this run: its new images are new episodes
    pending: int = 0
    failures: int = 0
    listed: bool = False  # every image of the title has been handed over


class DownloadPool:
    def __init__(self, session: Session, referer: str | None, store: CatalogStore, summary: Summary,
                 on_title_done: Callable[[TitleJob], None], stop: StopRequest | None = None,
                 progress: bool = True):
        self.session, self.referer, self.store, self.summary = session, referer, store, summary
        self.on_title_done, self.stop = on_title_done, stop
        # Two CDN hosts at full width (posters and episodes may come from two).
        workers = max(1, session.policy.cdn.concurrency) * 2
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="download")
        self.results: queue.Queue = queue.Queue()
        self.in_flight = 0
        self.limit = workers * 8  # downloads handed over but not stored: bounds memory on long titles
        self.closing = threading.Event()
        self.bar = tqdm(desc="images", unit="img", disable=not progress)

    # --- the collecting thread --------------------------------------------------------

    def submit(self, job: TitleJob, link: ImageLink) -> None:
        while self.in_flight >= self.limit:
            self.wait(POLL_SECONDS)
        job.pending += 1
        self.in_flight += 1
        self.bar.total = (self.bar.total or 0) + 1
        self.executor.submit(self._download, job, link)

    def title_listed(self, job: TitleJob) -> None:
        """Every image of `job` is handed over; it is done when they are stored."""
        job.listed = True
        self._maybe_done(job)

    def wait(self, seconds: float) -> None:
        """Sleep `seconds`, storing downloads as they arrive; a stop request raises Stopped."""
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            if self.stop:
                self.stop.check()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                self._store(self.results.get(timeout=min(remaining, POLL_SECONDS)))
            except queue.Empty:
                continue
        self._store_ready()

    def join(self) -> None:
        """Store every download handed over (stop requests still end the wait)."""
        while self.in_flight:
            self.wait(POLL_SECONDS)

    def close(self) -> None:
        """Abandon downloads not started or waiting their turn, and store those that finished."""
        self.closing.set()
        self.executor.shutdown(wait=True, cancel_futures=True)
        self._store_ready()
        self.bar.close()

    # --- worker threads -----------------------------------------------------------------

    def _download(self, job: TitleJob, link: ImageLink) -> None:
        try:
            data = self.session.download(link.url, self.referer, sleep=self._sleep)
            self.results.put((job, link, data, None))
        except (FetchError, Cancelled) as err:
            self.results.put((job, link, None, err))
        except Exception as err:  # a bug must not hang the run: it is reported as a failure
            log.exception("download %s", link.url)
            self.results.put((job, link, None, FetchError(f"download {link.url}: {err!r}")))

    def _sleep(self, seconds: float) -> None:
        if self.closing.wait(seconds):
            raise Cancelled("the run is ending")

    # --- storing ----------------------------------------------------------------------------

    def _store_ready(self) -> None:
        while True:
            try:
                self._store(self.results.get_nowait())
            except queue.Empty:
                return

    def _store(self, item: tuple) -> None:
        job, link, data, err = item
        self.in_flight -= 1
        job.pending -= 1
        self.bar.update(1)
        if isinstance(err, BlockedByRobots):
            self.summary.skip("image disallowed by robots.txt")
        elif isinstance(err, Cancelled):
            job.failures += 1  # not failed, but not stored either: the title stays incomplete
        elif err is not None:
            self.summary.failed.append(f"image {link.url}: {err}")
            job.failures += 1
        else:
            quarantined = len(self.summary.quarantined)
            if self.store.save_image(job.record, job.title_id, link, data, self.summary):
                self.summary.images += 1
                self.summary.episodes += job.known
            job.failures += len(self.summary.quarantined) - quarantined  # flat images skip, not fail
        self._maybe_done(job)

    def _maybe_done(self, job: TitleJob) -> None:
        if job.listed and job.pending == 0:
            job.listed = False  # once
            self.on_title_done(job)
