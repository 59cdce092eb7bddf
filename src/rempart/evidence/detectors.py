"""Pluggable learned detectors: the operator's ONNX model, described by a manifest.

No synthetic-image detector ships its weights on PyPI, so Rempart ships none: an operator
points to an ONNX file and a TOML manifest that says how to feed it and read it. Scores are
**leads**: detectors that score well on their benchmarks lose much of it in the wild
(Deepfake-Eval-2024 measured AUC drops of ~45-50% for open-source detectors on content from
2024), so a score is evidence for a human, never a verdict by itself.

Manifest (TOML)::

    name = "my-detector"
    model = "detector.onnx"          # relative to the manifest
    licence = "..."                  # required: what the weights may be used for
    trained_on = "..."               # required: the data it learned from
    [input]
    size = [224, 224]                # width, height
    resize = "shorter-then-crop"     # or "stretch"
    mean = [0.485, 0.456, 0.406]     # per RGB channel, on 0-1 values
    std = [0.229, 0.224, 0.225]
    layout = "NCHW"                  # or "NHWC"
    [output]
    kind = "sigmoid"                 # "logit" (sigmoid applied), "sigmoid" (probability),
                                     # or "softmax" (with index = the positive class)
    index = 0
    threshold = 0.5
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from rempart.errors import RempartError


class DetectorError(RempartError):
    """A detector manifest or model cannot be used (``bad_detector``)."""

    code = "bad_detector"
    status = 422


@dataclass(frozen=True)
class DetectorManifest:
    """How to run one ONNX detector and read its output."""

    name: str
    model: Path
    licence: str
    trained_on: str
    size: tuple[int, int]
    resize: Literal["shorter-then-crop", "stretch"]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    layout: Literal["NCHW", "NHWC"]
    output_kind: Literal["logit", "sigmoid", "softmax"]
    index: int
    threshold: float


@dataclass(frozen=True)
class DetectorScore:
    """A detector's score for one image: a lead, with its threshold and provenance."""

    detector: str
    score: float
    threshold: float
    over_threshold: bool
    licence: str
    trained_on: str

    def to_dict(self) -> dict[str, Any]:
        """JSON shape for scan results."""
        return {
            "detector": self.detector,
            "score": round(self.score, 4),
            "threshold": self.threshold,
            "over_threshold": self.over_threshold,
            "licence": self.licence,
            "trained_on": self.trained_on,
            "note": "a lead for a human reviewer, not a verdict",
        }


def _floats(value: Any, n: int, where: str) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) != n:
        raise DetectorError(f"{where} must be a list of {n} numbers")
    try:
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise DetectorError(f"{where} must be a list of {n} numbers") from None


def load_manifest(path: Path) -> DetectorManifest:
    """Read and check a manifest; DetectorError says what is missing or wrong."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DetectorError(f"cannot read the detector manifest {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise DetectorError(f"the detector manifest {path} is not valid TOML: {e}") from None
    for key in ("name", "model", "licence", "trained_on"):
        if not isinstance(doc.get(key), str) or not doc[key].strip():
            raise DetectorError(
                f"the detector manifest needs `{key}`",
                hint="licence and trained_on are required: reviewers must know what a "
                "score comes from",
            )
    model = (path.parent / doc["model"]).resolve()
    if not model.is_file():
        raise DetectorError(
            f"the detector model {model} does not exist",
            hint="`model` is a path relative to the manifest",
        )
    inp = doc.get("input", {})
    out = doc.get("output", {})
    size = _floats(inp.get("size", [224, 224]), 2, "input.size")
    if not all(8 <= s <= 4096 for s in size):
        raise DetectorError("input.size must be between 8 and 4096 pixels")
    resize = inp.get("resize", "shorter-then-crop")
    layout = inp.get("layout", "NCHW")
    kind = out.get("kind", "sigmoid")
    if resize not in ("shorter-then-crop", "stretch"):
        raise DetectorError("input.resize must be shorter-then-crop or stretch")
    if layout not in ("NCHW", "NHWC"):
        raise DetectorError("input.layout must be NCHW or NHWC")
    if kind not in ("logit", "sigmoid", "softmax"):
        raise DetectorError("output.kind must be logit, sigmoid or softmax")
    threshold = float(out.get("threshold", 0.5))
    if not 0.0 <= threshold <= 1.0:
        raise DetectorError("output.threshold must be between 0 and 1")
    mean = _floats(inp.get("mean", [0.0, 0.0, 0.0]), 3, "input.mean")
    std = _floats(inp.get("std", [1.0, 1.0, 1.0]), 3, "input.std")
    if any(s <= 0 for s in std):
        raise DetectorError("input.std values must be positive")
    return DetectorManifest(
        name=doc["name"],
        model=model,
        licence=doc["licence"],
        trained_on=doc["trained_on"],
        size=(int(size[0]), int(size[1])),
        resize=resize,
        mean=(mean[0], mean[1], mean[2]),
        std=(std[0], std[1], std[2]),
        layout=layout,
        output_kind=kind,
        index=int(out.get("index", 0)),
        threshold=threshold,
    )


class Detector:
    """An ONNX detector ready to score RGB images (CPU, onnxruntime)."""

    def __init__(self, manifest: DetectorManifest) -> None:
        import onnxruntime as ort

        self.manifest = manifest
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(manifest.model), options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise DetectorError(
                f"onnxruntime cannot load {manifest.model}: {e}",
                hint="check that the file is an ONNX model",
            ) from None
        self._input = self._session.get_inputs()[0].name

    @classmethod
    def from_manifest(cls, path: Path) -> Detector:
        """Load the detector described by the manifest at ``path``."""
        return cls(load_manifest(path))

    def _prepare(self, rgb: np.ndarray) -> np.ndarray:
        m = self.manifest
        w, h = m.size
        image = Image.fromarray(rgb)
        if m.resize == "stretch":
            image = image.resize((w, h), Image.Resampling.BILINEAR)
        else:
            scale = max(w / image.width, h / image.height)
            nw, nh = max(w, round(image.width * scale)), max(h, round(image.height * scale))
            image = image.resize((nw, nh), Image.Resampling.BILINEAR)
            left, top = (nw - w) // 2, (nh - h) // 2
            image = image.crop((left, top, left + w, top + h))
        pixels = np.asarray(image, dtype=np.float32) / np.float32(255.0)
        x: np.ndarray = (pixels - np.asarray(m.mean, np.float32)) / np.asarray(m.std, np.float32)
        if m.layout == "NCHW":
            x = x.transpose(2, 0, 1)
        return np.ascontiguousarray(x[None])

    def score(self, rgb: np.ndarray) -> DetectorScore:
        """The detector's score for an RGB uint8 image."""
        m = self.manifest
        try:
            (raw,) = self._session.run(None, {self._input: self._prepare(rgb)})[:1]
        except Exception as e:
            raise DetectorError(
                f"the detector {m.name!r} failed: {e}",
                hint="check input.size and input.layout in its manifest",
            ) from None
        out = np.asarray(raw, dtype=np.float64).reshape(-1)
        if m.index >= out.size:
            raise DetectorError(
                f"the detector {m.name!r} gives {out.size} outputs; "
                f"output.index {m.index} is out of range"
            )
        if m.output_kind == "softmax":
            weights = np.exp(out - out.max())
            value = float(weights[m.index] / weights.sum())
        elif m.output_kind == "logit":
            value = float(1.0 / (1.0 + np.exp(-out[m.index])))
        else:
            value = float(out[m.index])
        if not np.isfinite(value):
            raise DetectorError(f"the detector {m.name!r} returned a non-finite score")
        return DetectorScore(
            m.name, value, m.threshold, value >= m.threshold, m.licence, m.trained_on
        )
