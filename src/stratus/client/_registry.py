"""The SDK's registry API: push model versions, read them, move aliases."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

from stratus.client._base import (
    API,
    Progress,
    key_path,
    labels_of,
    local_files,
    seg,
    upload_files,
    write_atomically,
)
from stratus.core.errors import NotFound
from stratus.core.resource_schemas import ALL_PROJECTS
from stratus.registry import schemas as rg
from stratus.registry.references import ModelRef, parse_ref


class Models(API):
    """The model registry: push versions, read them, move aliases."""

    def _base(self, project: str | None) -> str:
        return f"/api/v1/projects/{self._project(project)}/models"

    def _version_path(self, ref: ModelRef, project: str | None) -> str:
        return f"{self._base(project)}/{seg(ref.model)}/versions/{seg(ref.selector)}"

    def create(
        self,
        name: str,
        *,
        project: str | None = None,
        description: str = "",
        labels: dict[str, str] | None = None,
    ) -> rg.ModelRead:
        body = {"name": name, "description": description, "labels": labels_of(labels)}
        return self._c._model(rg.ModelRead, "POST", self._base(project), json=body)

    def list(
        self, project: str | None = None, selector: str | None = None, *, all_projects: bool = False
    ) -> builtins.list[rg.ModelRead]:
        return list(
            self._c._pages(
                rg.ModelRead,
                self._base(ALL_PROJECTS if all_projects else project),
                {"selector": selector},
            )
        )

    def get(self, name: str, project: str | None = None) -> rg.ModelRead:
        return self._c._model(rg.ModelRead, "GET", f"{self._base(project)}/{seg(name)}")

    def delete(self, name: str, project: str | None = None, force: bool = False) -> None:
        params = {"force": "true"} if force else None
        self._c._send("DELETE", f"{self._base(project)}/{seg(name)}", params=params)

    def push(
        self,
        path: str | Path,
        name: str,
        *,
        project: str | None = None,
        flavor: str | None = None,
        trusted: bool = False,
        signature: dict[str, Any] | None = None,
        sample: Any = None,
        metrics: dict[str, float] | None = None,
        params: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        dataset_version: str | None = None,
        training_run: str | None = None,
        source_commit: str | None = None,
        description: str = "",
        card: str = "",
        progress: Progress | None = None,
    ) -> rg.VersionRead:
        """Push a model file or folder as a new version (the model is created if needed).

        Only files the project does not store yet are uploaded. `sample` (a DataFrame, a dict
        of columns, a list of rows or a 2-D array) infers the signature when none is given.

        Returns:
            The committed version.

        Raises:
            NotFound: `dataset_version` is not a dataset version of the project.
            ModelLoadError: the version does not load (the server tries, under limits, before
                it commits; the message says why). Nothing is registered then.
        """
        files = local_files(Path(path))
        if signature is None and sample is not None:
            from stratus.registry.signatures import infer_signature

            signature = infer_signature(sample).model_dump(mode="json")
        try:
            self.get(name, project)
        except NotFound:
            self.create(name, project=project)
        body: dict[str, Any] = {
            "files": [{"path": rel, "sha256": sha, "size": size} for rel, _, sha, size in files],
            "flavor": flavor,
            "trusted": trusted,
            "signature": signature,
            "metrics": metrics or {},
            "params": params or {},
            "tags": tags or {},
            "lineage": {
                "dataset_version": dataset_version,
                "training_run": training_run,
                "source_commit": source_commit,
            },
            "description": description,
            "card": card,
        }
        base = f"{self._base(project)}/{seg(name)}/versions"
        version = self._c._model(rg.VersionRead, "POST", base, json=body)
        stored = {f.path for f in version.files if f.stored}
        upload_files(self._c, f"{base}/{version.version}/files", files, stored, progress)
        return self._c._model(rg.VersionRead, "POST", f"{base}/{version.version}/commit")

    def versions(self, name: str, project: str | None = None) -> builtins.list[rg.VersionRead]:
        path = f"{self._base(project)}/{seg(name)}/versions"
        return list(self._c._pages(rg.VersionRead, path, {}))

    def version(self, ref: str, project: str | None = None) -> rg.VersionRead:
        """A version by reference: `name` (latest), `name:3`, or `name@production`."""
        return self._c._model(rg.VersionRead, "GET", self._version_path(parse_ref(ref), project))

    def update_version(
        self,
        ref: str,
        *,
        project: str | None = None,
        trusted: bool | None = None,
        tags: dict[str, str] | None = None,
        description: str | None = None,
        card: str | None = None,
    ) -> rg.VersionRead:
        body = {"trusted": trusted, "tags": tags, "description": description, "card": card}
        body = {k: v for k, v in body.items() if v is not None}
        path = self._version_path(parse_ref(ref), project)
        return self._c._model(rg.VersionRead, "PATCH", path, json=body)

    def accept(self, ref: str, reason: str, project: str | None = None) -> rg.VersionRead:
        """Accept a version a pipeline gate rejected (owners only), so it may get aliases and
        be deployed; its verdict keeps the refusal and who overrode it, when and why.

        Raises:
            Conflict: the version is not rejected.
            PermissionDenied: the caller is not an owner of the project.
        """
        path = self._version_path(parse_ref(ref), project) + "/accept"
        return self._c._model(rg.VersionRead, "POST", path, json={"reason": reason})

    def delete_version(self, ref: str, project: str | None = None, force: bool = False) -> None:
        params = {"force": "true"} if force else None
        self._c._send("DELETE", self._version_path(parse_ref(ref), project), params=params)

    def card(self, ref: str, project: str | None = None) -> str:
        data = self._c._json("GET", self._version_path(parse_ref(ref), project) + "/card")
        return str(data["card"])

    def set_alias(
        self, name: str, alias: str, version: int, *, project: str | None = None, reason: str = ""
    ) -> rg.AliasRead:
        path = f"{self._base(project)}/{seg(name)}/aliases/{seg(alias)}"
        body = {"version": version, "reason": reason}
        return self._c._model(rg.AliasRead, "PUT", path, json=body)

    def delete_alias(
        self, name: str, alias: str, *, project: str | None = None, reason: str = ""
    ) -> None:
        path = f"{self._base(project)}/{seg(name)}/aliases/{seg(alias)}"
        self._c._send("DELETE", path, params={"reason": reason})

    def aliases(self, name: str, project: str | None = None) -> builtins.list[rg.AliasRead]:
        path = f"{self._base(project)}/{seg(name)}/aliases"
        return list(self._c._pages(rg.AliasRead, path, {}))

    def alias_history(
        self, name: str, alias: str | None = None, project: str | None = None
    ) -> builtins.list[rg.AliasEvent]:
        path = f"{self._base(project)}/{seg(name)}/alias-history"
        return list(self._c._pages(rg.AliasEvent, path, {"alias": alias}))

    def pull(self, ref: str, dest: str | Path, project: str | None = None) -> Path:
        """Download every file of a version into the folder `dest` (verified, atomic per file)."""
        version = self.version(ref, project)
        root = Path(dest)
        root.mkdir(parents=True, exist_ok=True)
        base = self._version_path(ModelRef(version.model, version=version.version), project)
        for entry in version.files:
            target = root / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            chunks = self._c._stream_verified(f"{base}/files/{key_path(entry.path)}", entry.path)
            write_atomically(target, chunks)
        return root
