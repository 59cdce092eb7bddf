"""Prometheus metrics: requests, latencies, matches by bank, index size.

With several worker processes, ``rempart serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` so that
``/metrics`` aggregates every worker.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("rempart_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "rempart_request_seconds",
    "HTTP request latency",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MATCHES = Counter("rempart_matches_total", "Matches found, by bank", ["bank", "signal"])
VERDICTS = Counter("rempart_verdicts_total", "Scan verdicts", ["verdict"])
INDEX_SIZE = Gauge(
    "rempart_index_entries", "PDQ hashes in this worker's index", multiprocess_mode="max"
)


def render() -> tuple[bytes, str]:
    """The metrics page (aggregated over workers in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
