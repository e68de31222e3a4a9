"""One collection run: list a site's titles, read those that may have changed, download what the
catalog lacks.

A title is read when the catalog does not hold it complete, when it is ongoing, or when its last
check is `refresh_days` old; a finished, complete, recently checked title costs nothing. Titles
the catalog saw ongoing that the site's lists no longer show (a title that ended leaves the
weekday lists) are read too, on runs over every list. Reading a known title asks the site only
for the part of its episode list that can be new, and updates its metadata in place, each
change recorded (collectors/store.py). Images download in threads, a few at a time per CDN
host, while this thread waits its turn at the site (collectors/downloads.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timezone

from tqdm import tqdm

from collectors.browser import BrowserConfig, open_browser
from collectors.browser_records import BrowserRecord, end_stale_browsers
from collectors.downloads import DownloadPool, TitleJob
from collectors.fetching import BlockedByRobots, FetchError, Session
from collectors.records import Summary
from collectors.settings import CollectOptions, Politeness
from collectors.sites import AdultTitle, SkipTitle, TitleStub, site_registry
from collectors.store import REMOVED, STATUS, CatalogStore, KnownTitle
from datasets.reaper import Reaper
from datasets.stop_signals import Stopped, StopRequest

log = logging.getLogger(__name__)


def collect(site_name: str, store: CatalogStore, options: CollectOptions | None = None,
            politeness: Politeness | None = None, browser: BrowserConfig | None = None,
            progress: bool = True, stop: StopRequest | None = None) -> Summary:
    """Collect into `store`; every title and image ends counted as collected, skipped or failed.
    `stop`: a stop request (SIGINT, SIGTERM) ends the run between images, or cuts a polite pause
    short; titles in progress are then left incomplete (their images so far are kept) and the
    next run reads them again. `summary.stopped` names the signal."""
    options, politeness = options or CollectOptions(), politeness or Politeness()
    browser = browser or BrowserConfig()
    site = site_registry()[site_name]
    summary = Summary()
    # The reaper ends chromedriver and Chromium if this process is killed (-9 included): they
    # are re-parented to init otherwise and live on. The record lets the next run end them
    # should the reaper have died too.
    end_stale_browsers(store.images_dir)
    record = BrowserRecord(store.images_dir)
    with Reaper(), closing(record), closing(open_browser(browser)) as driver:
        record.update()
        session = Session(site.name, driver, browser.user_agent, politeness, browser.timeouts)
        downloads = DownloadPool(session, site.referer(options), store, summary,
                                 lambda job: _title_done(store, job, summary), stop, progress)
        session.sleep = downloads.wait  # the site's polite pauses store finished downloads
        titles = tqdm(desc=f"{site.name} titles", unit="title", disable=not progress)
        now = datetime.now(timezone.utc)
        try:
            for stub in _stubs(site, session, store, options):
                if options.max_titles is not None and summary.titles >= options.max_titles:
                    break
                if stop:
                    stop.check()
                titles.update(1)
                titles.set_postfix_str(stub.name[:30])
                known = store.known_title(site.name, stub.source_id)
                if known is not None and not known.due(now, options.refresh_days):
                    summary.skip(f"title finished, complete and checked within {options.refresh_days:g} days")
                    summary.titles += 1
                    continue
                _read_title(session, site, store, stub, known, options, summary, downloads)
                record.update()  # the processes Chromium started for this title
            downloads.join()
        except FetchError as err:
            summary.failed.append(f"title list: {err}")
        except Stopped as signal_name:
            summary.stopped = str(signal_name)
        finally:
            titles.close()
            downloads.close()
    return summary


def _stubs(site, session: Session, store: CatalogStore, options: CollectOptions) -> Iterator[TitleStub]:
    """The site's lists, then (on runs over every list) titles last seen ongoing that they no
    longer show: ended titles move to a finished list a run may not read."""
    seen: set[str] = set()
    for stub in site.titles(session, options):
        seen.add(stub.source_id)
        yield stub
    if options.weekday is None:
        for source_id, name in store.ongoing_titles(site.name):
            if source_id not in seen:
                yield TitleStub(source_id, name)


def _read_title(session: Session, site, store: CatalogStore, stub: TitleStub, known: KnownTitle | None,
                options: CollectOptions, summary: Summary, downloads: DownloadPool) -> None:
    try:
        title = site.read(session, stub, options, known.listed if known else None)
    except AdultTitle as reason:
        summary.skip(str(reason))
        if known is not None:  # a title the catalog holds became adult: recorded, images kept
            store.record_change(known.title_id, "adult", "0", "1")
            summary.changes.append(f"{site.name} {stub.name} ({stub.source_id}): adult 0 -> 1")
        return
    except SkipTitle as reason:
        summary.skip(str(reason))
        return
    except BlockedByRobots:
        summary.skip("title disallowed by robots.txt")
        return
    except FetchError as err:
        if err.status == 404 and known is not None:
            # Gone from the site: recorded once, its images kept, no longer followed as ongoing
            # (read again should a list show it, once --refresh-days have passed).
            if known.status != REMOVED:
                store.record_change(known.title_id, STATUS, known.status or None, REMOVED)
                summary.changes.append(f"{site.name} {stub.name} ({stub.source_id}): status "
                                       f"{known.status or '(none)'} -> {REMOVED}")
            else:
                store.mark_done(known.title_id, known.complete)
            summary.skip("title no longer on the site (HTTP 404)")
            return
        summary.failed.append(f"title {stub.name} ({stub.source_id}): {err}")
        return
    summary.titles += 1
    title_id, changes = store.save_title(title)
    summary.changes.extend(changes)
    summary.new_titles += known is None
    for reason, count in title.dropped.items():
        summary.skip(reason, count)
    stored = store.known_urls(title.source, title.source_id)
    todo = [link for link in title.images if link.url not in stored]
    if len(todo) < len(title.images):
        summary.skip("image already in the catalog", len(title.images) - len(todo))
    job = TitleJob(title, title_id, known=known is not None)
    for link in todo:
        downloads.submit(job, link)
    downloads.title_listed(job)


def _title_done(store: CatalogStore, job: TitleJob, summary: Summary) -> None:
    """Every image of the title is stored, failed or abandoned: complete only if all are in."""
    title = job.record
    if title.missing:
        summary.incomplete.append(f"{title.name} ({title.source_id}): {'; '.join(title.missing)}")
        log.warning("%s %s (%s) stored incomplete: %s", title.source, title.name, title.source_id,
                    "; ".join(title.missing))
    store.mark_done(job.title_id, complete=not title.missing and job.failures == 0)
