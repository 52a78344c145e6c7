"""Helpers of the console end-to-end tests: the ``parkwatch`` command, a console server on a
free port, headless Chromium (Debian's /usr/bin/chromium driven by Playwright) and logging in.

Chromium is skipped when absent or when it cannot start, except under CI (``CI=true``), where
``.ci/run`` installs it and its absence is a failure.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "replay_pcaps"
TOPOLOGY = CAPTURES / "park.yaml"
CHROMIUM = Path(os.environ.get("PARKWATCH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    # the machines have no internet: without these Chromium keeps dialling Google services
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
PASSWORD = "correct horse battery staple"
"""Password of every test user."""


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def unavailable(reason: str) -> None:
    """Skip, or fail under CI (where .ci/run installs chromium and chromium-driver)."""
    if on_ci():
        pytest.fail(f"{reason} (CI=true: .ci/run installs the Debian package chromium)")
    pytest.skip(reason)


def pw(*args: str, stdin: str | None = None, timeout: float = 120) -> str:
    """Run ``parkwatch ARGS``; returns stdout, fails the test with stderr on an error."""
    res = subprocess.run(
        [sys.executable, "-m", "parkwatch.cli", *args], input=stdin, capture_output=True,
        text=True, timeout=timeout, check=False, cwd=ROOT,
    )
    if res.returncode != 0:
        pytest.fail(f"parkwatch {' '.join(args)} exited {res.returncode}:\n{res.stderr}")
    return res.stdout


def replay(store: Path, out: Path, *captures: Path) -> str:
    return pw(
        "replay", *map(str, captures), "--topology", str(TOPOLOGY), "--vantage", "park-gw",
        "--out", str(out), "--store", str(store), "--no-progress",
    )


def add_user(store: Path, name: str, role: str, enterprise: str | None = None) -> None:
    extra = ["--enterprise", enterprise] if enterprise else []
    pw("users", "add", name, "--role", role, *extra, "--store", str(store), "--password-stdin",
       stdin=PASSWORD + "\n")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def console(store: Path, log: Path) -> Iterator[str]:
    """``parkwatch serve`` on a free 127.0.0.1 port until the block ends; yields its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "parkwatch.cli", "serve", "--store", str(store),
             "--host", "127.0.0.1", "--port", str(port)],  # Secure cookies, as deployed
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"parkwatch serve exited {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(base + "/login", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"parkwatch serve did not answer /login in 30 s:\n{log.read_text()}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (Playwright ``Browser``) for the block."""
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} not installed (Debian packages chromium, chromium-driver)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000
            )
        except Exception as exc:  # Playwright raises its own Error types
            unavailable(f"{CHROMIUM} does not start: {str(exc).splitlines()[0]}")
        try:
            yield browser
        finally:
            browser.close()


def login(browser: Any, base: str, user: str) -> Any:
    """A fresh browser context logged in as ``user``; returns its page (on the queue)."""
    ctx = browser.new_context(base_url=base)
    ctx.set_default_timeout(10_000)
    page = ctx.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs  # checked by the tests: no page may ever open one
    page.goto("/login")
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("#login")
    page.wait_for_load_state()
    assert "/login" not in page.url, f"{user} not logged in: {page.inner_text('body')}"
    assert user in page.inner_text("#whoami")
    cookie = next(c for c in ctx.cookies() if c["name"] == "pw_session")
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    return page
