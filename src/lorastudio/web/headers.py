"""Security headers on every answer of the studio (pages, JSON, files, event streams, errors): no framing, a
Content-Security-Policy that lets only the studio's own scripts run, no MIME sniffing, no referrer to others."""

from __future__ import annotations

import base64
import hashlib
import html
import re
from pathlib import Path

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TEMPLATES = Path(__file__).parent / "templates"

_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S | re.I)
_HANDLER = re.compile(r"""\son[a-z]+=(?:"([^"]*)"|'([^']*)')""", re.I)


def content_security_policy(templates: Path = TEMPLATES) -> str:
    """The Content-Security-Policy: only the studio's own scripts, styles, images and connections (for the
    pages and for /docs, whose Swagger UI also needs inline styles and data: icons)."""
    scripts, handlers = inline_hashes(templates)
    script_src = " ".join(["'self'", *scripts, *handlers, *(["'unsafe-hashes'"] if handlers else [])])
    return "; ".join(
        [
            "default-src 'self'",
            # Inline scripts and on*= handlers still in the templates run by their hash alone, so an injected
            # script never does; moving them to static/*.js empties this list.
            f"script-src {script_src}",
            # Templates and htmx swaps carry style="width: N%" (progress bars), htmx adds its indicator <style>
            # and Swagger UI styles inline: all need inline styles. Styles run no code; scripts stay locked.
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",  # the empty data: favicon (spares a /favicon.ico 404), Swagger UI's icons
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def inline_hashes(templates: Path = TEMPLATES) -> tuple[list[str], list[str]]:
    """CSP source hashes of the templates' inline <script> bodies and of their on*= handler attributes
    (those with Jinja in them render differently each time and are left out: the browser test catches them)."""
    scripts: set[str] = set()
    handlers: set[str] = set()
    for path in sorted(templates.rglob("*.html")):
        text = path.read_text(encoding="utf-8")
        for body in _INLINE_SCRIPT.findall(text):
            if "{{" not in body and "{%" not in body:
                scripts.add(_sha256(body))
        for double, single in _HANDLER.findall(text):
            code = html.unescape(double or single)
            if "{{" not in code and "{%" not in code:
                handlers.add(_sha256(code))
    return sorted(scripts), sorted(handlers)


def _sha256(code: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(code.encode("utf-8")).digest()).decode() + "'"


class SecurityHeaders:
    """ASGI middleware: adds the headers to each answer that does not set them itself."""

    def __init__(self, app: ASGIApp, *, policy: str) -> None:
        self.app = app
        self.headers = [
            ("X-Frame-Options", "DENY"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "same-origin"),
            ("Content-Security-Policy", policy),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers:
                    if name not in headers:
                        headers.append(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI, *, templates: Path = TEMPLATES) -> None:
    """Wrap the whole app, error handling included, in SecurityHeaders."""
    build = app.build_middleware_stack
    policy = content_security_policy(templates)

    # Outside Starlette's ServerErrorMiddleware, which answers unexpected errors (500) past any middleware
    # added with add_middleware: only the outermost layer sees every answer.
    def build_with_headers() -> ASGIApp:
        return SecurityHeaders(build(), policy=policy)

    app.build_middleware_stack = build_with_headers  # type: ignore[method-assign]
