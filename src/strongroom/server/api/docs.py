"""The browsable API docs, ``/docs`` (Swagger UI), served with no CDN: its script and
styles come from the ``fastapi-offline`` package, under ``/docs/static``, so the page
works on a network that reaches nothing else.

The page carries a Content-Security-Policy that lets only this server's own scripts and
styles run: Swagger UI's inline start-up script is allowed by its hash. A page an API
key is typed into ("Authorize") may not be framed by another site, nor send anything
anywhere but here. There is no ReDoc page: ReDoc writes its styles into the page at run
time, which such a policy blocks (it would need 'unsafe-inline' styles), and Swagger UI
shows the same document.
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = "/docs/static"
# The package and its directory holding swagger-ui-bundle.js, swagger-ui.css and
# favicon.png (Swagger UI 5, kept current by the package's releases).
ASSETS_PACKAGE = ("fastapi_offline", "static")

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)

router = APIRouter(include_in_schema=False)


def install_docs(app: FastAPI) -> None:
    """Serve the page and its files on ``app`` (made with ``docs_url=None`` and
    ``redoc_url=None``, so FastAPI's CDN pages are not there)."""
    app.include_router(router)
    app.mount(STATIC, StaticFiles(packages=[ASSETS_PACKAGE]), name="docs-static")


@router.api_route("/docs", methods=["GET", "HEAD"])
def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    page = get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - API docs",
        swagger_js_url=f"{root}{STATIC}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{STATIC}/swagger-ui.css",
        swagger_favicon_url=f"{root}{STATIC}/favicon.png",
    )
    html = bytes(page.body).decode()
    scripts = " ".join(_hash(s) for s in _INLINE_SCRIPT.findall(html))
    policy = "; ".join(
        [
            "default-src 'none'",
            f"script-src 'self' {scripts}",
            "style-src 'self'",
            "img-src 'self' data:",  # Swagger UI's stylesheet draws its icons as data: URLs
            "font-src 'self'",
            "connect-src 'self'",  # the OpenAPI document, and "Try it out" on this server
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": policy,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


def _hash(source: str) -> str:
    digest = hashlib.sha256(source.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"
