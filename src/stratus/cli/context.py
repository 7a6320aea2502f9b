"""The SDK client each command uses, built from the global `--url`, `--api-key`, `--profile`
and `--ca-file`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from stratus.client import Client


@dataclass
class Globals:
    url: str | None = None
    api_key: str | None = None
    debug: bool = False
    profile: str | None = None
    ca_file: str | None = None
    _client: Client | None = None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def client(self) -> Client:
        if self._client is None:
            from stratus.client import Client  # httpx: not for `stratus --version`

            self._client = Client(
                url=self.url, api_key=self.api_key, profile=self.profile, ca_file=self.ca_file
            )
        return self._client


def client(ctx: typer.Context) -> Client:
    root = ctx.find_root()
    globals_ = root.obj if isinstance(root.obj, Globals) else Globals()
    root.obj = globals_
    if globals_._client is None:
        root.call_on_close(globals_.close)
    return globals_.client()


def project_of(ctx: typer.Context, project: str | None) -> str:
    return project or client(ctx).default_project


ProjectOption = Annotated[
    str | None,
    typer.Option(
        "--project",
        "-p",
        envvar="STRATUS_PROJECT",
        help="project (default: the credentials file's, else 'default')",
    ),
]
