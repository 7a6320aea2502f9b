"""The API documents itself offline: Swagger UI's files come from the package, and the OpenAPI
document is built at start-up, off the event loop, before anyone asks for it."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import FastAPI

from stratus.api.app import create_api
from stratus.api.platform import Platform
from stratus.core.settings import Settings
from stratus.migrations.runner import upgrade

CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[FastAPI]:
    """The control plane's API app, in this process (SQLite and a store in tmp_path)."""
    settings = Settings(home=tmp_path / "home")
    settings.home.mkdir()
    platform = Platform.build(settings, Platform.master_key(settings))
    upgrade(platform.db)
    platform.start()
    try:
        yield create_api(platform)
    finally:
        platform.stop()


@asynccontextmanager
async def running(api: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app started (its lifespan run) and a client that calls it in this process."""
    async with api.router.lifespan_context(api):
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://stratus") as client:
            yield client


def run(test: Callable[[], Awaitable[None]]) -> None:
    anyio.run(test)


def test_the_openapi_document_is_built_at_start_up(api: FastAPI) -> None:
    assert api.openapi_schema is None

    async def test() -> None:
        async with running(api) as client:
            # Nobody asks for the document: start-up builds it, in a thread of its own.
            deadline = time.monotonic() + 60
            while api.openapi_schema is None:
                assert time.monotonic() < deadline, "start-up did not build the OpenAPI document"
                await anyio.sleep(0.05)
            assert (await client.get("/healthz")).status_code == 200
            response = await client.get("/api/v1/openapi.json")  # public: no credential
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json"
            assert response.json() == api.openapi_schema
            assert "/api/v1/projects" in response.json()["paths"]

    run(test)


def test_swagger_ui_loads_only_from_this_server(api: FastAPI) -> None:
    async def test() -> None:
        async with running(api) as client:
            page = await client.get("/api/v1/docs")  # public: no credential
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            html = page.text
            assert "http://" not in html and "https://" not in html, "it loads from elsewhere"
            assets = re.findall(r'(?:src|href)="([^"]+)"', html)
            assert {Path(a).suffix for a in assets} == {".js", ".css", ".png"}
            assert "url: '/api/v1/openapi.json'" in html
            for asset in assets:
                assert asset.startswith("/api/v1/docs/assets/"), asset
                response = await client.get(asset)
                assert response.status_code == 200, asset
                content_type = response.headers["content-type"].split(";")[0]
                assert content_type in CONTENT_TYPES[Path(asset).suffix], (asset, content_type)
                assert response.content
            bundle = await client.get("/api/v1/docs/assets/swagger-ui-bundle.js")
            assert "SwaggerUIBundle" in bundle.text
            assert (await client.get("/api/v1/docs/assets/LICENSE")).status_code == 200

    run(test)
