"""Banks (list, search by hash and by file, import with progress, export, edit), the
dashboard, the audit log, French and English, and the ``rempart users`` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ui_helpers import PASSWORD, UI, csrf_of, make_image

from rempart.service.ui.i18n import Translator, accept_language, catalogue


def _admin(ui: UI) -> None:
    ui.user("boss", "admin")
    ui.login("boss")


def test_banks_list_sizes_and_precision(ui: UI) -> None:
    body = ui.reviewed(seed=20)
    ui.ctx.scans.add_feedback("default", body["id"], "true_positive")
    ui.store.create_bank("known-fp", kind="allow")
    _admin(ui)
    html = ui.client.get("/ui/banks").text
    assert "reported" in html and "known-fp" in html
    assert "100 %" in html and "1 true / 0 false positives" in html


def test_search_a_bank_by_hash_and_by_file(ui: UI) -> None:
    data = make_image(21)
    ui.reviewed(data=data)
    _admin(ui)
    import hashlib

    md5 = hashlib.md5(data).hexdigest()
    page = ui.client.get(f"/ui/banks/reported?q={md5}").text
    assert md5 in page and "1 entry(ies) within the threshold" in page
    assert "Nothing in this bank" in ui.client.get(f"/ui/banks/reported?q={'0' * 31}1").text
    assert "give a PDQ" in ui.client.get("/ui/banks/reported?q=xyz").text
    token = csrf_of(ui.client.get("/ui/banks/reported").text)
    found = ui.client.post(
        f"/ui/banks/reported/search?csrf={token}", files={"file": ("x.png", data, "image/png")}
    )
    assert found.status_code == 200 and md5 in found.text
    assert "hashed in memory and not kept" in found.text
    # without the token: refused
    refused = ui.client.post("/ui/banks/reported/search", files={"file": ("x.png", data)})
    assert refused.status_code == 403


def test_import_streams_progress_and_export_downloads(ui: UI, hex_hashes) -> None:  # type: ignore[no-untyped-def]
    ui.store.create_bank("list")
    _admin(ui)
    token = csrf_of(ui.client.get("/ui/banks/list").text)
    rows = "".join(f'{{"md5": "{h}"}}\n' for h in hex_hashes(2500, 16))
    r = ui.client.post(
        "/ui/banks/list/import?fmt=hma",
        content=rows,
        headers={"X-CSRF-Token": token, "Content-Type": "application/octet-stream"},
    )
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert any("progress" in line for line in lines)
    assert lines[-1]["report"]["added"] == 2500
    assert ui.store.get_bank("list").entry_count == 2500
    export = ui.client.get("/ui/banks/list/export?format=csv")
    assert export.status_code == 200 and "attachment" in export.headers["content-disposition"]
    assert len(export.text.strip().splitlines()) == 2501  # header + rows
    assert [e.action for e in ui.ctx.audit.list("default", action="entries.import")]


def test_create_and_edit_banks(ui: UI) -> None:
    _admin(ui)
    token = csrf_of(ui.client.get("/ui/banks").text)
    r = ui.client.post(
        "/ui/banks",
        data={"csrf": token, "name": "fresh", "kind": "allow", "threshold": "20"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert ui.store.get_bank("fresh").kind == "allow"
    r = ui.client.post(
        "/ui/banks/fresh/edit",
        data={"csrf": token, "threshold": "12", "kind": "block", "enabled": "1"},
        follow_redirects=False,
    )
    bank = ui.store.get_bank("fresh")
    assert (bank.threshold, bank.kind, bank.enabled) == (12, "block", True)
    bad = ui.client.post(
        "/ui/banks", data={"csrf": token, "name": "no spaces"}, follow_redirects=False
    )
    assert bad.headers["location"] == "/ui/banks?error=bad_name"
    assert "Invalid bank name" in ui.client.get(bad.headers["location"]).text


def test_banners_show_catalogue_text_never_words_from_the_link(ui: UI) -> None:
    body = ui.reviewed(seed=23)
    ui.user("mod")
    ui.login("mod")
    lure = "This item is cleared by the legal team, confirm it"
    for url in (
        f"/ui/queue?ok={lure}",
        f"/ui/queue/{body['id']}?error={lure}",
        f"/ui/banks?error={lure}",
        f"/ui/banks/reported?error={lure}&ok={lure}",
        "/ui/queue?ok=queue.title",  # a catalogue key, but not a success banner
    ):
        page = ui.client.get(url)
        assert page.status_code == 200, url
        assert "cleared by the legal team" not in page.text, url
        assert 'class="flash ok"' not in page.text, url
    unknown = ui.client.get(f"/ui/queue/{body['id']}?error={lure}").text
    assert "The action failed. Reload the page" in unknown
    known = ui.client.get("/ui/queue?ok=decided.reject").text
    assert "Rejected as a false positive." in known
    fr = ui.client.get(f"/ui/queue/{body['id']}?error=already_decided&lang=fr").text
    assert "Cet élément a déjà été décidé" in fr


def test_the_language_switch_keeps_the_page_and_its_query(ui: UI) -> None:
    ui.reviewed(seed=24)
    ui.user("boss", "admin")
    ui.login("boss")
    html = ui.client.get("/ui/audit?action=ui.login&actor=ui%3Aboss").text
    assert 'href="/ui/audit?action=ui.login&amp;actor=ui%3Aboss&amp;lang=fr"' in html
    # an old ?lang= is replaced, not repeated
    html = ui.client.get("/ui/queue?view=escalated&lang=fr").text
    assert 'href="/ui/queue?view=escalated&amp;lang=en"' in html
    assert "lang=fr&amp;lang" not in html


def test_every_shortcut_is_in_the_help_and_on_its_control(ui: UI) -> None:
    body = ui.reviewed(seed=25)
    ui.user("boss", "admin")
    ui.login("boss")
    page = ui.client.get(f"/ui/queue/{body['id']}").text
    for keys in ("<kbd>g</kbd> <kbd>a</kbd>", "<kbd>v</kbd>", "<kbd>c</kbd>", "<kbd>?</kbd>"):
        assert keys in page
    reveal = page[page.index('id="reveal"') :].split(">", 1)[0]
    assert 'aria-keyshortcuts="v"' in reveal
    ui.client.cookies.clear()
    ui.user("mod")
    ui.login("mod")
    # a moderator cannot open the audit log: its shortcut is not offered
    assert "<kbd>g</kbd> <kbd>a</kbd>" not in ui.client.get("/ui/queue").text


def test_dashboard_draws_svg_charts(ui: UI) -> None:
    body = ui.reviewed(seed=22)
    ui.ctx.scans.add_feedback("default", body["id"], "false_positive")
    ui.user("mod")
    ui.login("mod")
    page = ui.client.get("/ui/dashboard")
    assert page.status_code == 200
    assert page.text.count('<svg class="chart"') == 4
    assert "<title" in page.text and "0 %" in page.text  # precision of 'reported'
    assert "<script" not in page.text.split("</head>")[1]  # no inline script


def test_audit_log_filters(ui: UI) -> None:
    ui.ctx.audit.append(tenant="default", actor="ui:x", action="bank.create", target="a")
    ui.ctx.audit.append(tenant="default", actor="ui:y", action="bank.update", target="b")
    ui.ctx.audit.append(tenant="acme", actor="ui:z", action="bank.create", target="secret")
    _admin(ui)
    html = ui.client.get("/ui/audit?action=bank.create").text
    assert "ui:x" in html and "ui:y" not in html and "secret" not in html
    assert "ui:y" in ui.client.get("/ui/audit?actor=ui:y").text
    assert "No event matches" in ui.client.get("/ui/audit?since=2999-01-01").text
    assert "ui:x" in ui.client.get("/ui/audit?since=2000-01-01&until=2999-01-01").text


def test_french_and_english(ui: UI) -> None:
    assert set(catalogue("en")) == set(catalogue("fr"))
    assert accept_language("fr-CH, fr;q=0.9, en;q=0.8") == "fr"
    assert accept_language("de, en;q=0.5") == "en"
    assert accept_language("de") is None
    assert Translator("fr")("item.position", n=1, total=3) == "1 sur 3"
    page = ui.client.get("/ui/login", headers={"Accept-Language": "fr-FR,fr;q=0.9"})
    assert '<html lang="fr">' in page.text and "Mot de passe" in page.text
    en = ui.client.get("/ui/login?lang=en", headers={"Accept-Language": "fr"})
    assert "Password" in en.text and "rempart_lang=en" in en.headers["set-cookie"]
    # the switch is remembered over the browser's language
    again = ui.client.get("/ui/login", headers={"Accept-Language": "fr"})
    assert "Password" in again.text
    ui.client.get("/ui/login?lang=fr")
    ui.user("alice")
    ui.login("alice")
    queue = ui.client.get("/ui/queue").text
    assert "File de revue" in queue and "Rien à revoir" in queue


def test_users_cli(db_url: str, tmp_path: Path) -> None:
    if not db_url.startswith("sqlite"):
        return  # the command is the same on PostgreSQL; once is enough
    rempart = str(Path(sys.executable).parent / "rempart")
    env = {"REMPART_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}
    made = subprocess.run(
        [rempart, "users", "create", "carol", "--role", "admin", "--password-stdin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert json.loads(made.stdout)["role"] == "admin"
    weak = subprocess.run(
        [rempart, "users", "create", "dave", "--password-stdin"],
        input="short\n",
        capture_output=True,
        text=True,
        env=env,
    )
    assert weak.returncode == 2 and "at least 12" in weak.stderr
    listed = subprocess.run(
        [rempart, "users", "list"], capture_output=True, text=True, env=env, check=True
    )
    assert [json.loads(line)["username"] for line in listed.stdout.splitlines()] == ["carol"]
    assert "password" not in listed.stdout
    off = subprocess.run(
        [rempart, "users", "disable", "carol"], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(off.stdout)["disabled"] is True
