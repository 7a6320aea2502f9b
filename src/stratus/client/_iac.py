"""The SDK's infrastructure as code: read resource documents from YAML files (one or many
documents a file, or a folder of them), with variables and per-environment values; plan,
apply or destroy them on the platform; export a project as such files.

Variables: `${NAME}` in any string of a document is replaced by the value of NAME, taken
from (last wins) `values.yaml` in the folder, `values.ENV.yaml` for `env=ENV`, and the
`variables` given (`-var NAME=VALUE`). A string that is exactly `${NAME}` takes the value
with its type (a number stays a number); `$${` writes a literal `${`. The values files are
not documents.

Pipelines: a step's `code: ./folder` (with `entrypoint`, `args`, `requirements`) is archived
as `stratus pipelines apply` does, so an unchanged folder plans to no change; the archive is
uploaded by `apply` only. `rules: rules.yaml` of a validate step is read.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from stratus.client._archives import pack
from stratus.client._base import API, read_yaml, seg
from stratus.client._pipelines import prepare_step
from stratus.core.errors import InvalidInput, NotFound
from stratus.iac import schemas as iac

Source = str | Path | dict[str, Any] | Sequence[dict[str, Any]]
VALUES = "values"
_VARIABLE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")
_WHOLE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def _is_values_file(path: Path) -> bool:
    return path.stem == VALUES or path.stem.startswith(VALUES + ".")


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(
            p
            for p in path.rglob("*")
            if p.suffix in (".yaml", ".yml") and p.is_file() and not _is_values_file(p)
        )
    if not path.exists():
        raise InvalidInput(f"{path}: no such file or folder")
    return [path]


def load_values(
    sources: Iterable[str | Path], env: str | None = None, variables: Mapping[str, str] = {}
) -> dict[str, Any]:
    """The variables for the files: values.yaml, then values.ENV.yaml, of each folder (or of
    a file's folder), then `variables`."""
    values: dict[str, Any] = {}
    folders = []
    for source in sources:
        path = Path(source)
        folder = path if path.is_dir() else path.parent
        if folder not in folders:
            folders.append(folder)
    names = [f"{VALUES}.yaml"] + ([f"{VALUES}.{env}.yaml"] if env else [])
    for name in names:
        found = False
        for folder in folders:
            file = folder / name
            if file.is_file():
                found = True
                data = read_yaml(file) or {}
                if not isinstance(data, dict):
                    raise InvalidInput(f"{file}: values are a mapping of NAME: value")
                values.update(data)
        if env and name != f"{VALUES}.yaml" and not found:
            where = ", ".join(str(f) for f in folders)
            raise InvalidInput(f"--env {env}: there is no {name} in {where}")
    values.update(variables)
    return values


def _substitute(value: Any, values: Mapping[str, Any], where: str) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, values, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, values, where) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = _WHOLE.match(value)
    if whole:
        return _value(whole.group(1), values, where)

    def one(match: re.Match[str]) -> str:
        if match.group(1):  # $${NAME}: a literal ${NAME}
            return "${" + match.group(2) + "}"
        return str(_value(match.group(2), values, where))

    return _VARIABLE.sub(one, value)


def _value(name: str, values: Mapping[str, Any], where: str) -> Any:
    if name not in values:
        raise InvalidInput(
            f"{where}: ${{{name}}} has no value: give it in values.yaml, values.ENV.yaml "
            f"(--env ENV) or with -var {name}=VALUE"
        )
    return values[name]


@dataclass
class Loaded:
    """Documents ready to send, and the code archives their pipelines name."""

    documents: list[dict[str, Any]]
    archives: dict[tuple[str, str, str], Path] = field(default_factory=dict)  # (project,
    # pipeline, sha256) -> the folder to archive again on upload


def load_documents(
    sources: Iterable[str | Path],
    *,
    env: str | None = None,
    variables: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Every document of the files (a folder: its .yaml and .yml files, sorted, values
    files aside), variables substituted, each with `source` set to `FILE` or `FILE#N` (its
    place in a file of several)."""
    return _load(list(sources), env, variables or {}).documents


def _load(sources: list[str | Path], env: str | None, variables: Mapping[str, str]) -> Loaded:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, ~8x faster, if built
    values = load_values(sources, env, variables)
    loaded = Loaded(documents=[])
    for source in sources:
        for file in _files(Path(source)):
            try:
                text = file.read_text(encoding="utf-8")
                found = [d for d in yaml.load_all(text, Loader=loader) if d]
            except OSError as exc:
                raise InvalidInput(f"{file}: cannot be read: {exc.strerror or exc}") from None
            except yaml.YAMLError as exc:
                raise InvalidInput(f"{file}: not valid YAML: {exc}") from None
            for index, document in enumerate(found, start=1):
                where = f"{file}#{index}" if len(found) > 1 else str(file)
                if not isinstance(document, dict) or "kind" not in document:
                    raise InvalidInput(f"{where}: a document is a mapping with kind and metadata")
                document = _substitute(document, values, where)
                if document.get("kind") == "Pipeline":
                    document = _prepare_pipeline(document, file.parent, where, loaded)
                loaded.documents.append({**document, "source": where})
    return loaded


def _prepare_pipeline(
    document: dict[str, Any], root: Path, where: str, loaded: Loaded
) -> dict[str, Any]:
    spec = document.get("spec")
    metadata = document.get("metadata")
    if not isinstance(spec, dict) or not isinstance(spec.get("steps"), list):
        return document
    if not isinstance(metadata, dict):
        return document
    steps = []
    for step in spec["steps"]:
        step, folder = prepare_step(step, root, where)
        if folder is not None:
            key = (str(metadata.get("project")), str(metadata.get("name")), step["code"]["sha256"])
            loaded.archives[key] = folder
        steps.append(step)
    return {**document, "spec": {**spec, "steps": steps}}


class Iac(API):
    """Plan, apply and destroy resource documents (`kind`, `metadata`, `spec`); export a
    project as documents; the documents' JSON Schema; apply leases."""

    def _loaded(
        self,
        source: Source | Sequence[str | Path],
        env: str | None,
        variables: Mapping[str, str] | None,
    ) -> Loaded:
        if isinstance(source, dict):
            return Loaded(documents=[source])
        if isinstance(source, str | Path):
            return _load([source], env, variables or {})
        items = list(source)
        if all(isinstance(item, dict) for item in items):
            return Loaded(documents=items)  # type: ignore[arg-type]
        return _load(items, env, variables or {})  # type: ignore[arg-type]

    def plan(
        self,
        source: Source | Sequence[str | Path],
        *,
        mode: iac.Mode = "apply",
        prune: bool = False,
        env: str | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> iac.PlanRead:
        """What applying the documents (files, a folder, or the documents themselves) would
        change, resource by resource and field by field; nothing is changed. `mode="destroy"`
        plans their removal; `mode="refresh-only"` reports drift (changes made outside the
        files, and who made them).

        Raises:
            stratus.errors.InvalidInput: a file is not valid YAML, a variable has no value, a
                kind is unknown, a resource is declared twice, or a spec is not valid.
        """
        loaded = self._loaded(source, env, variables)
        body = {"documents": loaded.documents, "mode": mode, "prune": prune}
        return self._c._model(iac.PlanRead, "POST", "/api/v1/iac/plans", json=body)

    def apply(
        self,
        source: Source | Sequence[str | Path],
        *,
        pinned: dict[str, int | None] | None = None,
        plan_id: str | None = None,
        mode: iac.Mode = "apply",
        prune: bool = False,
        env: str | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> iac.ApplyRead:
        """Apply the documents (`mode="destroy"`: remove what they declare): what changed,
        and if a resource failed, which and what was left (apply again to finish). Code
        folders of pipelines are uploaded first; a declared secret that does not exist is
        created from the environment variable its `spec.from_env` names.

        Args:
            source: files, a folder, or the documents themselves.
            pinned: a saved plan's live versions (`PlanRead.pins()`): the apply is refused
                unless every resource is still as that plan saw it.
            plan_id: the saved plan's id, recorded with every change in the audit log.

        Raises:
            stratus.errors.StaleResource: `pinned` is stale; nothing was applied.
            stratus.errors.Conflict: another apply holds one of the projects' lease.
        """
        loaded = self._loaded(source, env, variables)
        waiting = self._upload(loaded.archives) if mode == "apply" else {}
        body: dict[str, Any] = {
            "documents": loaded.documents,
            "mode": mode,
            "prune": prune,
            "secret_values": _secret_values(loaded.documents) if mode == "apply" else {},
        }
        if pinned is not None:
            body["pinned"] = pinned
        if plan_id is not None:
            body["plan_id"] = plan_id
        result = self._c._model(iac.ApplyRead, "POST", "/api/v1/iac/applies", json=body)
        if waiting and result.failed is not None and result.failed.kind == "Pipeline":
            # code of pipelines in projects this apply created: upload it now, then finish
            if not self._upload(waiting):
                done = result.applied
                body.pop("pinned", None)  # the first part changed what the plan pinned
                result = self._c._model(iac.ApplyRead, "POST", "/api/v1/iac/applies", json=body)
                result.applied = done + result.applied
        return result

    def _upload(
        self, archives: Mapping[tuple[str, str, str], Path]
    ) -> dict[tuple[str, str, str], Path]:
        """Upload each code archive; those of projects that do not exist yet are returned."""
        waiting = {}
        for (project, pipeline, sha), folder in archives.items():
            archive, digest, _, _ = pack(folder)
            with archive:
                if digest != sha:
                    raise InvalidInput(f"{folder} changed while it was being applied")
                try:
                    self._c._send(
                        "PUT",
                        f"/api/v1/projects/{seg(project)}/pipelines/{seg(pipeline)}/code/{sha}",
                        content=archive.read(),
                        headers={"content-type": "application/octet-stream"},
                    )
                except NotFound:
                    waiting[(project, pipeline, sha)] = folder
        return waiting

    def export(self, project: str, into: str | Path | None = None) -> list[dict[str, Any]]:
        """The project's live state as documents that plan to no change. With `into`, they
        are written there as files (one per kind, `project.yaml`, `endpoint.yaml`, ...) with
        each pipeline's code unpacked beside them (`code/PIPELINE/STEP/`); files of the same
        names are replaced, others left alone.

        Returns:
            The documents.
        """
        read = self._c._model(iac.ExportRead, "GET", f"/api/v1/iac/exports/{seg(project)}")
        documents = [
            d.model_dump(mode="json", exclude={"source"}, exclude_none=True) for d in read.documents
        ]
        if into is None:
            return documents
        folder = Path(into)
        folder.mkdir(parents=True, exist_ok=True)
        for doc in documents:
            if doc["kind"] == "Pipeline":
                self._unpack_code(project, doc, folder)
        _write_files(documents, folder)
        return documents

    def _unpack_code(self, project: str, doc: dict[str, Any], folder: Path) -> None:
        pipeline = doc["metadata"]["name"]
        for step in doc["spec"].get("steps", []):
            code = step.get("code")
            if not isinstance(code, dict):
                continue
            target = folder / "code" / pipeline / step["name"]
            path = (
                f"/api/v1/projects/{seg(project)}/pipelines/{seg(pipeline)}/code/{code['sha256']}"
            )
            data = b"".join(self._c._stream_verified(path, f"{pipeline} code"))
            _unpack(data, target)
            step["code"] = f"code/{pipeline}/{step['name']}"
            step["entrypoint"] = code["entrypoint"]
            if code.get("args"):
                step["args"] = code["args"]
            if code.get("requirements"):
                step["requirements"] = code["requirements"]

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of a resource document, every kind."""
        schema: dict[str, Any] = self._c._json("GET", "/api/v1/iac/schema")
        return schema

    def leases(self, project: str | None = None) -> list[dict[str, Any]]:
        """Applies in progress: who holds which project's lease, and until when."""
        params = {"project": project} if project else None
        held: list[dict[str, Any]] = self._c._json("GET", "/api/v1/iac/leases", params=params)
        return held

    def unlock(self, project: str) -> dict[str, Any]:
        """Break a project's apply lease (project admins); returns what was held."""
        held: dict[str, Any] = self._c._json("DELETE", f"/api/v1/iac/leases/{seg(project)}")
        return held


def _secret_values(documents: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Values of declared secrets from the environment variables their `from_env` names."""
    values = {}
    for doc in documents:
        spec, metadata = doc.get("spec") or {}, doc.get("metadata") or {}
        if doc.get("kind") != "Secret" or not isinstance(spec, dict):
            continue
        variable = spec.get("from_env")
        if isinstance(variable, str) and os.environ.get(variable):
            address = iac.address_of("Secret", metadata.get("project"), str(metadata.get("name")))
            values[address] = os.environ[variable]
    return values


def _unpack(data: bytes, target: Path) -> None:
    """A code archive into `target` (emptied first), refusing paths that leave it."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    root = target.resolve()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            path = (target / member.name).resolve()
            if not member.isfile() or not path.is_relative_to(root):
                raise InvalidInput(f"the code archive holds {member.name!r}, which is not a file")
            path.parent.mkdir(parents=True, exist_ok=True)
            source: IO[bytes] | None = tar.extractfile(member)
            assert source is not None
            path.write_bytes(source.read())
            path.chmod(member.mode & 0o755)


def _write_files(documents: Sequence[dict[str, Any]], folder: Path) -> None:
    """One file per kind, its documents in order, each written atomically."""
    import yaml

    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in documents:
        by_kind.setdefault(doc["kind"], []).append(doc)
    for kind, docs in by_kind.items():
        name = re.sub(r"(?<!^)(?=[A-Z])", "-", kind).lower()
        text = yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True, width=100)
        target = folder / f"{name}.yaml"
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
