"""Learned detectors through a tiny ONNX model the test builds (no weights are shipped)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from rempart.evidence.detectors import Detector, DetectorError, load_manifest


def _mean_model(path: Path, layout: str = "NCHW", two_outputs: bool = False) -> None:
    """A model whose score is the mean of its (normalised) input: predictable by hand."""
    shape = [1, 3, 16, 16] if layout == "NCHW" else [1, 16, 16, 3]
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0)]
    out = "m"
    out_shape: list[int] = []
    if two_outputs:  # logits [mean, 1 - mean] for a softmax head
        one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
        nodes += [
            helper.make_node("Sub", ["one", "m"], ["n"]),
            helper.make_node("Unsqueeze", ["m", "axes"], ["m1"]),
            helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
            helper.make_node("Concat", ["m1", "n1"], ["y"], axis=0),
        ]
        inits = [one, helper.make_tensor("axes", TensorProto.INT64, [1], [0])]
        out, out_shape = "y", [2]
    else:
        inits = []
    graph = helper.make_graph(
        nodes,
        "mean",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def _manifest(tmp: Path, **overrides: str) -> Path:
    fields = {
        "name": '"mean-brightness"',
        "model": '"m.onnx"',
        "licence": '"test only"',
        "trained_on": '"nothing: a test model"',
    }
    fields.update(overrides)
    top = "\n".join(f"{k} = {v}" for k, v in fields.items() if not k.startswith("_"))
    layout = overrides.get("_layout", '"NCHW"')
    resize = overrides.get("_resize", '"shorter-then-crop"')
    kind = overrides.get("_kind", '"sigmoid"')
    text = (
        f"{top}\n[input]\nsize = [16, 16]\nlayout = {layout}\nresize = {resize}\n"
        f"[output]\nkind = {kind}\nthreshold = 0.5\n"
    )
    path = tmp / "detector.toml"
    path.write_text(text)
    return path


def test_scores_follow_the_model(tmp_path: Path) -> None:
    _mean_model(tmp_path / "m.onnx")
    det = Detector.from_manifest(_manifest(tmp_path))
    white = np.full((40, 60, 3), 255, np.uint8)
    black = np.zeros((40, 60, 3), np.uint8)
    grey = np.full((30, 30, 3), 64, np.uint8)
    assert det.score(white).score == pytest.approx(1.0)
    assert det.score(black).score == pytest.approx(0.0)
    s = det.score(grey)
    assert s.score == pytest.approx(64 / 255, abs=1e-3) and not s.over_threshold
    d = det.score(white).to_dict()
    assert d["over_threshold"] and d["licence"] == "test only" and "lead" in d["note"]


def test_nhwc_softmax_and_stretch(tmp_path: Path) -> None:
    _mean_model(tmp_path / "m.onnx", layout="NHWC", two_outputs=True)
    det = Detector.from_manifest(
        _manifest(tmp_path, _layout='"NHWC"', _kind='"softmax"', _resize='"stretch"')
    )
    white = det.score(np.full((10, 50, 3), 255, np.uint8)).score
    assert white == pytest.approx(np.exp(1) / (np.exp(1) + np.exp(0)), abs=1e-4)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"licence": '""'}, "licence"),
        ({"trained_on": '""'}, "trained_on"),
        ({"model": '"missing.onnx"'}, "does not exist"),
        ({"_kind": '"probit"'}, "output.kind"),
        ({"_layout": '"CHW"'}, "input.layout"),
    ],
)
def test_bad_manifests_are_explained(
    tmp_path: Path, overrides: dict[str, str], fragment: str
) -> None:
    _mean_model(tmp_path / "m.onnx")
    with pytest.raises(DetectorError) as info:
        load_manifest(_manifest(tmp_path, **overrides))
    assert fragment in info.value.message


def test_a_file_that_is_not_onnx(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"not a model at all")
    with pytest.raises(DetectorError) as info:
        Detector.from_manifest(_manifest(tmp_path))
    assert "cannot load" in info.value.message


def test_wrong_input_size_is_a_clear_error(tmp_path: Path) -> None:
    _mean_model(tmp_path / "m.onnx")
    path = _manifest(tmp_path)
    path.write_text(path.read_text().replace("size = [16, 16]", "size = [32, 32]"))
    with pytest.raises(DetectorError) as info:
        Detector.from_manifest(path).score(np.zeros((40, 40, 3), np.uint8))
    assert "failed" in info.value.message
