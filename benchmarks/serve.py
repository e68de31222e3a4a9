"""Load test of the web API on loopback: waitress against Flask's development server, same run.

usage: python benchmarks/serve.py [--bundle DIR] [--image PNG] [--requests 2000] [--clients 8]

Each server is started as `python -m inference.serve` (with `--dev` for the baseline), warmed up
with 20 requests, then sent --requests POST /api/similar uploads from --clients threads, one
connection per request. Prints one JSON document: requests/s, p50 and p99 latency, errors, and
the server's RSS before and after the load.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import closing
from pathlib import Path

import numpy as np

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


def load_test(server_args: list[str], bundle: Path, image: Path, requests: int, clients: int) -> dict:
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
        counter = iter(range(requests))
        lock = threading.Lock()

        def client() -> None:
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                start = time.perf_counter()
                try:
                    ok = post(port, body, content_type) == 200
                except OSError:
                    ok = False
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    errors[0] += 0 if ok else 1

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
    return {"requests": len(latencies), "clients": clients, "seconds": round(seconds, 2),
            "requests_per_s": round(len(latencies) / seconds, 1), "p50_ms": round(float(np.median(ms)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "errors": errors[0],
            "rss_before_mb": round(rss_before, 1), "rss_after_mb": round(rss_after, 1),
            "rss_growth_pct": round(100 * (rss_after - rss_before) / rss_before, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=DEMO_BUNDLE)
    parser.add_argument("--image", type=Path,
                        default=sorted((REPO / "examples" / "icons" / "tango" / "tango").glob("*.png"))[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    results = {name: load_test(server_args, args.bundle, args.image, args.requests, args.clients)
               for name, server_args in (("waitress", []), ("flask_dev_server", ["--dev"]))}
    print(json.dumps({
        "benchmark": "serve",
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": len(os.sched_getaffinity(0)), "python": platform.python_version()},
        "image": str(args.image.relative_to(REPO)) if args.image.is_relative_to(REPO) else str(args.image),
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
