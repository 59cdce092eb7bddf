"""Hashing throughput on one core: Rempart's hash_media against ThreatExchange's PdqSignal.

The corpus is what platforms receive from phones: 12-megapixel JPEGs (4000 x 3000, quality
90) of photographic content -- scikit-image's sample photographs, upscaled, with sensor-like
noise. It is generated once per run into a temporary directory (or ``--corpus DIR``, reused
when it already holds the images).

Both hashers run end to end from the file on disk, interleaved image by image, pinned to
one CPU core:

- Rempart: ``read_media_file`` + ``hash_media`` (sniff, limits, draft JPEG decode, EXIF
  orientation, PDQ, MD5 and SHA-256);
- pytx: ``PdqSignal.hash_from_file`` (full decode with Pillow, PDQ; no MD5/SHA-256).

Prints one JSON object: images per second for each, their ratio, and the Hamming distances
between the two implementations' hashes (conformance is kept, not traded for speed).

    python bench/hash_bench.py [--images 20] [--rounds 3] [--corpus DIR] [--cpu N]
"""

from __future__ import annotations

import os

# One core means one thread everywhere, set before numpy loads its BLAS.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from rempart.hashing import exact_hashes, hash_media, pdq_distance, pdq_hash  # noqa: E402
from rempart.hashing.media import DRAFT_MIN_SIDE  # noqa: E402
from rempart.media import decode_image, read_media_file  # noqa: E402
from rempart.settings import MediaLimits  # noqa: E402

_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "cat",
    "motorcycle_left",
    "camera",
)
SIZE = (4000, 3000)


def _sources() -> list[np.ndarray]:
    from skimage import data

    out = []
    for name in _PHOTOS:
        try:
            image = getattr(data, name)()
        except Exception:  # a sample that needs a download, or one this version lacks
            continue
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        out.append(np.ascontiguousarray(image[..., :3]))
    return out


def make_corpus(directory: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` 12-megapixel JPEGs of photographic content in ``directory`` (kept if present)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"photo-{i:03d}.jpg" for i in range(n)]
    if all(p.exists() for p in paths):
        return paths
    rng = np.random.default_rng(seed)
    sources = _sources()
    for i, path in enumerate(paths):
        src = Image.fromarray(sources[i % len(sources)])
        # A different 4:3 crop of the sample each time round, so no two images are alike.
        w, h = src.size
        cw, ch = (w, w * 3 // 4) if w * 3 // 4 <= h else (h * 4 // 3, h)
        x0 = int(rng.integers(0, w - cw + 1))
        y0 = int(rng.integers(0, h - ch + 1))
        crop = src.crop((x0, y0, x0 + cw, y0 + ch))
        if (i // len(sources)) % 2:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        big = np.asarray(crop.resize(SIZE, Image.Resampling.BICUBIC), dtype=np.int16)
        noise = rng.integers(-6, 7, size=big.shape, dtype=np.int16)  # sensor-like grain
        pixels = np.clip(big + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(path, "JPEG", quality=90)
    return paths


def _pin(cpu: int | None) -> int | None:
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[-1] if cpu is None else cpu
    os.sched_setaffinity(0, {chosen})
    return chosen


def _breakdown(paths: list[Path], limits: MediaLimits) -> dict[str, float]:
    """Milliseconds per image for each step of Rempart's path (one pass)."""
    steps: dict[str, list[float]] = {"read": [], "decode": [], "pdq": [], "md5_sha256": []}
    for path in paths:
        t0 = time.perf_counter()
        data = read_media_file(path, limits)
        t1 = time.perf_counter()
        image = decode_image(data, limits, draft_min_side=DRAFT_MIN_SIDE)
        t2 = time.perf_counter()
        pdq_hash(image.rgb)
        t3 = time.perf_counter()
        exact_hashes(data)
        t4 = time.perf_counter()
        for key, dt in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            dt_ms = dt * 1e3
            steps[key].append(dt_ms)
    return {k: round(statistics.mean(v), 2) for k, v in steps.items()}


def run(images: int, rounds: int, corpus: Path | None, cpu: int | None) -> dict[str, Any]:
    from threatexchange.signal_type.pdq.signal import PdqSignal

    limits = MediaLimits()
    tmp = None
    if corpus is None:
        tmp = tempfile.TemporaryDirectory(prefix="rempart-hash-bench-")
        corpus = Path(tmp.name)
    t = time.perf_counter()
    paths = make_corpus(corpus, images)
    generate_s = time.perf_counter() - t
    pinned = _pin(cpu)

    # Warm-up (imports, codec tables, page cache) for both, outside the timings.
    hash_media(read_media_file(paths[0], limits), limits=limits)
    PdqSignal.hash_from_file(paths[0])

    rempart_s = pytx_s = 0.0
    rempart_hex: dict[Path, str] = {}
    pytx_hex: dict[Path, str] = {}
    quality: dict[Path, int] = {}
    for r in range(rounds):
        order = paths if r % 2 == 0 else paths[::-1]
        for path in order:
            # Interleaved, alternating who goes first, so neither gains from a warm cache.
            first_rempart = (r + paths.index(path)) % 2 == 0
            for which in ("rempart", "pytx") if first_rempart else ("pytx", "rempart"):
                t0 = time.perf_counter()
                if which == "rempart":
                    h = hash_media(read_media_file(path, limits), limits=limits)
                    rempart_s += time.perf_counter() - t0
                    assert h.pdq is not None and h.pdq_quality is not None
                    rempart_hex[path], quality[path] = h.pdq, h.pdq_quality
                else:
                    pytx_hex[path] = PdqSignal.hash_from_file(path)
                    pytx_s += time.perf_counter() - t0

    n = len(paths) * rounds
    distances = [pdq_distance(rempart_hex[p], pytx_hex[p]) for p in paths]
    rempart_ips = n / rempart_s
    pytx_ips = n / pytx_s
    result: dict[str, Any] = {
        "benchmark": "hash_bench",
        "what": "images/s on one core, end to end from a JPEG file on disk",
        "corpus": {
            "images": len(paths),
            "size": f"{SIZE[0]}x{SIZE[1]}",
            "megapixels": SIZE[0] * SIZE[1] / 1e6,
            "jpeg_quality": 90,
            "mean_bytes": round(statistics.mean(p.stat().st_size for p in paths)),
            "content": "scikit-image sample photographs, upscaled, with noise",
            "generate_s": round(generate_s, 1),
        },
        "rounds": rounds,
        "cpu": pinned,
        "rempart": {
            "images_per_s": round(rempart_ips, 2),
            "ms_per_image": round(1e3 / rempart_ips, 2),
            "does": "read + sniff + limits + draft decode + orientation + PDQ + MD5 + SHA-256",
            "draft_min_side": DRAFT_MIN_SIDE,
            "breakdown_ms": _breakdown(paths, limits),
        },
        "pytx": {
            "images_per_s": round(pytx_ips, 2),
            "ms_per_image": round(1e3 / pytx_ips, 2),
            "does": "PdqSignal.hash_from_file: full decode + PDQ",
        },
        "ratio": round(rempart_ips / pytx_ips, 2),
        "target_ratio": 10,
        "hamming_rempart_vs_pytx": {
            "max": max(distances),
            "mean": round(statistics.mean(distances), 2),
            "all": distances,
            "min_quality": min(quality.values()),
        },
        "platform": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "processor": platform.processor() or None,
        },
    }
    if tmp is not None:
        tmp.cleanup()
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--corpus", type=Path, default=None, help="keep the corpus here")
    parser.add_argument("--cpu", type=int, default=None, help="the core to pin to")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.images, args.rounds, args.corpus, args.cpu), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
