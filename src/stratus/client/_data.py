"""The SDK's datasets API: push files as immutable versions, read schemas and profiles, pull
them back."""

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
    read_yaml,
    seg,
    upload_files,
    write_atomically,
)
from stratus.core.errors import InvalidInput, NotFound
from stratus.core.resource_schemas import ALL_PROJECTS
from stratus.data import schemas as ds
from stratus.data.rules import RuleSet, parse_rules

SUPPORTED = (".csv", ".parquet", ".pq", ".jsonl", ".ndjson")


def _data_file(rel: str) -> bool:
    return rel.lower().endswith(SUPPORTED) and not Path(rel).name.startswith(".")


def dataset_ref(ref: str) -> tuple[str, str]:
    """`NAME` (the latest version) or `NAME:N` → (name, version selector)."""
    name, _, version = ref.partition(":")
    if not name:
        raise InvalidInput(f"{ref!r} is not a dataset reference: use NAME or NAME:VERSION")
    if version and (not version.isdigit() or int(version) < 1):
        raise InvalidInput(f"{ref!r}: the version after ':' must be a positive number")
    return name, version or "latest"


def load_rules(rules: RuleSet | dict[str, Any] | str | Path) -> RuleSet:
    """A rule set from a model, a dict or a YAML file, with a clear error naming the problem."""
    from pydantic import ValidationError

    if isinstance(rules, RuleSet):
        return rules
    label = "the rules"
    if isinstance(rules, str | Path):
        label = str(rules)
        document = read_yaml(rules)
    else:
        document = rules
    if document is not None and not isinstance(document, dict):
        raise InvalidInput(f"{label}: expected a mapping of rules at the top")
    try:
        return parse_rules(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'rules'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInput(f"{label}: {problems}") from None


class Datasets(API):
    """Versioned datasets: push, list, read schemas and profiles, pull."""

    def _base(self, project: str | None) -> str:
        return f"/api/v1/projects/{self._project(project)}/datasets"

    def _version_path(self, ref: str, project: str | None) -> str:
        name, version = dataset_ref(ref)
        return f"{self._base(project)}/{seg(name)}/versions/{seg(version)}"

    def create(
        self,
        name: str,
        *,
        project: str | None = None,
        description: str = "",
        labels: dict[str, str] | None = None,
        column_tags: dict[str, builtins.list[str]] | None = None,
    ) -> ds.DatasetRead:
        """Create an empty dataset (`push` creates it when needed)."""
        body = {
            "name": name,
            "description": description,
            "labels": labels_of(labels),
            "column_tags": column_tags or {},
        }
        return self._c._model(ds.DatasetRead, "POST", self._base(project), json=body)

    def list(
        self, project: str | None = None, selector: str | None = None, *, all_projects: bool = False
    ) -> builtins.list[ds.DatasetRead]:
        return list(
            self._c._pages(
                ds.DatasetRead,
                self._base(ALL_PROJECTS if all_projects else project),
                {"selector": selector},
            )
        )

    def get(self, name: str, project: str | None = None) -> ds.DatasetRead:
        return self._c._model(ds.DatasetRead, "GET", f"{self._base(project)}/{seg(name)}")

    def tag(
        self, name: str, column_tags: dict[str, builtins.list[str]], project: str | None = None
    ) -> ds.DatasetRead:
        """Replace the dataset's column tags, e.g. `{"email": ["pii"], "churned": ["label"]}`
        (tags: pii, label, id, timestamp)."""
        path = f"{self._base(project)}/{seg(name)}"
        return self._c._model(ds.DatasetRead, "PATCH", path, json={"column_tags": column_tags})

    def delete(self, name: str, project: str | None = None, force: bool = False) -> None:
        params = {"force": "true"} if force else None
        self._c._send("DELETE", f"{self._base(project)}/{seg(name)}", params=params)

    def push(
        self,
        path: str | Path,
        dataset: str,
        *,
        project: str | None = None,
        description: str = "",
        column_tags: dict[str, builtins.list[str]] | None = None,
        lineage: dict[str, str] | None = None,
        progress: Progress | None = None,
    ) -> ds.VersionRead:
        """Push a CSV, Parquet or JSON-lines file, or a folder of them, as a new version.

        The same content pushed again makes no new version: the existing one comes back with
        `existing=True`. Only files the project does not store yet are uploaded.

        Args:
            path: a file, or a folder (its .csv, .parquet and .jsonl files, in path order).
            dataset: the dataset's name (created if needed).
            project: the project (default: the client's).
            description: what this version is.
            column_tags: tags to set on the dataset's columns first (pii, label, id, timestamp).
            lineage: where the rows came from: `{"model_version": "churn:3",
                "dataset_version": "customers:7", "job": ...}` (each checked and pinned).
            progress: called with each number of bytes sent.

        Returns:
            The version, with its schema and row count; `profile()` has the profile.

        Raises:
            stratus.errors.InvalidInput: a file cannot be read as its format says (the
                message names it); no version is made.
        """
        files = local_files(Path(path), keep=_data_file)
        try:
            current = self.get(dataset, project)
            if column_tags is not None:
                self.tag(dataset, {**current.spec.column_tags, **column_tags}, project)
        except NotFound:
            self.create(dataset, project=project, column_tags=column_tags)
        body: dict[str, Any] = {
            "files": [{"path": rel, "sha256": sha, "size": size} for rel, _, sha, size in files],
            "description": description,
        }
        if lineage:
            body["lineage"] = lineage
        base = f"{self._base(project)}/{seg(dataset)}/versions"
        version = self._c._model(ds.VersionRead, "POST", base, json=body)
        if version.existing:
            if progress:
                progress(sum(size for _, _, _, size in files))
            return version
        stored = {f.path for f in version.files if f.stored}
        upload_files(self._c, f"{base}/{version.version}/files", files, stored, progress)
        return self._c._model(ds.VersionRead, "POST", f"{base}/{version.version}/commit")

    def versions(self, name: str, project: str | None = None) -> builtins.list[ds.VersionRead]:
        """A dataset's versions, newest first."""
        path = f"{self._base(project)}/{seg(name)}/versions"
        return list(self._c._pages(ds.VersionRead, path, {}))

    def version(self, ref: str, project: str | None = None) -> ds.VersionRead:
        """A version: `name` (the latest) or `name:3`."""
        return self._c._model(ds.VersionRead, "GET", self._version_path(ref, project))

    def profile(self, ref: str, project: str | None = None) -> dict[str, Any]:
        """The version's profile: rows, and per column its count, nulls and statistics."""
        read = self._c._model(ds.ProfileRead, "GET", self._version_path(ref, project) + "/profile")
        return read.profile

    def validate(
        self,
        ref: str,
        rules: RuleSet | dict[str, Any] | str | Path,
        project: str | None = None,
    ) -> ds.ValidationRead:
        """Check a version against validation rules; the report is stored with the version.

        Args:
            ref: `name` (the latest version) or `name:3`.
            rules: a `RuleSet`, the same as a dict, or the path of a YAML rules file.

        Returns:
            The report: `passed`, and each check with its failing rows and examples.

        Raises:
            InvalidInput: the rules are malformed, or a rule cannot apply to its column.
        """
        rule_set = load_rules(rules)
        body = {"rules": rule_set.model_dump(mode="json", exclude_unset=True)}
        return self._c._model(
            ds.ValidationRead, "POST", self._version_path(ref, project) + "/validations", json=body
        )

    def validations(self, ref: str, project: str | None = None) -> builtins.list[ds.ValidationRead]:
        """A version's validation reports, newest first."""
        path = self._version_path(ref, project) + "/validations"
        return list(self._c._pages(ds.ValidationRead, path, {}))

    def pull(self, ref: str, dest: str | Path, project: str | None = None) -> Path:
        """Download every file of a version into the folder `dest` (verified, atomic per file)."""
        version = self.version(ref, project)
        root = Path(dest)
        root.mkdir(parents=True, exist_ok=True)
        base = self._version_path(f"{version.dataset}:{version.version}", project)
        for entry in version.files:
            target = root / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            chunks = self._c._stream_verified(f"{base}/files/{key_path(entry.path)}", entry.path)
            write_atomically(target, chunks)
        return root
