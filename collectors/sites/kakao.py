"""Kakao Webtoon (formerly Daum Webtoon): pages on webtoon.kakao.com, JSON from its gateway."""

from __future__ import annotations

from collections.abc import Iterator

from collectors.fetching import Session
from collectors.records import ImageLink, TitleRecord
from collectors.settings import CollectOptions
from collectors.sites import WEEKDAYS, SkipTitle, TitleStub

SITE = "https://webtoon.kakao.com"
API = "https://gateway-kw.kakao.com"
DAY_LIST = "/section/v2/timetables/days?placement=timetable_{day}"
COMPLETED_LIST = "/section/v2/timetables/days?placement=timetable_completed"
CONTENT = "/decorator/v2/decorator/contents/{id}"
EPISODES = "/episode/v2/views/content-home/contents/{id}/episodes?sort=NO&offset={offset}&limit={limit}"
CONTENT_PAGE = "/content/{slug}/{id}"
PAGE_SIZE = 30
# authors[].type: the illustrator's hand is the style; the writer (AUTHOR) is not.
STYLE_AUTHOR_TYPES = ("ILLUSTRATOR", "ARTIST")


class KakaoWebtoon:
    name = "kakao"
    default_min_episodes = 200

    @staticmethod
    def hosts(options: CollectOptions) -> tuple[str, str]:
        if options.base_url:
            base = options.base_url.rstrip("/")
            return base, base  # a test or mirror host serves both the pages and the API
        return SITE, API

    @classmethod
    def referer(cls, options: CollectOptions) -> str:
        return cls.hosts(options)[0] + "/"

    @classmethod
    def titles(cls, session: Session, options: CollectOptions) -> Iterator[TitleStub]:
        site, api = cls.hosts(options)
        lists = [DAY_LIST.format(day=options.weekday)] if options.weekday else \
            [DAY_LIST.format(day=day) for day in WEEKDAYS]
        if options.finished:
            lists.append(COMPLETED_LIST)
        seen: set[str] = set()
        for path in lists:
            answer = session.get_json(api + path, site + "/")
            for group in answer.get("data", []):
                for cards in group.get("cardGroups", []):
                    for card in cards.get("cards", []):
                        content = card["content"]
                        stub = TitleStub(str(content["id"]), content["title"], bool(content.get("adult")))
                        if stub.source_id not in seen:
                            seen.add(stub.source_id)
                            yield stub

    @classmethod
    def read(cls, session: Session, stub: TitleStub, options: CollectOptions) -> TitleRecord:
        site, api = cls.hosts(options)
        content = session.get_json(api + CONTENT.format(id=stub.source_id), site + "/").get("data", {})
        if stub.adult or content.get("adult"):
            raise SkipTitle("adult title (needs a login)")
        minimum = cls.default_min_episodes if options.min_episodes is None else options.min_episodes
        episodes, offset, total = [], 0, None
        while total is None or offset < total:
            page = session.get_json(api + EPISODES.format(id=stub.source_id, offset=offset, limit=PAGE_SIZE),
                                    site + "/").get("data", {})
            total = page.get("meta", {}).get("pagination", {}).get("totalCount", 0)
            if offset == 0 and total < minimum:
                raise SkipTitle(f"fewer than {minimum} episodes")
            batch = page.get("episodes", [])
            episodes += batch
            if not batch:
                break
            offset += len(batch)
        authors = content.get("authors", [])
        illustrators = [a["name"] for a in authors if a.get("type") in STYLE_AUTHOR_TYPES]
        author = (illustrators or [a["name"] for a in authors if a.get("type") == "AUTHOR"] or [None])[0]
        genres = tuple(k.lstrip("#") for k in content.get("seoKeywords", []) if k.strip("#"))
        slug = content.get("seoId", stub.source_id)
        record = TitleRecord("kakao", stub.source_id, content.get("title", stub.name),
                             site + CONTENT_PAGE.format(slug=slug, id=stub.source_id), author, genres,
                             info={"synopsis": content.get("synopsis", ""), "episodes": str(total)})
        record.images = [ImageLink(e["asset"]["thumbnailImage"], int(e["no"])) for e in episodes
                         if e.get("asset", {}).get("thumbnailImage") and not e.get("adult")]
        return record
