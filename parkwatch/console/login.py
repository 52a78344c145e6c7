"""Log in and out. The login form is protected by a double-submit CSRF cookie; a successful
login starts a fresh server-side session (no session fixation) and redirects to a local page."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from parkwatch.console.app import TEMPLATES
from parkwatch.console.deps import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    CurrentLogin,
    Store,
    check_csrf,
    config,
)
from parkwatch.store import accounts
from parkwatch.store.workflow import audit

router = APIRouter(include_in_schema=False)


def _local(nxt: str | None) -> str:
    """Only same-site paths: ``//evil.example`` or ``https://…`` become ``/``."""
    if not nxt or not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
        return "/"
    return nxt


def _login_page(request: Request, nxt: str, error: str = "", status: int = 200) -> Response:
    token = secrets.token_urlsafe(24)
    resp = TEMPLATES.TemplateResponse(
        request, "login.html", {"csrf": token, "next": nxt, "error": error, "who": None},
        status_code=status,
    )
    resp.set_cookie(
        LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
        secure=config(request).secure_cookies, max_age=3600,
    )
    return resp


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    return _login_page(request, _local(next))


@router.post("/login")
def login_submit(
    request: Request,
    st: Store,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
    csrf: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> Response:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not csrf or not cookie or not hmac.compare_digest(csrf.encode(), cookie.encode()):
        raise HTTPException(403, "missing or stale form token: reload the login page")
    # the audit log names only real users (a name typed wrong may be a password) and the client
    # address; throttling is per user and address, so nobody elsewhere can lock an operator out
    known = accounts.user(st, username) is not None
    actor = username if known else "(unknown user)"
    where = f"ip:{request.client.host if request.client else '?'}"
    if known and accounts.failed_logins(st, username, where) >= accounts.MAX_FAILED_LOGINS:
        audit(st, actor, "login_throttled", where)
        return _login_page(
            request, _local(next),
            "Too many failed logins from here: wait 15 minutes or ask an operator.", 429,
        )
    user = accounts.authenticate(st, username, password)
    if user is None:
        audit(st, actor, "login_failed", where)
        return _login_page(request, _local(next), "Wrong user name or password.", 401)
    sid, _ = accounts.new_session(st, user)
    audit(st, user.name, "login", where)
    resp = RedirectResponse(_local(next), status_code=303)
    resp.set_cookie(
        SESSION_COOKIE, sid, httponly=True, samesite="strict",
        secure=config(request).secure_cookies, max_age=accounts.SESSION_TTL_NS // 10**9,
    )
    resp.delete_cookie(LOGIN_CSRF_COOKIE, httponly=True, samesite="strict",
                       secure=config(request).secure_cookies)
    return resp


@router.post("/logout")
def logout(
    request: Request, st: Store, who: CurrentLogin,
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    check_csrf(request, who, csrf)
    accounts.end_session(st, request.cookies.get(SESSION_COOKIE))
    audit(st, who.user.name, "logout", None)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict",
                       secure=config(request).secure_cookies)
    return resp
