"""The console application: ``create_app(store_path)`` returns the FastAPI app.

Every response carries a strict Content-Security-Policy (scripts, styles and images from this
origin only: no inline script can run even if a captured string slipped through escaping),
``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin`` and
``X-Frame-Options: DENY``. Templates are Jinja2 with autoescaping on: attacker-controlled
capture content (HTTP hosts, DNS names, MQTT topics …) is always rendered as text.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from parkwatch import __version__
from parkwatch.console.deps import ConsoleConfig, LoginRequired
from parkwatch.errors import ParkWatchError

HERE = Path(__file__).resolve().parent
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def create_app(store_path: str | Path, secure_cookies: bool = True) -> FastAPI:
    from parkwatch.console import api, login, reports, web
    from parkwatch.store.sqlite import SqliteStore

    SqliteStore.open(store_path).close()  # a bad file fails at start-up, not on a request
    app = FastAPI(
        title="ParkWatch console and enterprise API",
        version=__version__,
        description="Park security incidents, alerts and events; enterprise tokens see only "
        "their own enterprise.",
        docs_url=None,  # the Swagger UI would load scripts from a CDN; the schema is served
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )
    app.state.console = ConsoleConfig(str(store_path), secure_cookies)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(login.router)
    app.include_router(web.router)
    app.include_router(reports.router)
    app.include_router(api.router)

    @app.exception_handler(LoginRequired)
    def _to_login(request: Request, exc: LoginRequired) -> Response:
        nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={_quote(nxt)}", status_code=303)

    @app.exception_handler(ParkWatchError)
    def _pw_error(request: Request, exc: ParkWatchError) -> Response:
        return TEMPLATES.TemplateResponse(
            request, "error.html", {"message": str(exc), "who": None}, status_code=400
        )

    @app.middleware("http")
    async def _headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        resp: Response = await call_next(request)
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "same-origin"
        resp.headers["X-Frame-Options"] = "DENY"
        if request.url.path.startswith(("/api/", "/login", "/incidents")):
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    return app


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")
