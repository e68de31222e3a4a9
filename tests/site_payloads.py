"""Trimmed copies of the real sites' responses, as templates the stand-in sites fill in.

Each template keeps the real field names, nesting and value forms of a response recorded by a
public client, with the values of one title swapped for the stand-in's; fields the collectors
never read are trimmed. The source of each is named beside it. Nothing here is written from
the collectors' own assumptions: where a collector reads a field, the field's place and form
come from these recordings.
"""

from __future__ import annotations

# --- Naver Webtoon ---------------------------------------------------------------------------

def naver_weekday_item(title_id: int, name: str, author: str, adult: bool) -> dict:
    # GET /api/webtoon/titlelist/weekday?order=user -> {"titleListMap": {"MONDAY": [item, ...]}}
    # Item fields as public clients read them: titleId, titleName, author, adult, starScore,
    # viewCount (a Kotlin client in the code index filters on `adult`; a BigQuery schema note
    # in the code index lists titleId, titleName, author, viewCount, starScore).
    return {"titleId": title_id, "titleName": name, "author": author, "adult": adult, "up": False,
            "rest": False, "bm": False, "starScore": 9.81, "viewCount": 0}


def naver_info(title_id: int, name: str, thumbnail: str, artists: list[tuple[str, str]] | None,
               tags: list[tuple[str, str]], age: str, genre_types: list[str], finished: bool = False) -> dict:
    """GET /api/article/list/info?titleId=N. Trimmed from the saved response of titleId 805671
    ("공작저의 붉은 밤") in a public Python client in the code index, with the field set of
    Webtoon-Studio/webtoon `src/platform/naver/client/info.rs`: there is no top-level "adult"; a
    boolean "finished" (false in the saved response) beside "rest";
    the rating is `age.type`; genres are the `curationTagList` entries whose `curationType`
    starts with GENRE_; `communityArtists` may be absent. `artists`: (name, artistType);
    `tags`: (tagName, curationType)."""
    info = {
        "titleId": title_id,
        "thumbnailUrl": thumbnail,
        "sharedThumbnailUrl": thumbnail,
        "titleName": name,
        "webtoonLevelCode": "WEBTOON",
        "thumbnailBadgeList": [],
        "age": {"type": age, "description": {"RATE_18": "18세 이용가"}.get(age, "15세 이용가")},
        "publishDescription": "화요웹툰",
        "synopsis": f"\"{name}\" \n다짜고짜 찾아와 결혼을 하자는 뱀파이어!",
        "favoriteCount": 14225,
        "favorite": False,
        "firstArticle": {"no": 1, "subtitle": "1화", "charge": False},
        "publishDayOfWeekList": ["TUESDAY"],
        "rest": False,
        "finished": finished,
        "dailyPass": False,
        "curationTagList": [{"id": 805671 + i, "tagName": tag, "urlPath": _naver_tag_path(kind, i),
                             "curationType": kind} for i, (tag, kind) in enumerate(tags)],
        "adBannerList": [],
        "chargeBestChallenge": False,
        "contentsNo": 495212,
        "new": False,
        "gfpAdCustomParam": {"titleId": title_id, "titleName": name, "webtoonLevelCode": "WEBTOON",
                             "adultYn": "Y" if age == "RATE_18" else "N", "genreTypes": genre_types,
                             "rankGenreTypes": genre_types, "tags": [t for t, _ in tags],
                             "displayAuthor": " / ".join(a for a, _ in artists or [])},
    }
    if artists is not None:
        info["communityArtists"] = [{"artistId": 354675 + i, "name": a, "artistTypeList": [kind],
                                     "profileImageUrl": None, "profilePageUrl": None}
                                    for i, (a, kind) in enumerate(artists)]
    return info


def _naver_tag_path(kind: str, i: int) -> str:
    if kind.startswith("GENRE_"):
        return f"/webtoon?tab=genre&genre={kind.removeprefix('GENRE_')}"
    if kind == "NOVEL_ORIGIN":
        return "/curation/list?type=NOVEL_ORIGIN"
    return f"/curation/list?type=CUSTOM_TAG&id={i}"


def naver_article_list(title_id: int, total: int, page: int, per_page: int, thumbnails: list[tuple[int, str]]
                       ) -> dict:
    """GET /api/article/list?titleId=N&page=P. Field set of Webtoon-Studio/webtoon
    `src/platform/naver/client/episodes.rs` (Root, Article, PageInfo); "sort": "DESC", newest
    first, as the saved response of titleId 805671. `thumbnails` come in that order."""
    return {
        "titleId": title_id,
        "webtoonLevelCode": "WEBTOON",
        "totalCount": total,
        "chargeFolderArticleList": [],
        "articleList": [{"no": no, "thumbnailUrl": url, "subtitle": f"{no}화", "starScore": 9.9, "bgm": False,
                         "up": False, "charge": False, "serviceDateDescription": "24.12.01", "volumeNo": no,
                         "hasReadLog": False, "recentlyReadLog": False, "thumbnailClock": False,
                         "thumbnailLock": False} for no, url in thumbnails],
        "pageInfo": {"totalRows": total, "pageSize": per_page, "page": page,
                     "totalPages": -(-total // per_page)},
        "sort": "DESC",
    }


# --- Kakao Webtoon ---------------------------------------------------------------------------

def kakao_card(content_id: int, title: str, seo_id: str, adult: bool, authors: list[tuple[str, str]],
               keywords: list[str], image: str) -> dict:
    """One card of GET /section/v2/timetables/days?placement=timetable_mon ->
    {"data": [{"cardGroups": [{"cards": [card, ...]}]}]}. Fields of HyeokjaeLee/korea-webtoon-api
    `src/modules/kakao/functions/kakaoApi.ts` (KakaoWebtoonCard): id, seoId, title, badges,
    adult, authors[{name, type}], featuredCharacterImageA/B and backgroundImage (URLs without
    an extension); seoKeywords ride on the card."""
    return {"content": {"id": content_id, "seoId": seo_id, "title": title, "adult": adult,
                        "badges": [{"title": "FREE_PUBLISHING", "type": "INFO"}],
                        "authors": [{"name": n, "type": t} for n, t in authors],
                        "seoKeywords": keywords, "featuredCharacterImageA": image,
                        "featuredCharacterImageB": image, "backgroundImage": image}}


def kakao_decorator(content_id: int, title: str, seo_id: str, adult: bool, authors: list[tuple[str, str]],
                    genre: str) -> dict:
    """GET /decorator/v2/decorator/contents/N: one `genre` string, no seoKeywords (the issue's
    saved payload); authors as on the card."""
    return {"data": {"id": content_id, "seoId": seo_id, "title": title, "adult": adult, "genre": genre,
                     "authors": [{"name": n, "type": t} for n, t in authors],
                     "synopsis": f"{title}: 바다가 보이는 마을의 이야기."}}


def kakao_episodes(episodes: list[dict], total: int, last: bool) -> dict:
    """GET /episode/v2/views/content-home/contents/N/episodes?sort=NO&offset=O&limit=L.
    ilotoki0804/WebtoonScraper `WebtoonScraper/scrapers/_11_kakao_webtoon.py` reads
    `data.episodes[].{id, seoId, no, title, readable, adult}` and `meta.pagination.last`: the
    pagination sits at the top level, beside `data`. `asset.thumbnailImage` has no extension."""
    return {"data": {"episodes": episodes}, "meta": {"pagination": {"totalCount": total, "last": last}}}


def kakao_episode(no: int, seo_id: str, thumbnail: str | None, adult: bool = False) -> dict:
    episode = {"id": 100000 + no, "no": no, "seoId": f"{seo_id}-{no:03d}", "title": f"{no}화",
               "adult": adult, "readable": True, "useType": "FREE"}
    if thumbnail is not None:
        episode["asset"] = {"thumbnailImage": thumbnail}
    return episode


# --- MyAnimeList -----------------------------------------------------------------------------

def mal_sidebar_row(label: str, links: list[str], none_found: bool = False) -> str:
    """One row of the anime page's left sidebar, as jikan-me/jikan
    `src/Parser/Anime/AnimeParser.php` reads it: `//span[text()="Genres:"]` (or the singular
    "Genre:" for one entry) in a `div.spaceit_pad`, followed by links; "Studios: None found,
    <a>add some</a>" when there is no studio."""
    if none_found:
        inner = 'None found, <a href="/dbchanges.php?aid=1&amp;t=addproducers">add some</a>'
    else:
        inner = ", ".join(f'<a href="/anime/genre/{i}/{x}" title="{x}">{x}</a>' for i, x in enumerate(links))
    return f'<div class="spaceit_pad">\n  <span class="dark_text">{label}:</span>\n  {inner}\n</div>'
