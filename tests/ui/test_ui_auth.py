"""Logging in and out, CSRF, the login rate limit, cookies and roles."""

from __future__ import annotations

from collections.abc import Callable

from ui_helpers import PASSWORD, UI, csrf_of

from rempart.store.users import UserRepository


def test_pages_need_a_session(ui: UI) -> None:
    r = ui.client.get("/ui/queue", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/login?next=/ui/queue"
    page = ui.client.get("/ui/login")
    assert page.status_code == 200
    assert "Content-Security-Policy" in page.headers
    assert 'autocomplete="current-password"' in page.text


def test_login_sets_a_safe_cookie_and_logout_ends_the_session(ui: UI) -> None:
    ui.user("alice")
    r = ui.login("alice")
    assert r.status_code == 303 and r.headers["location"] == "/ui/queue"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("rempart_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain HTTP here
    assert ui.client.get("/ui/queue").status_code == 200
    events = [e.action for e in ui.ctx.audit.list("default")]
    assert "ui.login" in events
    token = csrf_of(ui.client.get("/ui/queue").text)
    out = ui.client.post("/ui/logout", data={"csrf": token}, follow_redirects=False)
    assert out.status_code == 303
    assert ui.client.get("/ui/queue", follow_redirects=False).status_code == 303


def test_cookie_is_secure_over_https(make_ui: Callable[..., UI]) -> None:
    ui = make_ui(base_url="https://testserver")
    ui.user("alice")
    r = ui.login("alice")
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("rempart_session="))
    assert "Secure" in cookie


def test_wrong_password_and_unknown_user(ui: UI) -> None:
    ui.user("alice")
    r = ui.login("alice", "not the password at all")
    assert r.status_code == 401
    assert "Wrong user name or password" in r.text
    assert not any(h.startswith("rempart_session=") for h in r.headers.get_list("set-cookie"))
    assert ui.login("nobody").status_code == 401
    assert "ui.login_failed" in [e.action for e in ui.ctx.audit.list("default")]


def test_login_is_rate_limited(ui: UI) -> None:
    ui.user("alice")
    codes = [ui.login("alice", "wrong password!").status_code for _ in range(6)]
    assert codes[:5] == [401] * 5 and codes[5] == 429
    # even the right password waits now
    r = ui.login("alice")
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


def test_csrf_is_checked_on_every_post(ui: UI) -> None:
    ui.user("alice")
    # login without the form's double-submit cookie
    fresh = ui.client.post(
        "/ui/login",
        data={"username": "alice", "password": PASSWORD, "csrf": "forged"},
        follow_redirects=False,
    )
    assert fresh.status_code == 403
    assert ui.login("alice").status_code == 303
    for path, data in (
        ("/ui/logout", {}),
        ("/ui/logout", {"csrf": "forged"}),
        ("/ui/queue/x/reveal", {}),
        ("/ui/queue/x/decide", {"decision": "escalate"}),
    ):
        r = ui.client.post(path, data=data, follow_redirects=False)
        assert r.status_code == 403, path
        assert "expired" in r.text
    # the session is still alive: those were refused, not executed
    assert ui.client.get("/ui/queue").status_code == 200


def test_roles(ui: UI) -> None:
    ui.user("mod", "moderator")
    ui.user("boss", "admin")
    ui.store.create_bank("reported")
    ui.login("mod")
    assert ui.client.get("/ui/audit").status_code == 403
    assert ui.client.get("/ui/cases").status_code == 403
    token = csrf_of(ui.client.get("/ui/banks").text)
    edit = ui.client.post(
        "/ui/banks/reported/edit",
        data={"csrf": token, "threshold": "10", "kind": "block"},
        follow_redirects=False,
    )
    assert edit.status_code == 403
    assert ui.store.get_bank("reported").threshold == 31
    assert "Audit log" not in ui.client.get("/ui/queue").text
    ui.client.cookies.clear()
    ui.login("boss")
    assert ui.client.get("/ui/audit").status_code == 200
    token = csrf_of(ui.client.get("/ui/banks").text)
    edit = ui.client.post(
        "/ui/banks/reported/edit",
        data={"csrf": token, "threshold": "10", "kind": "block", "enabled": "1"},
        follow_redirects=False,
    )
    assert edit.status_code == 303
    assert ui.store.get_bank("reported").threshold == 10


def test_disabling_a_user_ends_their_sessions(ui: UI) -> None:
    ui.user("alice")
    ui.login("alice")
    assert ui.client.get("/ui/queue").status_code == 200
    UserRepository(ui.store).set_disabled("alice")
    assert ui.client.get("/ui/queue", follow_redirects=False).status_code == 303
    assert ui.login("alice").status_code == 401


def test_passwords_are_argon2id_and_users_see_their_tenant_only(ui: UI) -> None:
    ui.user("alice", tenant="acme")
    repo = UserRepository(ui.store)
    from sqlalchemy import select

    from rempart.store.users import users_table

    with ui.store.engine.connect() as conn:
        stored = conn.execute(select(users_table.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert [u.username for u in repo.list("acme")] == ["alice"]
    assert repo.list("default") == []


def test_open_redirects_are_refused(ui: UI) -> None:
    ui.user("alice")
    page = ui.client.get("/ui/login")
    r = ui.client.post(
        "/ui/login",
        data={
            "username": "alice",
            "password": PASSWORD,
            "csrf": csrf_of(page.text),
            "next": "//evil.example/",
        },
        follow_redirects=False,
    )
    assert r.headers["location"] == "/ui/queue"
