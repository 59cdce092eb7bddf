"""Nudity regions with NudeNet's bundled model, tested only on non-sexual content.

The photos are the clothed reference portraits in ``/work/shared/data/faces`` (read in
place, ``REMPART_FACES_DIR`` overrides), where the model must find faces and nothing
exposed; other images are drawn in memory. No image or crop is ever written.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from rempart.evidence import nudity
from rempart.evidence.nudity import (
    CLASSES,
    EXPOSURE,
    NudityDetector,
    NudityInputError,
    NudityUnavailableError,
    Region,
    nudity_evidence,
)

FACES_DIR = Path(os.environ.get("REMPART_FACES_DIR", "/work/shared/data/faces"))
HAVE_NUDENET = importlib.util.find_spec("nudenet") is not None
needs_nudenet = pytest.mark.skipif(
    not HAVE_NUDENET, reason="nudenet is not installed (pip install 'rempart[nudity]')"
)
needs_photos = pytest.mark.skipif(
    not (FACES_DIR / "identities.csv").is_file(),
    reason=f"reference face photos not found in {FACES_DIR}",
)


def _photos() -> list[tuple[str, int]]:
    with (FACES_DIR / "identities.csv").open(encoding="utf-8") as f:
        return [(row["file"], len(row["people"].split(";"))) for row in csv.DictReader(f)]


def _load(name: str) -> np.ndarray:
    with Image.open(FACES_DIR / name) as im:
        return np.asarray(im.convert("RGB"))


def _drawing(w: int = 640, h: int = 480) -> np.ndarray:
    image = Image.new("RGB", (w, h), (30, 90, 160))
    draw = ImageDraw.Draw(image)
    draw.rectangle((w // 10, h // 8, w // 2, h // 2), fill=(240, 200, 40))
    draw.ellipse((w // 2, h // 3, w - w // 10, h - h // 10), fill=(200, 40, 60))
    draw.polygon([(w // 5, h - 20), (w // 3, h // 2), (w // 2, h - 20)], fill=(20, 160, 80))
    for i in range(0, w, max(1, w // 16)):
        draw.line((i, 0, w - i, h), fill=(255, 255, 255), width=3)
    return np.asarray(image)


@pytest.fixture(scope="module")
def detector() -> NudityDetector:
    if not HAVE_NUDENET:
        pytest.skip("nudenet is not installed (pip install 'rempart[nudity]')")
    return NudityDetector()


def test_mapping_covers_all_18_classes() -> None:
    assert len(CLASSES) == 18 == len(set(CLASSES))
    assert set(EXPOSURE) == set(CLASSES)
    assert set(EXPOSURE.values()) == {"exposed", "covered", "none"}
    # Every *_COVERED class is covered or none, never exposed; faces are never nudity.
    assert all(EXPOSURE[c] != "exposed" for c in CLASSES if c.endswith("_COVERED"))
    assert EXPOSURE["FACE_FEMALE"] == EXPOSURE["FACE_MALE"] == "none"
    assert EXPOSURE["FEMALE_GENITALIA_EXPOSED"] == "exposed"


@needs_nudenet
def test_classes_match_the_model_metadata(detector: NudityDetector) -> None:
    session = detector._loaded()
    names = session.get_modelmeta().custom_metadata_map["names"]
    for i, cls in enumerate(CLASSES):
        assert f"{i}: '{cls}'" in names


@needs_nudenet
@needs_photos
def test_reference_photos_give_faces_and_nothing_exposed(detector: NudityDetector) -> None:
    for name, people in _photos():
        rgb = _load(name)
        h, w = rgb.shape[:2]
        regions = detector.regions(rgb)
        faces = [r for r in regions if r.cls in ("FACE_FEMALE", "FACE_MALE")]
        assert len(faces) >= people, (name, regions)
        for face in faces:
            x0, y0, x1, y1 = face.box
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (name, face)
            share = (x1 - x0) * (y1 - y0) / (w * h)
            assert 0.005 < share < 0.6, (name, face, share)  # a plausible portrait face
            assert face.exposure == "none"
            assert face.score >= detector.threshold
        assert detector.exposed_regions(rgb) == [], name
        assert nudity_evidence(regions, detector.threshold) == []


@needs_nudenet
def test_drawing_has_no_exposed_region(detector: NudityDetector) -> None:
    for size in ((640, 480), (300, 900)):
        rgb = _drawing(*size)
        assert detector.exposed_regions(rgb, threshold=0.2) == []


@needs_nudenet
@needs_photos
def test_rgb_is_reversed_to_nudenets_bgr(detector: NudityDetector) -> None:
    """Our RGB path equals NudeNet's own on the BGR it reads; the wrong order differs."""
    from nudenet import NudeDetector

    reference = NudeDetector()
    differs = 0
    for name, _ in _photos():
        rgb = _load(name)
        if max(rgb.shape[:2]) > nudity.MAX_SIDE:
            continue  # we shrink those first; NudeNet does not
        ours = detector.regions(rgb, threshold=0.25)
        theirs = reference.detect(np.ascontiguousarray(rgb[:, :, ::-1]))
        assert [r.cls for r in ours] == [d["class"] for d in theirs], name
        for r, d in zip(ours, theirs, strict=True):
            assert abs(r.score - d["score"]) < 1e-3, name
            x, y, bw, bh = d["box"]
            assert np.allclose(r.box, (x, y, x + bw, y + bh), atol=2), name
        swapped = detector.regions(np.ascontiguousarray(rgb[:, :, ::-1]), threshold=0.25)
        if [(r.cls, round(r.score, 3)) for r in swapped] != [
            (r.cls, round(r.score, 3)) for r in ours
        ]:
            differs += 1
    assert differs >= 3  # channel order changes scores: getting it wrong is not harmless


@needs_nudenet
def test_huge_and_tiny_images_are_bounded(detector: NudityDetector) -> None:
    big = np.asarray(Image.fromarray(_drawing()).resize((4000, 3000)))
    for r in detector.regions(big, threshold=0.2):
        assert 0 <= r.box[0] < r.box[2] <= 4000 and 0 <= r.box[1] < r.box[3] <= 3000
    assert detector.regions(np.zeros((1, 1, 3), np.uint8)) == []
    assert detector.regions(np.zeros((5, 900, 3), np.uint8)) == []


@needs_nudenet
def test_bad_input_is_refused(detector: NudityDetector) -> None:
    for bad in (
        np.zeros((10, 10, 3), np.float32),
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((0, 10, 3), np.uint8),
        b"not an image",
    ):
        with pytest.raises(NudityInputError) as e:
            detector.regions(bad)  # type: ignore[arg-type]
        assert e.value.code == "bad_image_array"


def test_unavailable_without_nudenet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nudenet", None)  # makes `import nudenet` fail
    with pytest.raises(NudityUnavailableError) as e:
        NudityDetector()
    assert e.value.code == "nudity_unavailable"
    assert "pip install 'rempart[nudity]'" in (e.value.hint or "")


@needs_nudenet
def test_lazy_thread_safe_load_and_nothing_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    fresh = NudityDetector()
    assert fresh._session is None  # nothing loaded until the first image
    rgb = _drawing()
    results: list[list[Region]] = []

    def work() -> None:
        results.append(fresh.regions(rgb, threshold=0.2))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r == results[0] for r in results)
    assert list(tmp_path.iterdir()) == []


def test_evidence_counts_exposed_regions_over_threshold() -> None:
    regions = [
        Region("FEMALE_BREAST_EXPOSED", 0.8, (0, 0, 10, 10), "exposed"),
        Region("BUTTOCKS_EXPOSED", 0.4, (0, 0, 10, 10), "exposed"),
        Region("FEMALE_BREAST_COVERED", 0.9, (0, 0, 10, 10), "covered"),
        Region("FACE_FEMALE", 0.9, (0, 0, 10, 10), "none"),
    ]
    facts = nudity_evidence(regions, 0.5)
    assert [f.detail["class"] for f in facts] == ["FEMALE_BREAST_EXPOSED"]
    assert facts[0].to_dict()["signal"] == "nudity"
    assert regions[0].to_dict()["exposure"] == "exposed"
