"""One page-object module per site: its endpoints, selectors and parsing, nothing else.

When a site changes, mend its module here. Each site class has `name`, `referer(options)`
and `titles(session, options)`, which yields `TitleStub`s; `read(session, stub, options, listed)`
turns a stub into a `TitleRecord` or raises `SkipTitle` with the reason. `listed`: how many
episodes the site listed when the catalog last stored every one of them (None: read them all);
a site may then read only the part of its episode list that can hold new ones. Records say
`info["status"]` (ongoing or finished) and `info["adult"]` ("0": adult titles are skipped).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TitleStub:
    source_id: str
    name: str
    adult: bool = False
    keywords: tuple[str, ...] = ()  # what the title list already says of it (Kakao's seoKeywords)
    finished: bool | None = None  # from a list of finished titles; None: the list does not say


class SkipTitle(Exception):
    """A title left out on purpose; str() is the reason, counted in the summary."""


class AdultTitle(SkipTitle):
    """An adult title (it needs a login): skipped; a title the catalog holds records the change."""

    def __init__(self) -> None:
        super().__init__("adult title (needs a login)")


class OneHostSite:
    """A site whose pages and API share one host, `SITE`, which --base-url replaces."""

    SITE = ""

    @classmethod
    def base(cls, options) -> str:
        return (options.base_url or cls.SITE).rstrip("/")

    @classmethod
    def referer(cls, options) -> str:
        return cls.base(options) + "/"


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def site_registry() -> dict:
    from collectors.sites.kakao import KakaoWebtoon
    from collectors.sites.mal import MyAnimeList
    from collectors.sites.naver import NaverWebtoon

    return {site.name: site for site in (NaverWebtoon, KakaoWebtoon, MyAnimeList)}
