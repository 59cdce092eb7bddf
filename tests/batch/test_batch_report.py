"""The HTML report: self-contained, grouped by bank and by case, no picture unless asked."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import SerialEngine, image, write_zip
from rempart.batch import BatchConfig, run_batch
from rempart.batch.report import Tally, bar_chart, render


def _corpus(root: Path) -> None:
    root.mkdir()
    (root / "a.jpg").write_bytes(image(21))
    (root / "b.jpg").write_bytes(image(22))
    (root / "c.jpg").write_bytes(image(23))
    (root / "d.jpg").write_bytes(image(24))
    (root / "<img src=x onerror=alert(1)>.jpg").write_bytes(b"nope")
    write_zip(root / "z.zip", {"inner.jpg": image(22)})


def test_report_groups_by_bank_and_case_without_pictures(
    tmp_path: Path,
    config: Callable[..., BatchConfig],
    add_to_bank: Callable[..., list[int]],
    serial: SerialEngine,
) -> None:
    root = tmp_path / "in"
    _corpus(root)
    (reported,) = add_to_bank("reported", image(21))
    case_b, case_c = add_to_bank("cases", image(22), image(23))
    run_batch(config(root), engine=serial)
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "<img" not in page and "data:image" not in page
    assert "<script" not in page and "&lt;img src=x onerror=alert(1)&gt;.jpg" in page
    assert "default-src 'none'" in page  # nothing remote, no script, even if opened online
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert page.count("<svg") >= 4
    assert "Bank reported" in page and "Bank cases" in page
    assert f"Case entry {case_b}" in page and f"Case entry {case_c}" in page
    # b.jpg and the ZIP's copy of it are the same case entry: two items in one group.
    group = page.split(f"Case entry {case_b}")[1].split("</section>")[0]
    assert "(2 items)" in group and "z.zip" in group and "b.jpg" in group
    assert "lead for a human to review" in page
    assert re.search(r"<td>unsupported_format</td>", page)
    bank_section = page.split("Bank reported")[1].split("</section>")[0]
    assert f"<td>{reported}</td>" in bank_section and "a.jpg" in bank_section
    # Each flagged item shows its reasons.
    assert "hash-match" in page or "hash_match" in page


def test_previews_only_when_asked_blurred_and_grey(
    tmp_path: Path,
    config: Callable[..., BatchConfig],
    add_to_bank: Callable[..., list[int]],
    serial: SerialEngine,
    photo: Callable[[str], np.ndarray],
    encode: Callable[..., bytes],
) -> None:
    root = tmp_path / "in"
    _corpus(root)
    astronaut = encode(photo("astronaut"), "JPEG", quality=90)
    (root / "astronaut.jpg").write_bytes(astronaut)
    add_to_bank("reported", astronaut)
    run_batch(config(root, previews=True), engine=serial)
    out = tmp_path / "out"
    page = (out / "report.html").read_text(encoding="utf-8")
    thumbs = re.findall(r'<img[^>]+src="data:image/jpeg;base64,([^"]+)"', page)
    assert len(thumbs) == 1  # the one flagged item, not the others
    thumb = Image.open(io.BytesIO(base64.b64decode(thumbs[0])))
    assert thumb.mode == "L" and max(thumb.size) <= 64
    # Blurred: far less detail than the same thumbnail unblurred.
    sharp = Image.open(io.BytesIO(astronaut)).convert("L")
    sharp.thumbnail(thumb.size)
    assert _detail(thumb) < 0.5 * _detail(sharp)
    # Never in the results themselves.
    assert "data:image" not in (out / "results.jsonl").read_text(encoding="utf-8")
    assert "data:image" not in (out / "results.csv").read_text(encoding="utf-8")
    # A re-run without --previews writes a report without them.
    run_batch(config(root), engine=serial)
    assert "<img" not in (out / "report.html").read_text(encoding="utf-8")


def _detail(img: Image.Image) -> float:
    """Mean difference between neighbouring pixels (what blurring takes away)."""
    return float(np.abs(np.diff(np.asarray(img, dtype=np.float64), axis=1)).mean())


def test_render_empty_and_chart() -> None:
    page = render(Tally(), {"banks": None, "signals": [], "policy": "default"}, None)
    assert "No bank matched." in page and "No errors." in page
    svg = bar_chart("Verdicts", [("allow", 3), ("<b>", 1)])
    assert svg.count("<rect") == 2 and "&lt;b&gt;" in svg
