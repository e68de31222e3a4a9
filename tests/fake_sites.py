"""A local stand-in for Naver Webtoon, Kakao Webtoon and MyAnimeList on 127.0.0.1, with faults on purpose.

One threaded HTTP server answers all three sites' pages and APIs (their paths do not clash);
a second one, on another port (another host to the collectors), is their image CDN. Both log
every request with its headers, host kind and arrival time, so tests can see what the
collectors sent and when. Either can answer with a latency drawn per request.

Every JSON payload and sidebar row is built from a trimmed real response (tests/site_payloads.py
names the source of each), so the collectors are tested against the sites' real field names,
nesting and value forms, not against their own assumptions.

Faults: an adult title (Naver: `age.type` RATE_18), a title too short, a list endpoint that
answers 429 once, an info endpoint that answers 500 once, an image that hangs once, a corrupt
episode thumbnail, a title whose info always answers 503, images that robots.txt forbids, a
Naver title without communityArtists and one without genre tags, a Kakao episode without an
asset, Kakao thumbnails that 404 without `.webp`, a MAL page whose markup changed, a poster
that loads only when scrolled into view, ONA / Unknown types, singular sidebar labels and a
"Studios: None found" row. Pagination: Naver's episode lists come 2 to a page (newest first,
as the real API), Kakao's at most 2 per request with `meta.pagination.last` at the top level.
A title in the finished table answers `finished: true` and leaves the weekday list.
"""

from __future__ import annotations

import io
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests import site_payloads as real
from tests.imagegen import style_image

ROBOTS = "User-agent: *\nDisallow: /private/\n"

# Naver: titleId -> (name, painter, writer, curation tags (tagName, curationType), episodes, age, weekday)
# A painter of None: the info has no communityArtists.
NAVER = {
    "101": ("Sky Garden", "Kim Painter", "Lee Writer",
            [("판타지", "GENRE_FANTASY"), ("명작", "CUSTOM_TAG"), ("드라마", "GENRE_DRAMA")], 4, "RATE_15",
            "MONDAY"),
    "102": ("Night Shift", "Adult Artist", "Adult Artist", [("스릴러", "GENRE_THRILL")], 4, "RATE_18",
            "MONDAY"),
    "103": ("Short One", "Park Brush", "Park Brush", [("일상", "GENRE_DAILY")], 1, "RATE_12", "MONDAY"),
    "104": ("Flaky Title", "Choi Ink", "Choi Ink", [("개그", "GENRE_COMIC")], 3, "RATE_12", "TUESDAY"),
    "105": ("Broken Thumb", "Jung Line", "Jung Line", [("액션", "GENRE_ACTION")], 3, "RATE_15", "TUESDAY"),
    "106": ("Down Title", "Han Sketch", "Han Sketch", [("스포츠", "GENRE_SPORTS")], 3, "RATE_12", "TUESDAY"),
    "107": ("Private Art", "Yoon Paint", "Yoon Paint", [("로맨스", "GENRE_PURE")], 2, "RATE_12", "WEDNESDAY"),
    "109": ("No Artists", None, None, [("일상", "GENRE_DAILY")], 2, "RATE_12", "WEDNESDAY"),
    "110": ("Tags Only", "Seo Pen", "Seo Pen", [("힐링", "CUSTOM_TAG"), ("소설원작", "NOVEL_ORIGIN")], 2,
            "RATE_12", "WEDNESDAY"),
}
NAVER_FINISHED = {"108": ("Done Deal", "Kang Pen", "Kang Pen", [("무협/사극", "GENRE_HISTORICAL")], 2,
                          "RATE_15", None)}

# Kakao: id -> (title, [(name, type)], card seoKeywords, decorator genre, episodes, adult, day,
#               episode numbers without an asset)
KAKAO = {
    "2001": ("Blue Harbor",
             [("Writer Kim", "AUTHOR"), ("Drawer Lee", "ILLUSTRATOR"), ("Harbor Media", "PUBLISHER")],
             ["#로맨스", "#드라마"], "로맨스", 4, False, "mon", (4,)),
    "2002": ("Red Room", [("Someone", "AUTHOR")], ["#스릴러"], "스릴러", 3, True, "mon", ()),
    "2003": ("Green Field", [("Solo Artist", "AUTHOR"), ("Novel Writer", "ORIGINAL_STORY")], ["#일상"],
             "일상", 2, False, "tue", ()),
}

# MAL: id -> dict of what the anime page shows. One genre, theme or demographic gets the
# singular label ("Genre:"), as the real page writes it; studios None: "None found, add some".
MAL = {
    "1": {"title": "Star Lancer", "type": "TV", "studios": ["Studio Orbit"], "genres": ["Action", "Sci-Fi"],
          "themes": ["Space"], "demographic": ["Seinen"], "score": "8.71", "members": "1,234,567",
          "synopsis": "A pilot crosses the stars.", "og": True},
    "2": {"title": "Quiet Tea", "type": "Movie", "studios": ["Leaf Works"], "genres": ["Slice of Life"],
          "themes": [], "demographic": [], "score": "7.10", "members": "45,678",
          "synopsis": "No synopsis information has been added to this title.", "og": False},
    "3": {"title": "Web Only", "type": "ONA", "studios": ["Net Anim"], "genres": ["Comedy"], "themes": [],
          "demographic": [], "score": "6.5", "members": "999", "synopsis": "Online shorts.", "og": True},
    "4": {"title": "Mystery Box", "type": "Unknown", "studios": [], "genres": ["Mystery"], "themes": [],
          "demographic": [], "score": "N/A", "members": "12", "synopsis": "?", "og": True},
    "5": {"title": "Changed Layout", "type": "TV", "studios": ["Old Studio"], "genres": ["Drama"],
          "themes": [], "demographic": [], "score": "7.0", "members": "100", "synopsis": "x", "og": True,
          "broken_markup": True},
    "6": {"title": "Deep Scroll", "type": "TV", "studios": ["Scroll House"], "genres": ["Adventure"],
          "themes": [], "demographic": ["Shounen"], "score": "8.0", "members": "5,000", "synopsis": "Down.",
          "og": False, "scroll_only": True},
    "7": {"title": "Indie Short", "type": "Movie", "studios": None, "genres": ["Drama", "Romance"],
          "themes": ["School"], "demographic": [], "score": "6.9", "members": "2,345", "synopsis": "Small.",
          "og": True, "status": "Currently Airing"},
}


def picture(author: int, index: int, kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    style_image(author, index, 40).save(buffer, kind)
    return buffer.getvalue()


def _seo(title: str) -> str:
    return title.lower().replace(" ", "-")


class FakeSites:
    """`naver`, `naver_finished`: title tables like NAVER (default: the module's, which tests may
    change between runs); latencies: (low, high) seconds drawn per request."""

    def __init__(self, naver: dict | None = None, naver_finished: dict | None = None,
                 naver_page_size: int = 2, site_latency: tuple[float, float] = (0.0, 0.0),
                 cdn_latency: tuple[float, float] = (0.0, 0.0)):
        self.naver_titles = NAVER if naver is None else naver
        self.naver_finished = NAVER_FINISHED if naver_finished is None else naver_finished
        self.naver_page_size = naver_page_size
        self.latency = {"site": site_latency, "cdn": cdn_latency}
        self.log: list[dict] = []
        self.flaky_left = {"/api/article/list?titleId=104&page=1": (1, 429),
                           "/decorator/v2/decorator/contents/2003": (1, 500)}
        self.retry_after: dict[str, str] = {}  # path -> Retry-After sent with its flaky answers
        self.robots = {"site": ROBOTS, "cdn": ROBOTS}
        self.hang_left = {"/cdn/kakao/2001/2.webp": 1}
        self.hang_seconds = 4.0
        self.rng = random.Random(0)
        self.servers = {kind: ThreadingHTTPServer(("127.0.0.1", 0), self._handler(kind))
                        for kind in ("site", "cdn")}
        self.base = f"http://127.0.0.1:{self.servers['site'].server_address[1]}"
        self.cdn = f"http://127.0.0.1:{self.servers['cdn'].server_address[1]}"
        self.threads = [threading.Thread(target=server.serve_forever, daemon=True)
                        for server in self.servers.values()]

    def __enter__(self) -> FakeSites:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        for server in self.servers.values():
            server.shutdown()
            server.server_close()

    def requests(self, prefix: str) -> list[dict]:
        return [r for r in self.log if r["path"].startswith(prefix)]

    # --- routing -----------------------------------------------------------------------

    def route(self, path: str, query: dict[str, list[str]], headers: dict, kind: str = "site"
              ) -> tuple[int, str, bytes]:
        full = path + ("?" + "&".join(f"{k}={v[0]}" for k, v in query.items()) if query else "")
        if self.flaky_left.get(full, (0, 0))[0] > 0:
            left, status = self.flaky_left[full]
            self.flaky_left[full] = (left - 1, status)
            return status, "application/json", b'{"error": "try again"}'
        if path == "/robots.txt":
            return 200, "text/plain", self.robots[kind].encode()
        if path == "/":
            return 200, "text/html", b"<!doctype html><title>Home</title><div id=root></div>" \
                b"<script>document.getElementById('root').textContent = 'rendered by script';</script>"
        if path.startswith("/api/"):
            return self.naver(path, query)
        if path.startswith(("/section/", "/decorator/", "/episode/")):
            return self.kakao(path, query)
        if path in ("/topanime.php",) or path.startswith("/anime/"):
            return self.mal(path, query)
        if path.startswith(("/cdn/", "/private/")):
            return self.image(path, headers)
        return 404, "text/plain", b"not found"

    def image(self, path: str, headers: dict) -> tuple[int, str, bytes]:
        parts = path.strip("/").split("/")  # cdn|private, site, id, file
        if parts[1] == "naver" and headers.get("Referer", "").rstrip("/") != self.base:
            return 403, "text/plain", b"referer required"
        name = parts[3]
        if parts[1] == "kakao":
            if not name.endswith(".webp"):  # the real host: 404 for the bare asset URL
                return 404, "text/plain", b"not found"
            return 200, "image/webp", picture(int(parts[2]) % 7, int(name.split(".")[0]), "WEBP")
        index = int(name.split(".")[0])
        if parts[1] == "naver" and parts[2] == "105" and index == 2:
            return 200, "image/png", b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 10
        return 200, "image/png", picture(int(parts[2]) % 7, index)

    def naver(self, path: str, query) -> tuple[int, str, bytes]:
        if path == "/api/webtoon/titlelist/weekday":
            days: dict[str, list] = {}
            for tid, entry in self.naver_titles.items():
                item = real.naver_weekday_item(int(tid), entry[0], entry[2] or "", False)
                days.setdefault(entry[6], []).append(item)
            return self.json({"titleListMap": days})
        if path == "/api/webtoon/titlelist/finished":
            return self.json({"titleList": [real.naver_weekday_item(int(t), e[0], e[2], False)
                                            for t, e in self.naver_finished.items()],
                              "pageInfo": {"totalPages": 1}})
        tid = query.get("titleId", [""])[0]
        entry = self.naver_titles.get(tid) or self.naver_finished.get(tid)
        if entry is None:
            return 404, "application/json", b"{}"
        if path == "/api/article/list/info":
            if tid == "106":
                return 503, "application/json", b'{"error": "maintenance"}'
            artists = (None if entry[1] is None
                       else [(entry[2], "ARTIST_WRITER"), (entry[1], "ARTIST_PAINTER")])
            genre_types = [kind.removeprefix("GENRE_") for _, kind in entry[3] if kind.startswith("GENRE_")]
            poster = f"{self.cdn}/cdn/naver/{tid}/0.png"
            return self.json(real.naver_info(int(tid), entry[0], poster, artists, entry[3], entry[5],
                                             genre_types or ["COMIC"], tid in self.naver_finished))
        if path == "/api/article/list":
            page, per_page, total = int(query.get("page", ["1"])[0]), self.naver_page_size, entry[4]
            folder = "private" if tid == "107" else "cdn"
            # Newest first.
            numbers = range(total - (page - 1) * per_page, max(total - page * per_page, 0), -1)
            return self.json(real.naver_article_list(int(tid), total, page, per_page,
                                                     [(n, f"{self.cdn}/{folder}/naver/{tid}/{n}.png")
                                                      for n in numbers]))
        return 404, "application/json", b"{}"

    def kakao(self, path: str, query) -> tuple[int, str, bytes]:
        if path == "/section/v2/timetables/days":
            day = query.get("placement", [""])[0].replace("timetable_", "")
            cards = [real.kakao_card(int(cid), e[0], _seo(e[0]), e[5], e[1], e[2],
                                     f"{self.cdn}/cdn/kakao/{cid}/0")
                     for cid, e in KAKAO.items() if e[6] == day]
            return self.json({"data": [{"cardGroups": [{"cards": cards}]}]})
        cid = path.split("/contents/")[1].split("/")[0]
        entry = KAKAO.get(cid)
        if entry is None:
            return 404, "application/json", b"{}"
        if path.startswith("/decorator/"):
            return self.json(real.kakao_decorator(int(cid), entry[0], _seo(entry[0]), entry[5], entry[1],
                                                  entry[3]))
        offset, limit = int(query["offset"][0]), min(int(query["limit"][0]), 2)  # the server's page cap
        numbers = range(offset + 1, min(offset + limit, entry[4]) + 1)
        episodes = [real.kakao_episode(n, _seo(entry[0]), None if n in entry[7] else
                                       f"{self.cdn}/cdn/kakao/{cid}/{n}") for n in numbers]
        return self.json(real.kakao_episodes(episodes, entry[4], last=offset + limit >= entry[4]))

    def mal(self, path: str, query) -> tuple[int, str, bytes]:
        if path == "/topanime.php":
            if query.get("limit", ["0"])[0] != "0":
                return 200, "text/html", b"<html><table></table></html>"
            rows = "".join(f'<tr class="ranking-list"><td><h3 class="anime_ranking_h3"><a href="{self.base}'
                           f'/anime/{aid}/{a["title"].replace(" ", "_")}">{a["title"]}</a></h3></td></tr>'
                           for aid, a in MAL.items())
            return 200, "text/html", f"<html><body><table>{rows}</table></body></html>".encode()
        aid = path.split("/")[2]
        anime = MAL.get(aid)
        if anime is None:
            return 404, "text/html", b"<html>404</html>"
        poster = f"{self.cdn}/cdn/mal/{aid}/0.png"

        def row(plural: str, singular: str, links) -> str:
            if links is None:
                return real.mal_sidebar_row(plural, [], none_found=True)
            if not links:
                return ""  # the page leaves out an empty list
            return real.mal_sidebar_row(singular if len(links) == 1 else plural, links)

        head = f'<meta property="og:image" content="{poster}">' if anime["og"] else ""
        title = "" if anime.get("broken_markup") else \
            f'<h1 class="title-name h1_bold_none"><strong>{anime["title"]}</strong></h1>'
        pad = '<div class="spaceit_pad"><span class="dark_text">'
        sidebar = (f'{pad}Type:</span> <a href="/t">{anime["type"]}</a></div>'
                   + f'{pad}Status:</span> {anime.get("status", "Finished Airing")}</div>'
                   + row("Studios", "Studios", anime["studios"]) + row("Genres", "Genre", anime["genres"])
                   + row("Themes", "Theme", anime["themes"])
                   + row("Demographics", "Demographic", anime["demographic"])
                   + f'{pad}Members:</span> {anime["members"]}</div>')
        image = f'<img class="lazyload" data-src="{poster}" alt="">'
        if anime.get("scroll_only"):
            # The URL lives only in the page's script, which sets src once the image is in view.
            image = ('<div style="height:4000px"></div><img class="lazyload" alt="">'
                     f'<script>const poster = "{poster}";'
                     "new IntersectionObserver((entries, seen) => entries.forEach(e => {"
                     "if (e.isIntersecting) { e.target.src = poster; seen.disconnect(); }}))"
                     ".observe(document.querySelector('img.lazyload'));</script>")
        body = (f'<html><head>{head}</head><body>{title}<div class="leftside">{image}{sidebar}</div>'
                f'<span itemprop="ratingValue">{anime["score"]}</span>'
                f'<p itemprop="description">{anime["synopsis"]}</p></body></html>')
        return 200, "text/html", body.encode()

    @staticmethod
    def json(document: dict) -> tuple[int, str, bytes]:
        return 200, "application/json", json.dumps(document).encode()

    def _handler(self, host: str):
        sites = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                parts = urlsplit(self.path)
                headers = dict(self.headers)
                sites.log.append({"path": self.path, "headers": headers, "host": host,
                                  "time": time.monotonic()})
                if sites.hang_left.get(parts.path, 0) > 0:
                    sites.hang_left[parts.path] -= 1
                    time.sleep(sites.hang_seconds)  # the client gives up first
                low, high = sites.latency[host]
                if high > 0:
                    time.sleep(sites.rng.uniform(low, high))
                status, kind, body = sites.route(parts.path, parse_qs(parts.query), headers, host)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                if status >= 400 and parts.path in sites.retry_after:
                    self.send_header("Retry-After", sites.retry_after[parts.path])
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler
