"""The shapes of infrastructure as code: a resource document as files hold it (`kind`,
`metadata`, `spec`), and a plan: per resource, what applying the files would do, field by
field."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from stratus.core.resource_schemas import Labels, Name

#: the label on every resource the files created: what `--prune` and destroy may remove
MANAGED_BY = "stratus.io/managed-by"
MANAGED = "iac"

Action = Literal["create", "update", "replace", "delete", "drift", "no-op"]
Mode = Literal["apply", "destroy", "refresh-only"]


class DocumentMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.@-]*$",
        description="the resource's name as its kind spells it (a ModelAlias: MODEL@ALIAS)",
    )
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
    mode: Mode = Field(
        "apply",
        description="apply: make live state match the files; destroy: remove what they "
        "declare; refresh-only: report what changed outside them (drift)",
    )
    prune: bool = Field(
        False,
        description="also delete resources of the declared kinds, in the declared projects, "
        "that the files do not declare (without it: only those the files created)",
    )
    pinned: dict[str, int | None] | None = Field(
        None,
        description="a saved plan's live versions by address (None: absent then); an apply "
        "whose resources changed since is refused (409) and applies nothing",
    )
    plan_id: str | None = Field(
        None, max_length=64, description="a saved plan's id: the apply is audited with it"
    )
    secret_values: dict[str, SecretStr] = Field(
        default_factory=dict,
        max_length=10_000,
        description="values for declared secrets that do not exist yet, by address "
        "(Secret/PROJECT/NAME), from the applier's environment; never in a plan",
    )


class FieldChange(BaseModel):
    path: str = Field(description="dotted: spec.description, metadata.labels.team")
    before: Any = None
    after: Any = None


class ChangeBy(BaseModel):
    """A change made outside the files, from the audit log."""

    actor: str
    action: str
    time: datetime
    request_id: str = ""


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
    changed_by: list[ChangeBy] = Field(
        default_factory=list,
        description="refresh-only: who changed it outside the files since their last apply",
    )
    note: str = Field("", description="why a change is as it is (kept, needs a value, ...)")

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
    replace: int = 0
    delete: int = 0
    drift: int = 0
    unchanged: int = 0


class PlanRead(BaseModel):
    kind: Literal["Plan"] = "Plan"
    id: str = Field("", description="the plan's id: an apply of the saved plan is audited with it")
    mode: Mode = "apply"
    prune: bool = False
    changes: list[ResourceChange]
    summary: PlanSummary

    @property
    def changed(self) -> bool:
        return any(c.action != "no-op" for c in self.changes)

    def pins(self) -> dict[str, int | None]:
        return dict(c.pinned for c in self.changes)


class ApplyRead(BaseModel):
    kind: Literal["Apply"] = "Apply"
    id: str = Field("", description="the id the audit log records each change with")
    applied: list[ResourceChange] = Field(description="what was changed, in order")
    failed: ResourceChange | None = Field(None, description="where it stopped")
    error: str | None = None
    remaining: list[ResourceChange] = Field(
        default_factory=list, description="what was not applied because of the failure"
    )
    kept: list[ResourceChange] = Field(
        default_factory=list,
        description="deletes the platform refused because the resource still holds or is "
        "named by what the files do not manage (a project's models, a bucket's objects); "
        "`note` says what",
    )


class ExportRead(BaseModel):
    kind: Literal["Export"] = "Export"
    documents: list[ResourceDocument]
