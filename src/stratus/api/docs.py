"""The API's own documentation: the OpenAPI document and Swagger UI, both served offline.

Swagger UI's files ship in the package (`static/swagger-ui`, from swagger-ui-dist), so
`/api/v1/docs` needs no CDN. The OpenAPI document is built once, in a thread started at
start-up (a first build takes seconds, which on the event loop would stall every request);
`/api/v1/openapi.json` waits for that build off the loop. Both are public, like the health
checks: they describe the routes, never data.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from anyio import to_thread
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

log = logging.getLogger(__name__)

OPENAPI_URL = "/api/v1/openapi.json"
DOCS_URL = "/api/v1/docs"
ASSETS_URL = "/api/v1/docs/assets"
ASSETS = Path(__file__).parent / "static" / "swagger-ui"


class OpenApiDocument:
    """The app's OpenAPI document, built once (off the event loop) and kept encoded."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._encoded: bytes | None = None

    def build(self) -> bytes:
        with self._lock:
            if self._encoded is None:
                schema: dict[str, Any] = self._app.openapi()
                self._encoded = json.dumps(schema, separators=(",", ":")).encode()
            return self._encoded

    def build_in_background(self) -> None:
        """Start the build in a thread of its own; a failure is logged (and the route will
        try again, and report it)."""

        def build() -> None:
            try:
                self.build()
            except Exception:
                log.exception("could not build the OpenAPI document")

        threading.Thread(target=build, name="stratus-openapi", daemon=True).start()

    async def encoded(self) -> bytes:
        return self._encoded if self._encoded is not None else await to_thread.run_sync(self.build)


def install(app: FastAPI) -> OpenApiDocument:
    """Serve the OpenAPI document, Swagger UI and its assets; the app is made with
    `openapi_url=None, docs_url=None` so FastAPI's own routes (CDN assets, a build on the
    loop) stay out."""
    document = OpenApiDocument(app)

    @app.get(OPENAPI_URL, include_in_schema=False)
    async def openapi() -> Response:
        return Response(await document.encoded(), media_type="application/json")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=OPENAPI_URL,
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
            oauth2_redirect_url=None,
            # No badge from the public validator: the page makes no request off this server.
            swagger_ui_parameters={"validatorUrl": None},
        )

    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs.assets")
    return document
