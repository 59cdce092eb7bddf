"""Faces in an image: detection and 128-d embeddings with dlib's public-domain models.

Used only to find people who **enrolled themselves** for protection: a face whose embedding
is close to an enrolled template is reported as a *lead* for a human reviewer, with its
distance, never as an identification. See ``docs/faces.md`` for measured error rates and
their caveats.

- Detection: dlib's HOG frontal face detector (CPU, no model file). The CNN (MMOD) detector
  finds more faces at odd angles but costs seconds per megapixel on a CPU, too slow for a
  scan path; see the timings in ``docs/faces.md``.
- Alignment: the 5-point landmark model; embedding: dlib's ResNet
  (``dlib_face_recognition_resnet_model_v1``), both from the ``face_recognition_models``
  package, read from the installed package and never downloaded.
- Bounds: detection runs on a copy scaled down to ``max_detect_pixels``; at most
  ``max_faces`` faces are embedded, within ``embed_budget_s``; the rest are still reported,
  with ``embedding=None``.

>>> analyzer = FaceAnalyzer()                       # doctest: +SKIP
>>> [f.box for f in analyzer.faces(rgb)]            # doctest: +SKIP
[(120, 80, 260, 220)]
"""

from __future__ import annotations

import importlib.util
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from PIL import Image

from rempart.errors import RempartError

#: Length of an embedding.
EMBEDDING_DIM: Final = 128
#: Euclidean distance at or under which two embeddings are reported as a possible match.
#: dlib's documented operating point (99.38% on LFW). On our reference photos every
#: same-person pair was under 0.55 and every different-person pair over 0.6 (docs/faces.md),
#: but LFW-style adult portraits are the easy case, so we keep dlib's value rather than
#: tune to fifteen photos.
DEFAULT_THRESHOLD: Final = 0.6
#: Detection runs on at most this many pixels (about 1600 x 1000). HOG time grows with
#: pixels; faces smaller than ~40 px in the scaled copy are lost, which at this size means
#: faces under ~2% of the image width -- too small to embed usefully anyway.
DEFAULT_MAX_DETECT_PIXELS: Final = 1_600_000
#: Faces embedded per image; a crowd photo beyond this is reported as detected-not-embedded.
DEFAULT_MAX_FACES: Final = 50
#: Wall-clock budget for embedding one image's faces (about 65 ms each on one core, so 50
#: faces fit in ~3.3 s).
DEFAULT_EMBED_BUDGET_S: Final = 5.0
#: Images smaller than this on a side cannot hold a detectable face (HOG window: 80 px,
#: 40 px with one upsampling); skip them without running anything.
_MIN_SIDE: Final = 20

_MODEL_FILES: Final = {
    "landmarks": "shape_predictor_5_face_landmarks.dat",
    "embedder": "dlib_face_recognition_resnet_model_v1.dat",
}


class FaceModelError(RempartError):
    """The face models cannot be loaded (``face_models_missing``)."""

    code = "face_models_missing"
    status = 500


class FaceInputError(RempartError):
    """The image given is not an RGB uint8 array (``bad_image_array``)."""

    code = "bad_image_array"
    status = 422


@dataclass(frozen=True, slots=True)
class Face:
    """One detected face.

    ``box`` is ``(x0, y0, x1, y1)`` in pixels of the image given (exclusive right/bottom),
    ``score`` the detector's confidence (higher is surer; 0 is its default cut-off), and
    ``embedding`` a float32 vector of 128, or ``None`` when the face was detected but not
    embedded (over ``max_faces`` or the time budget).
    """

    box: tuple[int, int, int, int]
    score: float
    embedding: np.ndarray[Any, np.dtype[np.float32]] | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class FaceAnalysis:
    """What :meth:`FaceAnalyzer.analyze` found, with how long each step took."""

    faces: list[Face]
    #: Faces detected but not embedded (cap or time budget).
    not_embedded: int
    #: Factor the image was scaled by for detection (1.0 = not scaled).
    detect_scale: float
    detect_s: float
    embed_s: float


def distance(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    """Euclidean distance between two embeddings (0 = identical; dlib's metric)."""
    return float(np.linalg.norm(np.asarray(a, np.float32) - np.asarray(b, np.float32)))


def model_path(name: str) -> Path:
    """Path of a model file inside the installed ``face_recognition_models`` package.

    Found without importing the package, whose ``__init__`` needs ``pkg_resources``
    (setuptools), which we do not otherwise depend on.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelError(
            "the face models are not installed",
            hint="pip install face_recognition_models dlib-bin",
        )
    for base in spec.submodule_search_locations:
        path = Path(base) / "models" / name
        if path.is_file():
            return path
    raise FaceModelError(
        f"model file {name} is missing from face_recognition_models",
        hint="reinstall face_recognition_models",
    )


def _check_rgb(rgb: object) -> np.ndarray[Any, np.dtype[np.uint8]]:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8:
        raise FaceInputError(
            "faces need a numpy uint8 array",
            hint="decode the file with rempart.media.decode_image first",
        )
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise FaceInputError(
            f"faces need an RGB array of shape (height, width, 3), got {rgb.shape}",
            hint="convert with rempart.media.to_rgb",
        )
    return np.ascontiguousarray(rgb)


class FaceAnalyzer:
    """Detects faces and embeds them. Models load once, on first use; safe across threads.

    ``upsample`` is how many times the detector doubles the (already capped) image: 1 finds
    faces down to ~40 px at about 4x the cost of 0.
    """

    def __init__(
        self,
        *,
        max_detect_pixels: int = DEFAULT_MAX_DETECT_PIXELS,
        max_faces: int = DEFAULT_MAX_FACES,
        embed_budget_s: float = DEFAULT_EMBED_BUDGET_S,
        upsample: int = 1,
    ) -> None:
        if max_detect_pixels < 10_000 or max_faces < 0 or embed_budget_s <= 0 or upsample < 0:
            raise ValueError("FaceAnalyzer limits must be positive")
        self.max_detect_pixels = max_detect_pixels
        self.max_faces = max_faces
        self.embed_budget_s = embed_budget_s
        self.upsample = upsample
        self._lock = threading.Lock()
        self._models: tuple[Any, Any, Any] | None = None

    def _load(self) -> tuple[Any, Any, Any]:
        with self._lock:
            if self._models is None:
                try:
                    import dlib
                except ImportError as exc:
                    raise FaceModelError(
                        "dlib is not installed", hint="pip install dlib-bin"
                    ) from exc
                self._models = (
                    dlib.get_frontal_face_detector(),
                    dlib.shape_predictor(str(model_path(_MODEL_FILES["landmarks"]))),
                    dlib.face_recognition_model_v1(str(model_path(_MODEL_FILES["embedder"]))),
                )
            return self._models

    def faces(self, rgb: np.ndarray[Any, Any]) -> list[Face]:
        """The faces in an RGB uint8 image, most confident first (see :meth:`analyze`)."""
        return self.analyze(rgb).faces

    def analyze(self, rgb: np.ndarray[Any, Any]) -> FaceAnalysis:
        """Detect faces (on a scaled copy if large), then embed up to ``max_faces`` of them.

        Embeddings are computed from the full-resolution image, aligned on five landmarks,
        so downscaling for detection costs no embedding quality.
        """
        image = _check_rgb(rgb)
        height, width = image.shape[:2]
        if min(height, width) < _MIN_SIDE:
            return FaceAnalysis([], 0, 1.0, 0.0, 0.0)
        detector, predictor, embedder = self._load()
        import dlib

        started = time.perf_counter()
        scale = min(1.0, math.sqrt(self.max_detect_pixels / (height * width)))
        small = image
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        rects, scores, _ = detector.run(small, self.upsample, 0.0)
        found: list[tuple[float, tuple[int, int, int, int]]] = []
        for rect, score in zip(rects, scores, strict=True):
            box = (
                max(0, int(rect.left() / scale)),
                max(0, int(rect.top() / scale)),
                min(width, math.ceil((rect.right() + 1) / scale)),
                min(height, math.ceil((rect.bottom() + 1) / scale)),
            )
            if box[2] > box[0] and box[3] > box[1]:
                found.append((float(score), box))
        found.sort(key=lambda item: -item[0])
        detect_s = time.perf_counter() - started

        started = time.perf_counter()
        embeddings: list[np.ndarray[Any, np.dtype[np.float32]]] = []
        # Small batches so the time budget is checked between them; the ResNet costs the
        # same per face batched or not on a CPU.
        batch = 8
        todo = found[: self.max_faces]
        for i in range(0, len(todo), batch):
            if time.perf_counter() - started > self.embed_budget_s:
                break
            shapes = dlib.full_object_detections()
            for _, (x0, y0, x1, y1) in todo[i : i + batch]:
                shapes.append(predictor(image, dlib.rectangle(x0, y0, x1 - 1, y1 - 1)))
            for vector in embedder.compute_face_descriptor(image, shapes):
                embeddings.append(np.asarray(vector, dtype=np.float32))
        embed_s = time.perf_counter() - started

        faces = [
            Face(box, score, embeddings[i] if i < len(embeddings) else None)
            for i, (score, box) in enumerate(found)
        ]
        return FaceAnalysis(faces, len(found) - len(embeddings), scale, detect_s, embed_s)
