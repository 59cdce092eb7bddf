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
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ui_helpers import PASSWORD, REVIEW_POLICY, make_image

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
    with httpx.Client(base_url=url, headers=headers, timeout=30) as api:
        for name in ("reported", "confirmed"):
            api.post("/v1/banks", json={"name": name}).raise_for_status()
        api.post("/v1/banks/reported/entries/file", content=image).raise_for_status()
        time.sleep(1.0)  # the worker's index applies the change log every 0.25 s
        scan = api.post("/v1/scan", content=image).json()
    assert scan["verdict"] == "review", scan
    scan_id = scan["id"]
    time.sleep(0.5)  # the scan record is written off the request path

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
        expect(page).to_have_url(f"{url}/ui/queue?ok=decided.confirm")
        expect(page.get_by_role("status").first).to_contain_text("Confirmed")
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
        page.goto(f"{url}/ui/banks/confirmed")
        time.sleep(0.5)  # the index picks up the confirmed hashes within 0.25 s
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
        time.sleep(1.0)  # the cases bank reaches the worker's index
        with httpx.Client(base_url=url, headers=headers, timeout=30) as api:
            api.post("/v1/scan", content=make_image(43)).raise_for_status()
        time.sleep(1.0)  # alerts are recorded off the request path
        page.goto(f"{url}/ui/cases")
        expect(page.locator("h1")).to_have_text("Cases")
        expect(page.locator("#cases")).to_contain_text(number)
        page.screenshot(path=str(ARTIFACTS / "cases.png"), full_page=True)
        page.get_by_role("link", name=number).click()
        expect(page.locator("#alerts")).to_contain_text("default")
        page.screenshot(path=str(ARTIFACTS / "case.png"), full_page=True)
        page.keyboard.press("?")
        expect(page.locator("#help")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "help.png"))
        page.keyboard.press("Escape")
        page.goto(f"{url}/ui/queue?lang=fr")
        expect(page.locator("h1")).to_have_text("File de revue")
        page.screenshot(path=str(ARTIFACTS / "queue-fr.png"), full_page=True)
        browser.close()
