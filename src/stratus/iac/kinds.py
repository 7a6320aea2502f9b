"""The kinds files may declare, each a handler over its service: how its spec reads when
normalised (the create schema's defaults filled in, so a plan right after an apply shows no
change), what is live, and how to create and update it. Handlers check the caller's rights
with the same rules as the kind's own routes. `ORDER` is the order applies run in: what
others live in comes first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from stratus.core.errors import InvalidInput, NotFound
from stratus.iac.schemas import ResourceDocument
from stratus.iam import schemas as iam_schemas
from stratus.iam.authorization import check_project
from stratus.iam.principals import Principal
from stratus.iam.roles import Permission
from stratus.iam.service import IamService
from stratus.monitoring import alert_schemas
from stratus.monitoring.alerts import AlertService
from stratus.storage import schemas as storage_schemas
from stratus.storage.service import StorageService


@dataclass(frozen=True)
class Live:
    """A resource as it is: its spec in the normalised shape, its labels, its version."""

    spec: dict[str, Any]
    labels: dict[str, str]
    resource_version: int


class KindHandler(Protocol):
    kind: str
    scoped: bool  # lives in a project (metadata.project is required)

    def normalize(self, doc: ResourceDocument) -> dict[str, Any]:
        """The spec as the platform would hold it; InvalidInput names what is wrong."""
        ...

    def may_read(self, principal: Principal, project: str | None, name: str) -> None: ...

    def may_write(self, principal: Principal, project: str | None, name: str) -> None: ...

    def live(self, principal: Principal, project: str | None, name: str) -> Live | None: ...

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


def validated(model: type[BaseModel], doc: ResourceDocument, values: dict[str, Any]) -> Any:
    """`values` as the kind's create schema takes them; InvalidInput names the file, the
    resource and the field."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = str(first.get("msg", "is not valid")).removeprefix("Value error, ")
        raise InvalidInput(
            f"{doc.source or doc.kind}: {doc.kind} {doc.metadata.name}: spec.{where}: {message}"
        ) from None


class SpecKind:
    """A kind that lives in a project, whose spec is the fields `SPEC` of its create schema
    (`CREATE`, which also takes `name` and `labels`): read with `resource.read`, written with
    `resource.write`, as its own routes do."""

    kind: str
    scoped = True
    CREATE: type[BaseModel]
    SPEC: tuple[str, ...]

    def validate(self, doc: ResourceDocument, labels: dict[str, str] | None = None) -> Any:
        values = {**doc.spec, "name": doc.metadata.name}
        if labels is not None:
            values["labels"] = labels
        return validated(self.CREATE, doc, values)

    def normalize(self, doc: ResourceDocument) -> dict[str, Any]:
        data = self.validate(doc)
        return dict(data.model_dump(mode="json", include=set(self.SPEC)))

    def may_read(self, principal: Principal, project: str | None, name: str) -> None:
        assert project is not None
        check_project(principal, project, Permission.RESOURCE_READ)

    def may_write(self, principal: Principal, project: str | None, name: str) -> None:
        assert project is not None
        check_project(principal, project, Permission.RESOURCE_WRITE)

    def read(self, project: str, name: str) -> Any:
        """The kind's read (`XRead`: metadata and spec); NotFound when there is none."""
        raise NotImplementedError

    def live(self, principal: Principal, project: str | None, name: str) -> Live | None:
        assert project is not None
        try:
            read = self.read(project, name)
        except NotFound:
            return None
        return Live(
            dict(read.spec.model_dump(mode="json", include=set(self.SPEC))),
            dict(read.metadata.labels),
            read.metadata.resource_version,
        )


class ProjectKind:
    """Projects: created by any user with an unrestricted key (who then owns it), changed by
    an owner; a project the caller cannot see reads as absent."""

    kind = "Project"
    scoped = False

    def __init__(self, iam: IamService) -> None:
        self.iam = iam

    def normalize(self, doc: ResourceDocument) -> dict[str, Any]:
        data = validated(iam_schemas.ProjectCreate, doc, {"name": doc.metadata.name, **doc.spec})
        return {"description": data.description}

    def may_read(self, principal: Principal, project: str | None, name: str) -> None:
        pass

    def may_write(self, principal: Principal, project: str | None, name: str) -> None:
        if principal.can_see(name):
            check_project(principal, name, Permission.PROJECT_ADMIN)

    def live(self, principal: Principal, project: str | None, name: str) -> Live | None:
        if not principal.can_see(name):
            return None
        try:
            read = self.iam.get_project(principal, name)
        except NotFound:
            return None
        return Live(
            {"description": read.spec.description},
            dict(read.metadata.labels),
            read.metadata.resource_version,
        )

    def create(self, principal: Principal, doc: ResourceDocument, labels: dict[str, str]) -> None:
        spec = self.normalize(doc)
        self.iam.create_project(
            principal, iam_schemas.ProjectCreate(name=doc.metadata.name, labels=labels, **spec)
        )

    def update(
        self,
        principal: Principal,
        doc: ResourceDocument,
        labels: dict[str, str],
        resource_version: int,
    ) -> None:
        spec = self.normalize(doc)
        self.iam.update_project(
            principal,
            doc.metadata.name,
            iam_schemas.ProjectUpdate(labels=labels, resource_version=resource_version, **spec),
        )


class BucketKind(SpecKind):
    kind = "Bucket"
    CREATE = storage_schemas.BucketCreate
    SPEC = ("description",)

    def __init__(self, storage: StorageService) -> None:
        self.storage = storage

    def read(self, project: str, name: str) -> Any:
        return self.storage.get_bucket(project, name)

    def create(self, principal: Principal, doc: ResourceDocument, labels: dict[str, str]) -> None:
        assert doc.metadata.project is not None
        self.storage.create_bucket(doc.metadata.project, self.validate(doc, labels))

    def update(
        self,
        principal: Principal,
        doc: ResourceDocument,
        labels: dict[str, str],
        resource_version: int,
    ) -> None:
        assert doc.metadata.project is not None
        spec = self.normalize(doc)
        self.storage.update_bucket(
            doc.metadata.project,
            doc.metadata.name,
            storage_schemas.BucketUpdate(labels=labels, resource_version=resource_version, **spec),
        )


class AlertRuleKind(SpecKind):
    """Alert rules: applied whole (create or replace, as `stratus alerts apply` does); their
    labels go to their notifications too."""

    kind = "AlertRule"
    CREATE = alert_schemas.AlertRuleApply
    SPEC = tuple(
        f
        for f in alert_schemas.AlertRuleSpec.model_fields
        if f in alert_schemas.AlertRuleApply.model_fields
    )

    def __init__(self, alerts: AlertService) -> None:
        self.alerts = alerts

    def normalize(self, doc: ResourceDocument) -> dict[str, Any]:
        spec = super().normalize(doc)
        match = dict(spec.get("match") or {})
        if match.get("project") == doc.metadata.project:  # implied: the rule's own project
            del match["project"]
        return {**spec, "match": match}

    def read(self, project: str, name: str) -> Any:
        return self.alerts.get_rule(project, name)

    def create(self, principal: Principal, doc: ResourceDocument, labels: dict[str, str]) -> None:
        assert doc.metadata.project is not None
        self.alerts.apply_rule(doc.metadata.project, self.validate(doc, labels))

    def update(
        self,
        principal: Principal,
        doc: ResourceDocument,
        labels: dict[str, str],
        resource_version: int,
    ) -> None:
        self.create(principal, doc, labels)


#: the order applies create and update in (deletes run the other way)
ORDER = ("Project", "Bucket", "AlertRule")
