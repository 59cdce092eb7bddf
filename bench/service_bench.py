"""Benchmark the HTTP service end to end: ``rempart serve`` as a real process, on loopback.

    python bench/service_bench.py [--entries 1000000] [--workers 1,2] [--duration 12]

It builds a SQLite store with one bank of ``--entries`` random PDQ hashes (cached in
``--cache-dir`` between runs), creates an admin key with ``rempart keys create``, then for
each worker count starts ``rempart serve --workers N`` and drives ``--clients`` concurrent
keep-alive connections, each for ``--warmup`` + ``--duration`` seconds, against:

* ``lookup``: ``GET /v1/lookup?pdq=`` -- half hits (a banked hash with 0-8 bits flipped),
  half misses (random hashes);
* ``scan``: ``POST /v1/scan`` of a generated 1-megapixel JPEG (hash + match + verdict);

plus ``scan`` from one client alone (the unloaded latency). It reports requests/s, p50/p99
latency and errors per (route, workers), and the 2-worker / 1-worker ratio of this run.

The load generator is a small asyncio HTTP/1.1 client (prebuilt requests, no HTTP library:
it costs the CPU the server needs as little as possible). It runs on the same machine as the
server and shares its cores: on a 2-core machine, requests/s are a floor, and latencies
include time the client waits for a core. Everything stays on 127.0.0.1.

Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rempart import __version__
from rempart.examples import jpeg_bytes, synthetic_photo
from rempart.store import NewEntry, Store

HOST = "127.0.0.1"
BANK = "bench"
#: Targets on a 2-core machine (the brief for this benchmark).
TARGETS = {"lookup_rps": 2000.0, "lookup_p99_ms": 20.0, "scan_p50_ms": 60.0}


def log(msg: str) -> None:
    """Progress to stderr, so stdout stays one JSON object."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the store ----------------------------------------------------------------------------------


def _hex_rows(codes: np.ndarray) -> list[str]:
    return [row.tobytes().hex() for row in codes]


def build_store(path: Path, entries: int, seed: int) -> tuple[float, np.ndarray]:
    """A store with one bank of ``entries`` random PDQ hashes (reused when already built).

    Returns the build time (0 when cached) and a sample of banked codes for hit queries.
    """
    rng = np.random.default_rng(seed)
    sample = rng.integers(0, 256, size=(1000, 32), dtype=np.uint8)
    marker = path.with_suffix(".done")
    if marker.exists() and marker.read_text() == f"{entries}:{seed}":
        log(f"store cached at {path}")
        return 0.0, sample
    for p in (path, marker):
        p.unlink(missing_ok=True)
    t0 = time.perf_counter()
    store = Store.open(f"sqlite:///{path}")
    store.create_bank(BANK)

    def rows() -> Iterator[NewEntry]:
        for hex_value in _hex_rows(sample):
            yield NewEntry(signal="pdq", value=hex_value)
        done = len(sample)
        while done < entries:
            n = min(100_000, entries - done)
            for hex_value in _hex_rows(rng.integers(0, 256, size=(n, 32), dtype=np.uint8)):
                yield NewEntry(signal="pdq", value=hex_value)
            done += n
            log(f"  {done:,} hashes generated")

    result = store.add_entries(BANK, rows(), return_ids=False)
    store.close()
    marker.write_text(f"{entries}:{seed}")
    build_s = time.perf_counter() - t0
    log(f"store built: {result.added:,} hashes in {build_s:.1f} s")
    return build_s, sample


def create_key(rempart: str, url: str) -> str:
    """An admin key, made the way an operator makes one."""
    cmd = [rempart, "keys", "create", "--tenant", "default", "--scopes", "admin"]
    out = subprocess.run(
        [*cmd, "--name", "bench", "--database-url", url],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


# -- the server ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    startup_s: float
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(rempart: str, url: str, workers: int, workdir: Path) -> Server:
    """``rempart serve`` on a free loopback port; returns once ``/status`` says ready."""
    port = free_port()
    env = dict(os.environ)
    env["REMPART_SERVICE__RATE_LIMIT_PER_S"] = "100000"
    env["REMPART_SERVICE__RATE_LIMIT_BURST"] = "100000"
    log_path = workdir / f"serve-{workers}w.log"
    cmd = [rempart, "serve", "--host", HOST, "--port", str(port), "--workers", str(workers)]
    cmd += ["--database-url", url]
    t0 = time.perf_counter()
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    ready = 0
    while time.perf_counter() - t0 < 300:
        if process.poll() is not None:
            raise RuntimeError(f"rempart serve exited: see {log_path}")
        try:
            with socket.create_connection((HOST, port), timeout=1) as s:
                s.sendall(b"GET /status HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    ready += 1
                    # With several workers, each loads its own index: wait until a few
                    # connections in a row (spread over workers by the kernel) are answered.
                    if ready >= 4 * workers:
                        break
                    continue
        except OSError:
            pass
        ready = 0
        time.sleep(0.2)
    else:
        process.kill()
        raise RuntimeError(f"rempart serve was not ready in 300 s: see {log_path}")
    return Server(process, port, time.perf_counter() - t0, log_path)


# -- the load generator ------------------------------------------------------------------------


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    connection_errors: int = 0
    unexpected: int = 0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split(b" ", 2)[1])
    length = 0
    chunked = False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length)
    body = bytearray()
    while True:
        size = int((await reader.readline()).split(b";")[0], 16)
        body += await reader.readexactly(size + 2)
        if size == 0:
            return status, bytes(body)


async def _client(
    port: int,
    requests: Callable[[int], tuple[bytes, bool | None]],
    n: int,
    measure_from: float,
    until: float,
    tally: Tally,
) -> None:
    reader = writer = None
    i = n * 1_000_003  # each client walks its own part of the request list
    while time.perf_counter() < until:
        if writer is None:
            try:
                reader, writer = await asyncio.open_connection(HOST, port)
            except OSError:
                tally.connection_errors += 1
                await asyncio.sleep(0.05)
                continue
        assert reader is not None
        request, expect_hit = requests(i)
        i += 1
        t0 = time.perf_counter()
        try:
            writer.write(request)
            status, body = await _read_response(reader)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            tally.connection_errors += 1
            writer.close()
            reader = writer = None
            continue
        t1 = time.perf_counter()
        if t0 < measure_from:
            continue
        tally.latencies_ms.append((t1 - t0) * 1e3)
        tally.statuses[status] = tally.statuses.get(status, 0) + 1
        if status == 200 and expect_hit is not None:
            hit = b'"matches":[]' not in body
            tally.unexpected += hit != expect_hit
    if writer is not None:
        writer.close()


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` and its descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue  # a worker that exited, or no /proc (not Linux)
    return total


def drive(
    port: int,
    requests: Callable[[int], tuple[bytes, bool | None]],
    clients: int,
    warmup_s: float,
    duration_s: float,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """``clients`` connections for ``warmup_s`` + ``duration_s``; stats over the second part.

    With ``server_pid``, also the CPU time the server (all its processes) and this load
    generator spent per request: unlike requests/s, that does not depend on what else the
    machine runs, and it says how many requests/s the cores could carry.
    """
    tally = Tally()
    cpu: dict[str, float] = {}

    def snapshot(tag: str) -> None:
        cpu[f"client_{tag}"] = time.process_time()
        if server_pid is not None:
            cpu[f"server_{tag}"] = tree_cpu_s(server_pid)
        cpu[f"wall_{tag}"] = time.perf_counter()
        cpu[f"load_{tag}"] = os.getloadavg()[0]

    async def run() -> None:
        start = time.perf_counter()
        measure_from, until = start + warmup_s, start + warmup_s + duration_s

        async def snap_at_start() -> None:
            await asyncio.sleep(warmup_s)
            snapshot("0")

        snapper = asyncio.create_task(snap_at_start())
        await asyncio.gather(
            *(_client(port, requests, n, measure_from, until, tally) for n in range(clients))
        )
        await snapper
        snapshot("1")

    asyncio.run(run())
    lat = np.asarray(tally.latencies_ms)
    ok = tally.statuses.get(200, 0)
    out: dict[str, Any] = {
        "requests": int(lat.size),
        "requests_per_s": round(lat.size / duration_s, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
        "p90_ms": round(float(np.percentile(lat, 90)), 2) if lat.size else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat.size else None,
        "errors": {
            "non_200": int(lat.size) - ok,
            "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
            "connection": tally.connection_errors,
            "wrong_hit_or_miss": tally.unexpected,
        },
    }
    if lat.size:
        wall = cpu["wall_1"] - cpu["wall_0"]
        client = cpu["client_1"] - cpu["client_0"]
        out["client_cpu_ms_per_request"] = round(client / lat.size * 1e3, 3)
        if server_pid is not None:
            server = cpu["server_1"] - cpu["server_0"]
            out["server_cpu_ms_per_request"] = round(server / lat.size * 1e3, 3)
            out["server_cores_busy"] = round(server / wall, 2)
        out["load_average_1m"] = round(cpu["load_1"], 2)
    return out


def lookup_requests(key: str, sample: np.ndarray, seed: int) -> Callable[[int], tuple[bytes, bool]]:
    """Prebuilt ``GET /v1/lookup`` requests: even ones hit (0-8 bits flipped), odd ones miss."""
    rng = np.random.default_rng(seed + 1)
    built: list[tuple[bytes, bool]] = []
    for n in range(4000):
        hit = n % 2 == 0
        if hit:
            code = sample[n % len(sample)].copy()
            for bit in rng.choice(256, size=int(rng.integers(0, 9)), replace=False):
                code[bit // 8] ^= 1 << (bit % 8)
        else:
            code = rng.integers(0, 256, size=32, dtype=np.uint8)
        request = (
            f"GET /v1/lookup?pdq={code.tobytes().hex()} HTTP/1.1\r\nHost: {HOST}\r\n"
            f"Authorization: Bearer {key}\r\n\r\n"
        ).encode()
        built.append((request, hit))
    return lambda i: built[i % len(built)]


def scan_requests(key: str) -> tuple[Callable[[int], tuple[bytes, None]], int]:
    """Prebuilt ``POST /v1/scan`` requests of four generated ~1-megapixel JPEGs."""
    built = []
    size = 0
    for seed in range(4):
        body = jpeg_bytes(synthetic_photo(1000 + seed, size=(1155, 866)))
        size = len(body)
        head = (
            f"POST /v1/scan HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        built.append((head + body, None))
    return (lambda i: built[i % len(built)]), size


# -- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--duration", type=float, default=12.0, help="seconds measured")
    parser.add_argument("--routes", default="lookup,scan")
    parser.add_argument("--cache-dir", type=Path, default=None, help="keep the store here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rempart = str(Path(sys.executable).with_name("rempart"))
    workdir = Path(tempfile.mkdtemp(prefix="rempart-service-bench-"))
    cache = args.cache_dir or workdir
    cache.mkdir(parents=True, exist_ok=True)
    db = cache / f"bench-{args.entries}.db"
    url = f"sqlite:///{db}"
    routes = [r for r in args.routes.split(",") if r]
    workers_list = [int(w) for w in args.workers.split(",")]
    try:
        build_s, sample = build_store(db, args.entries, args.seed)
        key = create_key(rempart, url)
        lookups = lookup_requests(key, sample, args.seed)
        scans, jpeg_size = scan_requests(key)
        results: list[dict[str, Any]] = []
        startup: dict[str, float] = {}
        for workers in workers_list:
            log(f"starting rempart serve --workers {workers}")
            server = start_server(rempart, url, workers, workdir)
            startup[str(workers)] = round(server.startup_s, 1)
            log(f"  ready in {server.startup_s:.1f} s (port {server.port})")
            try:
                for route in routes:
                    requests = lookups if route == "lookup" else scans
                    log(f"  {route}: {args.clients} clients, {args.duration:.0f} s")
                    stats = drive(
                        server.port,
                        requests,
                        args.clients,
                        args.warmup,
                        args.duration,
                        server_pid=server.process.pid,
                    )
                    results.append({"route": route, "workers": workers, **stats})
                    log(f"    {json.dumps(stats)}")
                if "scan" in routes and workers == workers_list[0]:
                    log("  scan: 1 client (unloaded latency)")
                    stats = drive(
                        server.port, scans, 1, 1.0, min(args.duration, 6.0), server.process.pid
                    )
                    results.append({"route": "scan", "workers": workers, "clients": 1, **stats})
                    log(f"    {json.dumps(stats)}")
            finally:
                server.stop()

        def rate(route: str, workers: int) -> float | None:
            for r in results:
                if r["route"] == route and r["workers"] == workers and "clients" not in r:
                    return float(r["requests_per_s"])
            return None

        ratio = {}
        if 1 in workers_list and 2 in workers_list:
            for route in routes:
                one, two = rate(route, 1), rate(route, 2)
                ratio[route] = round(two / one, 2) if one and two else None
        best_lookup = max(
            (r for r in results if r["route"] == "lookup"),
            key=lambda r: r["requests_per_s"],
            default=None,
        )
        loaded_scans = [r for r in results if r["route"] == "scan" and "clients" not in r]
        unloaded = next((r for r in results if r.get("clients") == 1), None)
        targets: dict[str, Any] = {}
        if best_lookup:
            targets["lookup_rps>=2000"] = best_lookup["requests_per_s"] >= TARGETS["lookup_rps"]
            targets["lookup_p99<20ms"] = best_lookup["p99_ms"] < TARGETS["lookup_p99_ms"]
        if loaded_scans:
            best = min(r["p50_ms"] for r in loaded_scans)
            targets[f"scan_p50<60ms ({args.clients} clients)"] = best < TARGETS["scan_p50_ms"]
        if unloaded:
            targets["scan_p50<60ms (1 client)"] = unloaded["p50_ms"] < TARGETS["scan_p50_ms"]
        out = {
            "benchmark": "service",
            "rempart": __version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "note": (
                f"loopback only; the load generator (one asyncio process, {args.clients} "
                "keep-alive connections) shares the machine's cores with the server, so "
                "requests/s are a floor and latencies include waiting for a core"
            ),
            "bank_entries": args.entries,
            "store": "sqlite",
            "store_build_s": round(build_s, 1) if build_s else "cached",
            "scan_jpeg": {"pixels": 1155 * 866, "bytes": jpeg_size},
            "clients": args.clients,
            "warmup_s": args.warmup,
            "duration_s": args.duration,
            "server_startup_s": startup,
            "results": results,
            "ratio_2_workers_over_1": ratio,
            "targets": targets,
        }
        print(json.dumps(out, indent=2))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
