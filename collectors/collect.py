"""One collection run: list a site's titles, read each, download what the catalog lacks."""

from __future__ import annotations

import logging
from contextlib import closing

from tqdm import tqdm

from collectors.browser import BrowserConfig, open_browser
from collectors.browser_records import BrowserRecord, end_stale_browsers
from collectors.fetching import BlockedByRobots, FetchError, Session
from collectors.records import Summary
from collectors.settings import CollectOptions, Politeness
from collectors.sites import SkipTitle, site_registry
from collectors.store import CatalogStore
from datasets.reaper import Reaper
from datasets.stop_signals import Stopped, StopRequest

log = logging.getLogger(__name__)


def collect(site_name: str, store: CatalogStore, options: CollectOptions | None = None,
            politeness: Politeness | None = None, browser: BrowserConfig | None = None,
            progress: bool = True, stop: StopRequest | None = None) -> Summary:
    """Collect into `store`; every title and image ends counted as collected, skipped or failed.
    `stop`: a stop request (SIGINT, SIGTERM) ends the run between images, or cuts a polite pause
    short; the title in progress is then left incomplete (its images so far are kept) and the
    next run reads it again. `summary.stopped` names the signal."""
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
        session = Session(site.name, driver, browser.user_agent, politeness, browser.timeouts,
                          **({"sleep": stop.sleep} if stop else {}))
        titles = tqdm(desc=f"{site.name} titles", unit="title", disable=not progress)
        try:
            for stub in site.titles(session, options):
                if options.max_titles is not None and summary.titles >= options.max_titles:
                    break
                if stop:
                    stop.check()
                titles.update(1)
                titles.set_postfix_str(stub.name[:30])
                if store.is_complete(site.name, stub.source_id):
                    summary.skip("title already complete in the catalog")
                    summary.titles += 1
                    continue
                try:
                    title = site.read(session, stub, options)
                except SkipTitle as reason:
                    summary.skip(str(reason))
                    continue
                except BlockedByRobots:
                    summary.skip("title disallowed by robots.txt")
                    continue
                except FetchError as err:
                    summary.failed.append(f"title {stub.name} ({stub.source_id}): {err}")
                    continue
                summary.titles += 1
                _collect_images(session, site, store, title, options, summary, progress, stop)
                record.update()  # the processes Chromium started for this title
        except FetchError as err:
            summary.failed.append(f"title list: {err}")
        except Stopped as signal_name:
            summary.stopped = str(signal_name)
        finally:
            titles.close()
    return summary


def _collect_images(session: Session, site, store: CatalogStore, record, options: CollectOptions,
                    summary: Summary, progress: bool, stop: StopRequest | None) -> None:
    title_id = store.save_title(record)
    for reason, count in record.dropped.items():
        summary.skip(reason, count)
    known = store.known_urls(record.source, record.source_id)
    todo = [link for link in record.images if link.url not in known]
    if len(todo) < len(record.images):
        summary.skip("image already in the catalog", len(record.images) - len(todo))
    failures = 0
    for link in tqdm(todo, desc=record.name[:30], unit="img", leave=False, disable=not progress):
        if stop:
            stop.check()  # between images: each stored image is one committed transaction
        try:
            data = session.download(link.url, site.referer(options))
        except BlockedByRobots:
            summary.skip("image disallowed by robots.txt")
            continue
        except FetchError as err:
            summary.failed.append(f"image {link.url}: {err}")
            failures += 1
            continue
        quarantined = len(summary.quarantined)
        if store.save_image(record, title_id, link, data, summary):
            summary.images += 1
        failures += len(summary.quarantined) - quarantined  # flat images are skipped, not failed
    if record.missing:
        summary.incomplete.append(f"{record.name} ({record.source_id}): {'; '.join(record.missing)}")
        log.warning("%s %s (%s) stored incomplete: %s", record.source, record.name, record.source_id,
                    "; ".join(record.missing))
    elif failures == 0:
        store.mark_complete(title_id)
