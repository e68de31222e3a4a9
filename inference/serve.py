"""Serve the upload page and the similarity API.

    python -m inference.serve [--bundle DIR] [--host 127.0.0.1] [--port 8000] [--threads 4]

It runs under waitress, a production WSGI server. `--dev` uses Flask's development
server instead, for debugging and as the benchmark's baseline only.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from inference.bundle import BundleError
from inference.query import DEMO_BUNDLE, StyleFinder
from inference.webapp import DEFAULT_MAX_UPLOAD, create_app

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.serve", description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", default=str(DEMO_BUNDLE), help="model bundle folder (default: the demo)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=4, help="waitress worker threads")
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD / 2**20,
                        help="larger uploads get 413 (default 10)")
    parser.add_argument("--dev", action="store_true", help="Flask's development server (not for production)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        finder = StyleFinder(args.bundle)
    except (BundleError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    app = create_app(finder, int(args.max_upload_mb * 2**20))
    log.info("bundle %s (%d titles, %s) on http://%s:%d/", finder.bundle.name, len(finder.bundle.titles),
             finder.backend, args.host, args.port)
    if args.dev:
        app.run(host=args.host, port=args.port, threaded=True)
        return 0
    from waitress import serve

    serve(app, host=args.host, port=args.port, threads=args.threads, ident="stylefinder")
    return 0


if __name__ == "__main__":
    sys.exit(main())
