"""End to end in a real browser: Debian's chromium driven by Playwright, against a real
``rempart serve`` process on a temporary SQLite store.

Logs in, scans a generated image that lands in the queue, sees it blurred (the computed CSS
filter), reveals it (the audit entry appears), confirms it into a bank with the keyboard,
and finds it by searching that bank. Screenshots of every page go to
``test-artifacts/ui/`` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from ui_helpers import PASSWORD, REVIEW_POLICY, make_image

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
REMPART = str(Path(sys.executable).parent / "rempart")
FILTER_IS = "f => getComputedStyle(document.getElementById('preview-img')).filter === f"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"


def _chromium() -> str:
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if not path:
        message = "chromium is not installed (apt-get install chromium); the browser test needs it"
        if os.environ.get("CI"):
            pytest.fail(f"{message} -- it must run in CI", pytrace=False)
        pytest.skip(message)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    policy = tmp_path / "policy.toml"
    policy.write_text(REVIEW_POLICY)
    env = dict(
        os.environ,
        REMPART_DATABASE_URL=f"sqlite:///{tmp_path / 'rempart.db'}",
        REMPART_POLICIES=f'{{"default": "{policy}"}}',
        REMPART_UI__SESSION_SECRET="browser-test-secret-" + "x" * 16,
        REMPART_UI__CASE_OPERATORS='["ana"]',
        PYTHONUNBUFFERED="1",
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [REMPART, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/status", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield url, env
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()


def _eventually(check: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    """Wait until ``check()`` holds (background work: the index refresh, the scan recorder,
    the alert recorder), polling; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _indexed(api: httpx.Client, image: bytes, bank: str) -> Callable[[], bool]:
    """Whether this worker's in-memory PDQ index has ``image`` in ``bank`` (a lookup by
    PDQ only searches that index; it records nothing)."""
    from rempart.hashing.media import hash_media
    from rempart.settings import MediaLimits

    pdq = hash_media(image, limits=MediaLimits()).pdq

    def check() -> bool:
        found = api.get("/v1/lookup", params={"pdq": pdq}).json()
        return any(m["bank"] == bank for m in found.get("matches", []))

    return check


def _reload_until(page: Page, url: str, selector: str) -> None:
    """Open ``url`` until ``selector`` is on it (an item recorded off the request path)."""

    def there() -> bool:
        page.goto(url)
        return page.locator(selector).count() > 0

    _eventually(there, f"{selector} on {url}")


def _cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    out = subprocess.run(
        [REMPART, *args], env=env, input=stdin, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def _open_case(env: dict[str, str], tmp_path: Path, image: bytes) -> str:
    """Open a victim's case with the library, on the server's store; its number."""
    from rempart.cases import build_submission, load_submission
    from rempart.settings import MediaLimits, load_settings
    from rempart.store import Store
    from rempart.store.cases import CaseRepository

    folder = tmp_path / "hers"
    folder.mkdir()
    (folder / "photo.png").write_bytes(image)
    submission = load_submission(build_submission([folder], limits=MediaLimits()).to_json())
    settings = load_settings(database_url=env["REMPART_DATABASE_URL"])
    with Store.open(settings.database_url) as store:
        return str(CaseRepository(store, settings).submit(submission).number)


def test_review_an_item_end_to_end(server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    chromium = _chromium()
    from playwright.sync_api import expect, sync_playwright

    url, env = server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    _cli(env, "users", "create", "ana", "--role", "admin", "--password-stdin", stdin=PASSWORD)
    headers = {"Authorization": f"Bearer {_cli(env, 'keys', 'create', '--scopes', 'admin')}"}
    image = make_image(42)
    others = [make_image(44), make_image(45)]  # two more items: escalated, rejected
    with httpx.Client(base_url=url, headers=headers, timeout=30) as api:
        for name in ("reported", "confirmed"):
            api.post("/v1/banks", json={"name": name}).raise_for_status()
        for data in (image, *others):
            api.post("/v1/banks/reported/entries/file", content=data).raise_for_status()
        for data in (image, *others):
            _eventually(_indexed(api, data, "reported"), "the bank in the worker's index")
        scan = api.post("/v1/scan", content=image).json()
        other_ids = [api.post("/v1/scan", content=data).json()["id"] for data in others]
    assert scan["verdict"] == "review", scan
    scan_id = scan["id"]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-GB")
        page.set_default_timeout(15_000)

        page.goto(f"{url}/ui/queue")
        expect(page).to_have_url(f"{url}/ui/login?next=/ui/queue")
        page.screenshot(path=str(ARTIFACTS / "login.png"), full_page=True)
        page.get_by_label("User name").fill("ana")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(f"{url}/ui/queue")
        # the scan records are written off the request path
        _reload_until(page, f"{url}/ui/queue", f'a[href="/ui/queue/{other_ids[-1]}"]')
        expect(page.locator(f'a[href="/ui/queue/{scan_id}"]')).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "queue.png"), full_page=True)

        # keyboard navigation: j focuses the first row, o opens it
        page.keyboard.press("j")
        page.keyboard.press("o")
        expect(page).to_have_url(f"{url}/ui/queue/{scan_id}")
        img = page.locator("#preview-img")
        expect(img).to_be_visible()
        page.wait_for_function("document.getElementById('preview-img').naturalWidth > 0")
        blurred = img.evaluate("e => getComputedStyle(e).filter")
        assert blurred == "blur(16px) grayscale(1)", blurred
        page.screenshot(path=str(ARTIFACTS / "item.png"), full_page=True)

        page.get_by_role("button", name="Reveal").click()
        expect(page.locator("#preview")).to_have_class("preview revealed")
        # (a 0.15 s CSS transition: wait for it to end)
        page.wait_for_function(FILTER_IS, arg="none")
        expect(page.locator("#reveal")).to_have_attribute("aria-pressed", "true")
        page.screenshot(path=str(ARTIFACTS / "item-revealed.png"), full_page=True)
        # leaving the item (here: the pointer leaves it) blurs it again
        page.mouse.move(1270, 5)
        page.wait_for_function(FILTER_IS, arg="blur(16px) grayscale(1)")
        expect(page.locator("#reveal")).to_have_attribute("aria-pressed", "false")

        # confirm into 'confirmed' with the keyboard shortcut, with a note; typing "c" in
        # the note is text, not the shortcut
        page.select_option("#confirm-bank", "confirmed")
        page.get_by_label("Note").fill("seen before: c")
        page.get_by_label("Note").press("c")
        expect(page).to_have_url(f"{url}/ui/queue/{scan_id}")
        page.locator("body").click(position={"x": 5, "y": 400})
        page.keyboard.press("c")
        # on to the next item, with the outcome said
        expect(page).to_have_url(f"{url}/ui/queue/{other_ids[0]}?ok=decided.confirm")
        expect(page.get_by_role("status").first).to_contain_text("Confirmed")
        # e escalates this one; the next opens
        page.locator("body").click(position={"x": 5, "y": 400})
        page.keyboard.press("e")
        expect(page).to_have_url(f"{url}/ui/queue/{other_ids[1]}?ok=decided.escalate")
        expect(page.get_by_role("status").first).to_contain_text("Escalated")
        # r rejects the last; back to the (now empty) queue
        page.locator("body").click(position={"x": 5, "y": 400})
        page.keyboard.press("r")
        expect(page).to_have_url(f"{url}/ui/queue?ok=decided.reject")
        expect(page.locator(".empty")).to_be_visible()
        page.goto(f"{url}/ui/queue?view=escalated")
        expect(page.locator(f'a[href="/ui/queue/{other_ids[0]}"]')).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "queue-escalated.png"), full_page=True)
        page.goto(f"{url}/ui/queue/{scan_id}")
        expect(page.locator("#decided-note")).to_have_text("seen before: cc")
        page.screenshot(path=str(ARTIFACTS / "item-decided.png"), full_page=True)

        # the audit log shows the reveal
        page.goto(f"{url}/ui/audit?action=ui.preview.reveal")
        expect(page.locator("#audit")).to_contain_text(scan_id)
        expect(page.locator("#audit")).to_contain_text("ui:ana")
        page.goto(f"{url}/ui/audit")
        page.screenshot(path=str(ARTIFACTS / "audit.png"), full_page=True)

        # find it in the bank: by hash, then by dropping the file
        md5 = hashlib.md5(image).hexdigest()
        page.goto(f"{url}/ui/banks")
        expect(page.locator("#banks")).to_contain_text("confirmed")
        page.screenshot(path=str(ARTIFACTS / "banks.png"), full_page=True)
        with httpx.Client(base_url=url, headers=headers, timeout=30) as api:
            _eventually(_indexed(api, image, "confirmed"), "the confirmed hashes in the index")
        page.goto(f"{url}/ui/banks/confirmed")
        page.get_by_label("Hash", exact=True).fill(md5)
        page.get_by_role("search").get_by_role("button", name="Search").click()
        expect(page.locator("#results")).to_contain_text(md5)
        page.set_input_files(
            "#file", files=[{"name": "copy.png", "mimeType": "image/png", "buffer": image}]
        )
        expect(page.locator("#results")).to_contain_text("not kept")
        expect(page.locator("#results")).to_contain_text(md5)
        page.screenshot(path=str(ARTIFACTS / "bank.png"), full_page=True)

        page.goto(f"{url}/ui/dashboard")
        expect(page.locator("svg.chart")).to_have_count(4)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        # a victim's case whose hashes a later upload matches: the operator sees the alert
        number = _open_case(env, tmp_path, make_image(43))
        with httpx.Client(base_url=url, headers=headers, timeout=30) as api:
            _eventually(_indexed(api, make_image(43), "cases"), "the case's hashes in the index")
            api.post("/v1/scan", content=make_image(43)).raise_for_status()
        page.goto(f"{url}/ui/cases")
        expect(page.locator("h1")).to_have_text("Cases")
        expect(page.locator("#cases")).to_contain_text(number)
        # the alert is recorded off the request path
        _reload_until(page, f"{url}/ui/cases/{number}", "#alerts")
        page.goto(f"{url}/ui/cases")
        page.screenshot(path=str(ARTIFACTS / "cases.png"), full_page=True)
        page.get_by_role("link", name=number).click()
        expect(page.locator("#alerts")).to_contain_text("default")
        page.screenshot(path=str(ARTIFACTS / "case.png"), full_page=True)
        page.goto(f"{url}/ui/cases/{number}?lang=fr")
        expect(page.locator("#alerts")).to_contain_text("courriel")
        page.screenshot(path=str(ARTIFACTS / "case-fr.png"), full_page=True)
        page.goto(f"{url}/ui/cases/{number}?lang=en")
        page.keyboard.press("?")
        expect(page.locator("#help")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "help.png"))
        page.keyboard.press("Escape")
        page.goto(f"{url}/ui/queue?lang=fr")
        expect(page.locator("h1")).to_have_text("File de revue")
        page.screenshot(path=str(ARTIFACTS / "queue-fr.png"), full_page=True)
        browser.close()
