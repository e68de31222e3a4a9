"""Naver Webtoon: a script-rendered site whose pages call a JSON API, which we call the same way."""

from __future__ import annotations

from collections.abc import Iterator

from collectors.fetching import Session
from collectors.records import ImageLink, TitleRecord
from collectors.settings import CollectOptions
from collectors.sites import WEEKDAYS, OneHostSite, SkipTitle, TitleStub

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
                stub = TitleStub(str(item["titleId"]), item["titleName"], bool(item.get("adult")))
                if stub.source_id not in seen:
                    seen.add(stub.source_id)
                    yield stub
        page, pages = 1, 1
        while options.finished and page <= pages:
            finished = session.get_json(base + FINISHED_LIST.format(page=page), base + "/")
            pages = finished.get("pageInfo", {}).get("totalPages", 1)
            for item in finished.get("titleList", []):
                stub = TitleStub(str(item["titleId"]), item["titleName"], bool(item.get("adult")))
                if stub.source_id not in seen:
                    seen.add(stub.source_id)
                    yield stub
            page += 1

    @classmethod
    def read(cls, session: Session, stub: TitleStub, options: CollectOptions) -> TitleRecord:
        base = cls.base(options)
        info = session.get_json(base + TITLE_INFO.format(id=stub.source_id), base + "/")
        if stub.adult or info.get("adult"):
            raise SkipTitle("adult title (needs a login)")
        minimum = cls.default_min_episodes if options.min_episodes is None else options.min_episodes
        first = session.get_json(base + ARTICLES.format(id=stub.source_id, page=1), base + "/")
        total = first.get("totalCount", len(first.get("articleList", [])))
        if total < minimum:
            raise SkipTitle(f"fewer than {minimum} episodes")
        artists = info.get("communityArtists", [])
        painters = [a["name"] for a in artists if set(a.get("artistTypeList", ())) & set(PAINTER_TYPES)]
        author = (painters or [a["name"] for a in artists] or [None])[0]
        genres = tuple(tag["tagName"] for tag in info.get("curationTagList", [])
                       if tag.get("curationType", "").endswith("GENRE")) \
            or tuple(info.get("gfpAdCustomParam", {}).get("genreTypes", []))
        record = TitleRecord("naver", stub.source_id, info.get("titleName", stub.name),
                             base + TITLE_PAGE.format(id=stub.source_id), author, genres,
                             info={"synopsis": info.get("synopsis", ""),
                                   "poster_url": info.get("thumbnailUrl", ""),
                                   "episodes": str(total)})
        pages = first.get("pageInfo", {}).get("totalPages", 1)
        articles = list(first.get("articleList", []))
        for page in range(2, pages + 1):
            articles += session.get_json(base + ARTICLES.format(id=stub.source_id, page=page),
                                         base + "/").get("articleList", [])
        record.images = [ImageLink(a["thumbnailUrl"], int(a["no"])) for a in articles
                         if a.get("thumbnailUrl")]
        return record
