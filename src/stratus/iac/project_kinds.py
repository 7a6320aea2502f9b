"""Kinds that make and govern a project: the project itself (with its members and quotas),
its service accounts, references to its secrets, and its budgets."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stratus.billing import schemas as billing_schemas
from stratus.billing.budgets import Budgets
from stratus.billing.quotas import Quotas
from stratus.core.errors import InvalidInput, NotFound
from stratus.core.resource_schemas import Name
from stratus.iac.kinds import (
    InProject,
    Live,
    SpecKind,
    project_of,
    stamp,
    validated,
    without_defaults,
)
from stratus.iac.schemas import ResourceDocument
from stratus.iam import schemas as iam_schemas
from stratus.iam.authorization import check_project
from stratus.iam.errors import admins_only
from stratus.iam.principals import Principal
from stratus.iam.roles import Permission, Role
from stratus.iam.service import IamService
from stratus.secrets import schemas as secret_schemas
from stratus.secrets.service import SecretService

# --- projects --------------------------------------------------------------------------------


class ProjectDeclared(BaseModel):
    """A project as files declare it. `members` (user name -> role) and `quotas`, when
    given, are the whole of them; left out, they are not managed by the files."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    description: str = Field("", max_length=5000)
    members: dict[Name, Role] | None = Field(
        None, description="users and their roles; service accounts carry their own role"
    )
    quotas: billing_schemas.QuotasSet | None = Field(
        None, description="the project's limits (set by platform admins)"
    )


class ProjectKind:
    """Projects: created by any user with an unrestricted key (who then owns it), changed by
    an owner; a project the caller cannot see reads as absent."""

    kind = "Project"
    scoped = False
    labelled = True

    def audit_path(self, project: str | None, name: str) -> str:
        return f"/api/v1/projects/{name}"

    def __init__(self, iam: IamService, quotas: Quotas) -> None:
        self.iam = iam
        self.quotas = quotas

    def normalize(self, doc: ResourceDocument) -> dict[str, Any]:
        data = validated(ProjectDeclared, doc, {"name": doc.metadata.name, **doc.spec})
        spec: dict[str, Any] = {"description": data.description}
        if data.members is not None:
            spec["members"] = {user: str(role) for user, role in data.members.items()}
        if data.quotas is not None:
            spec["quotas"] = data.quotas.model_dump(mode="json", exclude_none=True)
        return spec

    def align(self, live: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in live.items() if k in desired}

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
            {
                "description": read.spec.description,
                "members": self._user_roles(name),
                "quotas": self._limits(name),
            },
            dict(read.metadata.labels),
            read.metadata.resource_version,
        )

    def live_all(self, principal: Principal, project: str) -> dict[str, Live]:
        return {}  # a project the files do not name is not theirs to remove

    def create(self, principal: Principal, doc: ResourceDocument, labels: dict[str, str]) -> None:
        spec = self.normalize(doc)
        if "quotas" in spec and not principal.acts_as_admin:
            raise admins_only("set quotas")
        self.iam.create_project(
            principal,
            iam_schemas.ProjectCreate(
                name=doc.metadata.name, labels=labels, description=spec["description"]
            ),
        )
        self._members_and_quotas(principal, doc.metadata.name, spec)

    def update(
        self,
        principal: Principal,
        doc: ResourceDocument,
        labels: dict[str, str],
        resource_version: int,
    ) -> None:
        spec = self.normalize(doc)
        name = doc.metadata.name
        if "quotas" in spec and not principal.acts_as_admin:
            if self._limits(name) != spec["quotas"]:
                raise admins_only("set quotas")
        self.iam.update_project(
            principal,
            name,
            iam_schemas.ProjectUpdate(
                labels=labels, resource_version=resource_version, description=spec["description"]
            ),
        )
        self._members_and_quotas(principal, name, spec)

    def _members_and_quotas(self, principal: Principal, name: str, spec: dict[str, Any]) -> None:
        wanted: dict[str, str] | None = spec.get("members")
        if wanted is not None:
            held = self._user_roles(name)
            # raise and add before removing, so the project is never left without an owner
            for user, role in sorted(wanted.items(), key=lambda kv: kv[1] != Role.OWNER):
                if held.get(user) != role:
                    self.iam.set_member(name, iam_schemas.MemberSet(user=user, role=Role(role)))
            for user in sorted(set(held) - set(wanted)):
                self.iam.remove_member(name, f"user:{user}")
        if "quotas" in spec:
            if self._limits(name) != spec["quotas"]:
                self.quotas.set(
                    name,
                    billing_schemas.QuotasSet.model_validate(spec["quotas"]),
                    actor=principal.subject,
                )

    def _user_roles(self, name: str) -> dict[str, str]:
        """The project's users and their roles (service accounts carry their own)."""
        members, _ = self.iam.list_members(name)
        return {
            m.subject.removeprefix("user:"): str(m.role)
            for m in members
            if m.subject.startswith("user:")
        }

    def _limits(self, name: str) -> dict[str, Any]:
        """The project's quotas that are set."""
        return dict(self.quotas.read(name).limits.model_dump(mode="json", exclude_none=True))

    def delete(self, principal: Principal, project: str | None, name: str) -> None:
        self.iam.delete_project(name)

    def exported(self, spec: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in spec.items() if v not in ("", {}, None)}
        return out


# --- service accounts ------------------------------------------------------------------------


class ServiceAccountKind(SpecKind):
    """Service accounts and their role in the project; read by members, written by admins
    of the project (as their routes are). Keys are never in files: make them with
    `stratus keys create --service-account`."""

    kind = "ServiceAccount"
    api_path = "service-accounts"
    read_permission = Permission.PROJECT_READ
    write_permission = Permission.PROJECT_ADMIN
    CREATE = iam_schemas.ServiceAccountCreate
    SPEC = ("description", "role")

    def __init__(self, iam: IamService) -> None:
        self.iam = iam

    def normalize(self, doc: ResourceDocument) -> dict[str, Any]:
        data = self.validate(doc)
        return {"description": data.description, "role": None if data.role is None else data.role}

    def read(self, project: str, name: str) -> Any:
        return self.iam.get_service_account(project, name)

    def list_reads(self, project: str) -> list[Any]:
        return self.iam.list_service_accounts(project, None, None, None)[0]

    def live_of(self, read: Any) -> Live:
        role = read.status.role
        return Live(
            {"description": read.spec.description, "role": None if role is None else str(role)},
            dict(read.metadata.labels),
            read.metadata.resource_version,
        )

    def create(self, principal: Principal, doc: ResourceDocument, labels: dict[str, str]) -> None:
        self.iam.create_service_account(project_of(doc), self.validate(doc, labels))

    def update(
        self,
        principal: Principal,
        doc: ResourceDocument,
        labels: dict[str, str],
        resource_version: int,
    ) -> None:
        project, name = project_of(doc), doc.metadata.name
        data = self.validate(doc)
        read = self.iam.update_service_account(
            project,
            name,
            iam_schemas.ServiceAccountUpdate(
                description=data.description, labels=labels, resource_version=resource_version
            ),
        )
        if read.status.role != data.role:
            if data.role is None:
                self.iam.remove_member(project, f"serviceaccount:{name}")
            else:
                self.iam.set_member(
                    project, iam_schemas.MemberSet(service_account=name, role=data.role)
                )

    def delete(self, principal: Principal, project: str | None, name: str) -> None:
        assert project is not None
        self.iam.delete_service_account(project, name)


# --- secrets ---------------------------------------------------------------------------------

#: values for declared secrets to create, by address: set by the planner for one apply
SECRET_VALUES: ContextVar[Mapping[str, str]] = ContextVar("iac_secret_values", default={})  # noqa: B039


class SecretDeclared(BaseModel):
    """A reference to a project secret: files name it, never hold its value. A secret that
    does not exist yet is created on apply from the environment variable `from_env` of the
    machine that applies (the value goes to the platform only, not into the plan)."""

    model_config = ConfigDict(extra="forbid")

    name: secret_schemas.SecretName
    description: str = Field("", max_length=500)
    from_env: secret_schemas.SecretName | None = Field(
        None, description="create it from this environment variable when it is missing"
    )


class SecretKind(InProject):
    """Secret references: the plan says whether each named secret exists (and creates the
    missing ones from the applier's environment); a value is never read, compared or
    shown. A secret's description is that of its newest version."""

    kind = "Secret"
    labelled = False
    api_path = "secrets"

    def __init__(self, secrets: SecretService) -> None:
        self.secrets = secrets

    def normalize(self, doc: ResourceDocument) -> dict[str, Any]:
        data = validated(SecretDeclared, doc, {"name": doc.metadata.name, **doc.spec})
        return {"description": data.description}

    def live(self, principal: Principal, project: str | None, name: str) -> Live | None:
        assert project is not None
        try:
            read = self.secrets.get(project, name)
        except NotFound:
            return None
        return Live({"description": read.description}, {}, read.version)

    def live_all(self, principal: Principal, project: str) -> dict[str, Live]:
        return {
            r.name: Live({"description": r.description}, {}, r.version)
            for r in self.secrets.list(project, None, None)[0]
        }

    def create(self, principal: Principal, doc: ResourceDocument, labels: dict[str, str]) -> None:
        project, name = project_of(doc), doc.metadata.name
        data = validated(SecretDeclared, doc, {"name": name, **doc.spec})
        value = SECRET_VALUES.get().get(f"Secret/{project}/{name}")
        if value is None:
            how = f"export {data.from_env} and apply again, or " if data.from_env else ""
            raise InvalidInput(
                f"secret {name} does not exist in project {project!r}: {how}set it with "
                f"`stratus secrets set {name} -p {project}` (files never hold a value)"
            )
        self.secrets.set(
            project,
            name,
            secret_schemas.SecretSet(value=value, description=data.description),
            actor=principal.subject,
        )

    def update(
        self,
        principal: Principal,
        doc: ResourceDocument,
        labels: dict[str, str],
        resource_version: int,
    ) -> None:
        """A description is that of the newest version: a new one is set from the
        environment when `from_env` gives a value, else the apply says how to set it."""
        project, name = project_of(doc), doc.metadata.name
        if f"Secret/{project}/{name}" not in SECRET_VALUES.get():
            raise InvalidInput(
                f"secret {name}: its description is that of its newest version; give the "
                f"value in the variable spec.from_env names, or set a new version with "
                f"`stratus secrets set {name} -p {project} --description ...`"
            )
        self.create(principal, doc, labels)

    def delete(self, principal: Principal, project: str | None, name: str) -> None:
        assert project is not None
        self.secrets.delete(project, name)

    def exported(self, spec: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in spec.items() if v}


# --- budgets ---------------------------------------------------------------------------------


class BudgetKind(InProject):
    """Budgets: read by members, written by admins of the project (as their routes are)."""

    kind = "Budget"
    labelled = False
    api_path = "budgets"
    read_permission = Permission.PROJECT_READ
    write_permission = Permission.PROJECT_ADMIN

    def __init__(self, budgets: Budgets) -> None:
        self.budgets = budgets

    def normalize(self, doc: ResourceDocument) -> dict[str, Any]:
        data = validated(billing_schemas.BudgetApply, doc, {**doc.spec, "name": doc.metadata.name})
        return dict(data.model_dump(mode="json", exclude={"name"}))

    def live(self, principal: Principal, project: str | None, name: str) -> Live | None:
        assert project is not None
        try:
            read = self.budgets.get(project, name)
        except NotFound:
            return None
        spec = read.spec.model_dump(mode="json", exclude={"name"})
        return Live(spec, {}, stamp(read.updated_at))

    def live_all(self, principal: Principal, project: str) -> dict[str, Live]:
        return {
            r.name: Live(r.spec.model_dump(mode="json", exclude={"name"}), {}, stamp(r.updated_at))
            for r in self.budgets.list(project)
        }

    def create(self, principal: Principal, doc: ResourceDocument, labels: dict[str, str]) -> None:
        data = validated(billing_schemas.BudgetApply, doc, {**doc.spec, "name": doc.metadata.name})
        self.budgets.apply(project_of(doc), data, actor=principal.subject)

    def delete(self, principal: Principal, project: str | None, name: str) -> None:
        assert project is not None
        self.budgets.delete(project, name)

    def exported(self, spec: dict[str, Any]) -> dict[str, Any]:
        return without_defaults(billing_schemas.BudgetApply, spec)
