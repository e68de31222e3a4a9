"""Naver Webtoon: a script-rendered site whose pages call a JSON API, which we call the same way.

Evidence for the fields read from `/api/article/list/info` (checked 2026-12-01):
- `curationTagList[]` holds `{id, tagName, urlPath, curationType}`; genre tags have a
  `curationType` that starts with `GENRE_` (`GENRE_PURE`, `GENRE_FANTASY`), beside
  `CUSTOM_TAG` and `NOVEL_ORIGIN` tags. Webtoon-Studio/webtoon
  `src/platform/naver/client/info.rs` (struct `Tag`), and a saved response of titleId 805671
  in a public Python client (`"curationType": "GENRE_PURE"`, `"tagName": "로맨스"`).
- The age rating is `age.type` (`RATE_15`, `RATE_18`); the payload has no top-level
  `adult`. Webtoon-Studio/webtoon `info.rs` (struct `Age`); ilotoki0804/WebtoonScraper
  `WebtoonScraper/scrapers/_naver_webtoon.py`.
- `communityArtists[]` holds `{artistId, artistTypeList, name, ...}`; the painter carries
  `ARTIST_PAINTER`. Webtoon-Studio/webtoon `info.rs` (struct `CommunityArtists`).
- `finished` (bool) says whether the title has ended; the saved response of titleId 805671 has
  `"finished": false` beside `"rest": false`. Finished titles leave the weekday list for the
  finished list.
- The article list answers `"sort": "DESC"`, newest episode first (the same saved response), so
  new episodes are on the first pages: an update reads pages until it has as many episodes as
  the count grew by.
"""

from __future__ import annotations

from collections.abc import Iterator

from collectors.fetching import Session
from collectors.records import ImageLink, TitleRecord
from collectors.settings import CollectOptions
from collectors.sites import WEEKDAYS, AdultTitle, OneHostSite, SkipTitle, TitleStub
from collectors.store import FINISHED, ONGOING

SITE = "https://comic.naver.com"  # also the Referer its image host insists on
WEEKDAY_LIST = "/api/webtoon/titlelist/weekday?order=user"
FINISHED_LIST = "/api/webtoon/titlelist/finished?page={page}&order=UPDATE"
TITLE_INFO = "/api/article/list/info?titleId={id}"
ARTICLES = "/api/article/list?titleId={id}&page={page}"
TITLE_PAGE = "/webtoon/list?titleId={id}"
# The titlelist groups titles by these keys.
DAY_KEYS = dict(zip(WEEKDAYS, ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"),
                    strict=True))
# communityArtists[].artistTypeList: the painter's hand is the style.
PAINTER_TYPES = ("ARTIST_PAINTER",)
GENRE_TAG_PREFIX = "GENRE_"  # curationTagList[].curationType of a genre tag
ADULT_AGE = "RATE_18"  # age.type of a title that needs a login


class NaverWebtoon(OneHostSite):
    SITE = SITE
    name = "naver"
    default_min_episodes = 200

    @classmethod
    def titles(cls, session: Session, options: CollectOptions) -> Iterator[TitleStub]:
        base = cls.base(options)
        listing = session.get_json(base + WEEKDAY_LIST, base + "/")
        days = [DAY_KEYS[options.weekday]] if options.weekday else list(DAY_KEYS.values())
        seen: set[str] = set()
        for day in days:
            for item in listing.get("titleListMap", {}).get(day, []):
                stub = TitleStub(str(item["titleId"]), item["titleName"], bool(item.get("adult")),
                                 finished=False)
                if stub.source_id not in seen:
                    seen.add(stub.source_id)
                    yield stub
        page, pages = 1, 1
        while options.finished and page <= pages:
            finished = session.get_json(base + FINISHED_LIST.format(page=page), base + "/")
            pages = finished.get("pageInfo", {}).get("totalPages", 1)
            for item in finished.get("titleList", []):
                stub = TitleStub(str(item["titleId"]), item["titleName"], bool(item.get("adult")),
                                 finished=True)
                if stub.source_id not in seen:
                    seen.add(stub.source_id)
                    yield stub
            page += 1

    @classmethod
    def read(cls, session: Session, stub: TitleStub, options: CollectOptions,
             listed: int | None = None) -> TitleRecord:
        base = cls.base(options)
        info = session.get_json(base + TITLE_INFO.format(id=stub.source_id), base + "/")
        if stub.adult or info.get("age", {}).get("type") == ADULT_AGE:
            raise AdultTitle()
        minimum = cls.default_min_episodes if options.min_episodes is None else options.min_episodes
        first = session.get_json(base + ARTICLES.format(id=stub.source_id, page=1), base + "/")
        total = first.get("totalCount", len(first.get("articleList", [])))
        if total < minimum:
            raise SkipTitle(f"fewer than {minimum} episodes")
        missing = []
        artists = info.get("communityArtists") or []
        painters = [a["name"] for a in artists if set(a.get("artistTypeList", ())) & set(PAINTER_TYPES)]
        author = (painters or [a["name"] for a in artists] or [None])[0]
        if author is None:
            missing.append("no communityArtists: no author")
        tags = info.get("curationTagList") or []
        genres = tuple(t["tagName"] for t in tags
                       if str(t.get("curationType", "")).startswith(GENRE_TAG_PREFIX) and t.get("tagName"))
        if not genres:
            missing.append(f"no {GENRE_TAG_PREFIX}* tag in curationTagList: no genres")
        finished = info.get("finished", stub.finished)
        record = TitleRecord("naver", stub.source_id, info.get("titleName", stub.name),
                             base + TITLE_PAGE.format(id=stub.source_id), author, genres,
                             info={"synopsis": info.get("synopsis", ""),
                                   "poster_url": info.get("thumbnailUrl", ""),
                                   "episodes": str(total), "status": FINISHED if finished else ONGOING,
                                   "adult": "0"}, missing=missing)
        pages = first.get("pageInfo", {}).get("totalPages", 1)
        articles = list(first.get("articleList", []))
        page = 2
        # Newest first: after a complete read of `listed` episodes, the new ones are the first
        # `total - listed` (an unchanged title costs the info and one page).
        while page <= pages and (listed is None or len(articles) < total - listed):
            articles += session.get_json(base + ARTICLES.format(id=stub.source_id, page=page),
                                         base + "/").get("articleList", [])
            page += 1
        record.images = [ImageLink(a["thumbnailUrl"], int(a["no"])) for a in articles
                         if a.get("thumbnailUrl")]
        return record
