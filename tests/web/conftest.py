"""Browser fixtures: the studio served over real HTTP (uvicorn in a thread, an in-process worker draining
jobs beside it) and Debian's chromium driven by Playwright, headless. Screenshots go to test-screenshots/."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from lorastudio.config import Settings
from tests.studio.conftest import john_refs, studio_settings  # noqa: F401 - the studio's fixtures, shared

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = Path(__file__).parents[2] / "test-screenshots"


@dataclass
class Live:
    """A running studio: its base URL and settings."""

    url: str
    settings: Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(settings: Settings):
    """Start the app and a draining worker; yields a Live, stops both."""
    import uvicorn

    from lorastudio.studio.workers import Worker
    from lorastudio.web.app import create_app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    stop = threading.Event()
    worker = Worker(settings, name="browser-tests")

    def drain() -> None:
        while not stop.wait(0.2):
            worker.drain()

    runner = threading.Thread(target=drain, daemon=True)
    runner.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the studio did not start"
    yield Live(f"http://127.0.0.1:{port}", settings)
    stop.set()
    server.should_exit = True
    runner.join(timeout=60)
    thread.join(timeout=30)


@pytest.fixture
def live(studio_settings):  # noqa: F811 - the shared fixture, asked for by name
    yield from serve(studio_settings)


@pytest.fixture(scope="session")
def browser():
    if CHROMIUM is None:
        pytest.skip("chromium is not installed: `sudo apt-get install chromium` (make test does it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    context.set_default_timeout(20_000)
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(page, name: str) -> Path:
    """Save a screenshot of the page as test-screenshots/NAME.png."""
    SHOTS.mkdir(exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
