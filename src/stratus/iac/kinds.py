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
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = str(first.get("msg", "is not valid")).removeprefix("Value error, ")
        raise InvalidInput(
            f"{doc.source or doc.kind}: {doc.kind} {doc.metadata.name}: spec.{where}: {message}"
        ) from None


class ProjectKind:
    kind = "Project"
    scoped = False

    def __init__(self, iam: IamService) -> None:
        self.iam = iam

    def normalize(self, doc: ResourceDocument) -> dict[str, Any]:
        data = validated(iam_schemas.ProjectCreate, doc, {"name": doc.metadata.name, **doc.spec})
        return {"description": data.description}

    def may_read(self, principal: Principal, project: str | None, name: str) -> None:
        pass  # a project the caller cannot see reads as absent

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


class BucketKind:
    kind = "Bucket"
    scoped = True

    def __init__(self, storage: StorageService) -> None:
        self.storage = storage

    def normalize(self, doc: ResourceDocument) -> dict[str, Any]:
        data = validated(storage_schemas.BucketCreate, doc, {"name": doc.metadata.name, **doc.spec})
        return {"description": data.description}

    def may_read(self, principal: Principal, project: str | None, name: str) -> None:
        assert project is not None
        check_project(principal, project, Permission.RESOURCE_READ)

    def may_write(self, principal: Principal, project: str | None, name: str) -> None:
        assert project is not None
        check_project(principal, project, Permission.RESOURCE_WRITE)

    def live(self, principal: Principal, project: str | None, name: str) -> Live | None:
        assert project is not None
        try:
            read = self.storage.get_bucket(project, name)
        except NotFound:
            return None
        return Live(
            {"description": read.spec.description},
            dict(read.metadata.labels),
            read.metadata.resource_version,
        )

    def create(self, principal: Principal, doc: ResourceDocument, labels: dict[str, str]) -> None:
        assert doc.metadata.project is not None
        spec = self.normalize(doc)
        self.storage.create_bucket(
            doc.metadata.project,
            storage_schemas.BucketCreate(name=doc.metadata.name, labels=labels, **spec),
        )

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


#: the order applies create and update in (deletes run the other way)
ORDER = ("Project", "Bucket")
