"""The web app under waitress on loopback: the API, its limits and bad input, and the page in Chromium."""

import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import closing
from pathlib import Path

import pytest
from PIL import Image

from inference.query import DEMO_BUNDLE
from inference.webapp import MAX_FORM_FIELD
from tests.conftest import REPO, run_cli

pytest.importorskip("flask")
pytest.importorskip("waitress")

SAMPLE = sorted((REPO / "examples" / "icons" / "tango" / "tango").glob("*.png"))[0]
SCREENSHOT = REPO / "docs" / "webapp.png"


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, tmp: Path, *args: str):
        self.port = free_port()
        self.tmp = tmp  # the server's TMPDIR: it must stay empty
        env = {**os.environ, "TMPDIR": str(tmp)}
        self.process = subprocess.Popen([sys.executable, "-m", "inference.serve", "--port", str(self.port),
                                         *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.get("/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        self.process.kill()
        raise RuntimeError(f"server did not start: {self.process.stdout.read()}")

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def get(self, path: str):
        return self.request("GET", path)

    def post_image(self, data: bytes, filename: str = "query.png", k: str | None = None,
                   field: str = "image", synopsis: str | None = None, explain: str | None = None):
        boundary = uuid.uuid4().hex
        parts = []
        for name, value in (("k", k), ("synopsis", synopsis), ("explain", explain)):
            if value is not None:
                parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                             f"{value}\r\n".encode())
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"'
                     f"\r\nContent-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        status, payload = self.request("POST", "/api/similar", body,
                                       {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        return status, json.loads(payload)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server-tmp")
    running = Server(tmp, "--max-upload-mb", "1")
    yield running
    running.stop()


def test_healthz_names_the_bundle(server):
    status, body = server.get("/healthz")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok" and health["titles"] == 27
    assert health["bundle"] == json.loads((DEMO_BUNDLE / "bundle.json").read_text())["name"]


def test_api_returns_what_the_cli_prints(server):
    status, answer = server.post_image(SAMPLE.read_bytes(), SAMPLE.name)
    assert status == 200 and answer["errors"] == []
    cli = json.loads(run_cli("inference.similar", str(SAMPLE), "--json", check_exit=0).stdout)
    api_result, cli_result = answer["results"][0], cli["results"][0]
    assert api_result["image"] == SAMPLE.name
    assert [t["title"] for t in api_result["titles"]] == [t["title"] for t in cli_result["titles"]]
    assert [round(t["score"], 5) for t in api_result["titles"]] == [round(t["score"], 5)
                                                                  for t in cli_result["titles"]]
    assert set(cli_result) == set(api_result) and len(api_result["titles"]) == 10
    for title in api_result["titles"]:
        status, body = server.get(title["thumbnail_url"])
        assert status == 200 and body.startswith(b"\x89PNG")


@pytest.mark.parametrize("k, titles", [("1", 1), ("100", 27), (" 7", 7)])
def test_k_within_range(server, k, titles):
    status, answer = server.post_image(SAMPLE.read_bytes(), k=k)
    assert status == 200 and len(answer["results"][0]["titles"]) == titles


@pytest.mark.parametrize("k", ["0", "101", "-3", "1.5", "ten", "1e2", "\u00b2", "\u0663", "9" * 5000])
def test_k_out_of_range_is_400(server, k):
    status, answer = server.post_image(SAMPLE.read_bytes(), k=k)
    assert status == 400 and "k must be an integer between 1 and 100" in answer["error"]


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def bad_uploads() -> dict[str, tuple[bytes, str]]:
    whole = SAMPLE.read_bytes()
    return {
        "text": (b"just some words, not a picture", "not an image"),
        "truncated": (whole[: len(whole) // 2], "truncated or corrupt"),
        "bomb": (png_bytes(Image.new("1", (9000, 5000))), "decompression bomb"),
        "empty": (b"", "empty file"),
    }


@pytest.mark.parametrize("case", ["text", "truncated", "bomb", "empty"])
def test_bad_images_are_400_with_one_line_and_the_server_goes_on(server, case):
    data, message = bad_uploads()[case]
    status, answer = server.post_image(data, f"{case}.png")
    assert status == 400 and message in answer["error"] and "\n" not in answer["error"]
    assert answer["error"].startswith(f"{case}.png: ")
    assert server.get("/healthz")[0] == 200


def test_missing_field_and_oversized_upload(server):
    status, answer = server.post_image(SAMPLE.read_bytes(), field="picture")
    assert status == 400 and "'image'" in answer["error"]
    noise = os.urandom(int(1.5 * 2**20))
    status, answer = server.post_image(noise)
    assert status == 413 and "1,048,576" in answer["error"]
    assert server.get("/healthz")[0] == 200


def _multipart(boundary: str, parts: list[bytes]) -> tuple[bytes, dict]:
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_form_limits_are_413_saying_what_was_too_large(server):
    boundary = uuid.uuid4().hex
    header = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
              f"X-Padding: {'p' * (MAX_FORM_FIELD + 1000)}\r\n\r\n").encode() + SAMPLE.read_bytes() + b"\r\n"
    many = [f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nx\r\n'.encode()
            for i in range(5000)]
    for parts in ([header], many):
        status, body = server.request("POST", "/api/similar", *_multipart(boundary, parts))
        answer = json.loads(body)
        assert status == 413 and "multipart form too large" in answer["error"], answer
        assert "over the limit" not in answer["error"]
    assert server.get("/healthz")[0] == 200


@pytest.mark.parametrize("path", [
    "/thumbs/../bundle.json", "/thumbs/%2e%2e/bundle.json", "/thumbs/%2e%2e%2fbundle.json",
    "/thumbs/..%2fbundle.json", "/thumbs/..%5cbundle.json", "/thumbs//etc/passwd", "/thumbs/%2fetc%2fpasswd",
    "/thumbs/../../../../etc/passwd", "/thumbs/%252e%252e/bundle.json", "/thumbs/", "/thumbs/nothing.png",
])
def test_paths_outside_the_thumbnails_are_404(server, path):
    status, body = server.get(path)
    assert status == 404
    assert b"root:" not in body and b"authors" not in body


def test_nothing_is_left_on_disk(server):
    server.post_image(os.urandom(600_000) + b"x", "big-noise.png")  # above werkzeug's spooling size
    server.post_image(bad_uploads()["bomb"][0], "bomb.png")
    assert list(server.tmp.iterdir()) == []


def test_page_uploads_and_shows_ten_titles_in_chromium(tmp_path):
    pytest.importorskip("selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from collectors.browser import open_browser

    running = Server(tmp_path)
    try:
        with closing(open_browser()) as browser:
            browser.get(f"http://127.0.0.1:{running.port}/")
            page = browser.page_source
            assert "cdn" not in page.lower() and "https://" not in page
            browser.find_element(By.ID, "image").send_keys(str(SAMPLE))
            WebDriverWait(browser, 30).until(
                lambda b: len(b.find_elements(By.CSS_SELECTOR, "#titles li")) == 10)
            WebDriverWait(browser, 10).until(lambda b: b.execute_script(
                "return [...document.querySelectorAll('#titles img')]"
                ".every(i => i.complete && i.naturalWidth > 0)"))
            assert len(browser.find_elements(By.CSS_SELECTOR, "#authors .bar")) >= 1
            assert "tango" in browser.find_element(By.ID, "titles").text
            # the style map toggle asks again with explain=1, then draws the map over the image
            browser.find_element(By.ID, "explain").click()
            WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "overlay").is_displayed())
            legend = browser.find_element(By.ID, "map-legend").text
            assert "one style" in legend or "mixed styles" in legend
            assert not browser.find_element(By.ID, "query").is_displayed()
            browser.find_element(By.ID, "explain").click()  # and hides it without asking
            assert browser.find_element(By.ID, "query").is_displayed()
            assert not browser.find_element(By.ID, "overlay").is_displayed()
            shot = tmp_path / "webapp.png"
            browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("STYLEFINDER_UPDATE_SCREENSHOTS"):
            shutil.copy(shot, SCREENSHOT)
    finally:
        running.stop()


def test_serve_with_a_bad_bundle_is_one_line(tmp_path):
    result = run_cli("inference.serve", "--bundle", str(tmp_path / "none"), "--port", str(free_port()),
                     check_exit=2)
    assert result.stderr == f"error: {tmp_path / 'none'}: no such bundle folder\n"


@pytest.mark.parametrize("flags, message", [
    (["--grace", "-1"], "--grace must be 0 or more, got -1"),
    (["--threads", "0"], "--threads must be positive, got 0"),
    (["--max-upload-mb", "0"], "--max-upload-mb must be positive, got 0"),
])
def test_serve_with_bad_numbers_is_one_line(flags, message):
    result = run_cli("inference.serve", "--port", str(free_port()), *flags, check_exit=2)
    assert result.stderr == f"error: {message}\n"


def _slow_upload(port: int, body: bytes, headers: dict, started: threading.Event, result: list) -> None:
    """A client that sends its upload in two halves a second apart: in flight across a signal."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.putrequest("POST", "/api/similar")
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            connection.putheader(name, value)
        connection.endheaders()
        connection.send(body[: len(body) // 2])
        started.set()
        time.sleep(1.0)
        connection.send(body[len(body) // 2:])
        response = connection.getresponse()
        result.append((response.status, json.loads(response.read())))
    finally:
        connection.close()


def test_sigterm_finishes_the_request_in_flight_refuses_new_connections_and_exits_0(tmp_path):
    running = Server(tmp_path, "--grace", "20")
    boundary = uuid.uuid4().hex
    body, headers = _multipart(boundary, [
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{SAMPLE.name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode() + SAMPLE.read_bytes() + b"\r\n"])
    started, result = threading.Event(), []
    client = threading.Thread(target=_slow_upload, args=(running.port, body, headers, started, result))
    try:
        client.start()
        assert started.wait(30)
        time.sleep(0.2)  # the first half has reached the server
        running.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", running.port), timeout=5).close()
        client.join(30)
        assert result and result[0][0] == 200 and result[0][1]["results"][0]["titles"]
        assert running.process.wait(timeout=30) == 0
        log = running.process.stdout.read()
        assert "SIGTERM: no new connections" in log and "every request in flight was answered" in log
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def test_a_second_signal_ends_the_server_at_once(tmp_path):
    running = Server(tmp_path, "--grace", "60")
    connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=60)
    try:
        connection.putrequest("POST", "/api/similar")  # a request that never completes
        connection.putheader("Content-Type", "multipart/form-data; boundary=x")
        connection.putheader("Content-Length", "100000")
        connection.endheaders()
        connection.send(b"--x\r\n")
        time.sleep(0.3)
        running.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert running.process.poll() is None  # waiting for the request in flight
        running.process.send_signal(signal.SIGTERM)
        assert running.process.wait(timeout=10) == 128 + signal.SIGTERM
    finally:
        connection.close()
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def test_a_synopsis_to_a_bundle_without_a_text_model_is_one_line(server):
    status, answer = server.post_image(SAMPLE.read_bytes(), synopsis="a knight fights a dragon")
    assert status == 400 and answer["error"].startswith("this bundle has no text genre model")
    assert json.loads(server.get("/healthz")[1])["synopsis"] is False


def test_the_api_returns_the_style_map_when_asked(server):
    status, answer = server.post_image(SAMPLE.read_bytes(), explain="1")
    result = answer["results"][0]
    assert status == 200 and set(result["style_map"]) == {"grid", "authors", "box"}
    assert len(result["style_map"]["authors"]) >= 3 and isinstance(result["mixed"], list)
    status, answer = server.post_image(SAMPLE.read_bytes())
    assert status == 200 and answer["results"][0]["style_map"] is None
    status, answer = server.post_image(SAMPLE.read_bytes(), explain="maybe")
    assert status == 400 and answer["error"] == "explain must be 1 or 0, got 'maybe'"
    assert 'body.append("explain", "1")' in server.get("/static/app.js")[1].decode()  # the page's toggle
