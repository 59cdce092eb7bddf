"""The SD watermark reader against images marked by the ``invisible-watermark`` library.

The library's encoder is loaded straight from its ``maxDct.py`` file: importing the
``imwatermark`` package pulls in torch (for its RivaGAN method), which these tests never
need. Test-only dependencies: ``invisible-watermark`` (installed ``--no-deps``),
``opencv-python-headless`` and ``PyWavelets``. Images are drawn here or are scikit-image's
``coffee``/``chelsea`` samples; nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image, ImageDraw
from skimage import data as skdata

from rempart.errors import MediaError
from rempart.evidence.watermark import (
    _PAYLOADS,
    WatermarkFinding,
    candidate_sizes,
    detect_watermarks,
)

PAYLOAD_BITS = {p.source: p.bits for p in _PAYLOADS}


def _load_encoder() -> ModuleType:
    pytest.importorskip("cv2", reason="opencv-python-headless is needed to run the encoder")
    pytest.importorskip("pywt", reason="PyWavelets is needed to run the encoder")
    spec = importlib.util.find_spec("imwatermark")
    if spec is None or spec.origin is None:
        pytest.skip("invisible-watermark is not installed (pip install --no-deps ...)")
    path = Path(spec.origin).parent / "maxDct.py"
    file_spec = importlib.util.spec_from_file_location("_imwatermark_maxdct", path)
    assert file_spec is not None and file_spec.loader is not None
    module = importlib.util.module_from_spec(file_spec)
    file_spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def encoder() -> ModuleType:
    return _load_encoder()


def mark(
    encoder: ModuleType, rgb: np.ndarray, source: str, *, as_float: bool = False
) -> np.ndarray:
    """Mark ``rgb`` as the SD reference scripts do (BGR; float for SDXL's sgm/diffusers)."""
    bits = PAYLOAD_BITS[source]
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    if as_float:
        bgr = bgr.astype(np.float32)
    out = encoder.EmbedMaxDct(list(bits), wmLen=len(bits)).encode(bgr)
    return np.clip(np.rint(out[..., ::-1]), 0, 255).astype(np.uint8)


def resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BICUBIC))


def jpeg(rgb: np.ndarray, quality: int = 90) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def scene(seed: int, n: int) -> np.ndarray:
    """A smooth, lightly noisy generated scene (waves in three channels)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n] / n
    img = np.stack(
        [
            np.sin(x * rng.uniform(2, 9) + rng.uniform(0, 6)),
            np.cos(y * rng.uniform(2, 9)),
            np.sin((x + y) * rng.uniform(2, 9)),
        ],
        -1,
    )
    img = (img * 0.5 + 0.5) * 200 + rng.normal(0, 8, (n, n, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def clean(i: int) -> np.ndarray:
    """Clean image ``i``: waves, noise, flat colour, rectangles or noisy gradients."""
    rng = np.random.default_rng(i)
    n = 256 + 64 * (i % 3)
    kind = i % 5
    y, x = np.mgrid[0:n, 0:n] / n
    if kind == 0:
        img = (
            np.stack(
                [
                    np.sin(x * rng.uniform(1, 30) + rng.uniform(0, 6)),
                    np.cos(y * rng.uniform(1, 30)),
                    np.sin((x + y) * rng.uniform(1, 30)),
                ],
                -1,
            )
            * 100
            + 128
        )
    elif kind == 1:
        img = rng.uniform(0, 255, (n, n, 3))
    elif kind == 2:
        img = np.zeros((n, n, 3)) + rng.uniform(0, 255, 3)
    elif kind == 3:
        im = Image.new("RGB", (n, n), tuple(int(v) for v in rng.integers(0, 255, 3)))
        draw = ImageDraw.Draw(im)
        for _ in range(20):
            a = rng.integers(0, n, 4)
            box = (min(a[0], a[2]), min(a[1], a[3]), max(a[0], a[2]), max(a[1], a[3]))
            draw.rectangle(box, fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        img = np.asarray(im).astype(float)
    else:
        img = (x[..., None] * rng.uniform(0, 255, 3) + y[..., None] * rng.uniform(0, 255, 3)) / 2
        img = img + rng.normal(0, rng.uniform(0, 20), (n, n, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def found(findings: list[WatermarkFinding], source: str) -> WatermarkFinding | None:
    return next((f for f in findings if f.source == source), None)


SOURCES = ["watermark-sd1", "watermark-sd2", "watermark-sdxl"]
STRONG = {"likely", "very likely"}


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    return {
        "scene-1024": scene(1, 1024),
        "scene-512": scene(2, 512),
        "chelsea-512": resize(skdata.chelsea(), (512, 512)),
        "coffee-1024": resize(skdata.coffee(), (1024, 1024)),
    }


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("image", ["scene-1024", "scene-512", "chelsea-512"])
def test_fresh_mark_is_detected(
    encoder: ModuleType, images: dict[str, np.ndarray], source: str, image: str
) -> None:
    findings = detect_watermarks(mark(encoder, images[image], source))
    f = found(findings, source)
    assert f is not None and f.band in STRONG, findings
    assert f.details["resized"] is False
    assert findings[0].source == source  # the right payload ranks first


@pytest.mark.parametrize("image", ["scene-1024", "scene-512", "chelsea-512"])
def test_sdxl_float_lattice(encoder: ModuleType, images: dict[str, np.ndarray], image: str) -> None:
    """SDXL pipelines mark float arrays; the reader tries that lattice too."""
    f = found(
        detect_watermarks(mark(encoder, images[image], "watermark-sdxl", as_float=True)),
        "watermark-sdxl",
    )
    assert f is not None and f.band in STRONG
    assert f.details["lattice"] == "float"


@pytest.mark.parametrize("source", SOURCES)
def test_survives_resize_1024_to_800(
    encoder: ModuleType, images: dict[str, np.ndarray], source: str
) -> None:
    marked = resize(mark(encoder, images["scene-1024"], source), (800, 800))
    f = found(detect_watermarks(marked), source)
    assert f is not None and f.band == "very likely"
    assert f.size == (1024, 1024) and f.details["resized"] is True


@pytest.mark.parametrize("source", SOURCES)
def test_survives_jpeg_90_on_a_textured_photo(
    encoder: ModuleType, images: dict[str, np.ndarray], source: str
) -> None:
    """Measured: JPEG q90 (4:2:0 chroma) keeps the mark on the 1024 px coffee photo only."""
    f = found(detect_watermarks(jpeg(mark(encoder, images["coffee-1024"], source))), source)
    assert f is not None and f.band in STRONG


def test_jpeg_90_usually_erases_it(encoder: ModuleType, images: dict[str, np.ndarray]) -> None:
    """The documented limit: on a smooth scene q90 leaves nothing at "likely" or above."""
    for source in SOURCES:
        f = found(detect_watermarks(jpeg(mark(encoder, images["scene-1024"], source))), source)
        assert f is None or f.band not in STRONG


def _assert_clean(count: int) -> None:
    for i in range(count):
        strong = [f for f in detect_watermarks(clean(i)) if f.band in STRONG]
        assert not strong, (i, strong)


def test_100_clean_images_give_nothing_strong() -> None:
    _assert_clean(100)


@pytest.mark.slow
def test_500_clean_images_give_nothing_strong() -> None:
    _assert_clean(500)


def test_clean_photos_give_nothing_strong(images: dict[str, np.ndarray]) -> None:
    for rgb in images.values():
        assert not [f for f in detect_watermarks(rgb) if f.band in STRONG]


def test_finding_to_dict_is_json(encoder: ModuleType, images: dict[str, np.ndarray]) -> None:
    f = found(
        detect_watermarks(mark(encoder, images["scene-512"], "watermark-sd2")), "watermark-sd2"
    )
    assert f is not None
    d = json.loads(json.dumps(f.to_dict()))
    assert d["source"] == "watermark-sd2" and d["total_bits"] == 32
    assert d["size"] == [512, 512] and "block_z" in d["details"]


def test_only_inconclusive_or_above_is_returned() -> None:
    for i in range(10):
        assert all(f.band != "none" for f in detect_watermarks(clean(i)))


def test_too_small_gives_nothing() -> None:
    assert detect_watermarks(np.zeros((200, 200, 3), np.uint8)) == []


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((300, 300), np.uint8),
        np.zeros((300, 300, 4), np.uint8),
        np.zeros((300, 300, 3), np.float32),
    ],
)
def test_rejects_non_rgb8(bad: np.ndarray) -> None:
    with pytest.raises(MediaError):
        detect_watermarks(bad)


def test_candidate_sizes() -> None:
    assert candidate_sizes(800, 800) == [(800, 800), (512, 512), (768, 768), (1024, 1024)]
    sizes = candidate_sizes(1216, 832)
    assert sizes[0] == (1216, 832) and len(sizes) <= 7
    assert all(w % 8 == 0 and h % 8 == 0 for w, h in sizes[1:])


def test_bounded_time(images: dict[str, np.ndarray]) -> None:
    start = time.perf_counter()
    detect_watermarks(images["coffee-1024"])
    # About 0.05 s on one core; the bound leaves room for a busy CI machine.
    assert time.perf_counter() - start < 2.0


def test_reader_needs_neither_torch_nor_opencv() -> None:
    code = (
        "import sys, numpy as np\n"
        "from rempart.evidence._dwtdct import read_block_bits, u_channel\n"
        "read_block_bits(u_channel(np.zeros((256, 256, 3), np.uint8)))\n"
        "assert not {'torch', 'cv2', 'pywt', 'imwatermark'} & set(sys.modules), sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
