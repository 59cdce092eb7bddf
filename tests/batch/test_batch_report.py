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
from rempart.batch import BatchConfig, ItemScanner, iter_rows, run_batch
from rempart.batch.report import Tally, bar_chart, render
from rempart.batch.results import load_previews
from rempart.cases import build_submission, load_submission
from rempart.cases.registry import CaseRepository
from rempart.settings import MediaLimits, Settings
from rempart.store import Store


def _submit_case(settings: Settings, folder: Path, *datas: bytes) -> str:
    """A victim's case opened for real from her images (hashed on her side); its number."""
    folder.mkdir()
    for n, data in enumerate(datas):
        (folder / f"{n}.jpg").write_bytes(data)
    submission = load_submission(build_submission([folder], limits=MediaLimits()).to_json())
    with Store.open(settings.database_url) as store:
        return CaseRepository(store, settings).submit(submission).number


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
    settings: Settings,
    config: Callable[..., BatchConfig],
    add_to_bank: Callable[..., list[int]],
    serial: SerialEngine,
) -> None:
    root = tmp_path / "in"
    _corpus(root)
    (reported,) = add_to_bank("reported", image(21))
    # Two real cases in the global cases bank: one with two of her images, one with one.
    hers = _submit_case(settings, tmp_path / "case1", image(22), image(23))
    other = _submit_case(settings, tmp_path / "case2", image(24))
    run_batch(config(root), engine=serial)
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "<img" not in page and "data:image" not in page
    assert "<script" not in page and "&lt;img src=x onerror=alert(1)&gt;.jpg" in page
    assert "default-src 'none'" in page  # nothing remote, no script, even if opened online
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert page.count("<svg") >= 4
    assert "Bank reported" in page and "Bank cases" in page
    # One group per case, by case number: her two images and the ZIP's copy of one of them
    # (three items) in one group, the other case's image in another; nothing else.
    section = page.split("<h2>Matches by case</h2>")[1].split("<h2>")[0]
    assert section.count('<section class="group">') == 2
    assert section.count(f"Case {hers}") == 1 and section.count(f"Case {other}") == 1
    group = section.split(f"Case {hers}")[1].split("</section>")[0]
    assert "(3 items" in group and "z.zip" in group and "b.jpg" in group and "c.jpg" in group
    assert "d.jpg" not in group and "a.jpg" not in group
    assert "d.jpg" in section.split(f"Case {other}")[1].split("</section>")[0]
    assert "a.jpg" not in section  # matched another bank only
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


def test_a_torn_previews_file_is_repaired(
    tmp_path: Path,
    config: Callable[..., BatchConfig],
    add_to_bank: Callable[..., list[int]],
    serial: SerialEngine,
) -> None:
    root = tmp_path / "in"
    root.mkdir()
    for n in (1, 2, 3):
        (root / f"{n}.jpg").write_bytes(image(60 + n))
    add_to_bank("reported", image(61), image(62), image(63))
    out = tmp_path / "out"
    run_batch(config(root, previews=True), engine=serial)
    assert len(load_previews(out)) == 3
    # A crash in the middle of writing the last item: its row is gone, its preview torn.
    rows = (out / "results.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (out / "results.jsonl").write_text("".join(rows[:-1]), encoding="utf-8")
    previews = (out / "previews.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (out / "previews.jsonl").write_text("".join(previews[:-1]) + previews[-1][:40])
    summary = run_batch(config(root, previews=True), engine=serial)
    assert summary.stats.scanned == 1
    # The preview made again is whole, not glued to the torn line.
    assert len(load_previews(out)) == 3
    lines = (out / "previews.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and all(line.endswith("}") for line in lines)


class _PreviewFails(ItemScanner):
    """An ItemScanner whose thumbnails fail (as Pillow can on a damaged image)."""

    def preview(self, data: bytes) -> str | None:
        raise OSError("broken data stream when reading image file")


def test_a_failed_preview_is_a_field_of_its_row_and_the_scan_goes_on(
    tmp_path: Path, config: Callable[..., BatchConfig], add_to_bank: Callable[..., list[int]]
) -> None:
    root = tmp_path / "in"
    root.mkdir()
    (root / "a.jpg").write_bytes(image(71))
    (root / "b.jpg").write_bytes(image(72))
    add_to_bank("reported", image(71), image(72))
    summary = run_batch(config(root, previews=True), engine=SerialEngine(_PreviewFails))
    assert summary.complete and summary.tally.errors == 0 and summary.tally.matched == 2
    for row in iter_rows(tmp_path / "out" / "results.jsonl"):
        assert row["matches"] and "error" not in row
        assert row["preview_error"]["code"] == "preview_failed"
        assert "broken data stream" in row["preview_error"]["message"]
    assert load_previews(tmp_path / "out") == {}


def _detail(img: Image.Image) -> float:
    """Mean difference between neighbouring pixels (what blurring takes away)."""
    return float(np.abs(np.diff(np.asarray(img, dtype=np.float64), axis=1)).mean())


def test_render_empty_and_chart() -> None:
    page = render(Tally(), {"banks": None, "signals": [], "policy": "default"}, None)
    assert "No bank matched." in page and "No errors." in page
    svg = bar_chart("Verdicts", [("allow", 3), ("<b>", 1)])
    assert svg.count("<rect") == 2 and "&lt;b&gt;" in svg
