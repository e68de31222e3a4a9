"""Kakao Webtoon (formerly Daum Webtoon): pages on webtoon.kakao.com, JSON from its gateway.

Evidence for the fields read (checked 2026-12-01):
- The episode list answers `{"data": {"episodes": [...]}, "meta": {"pagination": {...,
  "last": bool}}}`: the pagination sits at the top level, beside `data`.
  ilotoki0804/WebtoonScraper `WebtoonScraper/scrapers/_11_kakao_webtoon.py`
  (`json_data["meta"]["pagination"]["last"]`, `json_data["data"]["episodes"]`).
- `asset.thumbnailImage` is a URL without a file extension; the image host serves it with
  `.webp` appended. A public client in the code index builds
  `${episodeInfo.asset.thumbnailImage}.webp`; HyeokjaeLee/korea-webtoon-api
  `src/modules/kakao/functions/normalizeWebtoon.ts` appends extensions to the timetable's images.
- Timetable cards hold `content.{id, seoId, title, adult, authors[{name, type}], ...}`; the
  author types found in public clients are AUTHOR, ILLUSTRATOR, PUBLISHER and ORIGINAL_STORY
  (korea-webtoon-api `src/modules/kakao/functions/kakaoApi.ts`).
- The decorator payload `/decorator/v2/decorator/contents/{id}` carries one `genre` string and
  no `seoKeywords`; those come with the timetable card (or the content's `/profile`).
- No payload read here says whether a title has ended; the list it came from does
  (`timetable_completed` against the weekday timetables).
- Episodes come oldest first (`sort=NO`) by offset: an update asks from the offset of the
  episodes it already has, so new episodes cost one request.
"""

from __future__ import annotations

from collections.abc import Iterator

from collectors.fetching import Session
from collectors.records import ImageLink, TitleRecord
from collectors.settings import CollectOptions
from collectors.sites import WEEKDAYS, AdultTitle, SkipTitle, TitleStub
from collectors.store import FINISHED, ONGOING

SITE = "https://webtoon.kakao.com"
API = "https://gateway-kw.kakao.com"
DAY_LIST = "/section/v2/timetables/days?placement=timetable_{day}"
COMPLETED_LIST = "/section/v2/timetables/days?placement=timetable_completed"
CONTENT = "/decorator/v2/decorator/contents/{id}"
EPISODES = "/episode/v2/views/content-home/contents/{id}/episodes?sort=NO&offset={offset}&limit={limit}"
CONTENT_PAGE = "/content/{slug}/{id}"
PAGE_SIZE = 30
# authors[].type: the illustrator's hand is the style; the writer (AUTHOR) stands in when no
# illustrator is listed (one person who writes and draws); PUBLISHER and ORIGINAL_STORY never.
STYLE_AUTHOR_TYPES = ("ILLUSTRATOR",)
FALLBACK_AUTHOR_TYPES = ("AUTHOR",)
# The image host answers 404 for the bare asset URL.
THUMBNAIL_SUFFIX = ".webp"


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
                        keywords = tuple(k.strip().lstrip("#") for k in content.get("seoKeywords") or []
                                         if k.strip().lstrip("#"))
                        stub = TitleStub(str(content["id"]), content["title"], bool(content.get("adult")),
                                         keywords, finished=path == COMPLETED_LIST)
                        if stub.source_id not in seen:
                            seen.add(stub.source_id)
                            yield stub

    @classmethod
    def read(cls, session: Session, stub: TitleStub, options: CollectOptions,
             listed: int | None = None) -> TitleRecord:
        site, api = cls.hosts(options)
        content = session.get_json(api + CONTENT.format(id=stub.source_id), site + "/").get("data", {})
        if stub.adult or content.get("adult"):
            raise AdultTitle()
        minimum = cls.default_min_episodes if options.min_episodes is None else options.min_episodes
        first = offset = listed or 0  # oldest first: what the catalog holds is the list's head
        episodes, total, last = [], None, False
        while not last:
            url = api + EPISODES.format(id=stub.source_id, offset=offset, limit=PAGE_SIZE)
            answer = session.get_json(url, site + "/")
            pagination = answer.get("meta", {}).get("pagination", {})
            if total is None:
                total = pagination.get("totalCount")
                if total is not None and total < minimum:
                    raise SkipTitle(f"fewer than {minimum} episodes")
            batch = answer.get("data", {}).get("episodes", [])
            episodes += batch
            offset += len(batch)
            # `last` is the site's word; an empty page ends a list whose flag is missing.
            last = bool(pagination.get("last", not batch)) or not batch
        if total is None:
            total = first + len(episodes)
            if total < minimum:
                raise SkipTitle(f"fewer than {minimum} episodes")
        missing = []
        authors = content.get("authors", [])
        drawn = [a["name"] for a in authors if a.get("type") in STYLE_AUTHOR_TYPES]
        writers = [a["name"] for a in authors if a.get("type") in FALLBACK_AUTHOR_TYPES]
        author = (drawn or writers or [None])[0]
        if author is None:
            missing.append("no ILLUSTRATOR or AUTHOR in authors: no author")
        genre = content.get("genre")
        named = [genre] if isinstance(genre, str) and genre else []
        genres = tuple(dict.fromkeys(named + list(stub.keywords)))
        if not genres:
            missing.append("no genre in the decorator and no seoKeywords on the card: no genres")
        slug = content.get("seoId", stub.source_id)
        record = TitleRecord("kakao", stub.source_id, content.get("title", stub.name),
                             site + CONTENT_PAGE.format(slug=slug, id=stub.source_id), author, genres,
                             info={"synopsis": content.get("synopsis", ""), "episodes": str(total),
                                   "status": FINISHED if stub.finished else ONGOING, "adult": "0"},
                             missing=missing)
        no_asset = adult = 0
        for episode in episodes:
            image = (episode.get("asset") or {}).get("thumbnailImage")
            if episode.get("adult"):
                adult += 1
            elif not image:
                no_asset += 1
            else:
                record.images.append(ImageLink(_with_extension(image), int(episode["no"])))
        if no_asset:
            record.dropped["episode without asset.thumbnailImage"] = no_asset
        if adult:
            record.dropped["adult episode"] = adult
        return record


def _with_extension(url: str) -> str:
    last = url.rsplit("/", 1)[-1]
    return url if "." in last else url + THUMBNAIL_SUFFIX
