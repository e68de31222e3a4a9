"""Load test of the web API on loopback: waitress against Flask's development server, same run.

usage: python benchmarks/serve.py [--bundle DIR] [--image PNG] [--requests 2000] [--clients 8]
       python benchmarks/serve.py --soak [--requests 10000] [--bad-share 0.05]

Each server is started as `python -m inference.serve` (with `--dev` for the baseline), warmed up
with 20 requests, then sent --requests POST /api/similar uploads from --clients threads, one
connection per request. Prints one JSON document: requests/s, p50 and p99 latency, errors, and
the server's RSS before and after the load.

--soak runs waitress alone with a share of bad requests mixed in (a text file named .png, a
truncated PNG, an unusable k, a missing field), every 1/bad-share-th request: good requests
must all get 200 and bad ones 400; it reports both counts and the RSS growth over the run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import closing
from pathlib import Path

import numpy as np
from machine import machine

REPO = Path(__file__).resolve().parents[1]
DEMO_BUNDLE = REPO / "inference" / "demo_bundle"


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def multipart(image: bytes, name: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            f"Content-Type: image/png\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post(port: int, body: bytes, content_type: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", "/api/similar", body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def wait_ready(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited during start-up")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not start within 60 s")


def bad_requests(image: bytes) -> list[tuple[bytes, str]]:
    """Uploads the API must refuse with 400."""
    text, text_type = multipart(b"just some words, not a picture", "notes.png")
    cut, cut_type = multipart(image[: len(image) // 2], "cut.png")
    body, content_type = multipart(image, "query.png")
    boundary = content_type.split("boundary=")[1]
    bad_k = (f'--{boundary}\r\nContent-Disposition: form-data; name="k"\r\n\r\n\u00b2\r\n'.encode()
             + body)
    no_field = body.replace(b'name="image"', b'name="picture"')
    return [(text, text_type), (cut, cut_type), (bad_k, content_type), (no_field, content_type)]


def load_test(server_args: list[str], bundle: Path, image: Path, requests: int, clients: int,
              bad_share: float = 0.0) -> dict:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "inference.serve", "--bundle", str(bundle), "--port",
                                str(port), *server_args], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, process)
        body, content_type = multipart(image.read_bytes(), image.name)
        for _ in range(20):
            post(port, body, content_type)
        rss_before = rss_mb(process.pid)
        latencies: list[float] = []
        errors = [0]
        refused = {"bad_requests": 0, "bad_not_400": 0}
        counter = iter(range(requests))
        lock = threading.Lock()
        bad = bad_requests(image.read_bytes())
        every = round(1 / bad_share) if bad_share else 0

        def client() -> None:
            while True:
                with lock:
                    number = next(counter, None)
                if number is None:
                    return
                is_bad = every and number % every == every - 1
                request = bad[(number // every) % len(bad)] if is_bad else (body, content_type)
                start = time.perf_counter()
                try:
                    status = post(port, *request)
                except OSError:
                    status = 0
                elapsed = time.perf_counter() - start
                with lock:
                    if is_bad:
                        refused["bad_requests"] += 1
                        refused["bad_not_400"] += status != 400
                    else:
                        latencies.append(elapsed)
                        errors[0] += status != 200

        threads = [threading.Thread(target=client) for _ in range(clients)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - start
        rss_after = rss_mb(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=10)
    ms = np.array(latencies) * 1000
    total = len(latencies) + refused["bad_requests"]
    return {"requests": total, "good_requests": len(latencies), **(refused if every else {}),
            "clients": clients, "seconds": round(seconds, 2),
            "requests_per_s": round(total / seconds, 1), "p50_ms": round(float(np.median(ms)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "errors": errors[0],
            "rss_before_mb": round(rss_before, 1), "rss_after_mb": round(rss_after, 1),
            "rss_growth_pct": round(100 * (rss_after - rss_before) / rss_before, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=DEMO_BUNDLE)
    parser.add_argument("--image", type=Path,
                        default=sorted((REPO / "examples" / "icons" / "tango" / "tango").glob("*.png"))[0])
    parser.add_argument("--requests", type=int, default=None, help="default 2000, or 10000 with --soak")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--soak", action="store_true", help="waitress only, with bad requests mixed in")
    parser.add_argument("--bad-share", type=float, default=0.05, help="with --soak (default 0.05)")
    args = parser.parse_args()
    if args.soak:
        results = {"waitress_soak": load_test([], args.bundle, args.image, args.requests or 10_000,
                                              args.clients, args.bad_share)}
    else:
        results = {name: load_test(server_args, args.bundle, args.image, args.requests or 2000, args.clients)
                   for name, server_args in (("waitress", []), ("flask_dev_server", ["--dev"]))}
    print(json.dumps({
        "benchmark": "serve",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "image": str(args.image.relative_to(REPO)) if args.image.is_relative_to(REPO) else str(args.image),
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
