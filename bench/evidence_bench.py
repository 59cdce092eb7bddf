"""Per-signal latency on 1-megapixel images: hashes, provenance, watermark, nudity, faces, and
the full scan.

The corpus is 20 generated 1-megapixel JPEGs (1155 x 866, quality 90: smooth gradients,
shapes and sensor-like noise), plus the reference face photos in ``/work/shared/data/faces``
resized to about one megapixel when that folder exists (``--faces DIR`` overrides). Every
image is encoded in memory; nothing is written but the temporary SQLite store.

Each signal runs on every image once after a warm-up (models load before timing):

- ``hashes``: ``hash_media`` with dihedral variants and border trimming;
- ``provenance``: ``find_provenance`` on the bytes;
- ``watermark``: decode + ``detect_watermarks``;
- ``nudity``: decode + ``NudityDetector.regions`` (NudeNet, when installed);
- ``faces``: decode + ``FaceAnalyzer().faces``;
- ``full_scan``: ``Scanner.scan_bytes(data, signals=parse_signals("all"))`` on an empty
  SQLite store. The collector has no nudity signal yet, so ``full_scan_plus_nudity`` adds
  the nudity time image by image, and ``target_scan`` is hashes + provenance + faces
  through the scanner, plus nudity: the set the 400 ms target is for.

Prints one JSON object with p50/p95 in milliseconds per signal and the ratio of the full
scan's p50 to the hashes-only p50 measured in the same run.

    python bench/evidence_bench.py [--images 20] [--faces DIR] [--cpu 0,1]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rempart.evidence.collect import parse_signals
from rempart.evidence.faces import FaceAnalyzer
from rempart.evidence.provenance import find_provenance
from rempart.evidence.watermark import detect_watermarks
from rempart.hashing import hash_media
from rempart.media import decode_image
from rempart.scan import Scanner
from rempart.settings import load_settings
from rempart.store import Store

SIZE = (1155, 866)  # 1.0 megapixel, 4:3
TARGET_MS = 400.0


def _generated(n: int) -> list[bytes]:
    """``n`` photographic-looking 1 MP JPEGs: gradients, shapes, noise."""
    rng = np.random.default_rng(7)
    w, h = SIZE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = []
    for _ in range(n):
        base = np.zeros((h, w, 3), np.float32)
        for c in range(3):
            fx, fy = rng.uniform(0.002, 0.02, 2).tolist()
            ph = rng.uniform(0, 6.3)
            base[..., c] = 128 + 90 * np.sin(xx * fx + yy * fy + ph)
        for _ in range(6):
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(30, 250)
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
            base[mask] = rng.uniform(0, 255, 3)
        base += rng.normal(0, 6, base.shape)
        buf = io.BytesIO()
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _faces(folder: Path) -> list[bytes]:
    """The reference photos, resized to about 1 MP and encoded in memory."""
    out = []
    for path in sorted(folder.glob("*.jp*g")):
        with Image.open(path) as im:
            rgb = im.convert("RGB")
        scale = (1_000_000 / (rgb.width * rgb.height)) ** 0.5
        rgb = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)))
        buf = io.BytesIO()
        rgb.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _pct(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    q = statistics.quantiles(values, n=20, method="inclusive") if len(values) > 1 else values
    return {
        "p50": round(statistics.median(values), 1),
        "p95": round(q[18] if len(values) > 1 else values[0], 1),
        "n": len(values),
    }


def _time(fn: Callable[[bytes], Any], corpus: list[bytes]) -> list[float]:
    fn(corpus[0])  # warm-up: models load, caches fill
    times = []
    for data in corpus:
        t0 = time.perf_counter()
        fn(data)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--faces", type=Path, default=Path("/work/shared/data/faces"))
    parser.add_argument("--cpu", default="", help="pin to these CPUs, e.g. 0,1")
    args = parser.parse_args()
    if args.cpu and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in args.cpu.split(",")})

    corpus = _generated(args.images)
    n_generated = len(corpus)
    if args.faces.is_dir():
        corpus += _faces(args.faces)

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        settings = load_settings(database_url=url)
        limits = settings.limits

        def rgb(data: bytes) -> np.ndarray:
            return decode_image(data, limits, draft_min_side=None).rgb

        analyzer = FaceAnalyzer()
        nudity = None
        if importlib.util.find_spec("nudenet") is not None:
            from rempart.evidence.nudity import NudityDetector

            nudity = NudityDetector()

        times: dict[str, list[float]] = {
            "hashes": _time(
                lambda d: hash_media(d, limits=limits, dihedral=True, trim_borders=True), corpus
            ),
            "provenance": _time(find_provenance, corpus),
            "watermark": _time(lambda d: detect_watermarks(rgb(d)), corpus),
            "faces": _time(lambda d: analyzer.faces(rgb(d)), corpus),
        }
        if nudity is not None:
            times["nudity"] = _time(lambda d: nudity.regions(rgb(d)), corpus)
        with Store.open(url) as store:
            scanner = Scanner(store, settings)
            every = parse_signals("all")
            target = parse_signals("provenance,faces")
            times["full_scan"] = _time(lambda d: scanner.scan_bytes(d, signals=every), corpus)
            times["scan_hashes_provenance_faces"] = _time(
                lambda d: scanner.scan_bytes(d, signals=target), corpus
            )
    if "nudity" in times:
        nud = times["nudity"]
        times["full_scan_plus_nudity"] = [
            a + b for a, b in zip(times["full_scan"], nud, strict=True)
        ]
        times["target_scan"] = [
            a + b for a, b in zip(times["scan_hashes_provenance_faces"], nud, strict=True)
        ]

    result: dict[str, Any] = {
        "images": {"generated_1mp": n_generated, "faces_1mp": len(corpus) - n_generated},
        "ms": {k: _pct(v) for k, v in times.items()},
    }
    hashes_p50 = statistics.median(times["hashes"])
    result["full_scan_p50_over_hashes_p50"] = round(
        statistics.median(times["full_scan"]) / hashes_p50, 2
    )
    key = "target_scan" if "target_scan" in times else "scan_hashes_provenance_faces"
    result["target"] = {
        "what": "hashes + provenance + nudity + faces, p50",
        "measured": key,
        "p50_ms": round(statistics.median(times[key]), 1),
        "limit_ms": TARGET_MS,
        "met": statistics.median(times[key]) < TARGET_MS,
        "nudity_measured": "nudity" in times,
    }
    result["machine"] = {
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
