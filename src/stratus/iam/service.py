"""IAM logic: projects, users, service accounts, role bindings and API keys.

No HTTP here: routes authorize the caller, then call these methods, each one transaction.
Every change that affects who may do what clears the authenticator's cache.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stratus.core.clock import as_utc, utcnow
from stratus.core.database import Database
from stratus.core.errors import AlreadyExists, Conflict, InvalidInput, NotFound, PermissionDenied
from stratus.core.events import EventBus, ProjectDeleting
from stratus.core.ids import new_id
from stratus.core.resource_schemas import RateLimitSpec
from stratus.core.resources import (
    check_version,
    metadata_of,
    paginate,
    paginate_list,
    parse_selector,
    selector_clause,
    validate_name,
)
from stratus.core.token_buckets import Limit
from stratus.iam import schemas as s
from stratus.iam.credentials import generate_key, hash_secret
from stratus.iam.errors import admins_only, project_not_found, user_not_found
from stratus.iam.passwords import hash_password
from stratus.iam.principals import Principal
from stratus.iam.roles import PlatformRole, Role
from stratus.iam.tables import (
    ApiKeyRow,
    ProjectRow,
    RoleBindingRow,
    ServiceAccountRow,
    UserRow,
)

# What a rotated key does not take from the key it replaces.
_FRESH_ON_ROTATION = frozenset(
    ("key_id", "secret_hash", "created_at", "created_by")
    + ("expires_at", "last_used_at", "revoked_at")
)


class IamService:
    def __init__(self, db: Database, bus: EventBus, on_change: Callable[[], None]) -> None:
        self.db = db
        self.bus = bus
        self._changed = on_change

    # --- projects ----------------------------------------------------------------------------

    def create_project(self, actor: Principal, data: s.ProjectCreate) -> s.ProjectRead:
        if actor.kind != "user" or actor.key_project is not None:
            raise PermissionDenied("projects are created by users with an unrestricted key")
        if actor.platform_role is PlatformRole.METRICS_READER and not actor.is_admin:
            raise PermissionDenied("a metrics-reader reads /metrics and creates nothing")
        with self.db.transaction() as session:
            if session.scalar(select(ProjectRow).where(ProjectRow.name == data.name)):
                raise AlreadyExists(f"project {data.name!r} already exists")
            row = ProjectRow(name=data.name, description=data.description, labels=data.labels)
            session.add(row)
            session.flush()
            session.add(
                RoleBindingRow(
                    uid=new_id(), project_uid=row.uid, user_uid=actor.uid, role=Role.OWNER
                )
            )
        self._changed()
        return self._project_read(row, Role.OWNER)

    def list_projects(
        self, actor: Principal, selector: str | None, limit: int | None, page_token: str | None
    ) -> tuple[list[s.ProjectRead], str | None]:
        stmt = select(ProjectRow)
        if reqs := parse_selector(selector):
            stmt = stmt.where(selector_clause(ProjectRow.labels, reqs, self.db.dialect))
        if not actor.acts_as_admin:
            visible = [p for p in actor.roles if actor.can_see(p)]
            if actor.key_project is not None and actor.is_admin:
                visible = [actor.key_project]
            stmt = stmt.where(ProjectRow.name.in_(visible))
        with self.db.transaction() as session:
            rows, token = paginate(session, stmt, ProjectRow.name, limit, page_token)
        return [self._project_read(r, actor.role_in(r.name)) for r in rows], token

    def get_project(self, actor: Principal, name: str) -> s.ProjectRead:
        with self.db.transaction() as session:
            row = self._project(session, name)
        return self._project_read(row, actor.role_in(name))

    def project_uid(self, session: Session, name: str) -> str:
        """A project's uid, read in the caller's transaction (for services above IAM)."""
        return self._project(session, name).uid

    def project_name(self, session: Session, uid: str) -> str:
        """A project's name by uid, read in the caller's transaction ("" when it is gone)."""
        row = session.get(ProjectRow, uid)
        return row.name if row is not None else ""

    def project_names(self) -> list[str]:
        """Every project's name, for gauges that report each project (0 included)."""
        with self.db.transaction() as session:
            return list(session.scalars(select(ProjectRow.name).order_by(ProjectRow.name)))

    def project_limits(self) -> dict[str, Limit]:
        """Each project's per-caller rate limit, where an admin set one."""
        with self.db.transaction() as session:
            rows = session.execute(
                select(
                    ProjectRow.name, ProjectRow.rate_limit_rps, ProjectRow.rate_limit_burst
                ).where(ProjectRow.rate_limit_rps.is_not(None))
            )
            return {
                name: limit
                for name, rps, burst in rows
                if (limit := Limit.of(rps, burst)) is not None
            }

    def set_project_limit(
        self, actor: Principal, name: str, limit: RateLimitSpec | None
    ) -> s.ProjectRead:
        """Set (or, with None, lift) the per-caller rate limit of a project."""
        with self.db.transaction() as session:
            row = self._project(session, name)
            row.rate_limit_rps = limit.requests_per_second if limit else None
            row.rate_limit_burst = limit.limit().burst if limit else None
        self._changed()
        return self._project_read(row, actor.role_in(name))

    def set_key_limit(self, key_id: str, limit: RateLimitSpec | None) -> s.KeyRead:
        """Set (or, with None, lift) an API key's own rate limit."""
        with self.db.transaction() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                raise NotFound(f"API key {key_id!r} not found")
            row.rate_limit_rps = limit.requests_per_second if limit else None
            row.rate_limit_burst = limit.limit().burst if limit else None
            read = self._key_read(session, row)
        self._changed()
        return read

    def update_project(self, actor: Principal, name: str, data: s.ProjectUpdate) -> s.ProjectRead:
        with self.db.transaction() as session:
            row = self._project(session, name)
            check_version(row, data.resource_version, "project")
            if data.description is not None:
                row.description = data.description
            if data.labels is not None:
                row.labels = data.labels
        return self._project_read(row, actor.role_in(name))

    def delete_project(self, name: str) -> None:
        with self.db.transaction() as session:
            row = self._project(session, name)
            self.bus.publish(session, ProjectDeleting(project_id=row.uid, project_name=row.name))
            session.delete(row)
        self._changed()

    def _project(self, session: Session, name: str) -> ProjectRow:
        row = session.scalar(select(ProjectRow).where(ProjectRow.name == name))
        if row is None:
            raise project_not_found(name)
        return row

    @staticmethod
    def _project_read(row: ProjectRow, role: Role | None) -> s.ProjectRead:
        return s.ProjectRead(
            metadata=metadata_of(row, project=row.name),
            spec=s.ProjectSpec(
                description=row.description,
                rate_limit=RateLimitSpec.of(Limit.of(row.rate_limit_rps, row.rate_limit_burst)),
            ),
            status=s.ProjectStatus(your_role=role),
        )

    # --- users -------------------------------------------------------------------------------

    def create_user(self, data: s.UserCreate) -> s.UserRead:
        with self.db.transaction() as session:
            if session.scalar(select(UserRow).where(UserRow.name == data.name)):
                raise AlreadyExists(f"user {data.name!r} already exists")
            row = UserRow(
                name=data.name,
                email=data.email,
                is_admin=data.is_admin,
                platform_role=data.platform_role,
                labels=data.labels,
                password_hash=hash_password(data.password) if data.password else None,
            )
            session.add(row)
        return self._user_read(row)

    def list_users(
        self, selector: str | None, limit: int | None, page_token: str | None
    ) -> tuple[list[s.UserRead], str | None]:
        stmt = select(UserRow)
        if reqs := parse_selector(selector):
            stmt = stmt.where(selector_clause(UserRow.labels, reqs, self.db.dialect))
        with self.db.transaction() as session:
            rows, token = paginate(session, stmt, UserRow.name, limit, page_token)
        return [self._user_read(r) for r in rows], token

    def get_user(self, name: str) -> s.UserRead:
        with self.db.transaction() as session:
            return self._user_read(self._user(session, name))

    def update_user(self, name: str, data: s.UserUpdate) -> s.UserRead:
        with self.db.transaction() as session:
            row = self._user(session, name)
            check_version(row, data.resource_version, "user")
            active_admin = row.is_admin and not row.disabled
            losing_admin = active_admin and (data.is_admin is False or data.disabled is True)
            if losing_admin and self._admin_count(session) <= 1:
                raise Conflict(f"user {name!r} is the last admin: make another admin first")
            if data.disabled is True and not row.disabled:
                self._refuse_if_sole_owner(session, row, "disabled")
            if data.password is not None:
                row.password_hash = hash_password(data.password)
            for field in ("email", "is_admin", "disabled", "labels"):
                value = getattr(data, field)
                if value is not None:
                    setattr(row, field, value)
            if data.platform_role is not None:
                row.platform_role = None if data.platform_role == "none" else data.platform_role
        self._changed()
        return self._user_read(row)

    def delete_user(self, name: str) -> None:
        with self.db.transaction() as session:
            row = self._user(session, name)
            if row.is_admin and not row.disabled and self._admin_count(session) <= 1:
                raise Conflict(f"user {name!r} is the last admin and cannot be deleted")
            self._refuse_if_sole_owner(session, row, "deleted")
            session.delete(row)
        self._changed()

    @staticmethod
    def _refuse_if_sole_owner(session: Session, user: UserRow, what: str) -> None:
        """A project must keep an owner who can act: refuse to remove its only one."""
        owned = session.scalars(
            select(RoleBindingRow.project_uid).where(
                RoleBindingRow.user_uid == user.uid, RoleBindingRow.role == Role.OWNER
            )
        ).all()
        sole: list[str] = []
        for project_uid in owned:
            others = session.scalar(
                select(func.count())
                .select_from(RoleBindingRow)
                .join(UserRow, UserRow.uid == RoleBindingRow.user_uid)
                .where(
                    RoleBindingRow.project_uid == project_uid,
                    RoleBindingRow.role == Role.OWNER,
                    RoleBindingRow.user_uid != user.uid,
                    UserRow.disabled.is_(False),
                )
            )
            if not others:
                project = session.get(ProjectRow, project_uid)
                sole.append(project.name if project else project_uid)
        if sole:
            raise Conflict(
                f"user {user.name!r} is the only owner of project(s) {', '.join(sorted(sole))}: "
                f"make someone else an owner before the user is {what}"
            )

    @staticmethod
    def _admin_count(session: Session) -> int:
        stmt = select(func.count()).where(UserRow.is_admin.is_(True), UserRow.disabled.is_(False))
        return int(session.scalar(stmt) or 0)

    @staticmethod
    def _user(session: Session, name: str) -> UserRow:
        row = session.scalar(select(UserRow).where(UserRow.name == name))
        if row is None:
            raise user_not_found(name)
        return row

    @staticmethod
    def _user_read(row: UserRow) -> s.UserRead:
        return s.UserRead(
            metadata=metadata_of(row),
            spec=s.UserSpec(
                email=row.email,
                is_admin=row.is_admin,
                platform_role=PlatformRole(row.platform_role) if row.platform_role else None,
                disabled=row.disabled,
            ),
            status=s.UserStatus(has_password=row.password_hash is not None),
        )

    # --- service accounts --------------------------------------------------------------------

    def create_service_account(
        self, project: str, data: s.ServiceAccountCreate
    ) -> s.ServiceAccountRead:
        with self.db.transaction() as session:
            proj = self._project(session, project)
            exists = select(ServiceAccountRow).where(
                ServiceAccountRow.project_uid == proj.uid, ServiceAccountRow.name == data.name
            )
            if session.scalar(exists):
                raise AlreadyExists(f"service account {data.name!r} already exists in {project!r}")
            row = ServiceAccountRow(
                name=data.name,
                project_uid=proj.uid,
                description=data.description,
                labels=data.labels,
            )
            session.add(row)
            session.flush()
            if data.role is not None:
                session.add(
                    RoleBindingRow(
                        uid=new_id(),
                        project_uid=proj.uid,
                        service_account_uid=row.uid,
                        role=data.role,
                    )
                )
        self._changed()
        return self._sa_read(row, project, data.role)

    def list_service_accounts(
        self, project: str, selector: str | None, limit: int | None, page_token: str | None
    ) -> tuple[list[s.ServiceAccountRead], str | None]:
        with self.db.transaction() as session:
            proj = self._project(session, project)
            stmt = select(ServiceAccountRow).where(ServiceAccountRow.project_uid == proj.uid)
            if reqs := parse_selector(selector):
                stmt = stmt.where(selector_clause(ServiceAccountRow.labels, reqs, self.db.dialect))
            rows, token = paginate(session, stmt, ServiceAccountRow.name, limit, page_token)
            roles = self._sa_roles(session, proj.uid)
        return [self._sa_read(r, project, roles.get(r.uid)) for r in rows], token

    def get_service_account(self, project: str, name: str) -> s.ServiceAccountRead:
        with self.db.transaction() as session:
            proj = self._project(session, project)
            row = self._sa(session, proj, name)
            role = self._sa_roles(session, proj.uid).get(row.uid)
        return self._sa_read(row, project, role)

    def update_service_account(
        self, project: str, name: str, data: s.ServiceAccountUpdate
    ) -> s.ServiceAccountRead:
        with self.db.transaction() as session:
            proj = self._project(session, project)
            row = self._sa(session, proj, name)
            check_version(row, data.resource_version, "service account")
            if data.description is not None:
                row.description = data.description
            if data.labels is not None:
                row.labels = data.labels
            role = self._sa_roles(session, proj.uid).get(row.uid)
        return self._sa_read(row, project, role)

    def delete_service_account(self, project: str, name: str) -> None:
        with self.db.transaction() as session:
            proj = self._project(session, project)
            session.delete(self._sa(session, proj, name))
        self._changed()

    @staticmethod
    def _sa(session: Session, proj: ProjectRow, name: str) -> ServiceAccountRow:
        row = session.scalar(
            select(ServiceAccountRow).where(
                ServiceAccountRow.project_uid == proj.uid, ServiceAccountRow.name == name
            )
        )
        if row is None:
            raise NotFound(f"service account {name!r} not found in project {proj.name!r}")
        return row

    @staticmethod
    def _sa_roles(session: Session, project_uid: str) -> dict[str, Role]:
        stmt = select(RoleBindingRow).where(
            RoleBindingRow.project_uid == project_uid,
            RoleBindingRow.service_account_uid.is_not(None),
        )
        return {
            b.service_account_uid: Role(b.role)
            for b in session.scalars(stmt)
            if b.service_account_uid
        }

    @staticmethod
    def _sa_read(row: ServiceAccountRow, project: str, role: Role | None) -> s.ServiceAccountRead:
        return s.ServiceAccountRead(
            metadata=metadata_of(row, project=project),
            spec=s.ServiceAccountSpec(description=row.description),
            status=s.ServiceAccountStatus(role=role),
        )

    # --- members -----------------------------------------------------------------------------

    def list_members(
        self, project: str, limit: int | None = None, page_token: str | None = None
    ) -> tuple[list[s.MemberRead], str | None]:
        with self.db.transaction() as session:
            proj = self._project(session, project)
            members = self._members(session, proj)
        return paginate_list(members, lambda m: m.subject, limit, page_token)

    def set_member(self, project: str, data: s.MemberSet) -> s.MemberRead:
        if (data.user is None) == (data.service_account is None):
            raise InvalidInput("name exactly one of 'user' or 'service_account'")
        with self.db.transaction() as session:
            proj = self._project(session, project)
            if data.user is not None:
                user = self._user(session, data.user)
                binding = session.scalar(
                    select(RoleBindingRow).where(
                        RoleBindingRow.project_uid == proj.uid, RoleBindingRow.user_uid == user.uid
                    )
                )
                if binding is not None and binding.role == Role.OWNER and data.role != Role.OWNER:
                    self._keep_an_owner(session, proj, binding)
                subject = f"user:{user.name}"
                if binding is None:
                    binding = RoleBindingRow(uid=new_id(), project_uid=proj.uid, user_uid=user.uid)
                    session.add(binding)
            else:
                assert data.service_account is not None
                sa = self._sa(session, proj, data.service_account)
                binding = session.scalar(
                    select(RoleBindingRow).where(
                        RoleBindingRow.project_uid == proj.uid,
                        RoleBindingRow.service_account_uid == sa.uid,
                    )
                )
                subject = f"serviceaccount:{sa.name}"
                if binding is None:
                    binding = RoleBindingRow(
                        uid=new_id(), project_uid=proj.uid, service_account_uid=sa.uid
                    )
                    session.add(binding)
            binding.role = data.role
            session.flush()
            result = s.MemberRead(
                subject=subject, role=Role(binding.role), created_at=as_utc(binding.created_at)
            )
        self._changed()
        return result

    def remove_member(self, project: str, subject: str) -> None:
        kind, _, name = subject.partition(":")
        if kind not in ("user", "serviceaccount") or not name:
            raise InvalidInput(f"member {subject!r} must be 'user:NAME' or 'serviceaccount:NAME'")
        validate_name(name, "member name")
        with self.db.transaction() as session:
            proj = self._project(session, project)
            if kind == "user":
                user = session.scalar(select(UserRow).where(UserRow.name == name))
                cond = RoleBindingRow.user_uid == (user.uid if user else None)
            else:
                sa = session.scalar(
                    select(ServiceAccountRow).where(
                        ServiceAccountRow.project_uid == proj.uid, ServiceAccountRow.name == name
                    )
                )
                cond = RoleBindingRow.service_account_uid == (sa.uid if sa else None)
            binding = session.scalar(
                select(RoleBindingRow).where(RoleBindingRow.project_uid == proj.uid, cond)
            )
            if binding is None:
                raise NotFound(f"{subject!r} is not a member of project {project!r}")
            if binding.role == Role.OWNER:
                self._keep_an_owner(session, proj, binding)
            session.delete(binding)
        self._changed()

    @staticmethod
    def _keep_an_owner(session: Session, proj: ProjectRow, leaving: RoleBindingRow) -> None:
        owners = session.scalar(
            select(func.count()).where(
                RoleBindingRow.project_uid == proj.uid,
                RoleBindingRow.role == Role.OWNER,
                RoleBindingRow.user_uid.is_not(None),
                RoleBindingRow.uid != leaving.uid,
            )
        )
        if not owners:
            raise Conflict(f"project {proj.name!r} must keep at least one owner")

    @staticmethod
    def _members(session: Session, proj: ProjectRow) -> list[s.MemberRead]:
        out: list[s.MemberRead] = []
        users = session.execute(
            select(RoleBindingRow, UserRow.name)
            .join(UserRow, UserRow.uid == RoleBindingRow.user_uid)
            .where(RoleBindingRow.project_uid == proj.uid)
        )
        for binding, name in users:
            out.append(
                s.MemberRead(
                    subject=f"user:{name}", role=binding.role, created_at=as_utc(binding.created_at)
                )
            )
        sas = session.execute(
            select(RoleBindingRow, ServiceAccountRow.name)
            .join(ServiceAccountRow, ServiceAccountRow.uid == RoleBindingRow.service_account_uid)
            .where(RoleBindingRow.project_uid == proj.uid)
        )
        for binding, name in sas:
            out.append(
                s.MemberRead(
                    subject=f"serviceaccount:{name}",
                    role=binding.role,
                    created_at=as_utc(binding.created_at),
                )
            )
        return sorted(out, key=lambda m: m.subject)

    # --- keys --------------------------------------------------------------------------------

    def create_key(self, actor: Principal, data: s.KeyCreate) -> s.KeyCreated:
        if actor.kind != "user":
            raise PermissionDenied("service accounts cannot create keys")
        if data.user is not None and data.user != actor.name and not actor.acts_as_admin:
            raise admins_only("create keys for other users")
        if actor.key_project is not None and data.project != actor.key_project:
            raise PermissionDenied(
                f"this key is restricted to project {actor.key_project!r}: "
                "it can only create keys restricted to it"
            )
        with self.db.transaction() as session:
            user = self._user(session, data.user or actor.name)
            project_uid = None
            if data.project is not None:
                if not actor.acts_as_admin and not actor.can_see(data.project):
                    raise project_not_found(data.project)
                project_uid = self._project(session, data.project).uid
            return self._new_key(
                session,
                name=data.name,
                creator=actor.subject,
                expires_in_days=data.expires_in_days,
                user_uid=user.uid,
                project_uid=project_uid,
            )

    def create_service_account_key(
        self, actor: Principal, project: str, account: str, data: s.ServiceAccountKeyCreate
    ) -> s.KeyCreated:
        with self.db.transaction() as session:
            proj = self._project(session, project)
            sa = self._sa(session, proj, account)
            return self._new_key(
                session,
                name=data.name,
                creator=actor.subject,
                expires_in_days=data.expires_in_days,
                service_account_uid=sa.uid,
                project_uid=proj.uid,
            )

    def _new_key(
        self,
        session: Session,
        *,
        name: str,
        creator: str,
        expires_in_days: float | None,
        user_uid: str | None = None,
        service_account_uid: str | None = None,
        project_uid: str | None = None,
    ) -> s.KeyCreated:
        key = generate_key()
        expires = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
        row = ApiKeyRow(
            key_id=key.key_id,
            name=name,
            secret_hash=hash_secret(key.secret),
            user_uid=user_uid,
            service_account_uid=service_account_uid,
            project_uid=project_uid,
            created_by=creator,
            created_at=utcnow(),
            expires_at=expires,
        )
        session.add(row)
        session.flush()
        read = self._key_read(session, row)
        return s.KeyCreated(**read.model_dump(), secret=key.token)

    def list_keys(
        self,
        actor: Principal,
        everyone: bool = False,
        limit: int | None = None,
        page_token: str | None = None,
    ) -> tuple[list[s.KeyRead], str | None]:
        if everyone and not actor.acts_as_admin:
            raise admins_only("list every user's keys")
        with self.db.transaction() as session:
            stmt = select(ApiKeyRow).where(ApiKeyRow.user_uid.is_not(None))
            if not everyone:
                stmt = stmt.where(ApiKeyRow.user_uid == actor.uid)
            rows, token = paginate(session, stmt, ApiKeyRow.key_id, limit, page_token)
            return [self._key_read(session, r) for r in rows], token

    def list_service_account_keys(
        self,
        project: str,
        account: str,
        limit: int | None = None,
        page_token: str | None = None,
    ) -> tuple[list[s.KeyRead], str | None]:
        with self.db.transaction() as session:
            proj = self._project(session, project)
            sa = self._sa(session, proj, account)
            stmt = select(ApiKeyRow).where(ApiKeyRow.service_account_uid == sa.uid)
            rows, token = paginate(session, stmt, ApiKeyRow.key_id, limit, page_token)
            return [self._key_read(session, r) for r in rows], token

    def revoke_key(self, actor: Principal, key_id: str) -> s.KeyRead:
        with self.db.transaction() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None or row.user_uid is None:
                raise NotFound(f"key {key_id!r} not found")
            if row.user_uid != actor.uid and not actor.acts_as_admin:
                raise NotFound(f"key {key_id!r} not found")
            return self._revoke(session, row)

    def revoke_service_account_key(self, project: str, account: str, key_id: str) -> s.KeyRead:
        with self.db.transaction() as session:
            proj = self._project(session, project)
            sa = self._sa(session, proj, account)
            row = session.get(ApiKeyRow, key_id)
            if row is None or row.service_account_uid != sa.uid:
                raise NotFound(f"key {key_id!r} not found for service account {account!r}")
            return self._revoke(session, row)

    def _revoke(self, session: Session, row: ApiKeyRow) -> s.KeyRead:
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        session.flush()
        read = self._key_read(session, row)
        self._changed()
        return read

    def rotate_key(self, actor: Principal, key_id: str, overlap_seconds: float) -> s.KeyRotated:
        """A new key for the same owner, like the old one; the old one expires after the
        overlap. Who may revoke a key may rotate it."""
        if actor.kind != "user":
            raise PermissionDenied("service accounts cannot create keys")
        with self.db.transaction() as session:
            row = session.get(ApiKeyRow, key_id, with_for_update=True)
            if row is None or row.user_uid is None:
                raise NotFound(f"key {key_id!r} not found")
            if row.user_uid != actor.uid and not actor.acts_as_admin:
                raise NotFound(f"key {key_id!r} not found")
            if actor.key_project is not None:
                project = session.get(ProjectRow, row.project_uid) if row.project_uid else None
                if project is None or project.name != actor.key_project:
                    raise PermissionDenied(
                        f"this key is restricted to project {actor.key_project!r}: "
                        "it can only rotate keys restricted to it"
                    )
            return self._rotate(session, row, actor.subject, overlap_seconds)

    def rotate_service_account_key(
        self, actor: Principal, project: str, account: str, key_id: str, overlap_seconds: float
    ) -> s.KeyRotated:
        with self.db.transaction() as session:
            proj = self._project(session, project)
            sa = self._sa(session, proj, account)
            row = session.get(ApiKeyRow, key_id, with_for_update=True)
            if row is None or row.service_account_uid != sa.uid:
                raise NotFound(f"key {key_id!r} not found for service account {account!r}")
            return self._rotate(session, row, actor.subject, overlap_seconds)

    def _rotate(
        self, session: Session, row: ApiKeyRow, creator: str, overlap_seconds: float
    ) -> s.KeyRotated:
        now = utcnow()
        old = self._key_read(session, row)
        if old.state != "active":
            raise Conflict(f"key {row.key_id} is {old.state}: create a new key instead")
        # Everything the old key is (owner, name, project, limits) but its secret and its
        # times; it lives as long as the old one was made to.
        like = {
            attr.key: getattr(row, attr.key)
            for attr in ApiKeyRow.__mapper__.column_attrs
            if attr.key not in _FRESH_ON_ROTATION
        }
        lifetime = (
            as_utc(row.expires_at) - as_utc(row.created_at) if row.expires_at is not None else None
        )
        key = generate_key()
        new = ApiKeyRow(
            **like,
            key_id=key.key_id,
            secret_hash=hash_secret(key.secret),
            created_at=now,
            created_by=creator,
            expires_at=now + lifetime if lifetime is not None else None,
        )
        session.add(new)
        ends = now + timedelta(seconds=overlap_seconds)
        if row.expires_at is None or as_utc(row.expires_at) > ends:
            row.expires_at = ends
        session.flush()
        self.db.after_transaction(lambda committed: self._changed() if committed else None)
        created = self._key_read(session, new)
        return s.KeyRotated(
            **created.model_dump(), secret=key.token, replaced=self._key_read(session, row)
        )

    @staticmethod
    def _key_read(session: Session, row: ApiKeyRow) -> s.KeyRead:
        project = session.get(ProjectRow, row.project_uid) if row.project_uid else None
        if row.user_uid is not None:
            user = session.get(UserRow, row.user_uid)
            owner = f"user:{user.name if user else '?'}"
        else:
            sa = session.get(ServiceAccountRow, row.service_account_uid)
            owner = f"serviceaccount:{project.name if project else '?'}/{sa.name if sa else '?'}"
        now = utcnow()
        state: str = "active"
        if row.revoked_at is not None:
            state = "revoked"
        elif row.expires_at is not None and as_utc(row.expires_at) <= now:
            state = "expired"
        return s.KeyRead(
            key_id=row.key_id,
            name=row.name,
            owner=owner,
            project=project.name if project else None,
            created_at=as_utc(row.created_at),
            created_by=row.created_by,
            expires_at=as_utc(row.expires_at) if row.expires_at else None,
            last_used_at=as_utc(row.last_used_at) if row.last_used_at else None,
            revoked_at=as_utc(row.revoked_at) if row.revoked_at else None,
            state=state,
            rate_limit=RateLimitSpec.of(Limit.of(row.rate_limit_rps, row.rate_limit_burst)),
        )
