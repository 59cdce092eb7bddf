"""Moderator accounts and their sessions, for the web UI at ``/ui``.

- Passwords are hashed with Argon2id (``argon2-cffi``'s defaults: memory-hard, salted, the
  parameters kept in the hash so they can be raised later; an old hash is re-hashed at the
  next successful login).
- A session row is keyed by the SHA-256 of the session's random id: the cookie holds the id,
  the database only its digest, so a copy of the database does not let anyone log in.
- Disabling a user ends every session of theirs at once.

Each user belongs to one tenant and sees only that tenant's scans, banks and audit log.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Table,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from rempart.errors import ConflictError, NotFoundError, RempartError
from rempart.store import db
from rempart.store.models import Base, UTCDateTime
from rempart.store.records import validate_name

if TYPE_CHECKING:
    from rempart.store.repository import Store

Role = Literal["moderator", "admin"]
ROLES: Final = ("moderator", "admin")
#: Shortest password accepted: moderators' accounts open a queue of the worst images.
MIN_PASSWORD_CHARS: Final = 12
_DUMMY_HASH: str | None = None


class UiUser(Base):
    """A person who logs in to the UI: a moderator or an admin of one tenant."""

    __tablename__ = "ui_users"
    __table_args__ = (
        CheckConstraint("role IN ('moderator', 'admin')", name="role"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(16))
    #: Argon2id hash in PHC string form (``$argon2id$v=19$m=...``).
    password_hash: Mapped[str] = mapped_column(String(256))
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class UiSession(Base):
    """A logged-in browser. ``id`` is the SHA-256 (hex) of the id held in the cookie."""

    __tablename__ = "ui_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("ui_users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


users_table = cast(Table, UiUser.__table__)
sessions_table = cast(Table, UiSession.__table__)
U = users_table.c
SE = sessions_table.c


@dataclass(frozen=True, slots=True)
class UserInfo:
    """A user as the UI and CLI show it (never the password hash)."""

    id: int
    username: str
    tenant: str
    role: str
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None

    @property
    def is_admin(self) -> bool:
        """Admins also curate banks, read the audit log and open cases."""
        return self.role == "admin"

    @property
    def actor(self) -> str:
        """How the audit log names this user."""
        return f"ui:{self.username}"

    def to_dict(self) -> dict[str, Any]:
        """JSON shape for the CLI."""
        return {
            "id": self.id,
            "username": self.username,
            "tenant": self.tenant,
            "role": self.role,
            "disabled": self.disabled,
            "created_at": self.created_at.isoformat(),
            "last_login_at": self.last_login_at.isoformat() if self.last_login_at else None,
        }


def _user(row: Any) -> UserInfo:
    return UserInfo(
        row.id,
        row.username,
        row.tenant,
        row.role,
        bool(row.disabled),
        row.created_at,
        row.last_login_at,
    )


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def validate_role(role: str) -> Role:
    """``role`` if it is one of :data:`ROLES`, else RempartError ``bad_role``."""
    if role not in ROLES:
        raise RempartError(
            f"unknown role {role!r}", code="bad_role", hint="roles are moderator and admin"
        )
    return cast(Role, role)


class UserRepository:
    """Create, find, verify and disable UI users; open and end their sessions."""

    def __init__(self, store: Store) -> None:
        from argon2 import PasswordHasher

        self._engine = store.engine
        self._hasher = PasswordHasher()  # Argon2id with argon2-cffi's RFC 9106 parameters

    def _dummy(self) -> str:
        """A hash to verify against when the user name is unknown, so a wrong name costs
        the same time as a wrong password and does not reveal which accounts exist (made
        once per process, on first need: hashing is deliberately slow)."""
        global _DUMMY_HASH
        if _DUMMY_HASH is None:
            _DUMMY_HASH = self._hasher.hash(secrets.token_urlsafe(16))
        return _DUMMY_HASH

    # -- users ------------------------------------------------------------------------------

    def create(
        self, username: str, password: str, *, tenant: str = "default", role: str
    ) -> UserInfo:
        """A new user; ConflictError ``user_exists`` if the name is taken."""
        validate_name(username, "user name")
        validate_name(tenant, "tenant name")
        validate_role(role)
        if len(password) < MIN_PASSWORD_CHARS:
            raise RempartError(
                f"the password must have at least {MIN_PASSWORD_CHARS} characters",
                code="weak_password",
                hint="use a passphrase of several words",
            )
        now = datetime.now(UTC)
        with db.write_transaction(self._engine) as conn:
            if conn.execute(select(U.id).where(U.username == username)).first():
                raise ConflictError(
                    f"a user called {username!r} exists already",
                    code="user_exists",
                    hint="choose another name, or disable the old account",
                )
            user_id = conn.execute(
                insert(users_table).returning(U.id),
                {
                    "username": username,
                    "tenant": tenant,
                    "role": role,
                    "password_hash": self._hasher.hash(password),
                    "disabled": False,
                    "created_at": now,
                    "last_login_at": None,
                },
            ).scalar_one()
            row = conn.execute(select(users_table).where(U.id == user_id)).one()
        return _user(row)

    def get(self, user_id: int) -> UserInfo | None:
        """The user with this id, or None."""
        with db.read_transaction(self._engine) as conn:
            row = conn.execute(select(users_table).where(U.id == user_id)).one_or_none()
        return _user(row) if row is not None else None

    def by_name(self, username: str) -> UserInfo:
        """The user called ``username``; NotFoundError ``user_not_found`` otherwise."""
        with db.read_transaction(self._engine) as conn:
            row = conn.execute(select(users_table).where(U.username == username)).one_or_none()
        if row is None:
            raise NotFoundError(f"no user called {username!r}", code="user_not_found")
        return _user(row)

    def list(self, tenant: str | None = None) -> builtins.list[UserInfo]:
        """Users (of one tenant, or all), by name."""
        query = select(users_table).order_by(U.username)
        if tenant is not None:
            query = query.where(U.tenant == tenant)
        with db.read_transaction(self._engine) as conn:
            return [_user(r) for r in conn.execute(query)]

    def set_disabled(self, username: str, disabled: bool = True) -> UserInfo:
        """Disable (or enable) a user; disabling ends all their sessions."""
        user = self.by_name(username)
        with db.write_transaction(self._engine) as conn:
            conn.execute(update(users_table).where(U.id == user.id).values(disabled=disabled))
            if disabled:
                conn.execute(delete(sessions_table).where(SE.user_id == user.id))
        return self.by_name(username)

    def authenticate(self, username: str, password: str) -> UserInfo | None:
        """The user if the name and password are right and the account is enabled."""
        from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

        with db.read_transaction(self._engine) as conn:
            row = conn.execute(select(users_table).where(U.username == username)).one_or_none()
        stored = row.password_hash if row is not None else self._dummy()
        try:
            self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if row is None or row.disabled:
            return None
        now = datetime.now(UTC)
        values: dict[str, Any] = {"last_login_at": now}
        if self._hasher.check_needs_rehash(stored):
            values["password_hash"] = self._hasher.hash(password)
        with db.write_transaction(self._engine) as conn:
            conn.execute(update(users_table).where(U.id == row.id).values(**values))
        return self.get(row.id)

    # -- sessions ---------------------------------------------------------------------------

    def open_session(self, user: UserInfo, hours: float) -> str:
        """A new session for ``user``; returns the id to put in the cookie (shown once)."""
        session_id = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with db.write_transaction(self._engine) as conn:
            conn.execute(
                insert(sessions_table),
                {
                    "id": _digest(session_id),
                    "user_id": user.id,
                    "created_at": now,
                    "expires_at": now + timedelta(hours=hours),
                },
            )
        return session_id

    def session_user(self, session_id: str) -> UserInfo | None:
        """The enabled user of a live session, or None (unknown, expired or disabled)."""
        query = (
            select(users_table, SE.expires_at)
            .join(sessions_table, SE.user_id == U.id)
            .where(SE.id == _digest(session_id))
        )
        with db.read_transaction(self._engine) as conn:
            row = conn.execute(query).one_or_none()
        if row is None or row.disabled or row.expires_at <= datetime.now(UTC):
            return None
        return _user(row)

    def close_session(self, session_id: str) -> None:
        """End a session (log out)."""
        with db.write_transaction(self._engine) as conn:
            conn.execute(delete(sessions_table).where(SE.id == _digest(session_id)))

    def purge_sessions(self) -> int:
        """Delete expired sessions; returns how many."""
        with db.write_transaction(self._engine) as conn:
            n = conn.execute(
                delete(sessions_table).where(SE.expires_at <= datetime.now(UTC))
            ).rowcount
        return int(n or 0)
