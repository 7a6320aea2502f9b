"""The shapes of infrastructure as code: a resource document as files hold it (`kind`,
`metadata`, `spec`), and a plan: per resource, what applying the files would do, field by
field."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stratus.core.resource_schemas import Labels, Name

#: the label on every resource the files created: what `--prune` and destroy may remove
MANAGED_BY = "stratus.io/managed-by"
MANAGED = "iac"

Action = Literal["create", "update", "delete", "no-op"]


class DocumentMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    project: Name | None = Field(None, description="for kinds that live in a project")
    labels: Labels = Field(default_factory=dict)


class ResourceDocument(BaseModel):
    """One resource as a file declares it."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(min_length=1, max_length=63)
    metadata: DocumentMetadata
    spec: dict[str, Any] = Field(default_factory=dict)
    source: str = Field("", max_length=1000, description="the file (and document) it came from")


def address_of(kind: str, project: str | None, name: str) -> str:
    """`Kind/project/name` (or `Kind/name` for a kind in no project): a resource's key."""
    where = f"{project}/" if project else ""
    return f"{kind}/{where}{name}"


class PlanRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    documents: list[ResourceDocument] = Field(max_length=10_000)
    pinned: dict[str, int | None] | None = Field(
        None,
        description="a saved plan's live versions by address (None: absent then); an apply "
        "whose resources changed since is refused (409) and applies nothing",
    )


class FieldChange(BaseModel):
    path: str = Field(description="dotted: spec.description, metadata.labels.team")
    before: Any = None
    after: Any = None


class ResourceChange(BaseModel):
    kind: str
    project: str | None
    name: str
    action: Action
    fields: list[FieldChange] = Field(default_factory=list)
    resource_version: int | None = Field(
        None, description="the live resource's version the plan was made against"
    )
    source: str = ""

    @property
    def address(self) -> str:
        return address_of(self.kind, self.project, self.name)

    @property
    def pinned(self) -> tuple[str, int | None]:
        """(address, the live version the plan saw): what a saved plan is pinned to."""
        return self.address, self.resource_version


class PlanSummary(BaseModel):
    create: int = 0
    update: int = 0
    delete: int = 0
    unchanged: int = 0


class PlanRead(BaseModel):
    kind: Literal["Plan"] = "Plan"
    changes: list[ResourceChange]
    summary: PlanSummary

    @property
    def changed(self) -> bool:
        return any(c.action != "no-op" for c in self.changes)

    def pins(self) -> dict[str, int | None]:
        return dict(c.pinned for c in self.changes)


class ApplyRead(BaseModel):
    kind: Literal["Apply"] = "Apply"
    applied: list[ResourceChange] = Field(description="what was changed, in order")
    failed: ResourceChange | None = Field(None, description="where it stopped")
    error: str | None = None
    remaining: list[ResourceChange] = Field(
        default_factory=list, description="what was not applied because of the failure"
    )
