"""Console accounts: users with roles, login sessions and enterprise API tokens, in the store.

Roles: ``operator`` (every enterprise, triage), ``auditor`` (read-only: incidents, reports,
replay results) and ``enterprise`` (bound to one enterprise: sees only its data). Passwords
are hashed with scrypt (RFC 7914; n=2**14, r=8, p=1, 16-byte salt), sessions and API tokens
are random 256-bit secrets of which only the SHA-256 is stored, so a copy of the database
opens no account.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from parkwatch.errors import StoreError
from parkwatch.store.sqlite import SqliteStore

ROLES = ("operator", "auditor", "enterprise")
"""Console roles, from most to least reach."""
SESSION_TTL_NS = 12 * 3600 * 1_000_000_000
"""A login lasts 12 hours (one shift)."""
MAX_FAILED_LOGINS = 10
"""Failed logins of one user name within ``FAILED_WINDOW_NS`` after which logins are refused."""
FAILED_WINDOW_NS = 15 * 60 * 1_000_000_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


@dataclass(frozen=True)
class User:
    """A console user."""

    name: str
    role: str
    enterprise: str | None = None

    @property
    def can_triage(self) -> bool:
        """Operators triage; auditors and enterprise users read."""
        return self.role == "operator"

    @property
    def scope(self) -> str | None:
        """The one enterprise this user may see, None for all."""
        return self.enterprise if self.role == "enterprise" else None

    @property
    def valid(self) -> bool:
        """A role this ParkWatch knows, and an enterprise exactly for enterprise users (a
        hand-edited row that fails this opens no session: scope None would mean 'all')."""
        return self.role in ROLES and (self.role == "enterprise") == bool(self.enterprise)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    dk = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${dk.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, want = stored.split("$")
        if kind != "scrypt":
            return False
        dk = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(dk.hex(), want)


_DUMMY = hash_password("not a password")  # same work for unknown users (no timing oracle)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def add_user(
    st: SqliteStore, name: str, role: str, password: str, enterprise: str | None = None
) -> User:
    if not _NAME.match(name):
        raise StoreError(f"bad user name {name!r}", hint="letters, digits and ._@- only")
    if role not in ROLES:
        raise StoreError(f"unknown role {role!r}", hint=f"one of {', '.join(ROLES)}")
    if (role == "enterprise") != bool(enterprise):
        raise StoreError(
            "an enterprise user needs --enterprise; other roles take none", field="enterprise"
        )
    if len(password) < 8:
        raise StoreError("password too short", hint="use at least 8 characters")
    if st.conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
        raise StoreError(f"user {name!r} exists", hint="remove it first or pick another name")
    st.conn.execute(
        "INSERT INTO users (name, role, enterprise, pw_hash, created_ns) VALUES (?, ?, ?, ?, ?)",
        (name, role, enterprise, hash_password(password), time.time_ns()),
    )
    return User(name, role, enterprise)


def users(st: SqliteStore) -> list[User]:
    rows = st.conn.execute("SELECT name, role, enterprise FROM users ORDER BY name").fetchall()
    return [User(*r) for r in rows]


def user(st: SqliteStore, name: str) -> User | None:
    row = st.conn.execute(
        "SELECT name, role, enterprise FROM users WHERE name = ?", (name,)
    ).fetchone()
    return None if row is None else User(*row)


def remove_user(st: SqliteStore, name: str) -> bool:
    with st.transaction() as c:
        c.execute("DELETE FROM sessions WHERE user = ?", (name,))
        return c.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0


def set_password(st: SqliteStore, name: str, password: str) -> None:
    if len(password) < 8:
        raise StoreError("password too short", hint="use at least 8 characters")
    with st.transaction() as c:
        if not c.execute(
            "UPDATE users SET pw_hash = ? WHERE name = ?", (hash_password(password), name)
        ).rowcount:
            raise StoreError(f"no user {name!r}")
        c.execute("DELETE FROM sessions WHERE user = ?", (name,))


def authenticate(st: SqliteStore, name: str, password: str) -> User | None:
    row = st.conn.execute(
        "SELECT name, role, enterprise, pw_hash FROM users WHERE name = ?", (name,)
    ).fetchone()
    if row is None:
        verify_password(password, _DUMMY)
        return None
    u = User(*row[:3])
    return u if verify_password(password, row[3]) and u.valid else None


def failed_logins(
    st: SqliteStore, name: str, where: str, window_ns: int = FAILED_WINDOW_NS
) -> int:
    """Failed logins of ``name`` from ``where`` (audit target ``ip:…``) in the window, since
    the last successful login of ``name`` from there."""
    since = time.time_ns() - window_ns
    row = st.conn.execute(
        "SELECT count(*) FROM audit WHERE actor = ? AND action = 'login_failed' AND target = ? "
        "AND ts_ns > max(?, coalesce((SELECT max(ts_ns) FROM audit WHERE actor = ? AND "
        "action = 'login' AND target = ?), 0))",
        (name, where, since, name, where),
    ).fetchone()
    return int(row[0])


def new_session(st: SqliteStore, u: User, ttl_ns: int = SESSION_TTL_NS) -> tuple[str, str]:
    """A fresh session for ``u``: (session secret for the cookie, CSRF token for its forms)."""
    sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = time.time_ns()
    with st.transaction() as c:
        c.execute("DELETE FROM sessions WHERE expires_ns < ?", (now,))
        c.execute(
            "INSERT INTO sessions (id_hash, user, csrf, created_ns, expires_ns) "
            "VALUES (?, ?, ?, ?, ?)",
            (_digest(sid), u.name, csrf, now, now + ttl_ns),
        )
    return sid, csrf


def session(st: SqliteStore, sid: str | None) -> tuple[User, str] | None:
    """The user and CSRF token of a live session, None when unknown or expired."""
    if not sid:
        return None
    row = st.conn.execute(
        "SELECT u.name, u.role, u.enterprise, s.csrf FROM sessions s JOIN users u "
        "ON u.name = s.user WHERE s.id_hash = ? AND s.expires_ns > ?",
        (_digest(sid), time.time_ns()),
    ).fetchone()
    if row is None or not User(*row[:3]).valid:
        return None
    return User(*row[:3]), row[3]


def end_session(st: SqliteStore, sid: str | None) -> None:
    if sid:
        st.conn.execute("DELETE FROM sessions WHERE id_hash = ?", (_digest(sid),))


@dataclass(frozen=True)
class Token:
    """An enterprise platform's API token (the secret itself is shown once, at creation)."""

    id: str
    enterprise: str
    label: str
    created_ns: int
    revoked_ns: int | None


def add_token(st: SqliteStore, enterprise: str, label: str = "") -> tuple[Token, str]:
    """A new token for ``enterprise``: (its record, the secret to hand to the platform)."""
    if not enterprise:
        raise StoreError("a token belongs to one enterprise", field="enterprise")
    tid = "tok-" + secrets.token_hex(4)
    secret = f"pw_{tid[4:]}_{secrets.token_urlsafe(32)}"
    now = time.time_ns()
    st.conn.execute(
        "INSERT INTO api_tokens (id, token_hash, enterprise, label, created_ns) "
        "VALUES (?, ?, ?, ?, ?)",
        (tid, _digest(secret), enterprise, label, now),
    )
    return Token(tid, enterprise, label, now, None), secret


def tokens(st: SqliteStore) -> list[Token]:
    rows = st.conn.execute(
        "SELECT id, enterprise, label, created_ns, revoked_ns FROM api_tokens ORDER BY created_ns"
    ).fetchall()
    return [Token(*r) for r in rows]


def revoke_token(st: SqliteStore, token_id: str) -> bool:
    return st.conn.execute(
        "UPDATE api_tokens SET revoked_ns = ? WHERE id = ? AND revoked_ns IS NULL",
        (time.time_ns(), token_id),
    ).rowcount > 0


def token_enterprise(st: SqliteStore, secret: str | None) -> str | None:
    """The enterprise a live token belongs to, None for an unknown or revoked one."""
    if not secret:
        return None
    row = st.conn.execute(
        "SELECT enterprise FROM api_tokens WHERE token_hash = ? AND revoked_ns IS NULL",
        (_digest(secret),),
    ).fetchone()
    return None if row is None else str(row[0])
