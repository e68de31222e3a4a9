"""Serve the upload page and the similarity API.

    python -m inference.serve [--bundle DIR] [--host 127.0.0.1] [--port 8000] [--threads 4]

It runs under waitress, a production WSGI server. `--dev` uses Flask's development
server instead, for debugging and as the benchmark's baseline only.

SIGTERM (what a load balancer or an orchestrator sends on every deploy) or SIGINT stops it
gracefully: the listening socket closes at once, so new connections are refused and go to
another replica; the requests in flight, those being received included, are finished within
`--grace` seconds (10 by default); then it exits 0. A second signal ends it at once (143 or 130).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Sequence

from inference.bundle import BundleError
from inference.query import DEMO_BUNDLE, StyleFinder
from inference.webapp import DEFAULT_MAX_UPLOAD, create_app

log = logging.getLogger(__name__)

DEFAULT_GRACE = 10.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.serve", description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", default=str(DEMO_BUNDLE), help="model bundle folder (default: the demo)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=4, help="waitress worker threads")
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD / 2**20,
                        help="larger uploads get 413 (default 10)")
    parser.add_argument("--grace", type=float, default=DEFAULT_GRACE,
                        help="seconds to finish requests in flight after SIGTERM or SIGINT (default 10)")
    parser.add_argument("--dev", action="store_true", help="Flask's development server (not for production)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    for flag, value, least in (("--grace", args.grace, 0), ("--threads", args.threads, 1),
                               ("--max-upload-mb", args.max_upload_mb, 1e-6)):
        if not value >= least:  # also NaN
            bound = "positive" if least else "0 or more"
            print(f"error: {flag} must be {bound}, got {value:g}", file=sys.stderr)
            return 2
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
    return serve_until_signalled(app, args.host, args.port, args.threads, args.grace)


def serve_until_signalled(app, host: str, port: int, threads: int, grace: float) -> int:
    """waitress until SIGTERM or SIGINT, then a graceful stop (the module's docstring)."""
    from waitress import create_server, wasyncore

    server = create_server(app, host=host, port=port, threads=threads, ident="stylefinder")
    deadline: list[float] = []

    def stop(signum: int, frame) -> None:
        if deadline:  # a second signal: at once
            raise SystemExit(128 + signum)
        deadline.append(time.monotonic() + grace)
        server.accepting = False  # closed by the loop below: select() may be waiting on it now
        log.info("%s: no new connections; finishing the requests in flight (at most %g s)",
                 signal.Signals(signum).name, grace)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    listening_closed = False
    try:
        while not deadline or (_in_flight(server) and time.monotonic() < deadline[0]):
            wasyncore.loop(timeout=0.1, map=server._map, use_poll=server.adj.asyncore_use_poll, count=1)
            if deadline and not listening_closed:
                # The listening socket only (the server's own close() would also close its
                # trigger): new connections are refused from here on.
                wasyncore.dispatcher.close(server)
                listening_closed = True
        left = _in_flight(server)
        if left:
            log.warning("%d requests still in flight after %g s: abandoned", left, grace)
        else:
            log.info("stopped: every request in flight was answered")
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
    return 0


def _in_flight(server) -> int:
    """Connections with a request being received, served or still to be sent."""
    return sum(1 for channel in list(server.active_channels.values())
               if channel.request is not None or channel.requests or channel.total_outbufs_len)


if __name__ == "__main__":
    from datasets.cli_exit import run_main

    run_main(main)
