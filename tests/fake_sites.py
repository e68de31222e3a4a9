"""A local stand-in for Naver Webtoon, Kakao Webtoon and MyAnimeList on 127.0.0.1, with faults on purpose.

One threaded HTTP server answers all three sites' paths (their paths do not clash). It
logs every request with its headers, so tests can see what the collectors sent.

Faults: an adult title, a title too short, a list endpoint that answers 429 once, an info
endpoint that answers 500 once, an image that hangs once, a corrupt episode thumbnail, a
title whose info always answers 503, images that robots.txt forbids, a MAL page whose
markup changed, a poster that loads only when scrolled into view, and ONA / Unknown types.
Pagination: Naver's episode lists come 2 to a page, Kakao's at most 2 per request.
"""

from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.imagegen import style_image

ROBOTS = "User-agent: *\nDisallow: /private/\n"

# Naver: titleId -> (name, painter, writer, genres, episodes, adult, weekday)
NAVER = {
    "101": ("Sky Garden", "Kim Painter", "Lee Writer", ("FANTASY", "DRAMA"), 4, False, "MONDAY"),
    "102": ("Night Shift", "Adult Artist", "Adult Artist", ("THRILL",), 4, True, "MONDAY"),
    "103": ("Short One", "Park Brush", "Park Brush", ("DAILY",), 1, False, "MONDAY"),
    "104": ("Flaky Title", "Choi Ink", "Choi Ink", ("COMIC",), 3, False, "TUESDAY"),
    "105": ("Broken Thumb", "Jung Line", "Jung Line", ("ACTION",), 3, False, "TUESDAY"),
    "106": ("Down Title", "Han Sketch", "Han Sketch", ("SPORTS",), 3, False, "TUESDAY"),
    "107": ("Private Art", "Yoon Paint", "Yoon Paint", ("PURE",), 2, False, "WEDNESDAY"),
}
NAVER_FINISHED = {"108": ("Done Deal", "Kang Pen", "Kang Pen", ("HISTORICAL",), 2, False, None)}

# Kakao: id -> (title, [(name, type)], keywords, episodes, adult, day)
KAKAO = {
    "2001": ("Blue Harbor", [("Writer Kim", "AUTHOR"), ("Drawer Lee", "ILLUSTRATOR")], ["#romance", "#drama"],
             3, False, "mon"),
    "2002": ("Red Room", [("Someone", "AUTHOR")], ["#thriller"], 3, True, "mon"),
    "2003": ("Green Field", [("Solo Artist", "AUTHOR")], ["#daily"], 2, False, "tue"),
}

# MAL: id -> dict of what the anime page shows
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
}


def png(author: int, index: int) -> bytes:
    buffer = io.BytesIO()
    style_image(author, index, 40).save(buffer, "PNG")
    return buffer.getvalue()


class FakeSites:
    def __init__(self):
        self.log: list[dict] = []
        self.flaky_left = {"/api/article/list?titleId=104&page=1": (1, 429),
                           "/decorator/v2/decorator/contents/2003": (1, 500)}
        self.hang_left = {"/cdn/kakao/2001/2.png": 1}
        self.hang_seconds = 4.0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeSites:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def requests(self, prefix: str) -> list[dict]:
        return [r for r in self.log if r["path"].startswith(prefix)]

    # --- routing -----------------------------------------------------------------------

    def route(self, path: str, query: dict[str, list[str]], headers: dict) -> tuple[int, str, bytes]:
        full = path + ("?" + "&".join(f"{k}={v[0]}" for k, v in query.items()) if query else "")
        if self.flaky_left.get(full, (0, 0))[0] > 0:
            left, status = self.flaky_left[full]
            self.flaky_left[full] = (left - 1, status)
            return status, "application/json", b'{"error": "try again"}'
        if path == "/robots.txt":
            return 200, "text/plain", ROBOTS.encode()
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
        index = int(parts[3].split(".")[0])
        if parts[1] == "naver" and parts[2] == "105" and index == 2:
            return 200, "image/png", b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 10
        return 200, "image/png", png(int(parts[2]) % 7, index)

    def naver(self, path: str, query) -> tuple[int, str, bytes]:
        def title_json(tid, entry):
            return {"titleId": int(tid), "titleName": entry[0], "author": entry[2], "adult": entry[5]}

        if path == "/api/webtoon/titlelist/weekday":
            days: dict[str, list] = {}
            for tid, entry in NAVER.items():
                days.setdefault(entry[6], []).append(title_json(tid, entry))
            return self.json({"titleListMap": days})
        if path == "/api/webtoon/titlelist/finished":
            return self.json({"titleList": [title_json(t, e) for t, e in NAVER_FINISHED.items()],
                              "pageInfo": {"totalPages": 1}})
        tid = query.get("titleId", [""])[0]
        entry = NAVER.get(tid) or NAVER_FINISHED.get(tid)
        if entry is None:
            return 404, "application/json", b"{}"
        if path == "/api/article/list/info":
            if tid == "106":
                return 503, "application/json", b'{"error": "maintenance"}'
            artists = [{"name": entry[2], "artistTypeList": ["ARTIST_WRITER"]},
                       {"name": entry[1], "artistTypeList": ["ARTIST_PAINTER"]}]
            return self.json({"titleId": int(tid), "titleName": entry[0], "adult": entry[5],
                              "synopsis": f"About {entry[0]}",
                              "thumbnailUrl": f"{self.base}/cdn/naver/{tid}/0.png",
                              "communityArtists": artists,
                              "curationTagList": [{"tagName": g, "curationType": "GENRE"} for g in entry[3]]})
        if path == "/api/article/list":
            page, per_page, total = int(query.get("page", ["1"])[0]), 2, entry[4]
            folder = "private" if tid == "107" else "cdn"
            numbers = range((page - 1) * per_page + 1, min(page * per_page, total) + 1)
            return self.json({"titleId": int(tid), "totalCount": total,
                              "pageInfo": {"page": page, "totalPages": -(-total // per_page)},
                              "articleList": [{"no": n, "subtitle": f"Episode {n}",
                                               "thumbnailUrl": f"{self.base}/{folder}/naver/{tid}/{n}.png"}
                                              for n in numbers]})
        return 404, "application/json", b"{}"

    def kakao(self, path: str, query) -> tuple[int, str, bytes]:
        if path == "/section/v2/timetables/days":
            day = query.get("placement", [""])[0].replace("timetable_", "")
            cards = [{"content": {"id": int(cid), "title": e[0], "adult": e[4]}}
                     for cid, e in KAKAO.items() if e[5] == day]
            return self.json({"data": [{"cardGroups": [{"cards": cards}]}]})
        cid = path.split("/contents/")[1].split("/")[0]
        entry = KAKAO.get(cid)
        if entry is None:
            return 404, "application/json", b"{}"
        if path.startswith("/decorator/"):
            return self.json({"data": {"id": int(cid), "title": entry[0], "adult": entry[4],
                                       "authors": [{"name": n, "type": t} for n, t in entry[1]],
                                       "seoKeywords": entry[2], "synopsis": f"About {entry[0]}",
                                       "seoId": entry[0].lower().replace(" ", "-")}})
        offset, limit = int(query["offset"][0]), min(int(query["limit"][0]), 2)  # the server's page cap
        numbers = range(offset + 1, min(offset + limit, entry[3]) + 1)
        return self.json({"data": {"episodes": [{"no": n, "asset": {
            "thumbnailImage": f"{self.base}/cdn/kakao/{cid}/{n}.png"}} for n in numbers],
            "meta": {"pagination": {"totalCount": entry[3]}}}})

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
        poster = f"{self.base}/cdn/mal/{aid}/0.png"

        def row(label, links):
            inner = ", ".join(f'<a href="/x">{x}</a>' for x in links)
            return f'<div class="spaceit_pad"><span class="dark_text">{label}:</span> {inner}</div>'

        head = f'<meta property="og:image" content="{poster}">' if anime["og"] else ""
        title = "" if anime.get("broken_markup") else \
            f'<h1 class="title-name h1_bold_none"><strong>{anime["title"]}</strong></h1>'
        pad = '<div class="spaceit_pad"><span class="dark_text">'
        sidebar = (f'{pad}Type:</span> <a href="/t">{anime["type"]}</a></div>'
                   + row("Studios", anime["studios"]) + row("Genres", anime["genres"])
                   + row("Themes", anime["themes"]) + row("Demographic", anime["demographic"])
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

    def _handler(self):
        sites = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                parts = urlsplit(self.path)
                headers = dict(self.headers)
                if sites.hang_left.get(parts.path, 0) > 0:
                    sites.hang_left[parts.path] -= 1
                    time.sleep(sites.hang_seconds)  # the client gives up first
                sites.log.append({"path": self.path, "headers": headers})
                status, kind, body = sites.route(parts.path, parse_qs(parts.query), headers)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler
