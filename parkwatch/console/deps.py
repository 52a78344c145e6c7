"""Request plumbing shared by pages and the API: the store, the user, roles and CSRF.

* One store connection per request (SQLite, opened on the configured file).
* A login is a server-side session: the cookie ``pw_session`` carries a random secret
  (HttpOnly, SameSite=Strict, Secure unless the console is started with insecure cookies for
  plain-HTTP development); the session row holds the user and its CSRF token.
* Every state-changing form carries that CSRF token in a hidden ``csrf`` field and is refused
  without it (the login form uses a double-submit cookie, as no session exists yet); a POST
  whose ``Origin`` names another site is refused too.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from parkwatch.store import accounts
from parkwatch.store.accounts import User
from parkwatch.store.sqlite import SqliteStore

SESSION_COOKIE = "pw_session"
LOGIN_CSRF_COOKIE = "pw_login_csrf"


class LoginRequired(Exception):
    """Raised for a page that needs a login; the app redirects to /login."""


@dataclass(frozen=True)
class ConsoleConfig:
    """How this console runs."""

    store_path: str
    secure_cookies: bool = True


def config(request: Request) -> ConsoleConfig:
    cfg: ConsoleConfig = request.app.state.console
    return cfg


def store(request: Request) -> Iterator[SqliteStore]:
    st = SqliteStore.open(config(request).store_path)
    try:
        yield st
    finally:
        st.close()


Store = Annotated[SqliteStore, Depends(store)]


@dataclass(frozen=True)
class Login:
    """The signed-in user of a page request, with its session's CSRF token."""

    user: User
    csrf: str


def login(request: Request, st: Store) -> Login:
    found = accounts.session(st, request.cookies.get(SESSION_COOKIE))
    if found is None:
        raise LoginRequired()
    return Login(*found)


CurrentLogin = Annotated[Login, Depends(login)]


def operator(who: CurrentLogin) -> Login:
    """Triage needs the operator role."""
    if not who.user.can_triage:
        raise HTTPException(403, "only operators triage incidents")
    return who


OperatorLogin = Annotated[Login, Depends(operator)]


def check_csrf(request: Request, who: Login, token: str | None) -> None:
    """Refuse a state-changing request without this session's CSRF token or from elsewhere."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        want = f"{request.url.scheme}://{request.url.netloc}"
        if origin != want:
            raise HTTPException(403, "cross-site request refused")
    if not token or not hmac.compare_digest(token.encode(), who.csrf.encode()):
        raise HTTPException(403, "missing or stale form token: reload the page and try again")


def sees(user: User, enterprises: tuple[str, ...] | list[str]) -> bool:
    """Whether ``user`` may see a record involving ``enterprises``."""
    return user.scope is None or user.scope in enterprises
