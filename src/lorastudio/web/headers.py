"""Security headers on every answer of the studio (pages, JSON, files, event streams, errors): no framing, a
Content-Security-Policy that lets only the studio's own scripts run, no MIME sniffing, no referrer to others."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def content_security_policy() -> str:
    """The Content-Security-Policy: only the studio's own scripts, styles, images and connections (for the
    pages and for /docs, whose Swagger UI also needs inline styles and data: icons)."""
    return "; ".join(
        [
            "default-src 'self'",
            # No inline script or on*= handler anywhere (tests/web/test_headers.py keeps it so): an injected
            # script never runs.
            "script-src 'self'",
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


def install(app: FastAPI) -> None:
    """Wrap the whole app, error handling included, in SecurityHeaders."""
    build = app.build_middleware_stack
    policy = content_security_policy()

    # Outside Starlette's ServerErrorMiddleware, which answers unexpected errors (500) past any middleware
    # added with add_middleware: only the outermost layer sees every answer.
    def build_with_headers() -> ASGIApp:
        return SecurityHeaders(build(), policy=policy)

    app.build_middleware_stack = build_with_headers  # type: ignore[method-assign]
