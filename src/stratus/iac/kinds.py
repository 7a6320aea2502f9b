"""The kinds files may declare, each a handler over its service: how its spec reads when
normalised (the create schema's defaults filled in, so a plan right after an apply shows no
change), what is live, and how to create, update and delete it. Handlers check the caller's
rights with the same rules as the kind's own routes. `ORDER` is the order applies run in:
what others live in or refer to comes first; deletes run the other way.

The handlers themselves are in `project_kinds` (projects and what governs them) and
`serving_kinds` (what serves and watches models)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from stratus.core.errors import InvalidInput, NotFound
from stratus.iac.schemas import ResourceDocument
from stratus.iam.authorization import check_project
from stratus.iam.principals import Principal
from stratus.iam.roles import Permission


@dataclass(frozen=True)
class Live:
    """A resource as it is: its spec in the normalised shape, its labels, its version."""

    spec: dict[str, Any]
    labels: dict[str, str]
    resource_version: int


class KindHandler(Protocol):
    kind: str
    scoped: bool  # lives in a project (metadata.project is required)
    labelled: bool  # keeps labels (and so the managed-by label)

    def normalize(self, doc: ResourceDocument) -> dict[str, Any]:
        """The spec as the platform would hold it; InvalidInput names what is wrong."""
        ...

    def align(self, live: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        """The live spec without what the server fills in and the file leaves out (a pinned
        model version, members not listed): compared only when a file gives them."""
        ...

    def audit_path(self, project: str | None, name: str) -> str:
        """The resource's REST path, as audit entries of changes to it name it."""
        ...

    def may_read(self, principal: Principal, project: str | None, name: str) -> None: ...

    def may_write(self, principal: Principal, project: str | None, name: str) -> None: ...

    def live(self, principal: Principal, project: str | None, name: str) -> Live | None: ...

    def live_all(self, principal: Principal, project: str) -> dict[str, Live]:
        """Every resource of the kind in the project, by name (one read for many)."""
        ...

    def create(
        self, principal: Principal, doc: ResourceDocument, labels: dict[str, str]
    ) -> None: ...

    def update(
        self,
        principal: Principal,
        doc: ResourceDocument,
        labels: dict[str, str],
        resource_version: int,
    ) -> None: ...

    def delete(self, principal: Principal, project: str | None, name: str) -> None: ...

    def exported(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A live spec as a file would declare it: what equals the default left out."""
        ...


def validated(model: type[BaseModel], doc: ResourceDocument, values: dict[str, Any]) -> Any:
    """`values` as the kind's create schema takes them; InvalidInput names the file, the
    resource and the field."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = str(first.get("msg", "is not valid")).removeprefix("Value error, ")
        field = f"spec.{where}: " if where else ""
        raise InvalidInput(
            f"{doc.source or doc.kind}: {doc.kind} {doc.metadata.name}: {field}{message}"
        ) from None


def without_defaults(model: type[BaseModel], spec: Mapping[str, Any]) -> dict[str, Any]:
    """`spec` without the top-level fields that hold `model`'s default (an exported file
    reads as a person would write it; applying it fills the same defaults back in)."""
    out: dict[str, Any] = {}
    for key, value in spec.items():
        field = model.model_fields.get(key)
        if field is not None and not field.is_required():
            default = field.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):
                default = default.model_dump(mode="json")
            if value == default:
                continue
        out[key] = value
    return out


def stamp(when: datetime) -> int:
    """A version for a resource the platform keeps none for (a budget, an alias): its last
    change, in µs, which a saved plan pins as it pins a `resource_version`."""
    return int(when.timestamp() * 1_000_000)


def project_of(doc: ResourceDocument) -> str:
    assert doc.metadata.project is not None  # checked by the planner for scoped kinds
    return doc.metadata.project


class InProject:
    """What kinds that live in a project share: their REST path under it (for drift), and
    the rights to read and change one, as its own routes check them (`resource.read` and
    `resource.write` unless a kind says otherwise)."""

    kind: str
    scoped = True
    labelled = True
    api_path = ""
    read_permission = Permission.RESOURCE_READ
    write_permission = Permission.RESOURCE_WRITE

    def align(self, live: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        return live

    def audit_path(self, project: str | None, name: str) -> str:
        return f"/api/v1/projects/{project}/{self.api_path}/{name}"

    def may_read(self, principal: Principal, project: str | None, name: str) -> None:
        assert project is not None
        check_project(principal, project, self.read_permission)

    def may_write(self, principal: Principal, project: str | None, name: str) -> None:
        assert project is not None
        check_project(principal, project, self.write_permission)

    def update(
        self,
        principal: Principal,
        doc: ResourceDocument,
        labels: dict[str, str],
        resource_version: int,
    ) -> None:
        """By default a kind is applied whole: an update is a create that replaces it."""
        self.create(principal, doc, labels)

    def create(self, principal: Principal, doc: ResourceDocument, labels: dict[str, str]) -> None:
        raise NotImplementedError


class SpecKind(InProject):
    """A kind whose spec is the fields `SPEC` of its create schema (`CREATE`, which also
    takes `name` and `labels`). Subclasses give `read`, `list_reads`, `create`, `delete`,
    and `update` where it is not a whole apply."""

    CREATE: type[BaseModel]
    SPEC: tuple[str, ...]
    #: spec fields that cannot change in place: a change of one is a replace (delete, create)
    replaced_on: tuple[str, ...] = ()

    def validate(self, doc: ResourceDocument, labels: dict[str, str] | None = None) -> Any:
        values = {**doc.spec, "name": doc.metadata.name}
        if labels is not None:
            values["labels"] = labels
        return validated(self.CREATE, doc, values)

    def normalize(self, doc: ResourceDocument) -> dict[str, Any]:
        data = self.validate(doc)
        return dict(data.model_dump(mode="json", include=set(self.SPEC)))

    def read(self, project: str, name: str) -> Any:
        """The kind's read (`XRead`: metadata and spec); NotFound when there is none."""
        raise NotImplementedError

    def list_reads(self, project: str) -> list[Any]:
        """Every read of the kind in the project."""
        raise NotImplementedError

    def live_of(self, read: Any) -> Live:
        return Live(
            dict(read.spec.model_dump(mode="json", include=set(self.SPEC))),
            dict(read.metadata.labels),
            read.metadata.resource_version,
        )

    def live(self, principal: Principal, project: str | None, name: str) -> Live | None:
        assert project is not None
        try:
            read = self.read(project, name)
        except NotFound:
            return None
        return self.live_of(read)

    def live_all(self, principal: Principal, project: str) -> dict[str, Live]:
        return {r.metadata.name: self.live_of(r) for r in self.list_reads(project)}

    def exported(self, spec: dict[str, Any]) -> dict[str, Any]:
        return without_defaults(self.CREATE, spec)


#: the order applies create and update in (deletes run the other way): a resource comes
#: after what it lives in or names (channels before the rules and budgets that notify them,
#: aliases before the endpoints that serve them, endpoints before their monitors)
ORDER = (
    "Project",
    "ServiceAccount",
    "Secret",
    "Bucket",
    "AlertChannel",
    "ModelAlias",
    "Endpoint",
    "Monitor",
    "AlertRule",
    "Pipeline",
    "Budget",
)
