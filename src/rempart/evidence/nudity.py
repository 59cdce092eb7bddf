"""Nudity regions in an image, with NudeNet's bundled detector (an optional extra).

NudeNet 3.4 ships a small YOLOv8 model (``320n.onnx``, 320 x 320 input) that finds 18 kinds
of body region, each named by part and whether it is exposed or covered. Rempart runs that
model itself with onnxruntime, on the file inside the installed ``nudenet`` package: nothing
is downloaded, no image or crop is ever written.

The policy needs one fact, ``nudity_exposed``: a region whose class maps to ``exposed`` and
whose score is at or over the threshold. :data:`EXPOSURE` says how each of NudeNet's classes
maps (see ``docs/nudity.md`` for why). Like every signal here, a region is a **lead** for a
human reviewer, never a verdict: the model errs on skin-coloured backgrounds, art and
swimwear, and its training data and terms are not documented (``docs/licences.md``).

Colour order: NudeNet reads files with OpenCV, so its model sees **BGR**. Rempart decodes to
RGB; :meth:`NudityDetector.regions` takes RGB and reverses the channels before inference.

>>> detector = NudityDetector()                     # doctest: +SKIP
>>> [(r.cls, r.exposure) for r in detector.regions(rgb)]   # doctest: +SKIP
[('FACE_FEMALE', 'none')]
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np

from rempart.errors import RempartError
from rempart.policy import Evidence

Exposure = Literal["exposed", "covered", "none"]

#: NudeNet's output classes, in the model's output order (``nudenet/nudenet.py``).
CLASSES: Final[tuple[str, ...]] = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)

#: Class -> exposure level. ``exposed``: an intimate body part shown bare, what makes an
#: image intimate in the sense of NCII law. ``covered``: an intimate part under clothing
#: (underwear, swimwear), reported but never a ``nudity_exposed`` fact. ``none``: parts that
#: are not intimate, bare or not -- faces, feet, belly, armpits -- and the bare male chest,
#: which is ordinary at a beach or a match and would make every swimming photo a lead.
EXPOSURE: Final[Mapping[str, Exposure]] = {
    "FEMALE_GENITALIA_EXPOSED": "exposed",
    "MALE_GENITALIA_EXPOSED": "exposed",
    "FEMALE_BREAST_EXPOSED": "exposed",
    "BUTTOCKS_EXPOSED": "exposed",
    "ANUS_EXPOSED": "exposed",
    "FEMALE_GENITALIA_COVERED": "covered",
    "FEMALE_BREAST_COVERED": "covered",
    "BUTTOCKS_COVERED": "covered",
    "ANUS_COVERED": "covered",
    "MALE_BREAST_EXPOSED": "none",
    "BELLY_EXPOSED": "none",
    "BELLY_COVERED": "none",
    "ARMPITS_EXPOSED": "none",
    "ARMPITS_COVERED": "none",
    "FEET_EXPOSED": "none",
    "FEET_COVERED": "none",
    "FACE_FEMALE": "none",
    "FACE_MALE": "none",
}

#: Default score threshold. NudeNet's own code keeps candidates from 0.2 and its NMS from
#: 0.25, which suits a censoring tool (better to blur too much); for a lead that a person
#: must review, 0.5 trades a few missed regions for far fewer false ones.
DEFAULT_THRESHOLD: Final = 0.5
#: The model's input side, fixed by ``320n.onnx``.
INPUT_SIZE: Final = 320
#: Images are shrunk to at most this side before padding. The model sees 320 px anyway; the
#: bound keeps the padded square of a 50-megapixel photo from costing hundreds of megabytes.
MAX_SIDE: Final = 1280
#: NudeNet's own candidate floor, NMS score floor and NMS IoU, kept so results match its
#: ``NudeDetector.detect`` before our threshold applies.
_CANDIDATE_FLOOR: Final = 0.2
_NMS_SCORE: Final = 0.25
_NMS_IOU: Final = 0.45
_MODEL_FILE: Final = "320n.onnx"
_INSTALL_HINT: Final = "pip install 'rempart[nudity]'"


class NudityUnavailableError(RempartError):
    """NudeNet or its model is not installed (``nudity_unavailable``)."""

    code = "nudity_unavailable"
    status = 501


class NudityInputError(RempartError):
    """The image given is not an RGB uint8 array (``bad_image_array``)."""

    code = "bad_image_array"
    status = 422


@dataclass(frozen=True, slots=True)
class Region:
    """One body region found by the model, in the original image's pixels."""

    cls: str
    score: float
    #: ``(x0, y0, x1, y1)``, inclusive-exclusive, clipped to the image.
    box: tuple[int, int, int, int]
    exposure: Exposure

    def to_dict(self) -> dict[str, Any]:
        """JSON shape for scan results."""
        return {
            "class": self.cls,
            "score": round(self.score, 4),
            "box": list(self.box),
            "exposure": self.exposure,
        }


def nudity_evidence(regions: list[Region], threshold: float) -> list[Evidence]:
    """The ``nudity_exposed`` facts for the policy: one per exposed region."""
    return [
        Evidence("nudity", round(r.score, 4), threshold, {"class": r.cls, "box": list(r.box)})
        for r in regions
        if r.exposure == "exposed" and r.score >= threshold
    ]


def _model_path() -> Path:
    """The ``320n.onnx`` inside the installed ``nudenet`` package, found without importing it."""
    try:
        spec = importlib.util.find_spec("nudenet")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise NudityUnavailableError(
            "nudity detection needs NudeNet, which is not installed",
            hint=f"{_INSTALL_HINT}; read docs/licences.md first: its licence is unclear",
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / _MODEL_FILE
        if path.is_file():
            return path
    raise NudityUnavailableError(
        f"the nudenet package has no {_MODEL_FILE}",
        hint=f"reinstall it: {_INSTALL_HINT} (nudenet 3.4 bundles the model)",
    )


def _check_rgb(rgb: Any) -> np.ndarray:
    if (
        not isinstance(rgb, np.ndarray)
        or rgb.dtype != np.uint8
        or rgb.ndim != 3
        or rgb.shape[2] != 3
    ):
        shape = getattr(rgb, "shape", None)
        dtype = getattr(rgb, "dtype", type(rgb).__name__)
        raise NudityInputError(
            f"expected an RGB uint8 array of shape (height, width, 3), got {dtype} {shape}",
            hint="decode the file with rempart.media.decode_image",
        )
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise NudityInputError("the image is empty")
    return rgb


class NudityDetector:
    """NudeNet's detector on RGB arrays; the model loads on first use, once, thread-safely.

    ``NudityDetector()`` fails at once with ``nudity_unavailable`` when NudeNet is not
    installed, so a misconfigured service says so at start-up, not on the first scan.
    """

    def __init__(self, *, threshold: float = DEFAULT_THRESHOLD, threads: int = 1) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise RempartError("the nudity threshold must be between 0 and 1", code="bad_setting")
        self.threshold = threshold
        self._threads = max(1, int(threads))
        self._path = _model_path()
        self._lock = threading.Lock()
        self._session: Any = None
        self._input = ""

    def _loaded(self) -> Any:
        with self._lock:
            if self._session is None:
                import onnxruntime as ort

                options = ort.SessionOptions()
                # One thread by default: scans run in parallel workers, each on one core.
                options.intra_op_num_threads = self._threads
                try:
                    session = ort.InferenceSession(
                        str(self._path), options, providers=["CPUExecutionProvider"]
                    )
                except Exception as e:  # onnxruntime raises its own exception types
                    raise NudityUnavailableError(
                        f"onnxruntime cannot load {self._path}: {e}",
                        hint=f"reinstall NudeNet: {_INSTALL_HINT}",
                    ) from None
                self._input = session.get_inputs()[0].name
                self._session = session
            return self._session

    def _prepare(self, bgr: np.ndarray) -> tuple[np.ndarray, float]:
        """NudeNet's preprocessing: pad right/bottom to a square, resize, scale to 0-1."""
        import cv2

        h, w = bgr.shape[:2]
        shrink = 1.0
        if max(h, w) > MAX_SIDE:
            shrink = MAX_SIDE / max(h, w)
            size = (max(1, round(w * shrink)), max(1, round(h * shrink)))
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        side = max(bgr.shape[:2])
        square = np.zeros((side, side, 3), np.uint8)
        square[: bgr.shape[0], : bgr.shape[1]] = bgr
        small = cv2.resize(square, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
        x = small.astype(np.float32) * np.float32(1 / 255.0)
        # original pixels per model pixel
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), side / INPUT_SIZE / shrink

    def _run(self, bgr: np.ndarray) -> list[Region]:
        import cv2

        session = self._loaded()
        x, scale = self._prepare(bgr)
        out = np.asarray(session.run(None, {self._input: x})[0])[0].T  # (anchors, 4 + classes)
        class_scores = out[:, 4:]
        ids = class_scores.argmax(axis=1)
        best = class_scores[np.arange(len(ids)), ids]
        keep = best >= _CANDIDATE_FLOOR
        if not keep.any():
            return []
        cx, cy, bw, bh = (out[keep, i] * scale for i in range(4))
        h, w = bgr.shape[:2]
        x0 = np.clip(cx - bw / 2, 0, w)
        y0 = np.clip(cy - bh / 2, 0, h)
        x1 = np.clip(cx + bw / 2, 0, w)
        y1 = np.clip(cy + bh / 2, 0, h)
        scores, ids = best[keep], ids[keep]
        # Class-agnostic NMS, as NudeNet does: one region per place, its likeliest class.
        rects = [
            [float(a), float(b), float(c - a), float(d - b)]
            for a, b, c, d in zip(x0, y0, x1, y1, strict=True)
        ]
        picked = cv2.dnn.NMSBoxes(rects, scores.astype(float).tolist(), _NMS_SCORE, _NMS_IOU)
        regions = []
        for i in np.asarray(picked, dtype=int).reshape(-1):
            cls = CLASSES[int(ids[i])]
            box = (int(x0[i]), int(y0[i]), int(np.ceil(x1[i])), int(np.ceil(y1[i])))
            regions.append(Region(cls, float(scores[i]), box, EXPOSURE[cls]))
        regions.sort(key=lambda r: -r.score)
        return regions

    def regions(self, rgb: np.ndarray, *, threshold: float | None = None) -> list[Region]:
        """Every region scoring at or over ``threshold`` (default: the detector's), best first."""
        rgb = _check_rgb(rgb)
        floor = self.threshold if threshold is None else threshold
        # The model was fed OpenCV's BGR by NudeNet; reversing the channels is that order.
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        return [r for r in self._run(bgr) if r.score >= floor]

    def exposed_regions(self, rgb: np.ndarray, *, threshold: float | None = None) -> list[Region]:
        """Only the regions whose class maps to ``exposed``: what ``nudity_exposed`` counts."""
        return [r for r in self.regions(rgb, threshold=threshold) if r.exposure == "exposed"]
