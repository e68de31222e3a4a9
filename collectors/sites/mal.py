"""MyAnimeList: rendered anime pages read with CSS selectors; one poster per title.

Evidence for the sidebar (checked 2026-12-01): jikan-me/jikan `src/Parser/Anime/AnimeParser.php`
reads each list label in both forms, `Genres:` and `Genre:`, `Themes:` and `Theme:`,
`Demographics:` and `Demographic:` (the page writes the singular when there is one entry), and
treats `Studios: None found, add some` as no studio (`strpos(..., 'None found') === false`), and
reads `Status:` (`Finished Airing`, `Currently Airing`, `Not yet aired`).
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urljoin

from collectors.fetching import SelectorError, Session
from collectors.records import ImageLink, TitleRecord
from collectors.settings import CollectOptions
from collectors.sites import OneHostSite, SkipTitle, TitleStub
from collectors.store import FINISHED, ONGOING

SITE = "https://myanimelist.net"
TOP_ANIME = "/topanime.php?limit={offset}"
PAGE_SIZE = 50
RANKING_LINKS = "tr.ranking-list h3 a"
TITLE = "h1.title-name"
POSTER_META = 'meta[property="og:image"]'  # content
POSTER_LAZY = "div.leftside img[data-src]"  # data-src, when og:image is missing
POSTER_SCROLLED = "div.leftside img.lazyload"  # src, set by the page once the image is scrolled into view
SYNOPSIS = 'p[itemprop="description"]'
SCORE = 'span[itemprop="ratingValue"]'
SIDEBAR_ROWS = "div.leftside div.spaceit_pad"  # "Type: TV", "Genres: Action, Drama", ...
SIDEBAR_LABEL = "span.dark_text"
DROPPED_TYPES = ("Unknown", "ONA")  # as the anime study did
PLACEHOLDER_SYNOPSIS = "No synopsis information has been added"
FINISHED_STATUS = "Finished Airing"  # the sidebar's Status row; any other value can still change
NO_ENTRY = "None found"  # "Studios: None found, add some": the "add some" link is not a studio
# Sidebar labels the page writes in the singular for one entry and in the plural for more.
LIST_LABELS = {"genres": ("Genres", "Genre"), "themes": ("Themes", "Theme"),
               "demographics": ("Demographics", "Demographic"), "studios": ("Studios", "Studio")}

_SIDEBAR_SCRIPT = """
const [rows, label] = arguments;
return [...document.querySelectorAll(rows)].map(row => {
  const name = row.querySelector(label);
  const links = [...row.querySelectorAll("a")].map(a => a.textContent.trim()).filter(Boolean);
  const text = row.textContent.replace(name ? name.textContent : "", "").trim();
  return [name ? name.textContent.trim().replace(/:$/, "") : "", links, text];
});
"""


class MyAnimeList(OneHostSite):
    SITE = SITE
    name = "mal"
    default_min_episodes = 0

    @classmethod
    def titles(cls, session: Session, options: CollectOptions) -> Iterator[TitleStub]:
        base, offset = cls.base(options), 0
        while True:
            session.open_page(base + TOP_ANIME.format(offset=offset))
            links = session.driver.find_elements("css selector", RANKING_LINKS)
            if not links:
                if offset == 0:
                    raise SelectorError(f"mal: selector {RANKING_LINKS!r} found nothing on "
                                        f"{session.driver.current_url}")
                return
            found = [(a.get_attribute("href"), " ".join(a.text.split())) for a in links]
            for href, name in found:
                parts = href.split("/anime/", 1)[1].split("/")
                yield TitleStub(parts[0], name)
            offset += PAGE_SIZE

    @classmethod
    def read(cls, session: Session, stub: TitleStub, options: CollectOptions,
             listed: int | None = None) -> TitleRecord:
        base = cls.base(options)
        url = f"{base}/anime/{stub.source_id}"
        session.open_page(url)
        name = session.select(TITLE)[0]
        sidebar = {label: (links, text) for label, links, text in
                   session.driver.execute_script(_SIDEBAR_SCRIPT, SIDEBAR_ROWS, SIDEBAR_LABEL)}
        if not sidebar:
            raise SelectorError(f"mal: selector {SIDEBAR_ROWS!r} found nothing on "
                                f"{session.driver.current_url}")
        kind = (sidebar.get("Type", ([], "Unknown"))[0] or [sidebar.get("Type", ([], "Unknown"))[1]])[0]
        if kind in DROPPED_TYPES and kind not in options.keep_types:
            raise SkipTitle(f"type {kind} (dropped by default; --keep-types {kind} keeps it)")
        poster = (session.select(POSTER_META, "content", required=False)
                  or session.select(POSTER_LAZY, "data-src", required=False)
                  or [p for p in [session.scroll_until(POSTER_SCROLLED, "src")] if p])
        if not poster:
            raise SelectorError(f"mal: selectors {POSTER_META!r}, {POSTER_LAZY!r} and {POSTER_SCROLLED!r} "
                                f"found nothing on {session.driver.current_url}")
        synopsis = " ".join(session.select(SYNOPSIS, required=False))
        found = {key: _sidebar_list(sidebar, labels) for key, labels in LIST_LABELS.items()}
        # A row that says "None found" was read; a row that is not there may be markup we miss.
        missing = [f"no {'/'.join(LIST_LABELS[key])} row in the sidebar" for key in ("genres", "studios")
                   if found[key] is None]
        lists = {key: value or [] for key, value in found.items()}
        info = {"synopsis": synopsis, "type": kind,
                "score": (session.select(SCORE, required=False) or [""])[0],
                "members": sidebar.get("Members", ([], ""))[1].replace(",", ""),
                "status": FINISHED if sidebar.get("Status", ([], ""))[1] == FINISHED_STATUS else ONGOING,
                "adult": "0",
                "synopsis_placeholder": "1" if PLACEHOLDER_SYNOPSIS.lower() in synopsis.lower() else "0"}
        record = TitleRecord("mal", stub.source_id, name, url, (lists["studios"] or [None])[0],
                             genres=tuple(lists["genres"]), themes=tuple(lists["themes"]),
                             demographics=tuple(lists["demographics"]), info=info, missing=missing)
        record.images = [ImageLink(urljoin(url, poster[0]), 0)]
        return record


def _sidebar_list(sidebar: dict, labels: tuple[str, ...]) -> list[str] | None:
    """The links of the first of `labels` the sidebar has ([] when it says "None found" or
    that none were added); None when it has none of them."""
    for label in labels:
        if label in sidebar:
            links, text = sidebar[label]
            return [] if NO_ENTRY.lower() in text.lower() or "have been added yet" in text else list(links)
    return None
