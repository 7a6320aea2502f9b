"""The SDK's secrets: set, list, show and delete a project's named, versioned secrets. A value
goes in and never comes back out."""

from __future__ import annotations

import builtins

from stratus.client._base import API, seg
from stratus.secrets import schemas as sec


class Secrets(API):
    def _base(self, project: str | None, platform: bool = False) -> str:
        if platform:
            return "/api/v1/secrets"
        return f"/api/v1/projects/{self._project(project)}/secrets"

    def set(
        self,
        name: str,
        value: str,
        *,
        project: str | None = None,
        description: str = "",
        platform: bool = False,
    ) -> sec.SecretRead:
        """Set a secret: a new version, which jobs and replicas started from now on get (as
        the environment variable their spec names).

        With `platform`, a secret of the platform itself (admins only), which settings name
        as `secret:NAME` (the object store's credentials).

        Raises:
            stratus.errors.InvalidInput: the name is not a variable-like name, or the value
                is empty or over 64 KiB.
            stratus.errors.PermissionDenied: the caller cannot write in the project.
        """
        body = {"value": value, "description": description}
        path = f"{self._base(project, platform)}/{seg(name)}"
        return self._c._model(sec.SecretRead, "PUT", path, json=body)

    def list(
        self, project: str | None = None, *, platform: bool = False
    ) -> builtins.list[sec.SecretRead]:
        """The project's (or the platform's) secrets: names, newest versions, who set them."""
        return list(self._c._pages(sec.SecretRead, self._base(project, platform), {}))

    def get(
        self, name: str, project: str | None = None, *, platform: bool = False
    ) -> sec.SecretRead:
        """A secret's versions and who set each (never its value)."""
        path = f"{self._base(project, platform)}/{seg(name)}"
        return self._c._model(sec.SecretRead, "GET", path)

    def delete(self, name: str, project: str | None = None, *, platform: bool = False) -> None:
        """Delete every version of a secret."""
        self._c._send("DELETE", f"{self._base(project, platform)}/{seg(name)}")
