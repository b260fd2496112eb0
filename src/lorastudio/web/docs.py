"""The API's documentation page, /docs (Swagger UI), served with its files from the studio itself (the
fastapi-offline package ships them): it works offline, and no third-party script runs on the origin that holds
the login cookie. Every script is a file, so the page needs no inline script in the CSP."""

from __future__ import annotations

from html import escape
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs/assets"

# The options FastAPI's own page passes, read from the page so this file stays the same for every root path;
# validatorUrl null: Swagger UI would otherwise fetch a badge from validator.swagger.io.
SWAGGER_INIT = """window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapi,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
});
"""


def install(app: FastAPI) -> None:
    """Serve /docs and its files (the app is made with docs_url=None, redoc_url=None)."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")
    title = escape(app.title)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = escape(_root(request))
        return HTMLResponse(f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - Swagger UI</title>
<link rel="stylesheet" href="{root}{ASSETS_URL}/swagger-ui.css">
<link rel="icon" href="{root}{ASSETS_URL}/favicon.png">
</head>
<body>
<div id="swagger-ui" data-openapi="{root}{escape(app.openapi_url or "")}"></div>
<script src="{root}{ASSETS_URL}/swagger-ui-bundle.js"></script>
<script src="{root}/docs/swagger-init.js"></script>
</body>
</html>
""")

    @app.get("/docs/swagger-init.js", include_in_schema=False)
    async def swagger_init() -> Response:
        return Response(SWAGGER_INIT, media_type="text/javascript")

    # ReDoc 2's bundle always loads its logo from cdn.redoc.ly: off, and its address leads to Swagger UI.
    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{_root(request)}/docs", status_code=308)


def _root(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")
