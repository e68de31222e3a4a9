"""The Flask application: an upload page and a JSON API over `StyleFinder`.

    GET  /                 the page (its script and style are served from /static, no CDN)
    POST /api/similar      multipart `image`, optional `k` (1-100): the JSON of `inference.similar --json`
    GET  /healthz          the bundle's name and version
    GET  /thumbs/NAME      a thumbnail from the bundle's thumbs/ folder, nothing else

Uploads are read into memory (never spooled to disk) and capped at `max_upload` bytes.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

from flask import Flask, Request, jsonify, request, send_from_directory

from datasets.images import ImageError, load_image_bytes
from datasets.texts import MAX_TEXT_BYTES, TextError
from inference.query import StyleFinder

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD = 10 * 2**20
MAX_K = 100
# The form needs three parts (image, k, synopsis): limits far above that, far below Werkzeug's defaults.
MAX_FORM_PARTS = 16
MAX_FORM_FIELD = MAX_TEXT_BYTES  # bytes of a part's headers or of a text field: a synopsis fits
_K = re.compile(r"[0-9]{1,6}")  # ASCII digits only: str.isdigit() accepts "²", which int() refuses
STATIC = Path(__file__).with_name("static")


class InMemoryRequest(Request):
    """Werkzeug spools uploads over 500 KB to temporary files; ours stay in memory (they are capped)."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


class BadRequest(ValueError):
    """A request we refuse with 400 and a one-line reason."""


def create_app(finder: StyleFinder, max_upload: int = DEFAULT_MAX_UPLOAD) -> Flask:
    """The app for one opened bundle; every request shares `finder`, loaded once per process."""
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.request_class = InMemoryRequest
    app.config["MAX_CONTENT_LENGTH"] = max_upload
    app.config["MAX_FORM_PARTS"] = MAX_FORM_PARTS
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_FORM_FIELD
    app.url_map.merge_slashes = False  # "/thumbs//etc/passwd" must reach the safe join and 404
    thumbs = (finder.bundle.path / "thumbs").resolve()

    @app.get("/")
    def index():
        return send_from_directory(STATIC, "index.html")

    @app.before_request
    def pick_up_enrolled_titles():
        finder.refresh()  # a stat of bundle.json; the titles reload only when an enroll changed it

    @app.get("/healthz")
    def healthz():
        bundle = finder.bundle
        return jsonify(status="ok", bundle=bundle.name, version=bundle.version, titles=len(bundle.titles),
                       backend=finder.backend, synopsis=finder.has_text_model)

    @app.get("/thumbs/<path:name>")
    def thumbnail(name: str):
        # send_from_directory joins safely: "..", absolute and encoded escapes all end in 404.
        return send_from_directory(thumbs, name, max_age=3600)

    @app.post("/api/similar")
    def similar():
        k = parse_k(request.values.get("k"))
        upload = request.files.get("image")
        if upload is None:
            raise BadRequest("no file in the multipart field 'image'")
        name = Path(upload.filename or "upload").name
        try:
            picture = load_image_bytes(upload.read(), name, finder.max_pixels)
        except ImageError as err:
            raise BadRequest(str(err)) from None
        synopsis = request.values.get("synopsis")
        if synopsis is not None and not finder.has_text_model:
            raise BadRequest("this bundle has no text genre model: send no synopsis, or add one with "
                             "python -m training.train_text ... --bundle BUNDLE")
        explain = parse_flag(request.values.get("explain"), "explain")
        if explain and not finder.bundle.authors:
            raise BadRequest("this bundle has no author head: explain=1 maps authors")
        try:
            result = finder.query([picture], k, names=[name], synopsis=synopsis, explain=explain)[0]
        except TextError as err:
            raise BadRequest(str(err)) from None
        document = finder.document([result], [])
        for title in document["results"][0]["titles"]:
            title["thumbnail_url"] = thumbnail_url(title["thumbnail"], thumbs)
        return jsonify(document)

    @app.errorhandler(BadRequest)
    def bad_request(err: BadRequest):
        return jsonify(error=str(err)), 400

    @app.errorhandler(413)
    def too_large(_err):
        length = request.content_length
        if length is not None and length > max_upload:
            return jsonify(error=f"upload of {length:,} bytes is over the limit of {max_upload:,} bytes"), 413
        # Werkzeug raises the same 413 for both form limits, without saying which.
        return jsonify(error=f"multipart form too large: more than {MAX_FORM_PARTS} parts, or a part header "
                             f"or text field over {MAX_FORM_FIELD:,} bytes"), 413

    @app.errorhandler(404)
    def not_found(_err):
        return jsonify(error="not found"), 404

    @app.errorhandler(405)
    def not_allowed(_err):
        return jsonify(error="method not allowed"), 405

    return app


def parse_k(raw: str | None) -> int:
    if raw is None or raw == "":
        return 10
    if not _K.fullmatch(raw.strip()):
        raise BadRequest(f"k must be an integer between 1 and {MAX_K}, got {raw[:20]!r}")
    k = int(raw)
    if not 1 <= k <= MAX_K:
        raise BadRequest(f"k must be an integer between 1 and {MAX_K}, got {k}")
    return k


def parse_flag(raw: str | None, name: str) -> bool:
    """1/true/yes or 0/false/no (absent or empty: no)."""
    value = (raw or "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise BadRequest(f"{name} must be 1 or 0, got {raw[:20]!r}")


def thumbnail_url(path: str | None, thumbs: Path) -> str | None:
    if not path:
        return None
    try:
        return "/thumbs/" + Path(path).resolve().relative_to(thumbs).as_posix()
    except ValueError:
        return None
