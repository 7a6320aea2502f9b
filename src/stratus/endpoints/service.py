"""Endpoints: specs, revisions, rollouts (canary, shadow, promote, rollback), status.

The service only writes what the owner wants (the spec, pinned to model versions) and keeps
every revision of it; the controller (`controller.py`) makes the replicas match and writes the
status back. `on_change` wakes the controller at once after a write. What the controller
does by itself (a scaling step) it records as an endpoint event (`record_event`); the newest
`MAX_EVENTS` of each endpoint are kept for `events` to list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from stratus.compute.instance_types import InstanceCatalog
from stratus.core.clock import as_utc, utcnow
from stratus.core.database import Database
from stratus.core.demand import Admission, Demand, Resource
from stratus.core.errors import Conflict, InvalidInput, NotFound
from stratus.core.events import EventBus, ModelVersionDeleting, guard_project_deletion
from stratus.core.project_lists import page_in_projects
from stratus.core.resources import ProjectScoped, check_version, metadata_of, paginate
from stratus.endpoints import schemas as s
from stratus.endpoints.tables import (
    EndpointEventRow,
    EndpointRevisionRow,
    EndpointRow,
    EndpointStatusRow,
)
from stratus.registry.errors import rejected_version
from stratus.registry.references import parse_ref
from stratus.registry.service import RegistryService
from stratus.secrets.schemas import as_environment
from stratus.secrets.service import SecretService

ProjectLookup = Callable[[Session, str], str]  # (the caller's session, project name) -> uid
PRIMARY = "main"
CANARY = "canary"
SHADOW = "shadow"
MAX_EVENTS = 1000  # the newest events kept of each endpoint (and the most `events` lists)
MAX_EVENT_REASON = 1000  # characters of an event's reason kept
EVENT_KINDS = frozenset(get_args(s.EndpointEventRead.model_fields["kind"].annotation))


@dataclass(frozen=True)
class DesiredEndpoint:
    """What the controller needs of one endpoint."""

    uid: str
    project: str
    name: str
    public: bool
    revision: int
    variants: list[s.VariantSpec]
    capture: s.CaptureSpec
    passthrough: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    access: s.AccessSpec = field(default_factory=s.AccessSpec)
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class CaptureTarget:
    """An endpoint's capture settings, and whose it is."""

    endpoint_uid: str
    project_uid: str
    project: str
    endpoint: str
    capture: s.CaptureSpec
    passthrough: tuple[str, ...] = ()


class EndpointService:
    def __init__(
        self,
        db: Database,
        registry: RegistryService,
        bus: EventBus,
        project_uid: ProjectLookup,
        on_change: Callable[[], None] | None = None,
        instance_types: InstanceCatalog | None = None,
        admission: Admission | None = None,
        secrets: SecretService | None = None,
    ) -> None:
        self.db = db
        self.secrets = secrets
        self.admission = admission or Admission()  # quotas and budgets, registered above
        self.registry = registry
        self.instance_types = instance_types  # None: any name (a test without a catalog)
        self._project_uid = project_uid
        self.on_change = on_change or (lambda: None)
        self._endpoints = ProjectScoped(EndpointRow, "endpoint")
        guard_project_deletion(bus, EndpointRow.project_uid, EndpointRow.name, "endpoints")
        bus.subscribe(ModelVersionDeleting, self._refuse_version_in_use)

    # --- reading -----------------------------------------------------------------------------

    def get(self, project: str, name: str) -> s.EndpointRead:
        with self.db.transaction() as session:
            return self._read(session, self._endpoint(session, project, name), project)

    def list_endpoints(
        self, project: str | None, selector: str | None, limit: int | None, page_token: str | None
    ) -> tuple[list[s.EndpointRead], str | None]:
        with self.db.transaction() as session:
            pairs, token = page_in_projects(
                self._endpoints, session, project, self._project_uid, selector, limit, page_token
            )
            return [self._read(session, r, p) for r, p in pairs], token

    def history(
        self, project: str, name: str, limit: int | None, page_token: str | None
    ) -> tuple[list[s.RevisionRead], str | None]:
        """Revisions, newest first."""
        with self.db.transaction() as session:
            row = self._endpoint(session, project, name)
            stmt = select(EndpointRevisionRow).where(EndpointRevisionRow.endpoint_uid == row.uid)
            revisions, token = paginate(
                session, stmt, EndpointRevisionRow.revision, limit, page_token, descending=True
            )
            return [_revision_read(r) for r in revisions], token

    def desired(self) -> list[DesiredEndpoint]:
        """Every endpoint's spec, for the controller."""
        from stratus.iam.tables import ProjectRow

        with self.db.transaction() as session:
            rows = session.execute(
                select(EndpointRow, ProjectRow.name).join(
                    ProjectRow, ProjectRow.uid == EndpointRow.project_uid
                )
            ).all()
            return [
                DesiredEndpoint(
                    uid=row.uid,
                    project=project,
                    name=row.name,
                    public=row.public,
                    revision=row.revision,
                    variants=[s.VariantSpec.model_validate(v) for v in row.variants],
                    capture=_capture(row),
                    passthrough=tuple(row.passthrough or ()),
                    labels=dict(row.labels or {}),
                    access=_access(row),
                    secrets=tuple(row.secrets or ()),
                )
                for row, project in rows
            ]

    def capture_targets(self, uids: set[str]) -> dict[str, CaptureTarget]:
        """Where the captured records of these endpoints go, and how (endpoints deleted since
        are missing from the answer: their last records are dropped)."""
        from stratus.iam.tables import ProjectRow

        if not uids:
            return {}
        with self.db.transaction() as session:
            rows = session.execute(
                select(EndpointRow, ProjectRow.name)
                .join(ProjectRow, ProjectRow.uid == EndpointRow.project_uid)
                .where(EndpointRow.uid.in_(sorted(uids)))
            ).all()
            return {
                row.uid: CaptureTarget(
                    endpoint_uid=row.uid,
                    project_uid=row.project_uid,
                    project=project,
                    endpoint=row.name,
                    capture=_capture(row),
                    passthrough=tuple(row.passthrough or ()),
                )
                for row, project in rows
            }

    def reset_statuses(self) -> None:
        """Forget what was observed (at control-plane start): every endpoint is `pending` until
        the controller has looked at its replicas again."""
        fresh = s.EndpointStatus(message="the control plane started; checking the replicas")
        with self.db.transaction() as session:
            session.execute(
                update(EndpointStatusRow).values(
                    status=fresh.model_dump(mode="json"), updated_at=utcnow()
                )
            )

    def write_status(self, endpoint_uid: str, status: s.EndpointStatus) -> None:
        with self.db.transaction() as session:
            if session.get(EndpointRow, endpoint_uid) is None:
                return  # deleted meanwhile
            row = session.get(EndpointStatusRow, endpoint_uid)
            data = status.model_dump(mode="json")
            if row is None:
                session.add(EndpointStatusRow(endpoint_uid=endpoint_uid, status=data))
            else:
                row.status, row.updated_at = data, utcnow()

    # --- writing -----------------------------------------------------------------------------

    def secret_values(self, project: str, refs: Sequence[str]) -> dict[str, str]:
        """{variable: value} of the secrets an endpoint's replicas get (NotFound: one was
        deleted since)."""
        if not refs or self.secrets is None:
            return {}
        return self.secrets.resolve(project, as_environment(list(refs)))

    def _check_secrets(self, project: str, refs: Sequence[str] | None) -> None:
        if refs and self.secrets is not None:
            self.secrets.check(project, set(as_environment(list(refs)).values()))

    def create(self, project: str, data: s.EndpointCreate, *, actor: str) -> s.EndpointRead:
        self._check_secrets(project, data.secrets)
        variants = self._pin(project, data.variants)
        self._check_columns(project, variants, data.capture, data.passthrough)
        with self.db.transaction() as session:
            project_uid = self._project_uid(session, project)
            self._endpoints.refuse_duplicate(session, project_uid, project, data.name)
            row = EndpointRow(
                name=data.name,
                project_uid=project_uid,
                description=data.description,
                labels=data.labels,
                public=data.public,
                variants=_dump(variants),
                revision=1,
                capture=data.capture.model_dump(mode="json"),
                passthrough=list(data.passthrough),
                access=data.access.model_dump(mode="json", exclude_defaults=True),
                secrets=list(data.secrets),
            )
            session.add(row)
            session.flush()
            self._admit(session, project, project_uid, [], variants)
            self._record(session, row, "create", actor, data.reason)
            read = self._read(session, row, project)
        self.on_change()
        return read

    def update(
        self, project: str, name: str, data: s.EndpointUpdate, *, actor: str
    ) -> s.EndpointRead:
        self._check_secrets(project, data.secrets)
        variants = self._pin(project, data.variants) if data.variants is not None else None
        if variants is not None or data.capture is not None or data.passthrough is not None:
            current = self.get(project, name).spec
            self._check_columns(
                project,
                current.variants if variants is None else variants,
                current.capture if data.capture is None else data.capture,
                current.passthrough if data.passthrough is None else data.passthrough,
            )

        def change(row: EndpointRow) -> str:
            self._endpoints.update(row, data)
            if data.public is not None:
                row.public = data.public
            if variants is not None:
                row.variants = _dump(variants)
            if data.capture is not None:
                row.capture = data.capture.model_dump(mode="json")
            if data.passthrough is not None:
                row.passthrough = list(data.passthrough)
            if data.access is not None:
                row.access = data.access.model_dump(mode="json", exclude_defaults=True)
            if data.secrets is not None:
                row.secrets = list(data.secrets)
            return "update"

        return self._change(project, name, change, actor, data.reason, data.resource_version)

    def canary(
        self, project: str, name: str, data: s.CanaryCreate, *, actor: str
    ) -> s.EndpointRead:
        pinned = self._pin(project, [s.VariantSpec(name=CANARY, model=data.model)])[0]
        current = self.get(project, name).spec
        self._check_columns(project, [pinned], current.capture, current.passthrough)

        def change(row: EndpointRow) -> str:
            variants = _variants(row)
            primary = _primary(variants, name)
            others = [v for v in variants if v.name != CANARY]
            canary = pinned.model_copy(
                update={
                    "replicas": data.replicas or max(primary.replicas, 1),
                    "traffic": data.traffic,
                    "batching": primary.batching,
                    "instance_type": primary.instance_type,
                    # an autoscaled primary's canary follows its own share of the traffic
                    "autoscaling": None if data.replicas else primary.autoscaling,
                }
            )
            live_others = [v for v in others if not v.shadow and v.name != primary.name]
            taken = sum(v.traffic for v in live_others)
            if taken + data.traffic >= 100:
                raise InvalidInput(
                    f"a canary at {data.traffic}% leaves no traffic for {primary.name!r}"
                )
            primary = primary.model_copy(update={"traffic": 100 - taken - data.traffic})
            row.variants = _dump(
                [primary if v.name == primary.name else v for v in others] + [canary]
            )
            return "canary"

        return self._change(project, name, change, actor, data.reason, data.resource_version)

    def shadow(
        self, project: str, name: str, data: s.ShadowCreate, *, actor: str
    ) -> s.EndpointRead:
        shadow = s.VariantSpec(
            name=SHADOW, model=data.model, replicas=data.replicas, traffic=0, shadow=True
        )
        pinned = self._pin(project, [shadow])
        current = self.get(project, name).spec
        self._check_columns(project, pinned, current.capture, current.passthrough)

        def change(row: EndpointRow) -> str:
            others = [v for v in _variants(row) if v.name != SHADOW]
            row.variants = _dump(others + pinned)
            return "shadow"

        return self._change(project, name, change, actor, data.reason, data.resource_version)

    def remove_variant(
        self, project: str, name: str, variant: str, *, actor: str, reason: str
    ) -> s.EndpointRead:
        def change(row: EndpointRow) -> str:
            variants = _variants(row)
            gone = next((v for v in variants if v.name == variant), None)
            if gone is None:
                raise NotFound(f"endpoint {name!r} has no variant {variant!r}")
            rest = [v for v in variants if v.name != variant]
            if not gone.shadow:
                rest = _give_traffic(rest, gone.traffic, name)
            row.variants = _dump(_checked(rest))
            return f"remove-{variant}"[:32]

        return self._change(project, name, change, actor, reason, None)

    def promote(
        self, project: str, name: str, data: s.RolloutAction, *, actor: str
    ) -> s.EndpointRead:
        """The canary's version becomes the primary's (a rolling update), at full traffic."""

        def change(row: EndpointRow) -> str:
            variants = _variants(row)
            canary = next((v for v in variants if v.name == CANARY), None)
            if canary is None:
                raise Conflict(f"endpoint {name!r} has no canary to promote")
            primary = _primary(variants, name)
            promoted = primary.model_copy(
                update={
                    "model": canary.model,
                    "version": canary.version,
                    "traffic": primary.traffic + canary.traffic,
                }
            )
            row.variants = _dump(
                [promoted if v.name == primary.name else v for v in variants if v.name != CANARY]
            )
            return "promote"

        return self._change(project, name, change, actor, data.reason, data.resource_version)

    def rollback(
        self, project: str, name: str, data: s.RolloutAction, *, actor: str
    ) -> s.EndpointRead:
        """Without `to_revision`: drop the canary if there is one, else re-apply the revision
        before the current one (after a promote, the canary's: it comes back, as it was).
        With `to_revision`: re-apply that revision's variants. Kept this way since the first
        release; the CLI says which revision serves what after it."""

        def change(row: EndpointRow) -> str:
            variants = _variants(row)
            if data.to_revision is None and any(v.name == CANARY for v in variants):
                canary = next(v for v in variants if v.name == CANARY)
                rest = [v for v in variants if v.name != CANARY]
                row.variants = _dump(_give_traffic(rest, canary.traffic, name))
                return "rollback"
            session = _session_of(row)
            target = data.to_revision or row.revision - 1
            if target < 1 or target >= row.revision:
                if data.to_revision is None:
                    raise Conflict(f"endpoint {name!r} has no earlier revision to roll back to")
                earlier = (
                    f"roll back to one of 1 to {row.revision - 1}"
                    if row.revision > 1
                    else "it has no earlier one"
                )
                what = "is the current one" if target == row.revision else "does not exist"
                raise InvalidInput(
                    f"to_revision {target}: revision {target} of endpoint {name!r} {what} "
                    f"({earlier}; see stratus endpoints history {name})"
                )
            earlier = session.scalar(
                select(EndpointRevisionRow).where(
                    EndpointRevisionRow.endpoint_uid == row.uid,
                    EndpointRevisionRow.revision == target,
                )
            )
            if earlier is None:
                raise NotFound(f"endpoint {name!r} has no revision {target}")
            spec = s.EndpointSpec.model_validate(earlier.spec)
            row.variants = _dump(spec.variants)
            row.public = spec.public  # capture settings stay: rolling back a model keeps watching
            return "rollback"

        return self._change(project, name, change, actor, data.reason, data.resource_version)

    def delete(self, project: str, name: str) -> None:
        with self.db.transaction() as session:
            session.delete(self._endpoint(session, project, name))
        self.on_change()

    # --- events ------------------------------------------------------------------------------

    def record_event(
        self,
        endpoint_uid: str,
        variant: str,
        kind: str,
        from_replicas: int,
        to_replicas: int,
        reason: str,
    ) -> None:
        """Keep one thing the controller did to an endpoint by itself (a scaling step), and
        why, in one transaction that also forgets all but the endpoint's newest `MAX_EVENTS`.
        An endpoint deleted meanwhile gets none; a reason is cut to `MAX_EVENT_REASON`."""
        if kind not in EVENT_KINDS:  # a controller bug: the API could not show such an event
            raise ValueError(f"unknown endpoint event kind {kind!r}")
        with self.db.transaction() as session:
            # a key-share lock: a delete of the endpoint waits for this event, or went first
            alive = session.scalar(
                select(EndpointRow.uid)
                .where(EndpointRow.uid == endpoint_uid)
                .with_for_update(read=True, key_share=True)
            )
            if alive is None:
                return
            session.add(
                EndpointEventRow(
                    endpoint_uid=endpoint_uid,
                    time=utcnow(),
                    variant=variant,
                    kind=kind,
                    from_replicas=from_replicas,
                    to_replicas=to_replicas,
                    reason=reason[:MAX_EVENT_REASON],
                )
            )
            session.flush()
            oldest_kept = session.scalar(
                select(EndpointEventRow.id)
                .where(EndpointEventRow.endpoint_uid == endpoint_uid)
                .order_by(EndpointEventRow.id.desc())
                .offset(MAX_EVENTS - 1)
                .limit(1)
            )
            if oldest_kept is not None:
                session.execute(
                    delete(EndpointEventRow).where(
                        EndpointEventRow.endpoint_uid == endpoint_uid,
                        EndpointEventRow.id < oldest_kept,
                    )
                )

    def events(self, project: str, name: str, limit: int = 100) -> list[s.EndpointEventRead]:
        """The endpoint's events, newest first: at most `limit` (1 to `MAX_EVENTS`)."""
        if not 1 <= limit <= MAX_EVENTS:
            raise InvalidInput(f"limit must be 1 to {MAX_EVENTS}, not {limit}")
        with self.db.transaction() as session:
            row = self._endpoint(session, project, name)
            found = session.scalars(
                select(EndpointEventRow)
                .where(EndpointEventRow.endpoint_uid == row.uid)
                .order_by(EndpointEventRow.id.desc())
                .limit(limit)
            ).all()
            return [_event_read(event) for event in found]

    # --- helpers -----------------------------------------------------------------------------

    def _change(
        self,
        project: str,
        name: str,
        change: Callable[[EndpointRow], str],
        actor: str,
        reason: str,
        resource_version: int | None,
    ) -> s.EndpointRead:
        with self.db.transaction() as session:
            row = self._endpoint(session, project, name)
            check_version(row, resource_version, "endpoint")
            before = _compared(row)
            held = _variants(row)
            action = change(row)
            session.flush()
            self._admit(session, project, row.project_uid, held, _variants(row))
            if _compared(row) != before:
                row.revision += 1
                session.flush()
                self._record(session, row, action, actor, reason)
            session.flush()
            read = self._read(session, row, project)
        self.on_change()
        return read

    def _capacity(self, variants: list[s.VariantSpec]) -> dict[Resource, float]:
        """What variants hold at most: each at its fixed count or its autoscaling maximum,
        sized by its instance type."""
        held = dict.fromkeys(
            (Resource.replicas, Resource.vcpus, Resource.memory_gib, Resource.gpus), 0.0
        )
        for variant in variants:
            count = variant.autoscaling.max_replicas if variant.autoscaling else variant.replicas
            held[Resource.replicas] += count
            if self.instance_types is None:
                continue
            try:
                size = self.instance_types.get(variant.instance_type)
            except InvalidInput:  # a type gone from the catalog: counted as replicas only
                continue
            held[Resource.vcpus] += count * size.vcpus
            held[Resource.memory_gib] += count * size.memory_gib
            held[Resource.gpus] += count * size.gpus
        return held

    def _admit(
        self,
        session: Session,
        project: str,
        project_uid: str,
        before: list[s.VariantSpec],
        after: list[s.VariantSpec],
    ) -> None:
        was, now = self._capacity(before), self._capacity(after)
        grows = {r: now[r] - was[r] for r in now}
        self.admission.check(session, Demand(project, project_uid, "endpoint", grows))

    def capacity_in_use(self, session: Session, project_uid: str) -> dict[Resource, float]:
        """What the project's endpoints hold (for quotas): replicas and their sizes."""
        rows = session.scalars(
            select(EndpointRow.variants).where(EndpointRow.project_uid == project_uid)
        ).all()
        return self._capacity([s.VariantSpec.model_validate(v) for r in rows for v in r])

    def _pin(self, project: str, variants: list[s.VariantSpec]) -> list[s.VariantSpec]:
        """Resolve each variant's model reference to a ready version it will keep."""
        pinned = []
        for variant in variants:
            if self.instance_types is not None:
                try:
                    self.instance_types.get(variant.instance_type)
                except InvalidInput as exc:
                    raise InvalidInput(f"variant {variant.name!r}: {exc.detail}") from None
            ref = parse_ref(variant.model)
            selector = str(variant.version) if variant.version is not None else ref.selector
            if variant.version is not None and ref.version not in (None, variant.version):
                raise InvalidInput(
                    f"variant {variant.name!r}: model {variant.model!r} and version "
                    f"{variant.version} disagree"
                )
            version = self.registry.get_version(project, ref.model, selector)
            if version.state == "rejected":
                verdict = version.verdict.model_dump(mode="json") if version.verdict else {}
                raise rejected_version(ref.model, version.version, verdict)
            if version.state != "ready":
                raise Conflict(f"{ref.model}:{version.version} is not committed yet")
            if version.needs_trust and not version.trusted:
                raise Conflict(
                    f"{ref.model}:{version.version} loads code ({', '.join(version.needs_trust)}): "
                    f"an owner must trust it first (stratus models trust "
                    f"{ref.model}:{version.version})"
                )
            pinned.append(
                variant.model_copy(update={"model": str(ref), "version": version.version})
            )
        return pinned

    def _check_columns(
        self,
        project: str,
        variants: list[s.VariantSpec],
        capture: s.CaptureSpec,
        passthrough: list[str],
    ) -> None:
        """The capture subject must be a column every served version's requests carry: one of
        its inputs, or a declared pass-through column (a version without a signature is taken
        at its word)."""
        if capture.subject is None or capture.subject in passthrough:
            return
        for variant in variants:
            ref = parse_ref(variant.model)
            version = self.registry.get_version(project, ref.model, str(variant.version))
            if not version.signature:
                continue
            inputs = [spec["name"] for spec in version.signature.get("inputs", [])]
            if capture.subject in inputs:
                continue
            declared = ", ".join(passthrough) or "none"
            raise InvalidInput(
                f"capture subject {capture.subject!r} is neither an input of "
                f"{ref.model}:{version.version} ({', '.join(inputs)}) nor a pass-through column "
                f"of the endpoint ({declared}); declare it as one (passthrough, or --passthrough "
                f"{capture.subject} on stratus deploy) or name another subject",
                subject=capture.subject,
                allowed=sorted({*inputs, *passthrough}),
            )

    def _endpoint(self, session: Session, project: str, name: str) -> EndpointRow:
        return self._endpoints.find(session, self._project_uid(session, project), project, name)

    @staticmethod
    def _record(session: Session, row: EndpointRow, action: str, actor: str, reason: str) -> None:
        session.add(
            EndpointRevisionRow(
                endpoint_uid=row.uid,
                revision=row.revision,
                action=action,
                actor=actor,
                reason=reason,
                time=utcnow(),
                spec=_spec(row).model_dump(mode="json"),
            )
        )

    @staticmethod
    def _read(session: Session, row: EndpointRow, project: str) -> s.EndpointRead:
        status_row = session.get(EndpointStatusRow, row.uid)
        status = (
            s.EndpointStatus.model_validate(status_row.status)
            if status_row is not None
            else s.EndpointStatus(message="waiting for the controller")
        )
        if status.observed_revision < row.revision and status.phase == "ready":
            # ready for an older spec is not ready for this one: the controller has not yet
            # acted on the change (so no reader takes the old replicas for the new spec's)
            status = status.model_copy(
                update={
                    "phase": "updating",
                    "message": f"the controller has not yet applied revision {row.revision}",
                }
            )
        return s.EndpointRead(
            metadata=metadata_of(row, project=project), spec=_spec(row), status=status
        )

    def _refuse_version_in_use(self, session: Session, event: ModelVersionDeleting) -> None:
        rows = session.scalars(
            select(EndpointRow).where(EndpointRow.project_uid == event.project_uid)
        ).all()
        users = [
            row.name
            for row in rows
            for v in row.variants
            if parse_ref(v["model"]).model == event.model
            and (event.version is None or v.get("version") == event.version)
        ]
        if users:
            what = event.model if event.version is None else f"{event.model}:{event.version}"
            raise Conflict(
                f"{what} is served by endpoint(s) {', '.join(sorted(set(users)))}: "
                "change or delete them first"
            )


def _spec(row: EndpointRow) -> s.EndpointSpec:
    return s.EndpointSpec(
        description=row.description,
        public=row.public,
        variants=_variants(row),
        capture=_capture(row),
        passthrough=list(row.passthrough or ()),
        access=_access(row),
        secrets=list(row.secrets or ()),
        revision=row.revision,
    )


def _compared(row: EndpointRow) -> tuple[Any, ...]:
    """What a change must alter to make a new revision."""
    return (
        list(row.variants),
        row.public,
        dict(row.capture or {}),
        list(row.passthrough or ()),
        dict(row.access or {}),
        list(row.secrets or ()),
    )


def _access(row: EndpointRow) -> s.AccessSpec:
    return s.AccessSpec.model_validate(row.access or {})


def _capture(row: EndpointRow) -> s.CaptureSpec:
    return s.CaptureSpec.model_validate(row.capture or {})


def _variants(row: EndpointRow) -> list[s.VariantSpec]:
    return [s.VariantSpec.model_validate(v) for v in row.variants]


def _dump(variants: list[s.VariantSpec]) -> list[dict[str, Any]]:
    return [v.model_dump(mode="json") for v in variants]


def _primary(variants: list[s.VariantSpec], endpoint: str) -> s.VariantSpec:
    """The variant a canary takes traffic from: `main`, else the first live non-canary one."""
    live = [v for v in variants if not v.shadow and v.name != CANARY]
    for variant in live:
        if variant.name == PRIMARY:
            return variant
    if not live:
        raise Conflict(f"endpoint {endpoint!r} has no primary variant")
    return live[0]


def _give_traffic(
    variants: list[s.VariantSpec], traffic: int, endpoint: str
) -> list[s.VariantSpec]:
    """Hand a removed variant's share to the primary."""
    primary = _primary(variants, endpoint)
    return [
        v.model_copy(update={"traffic": v.traffic + traffic}) if v.name == primary.name else v
        for v in variants
    ]


def _checked(variants: list[s.VariantSpec]) -> list[s.VariantSpec]:
    try:
        return s.check_variants(variants)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def _session_of(row: EndpointRow) -> Session:
    from sqlalchemy.orm import object_session

    session = object_session(row)
    assert session is not None
    return session


def _revision_read(row: EndpointRevisionRow) -> s.RevisionRead:
    return s.RevisionRead(
        revision=row.revision,
        action=row.action,
        actor=row.actor,
        reason=row.reason,
        time=as_utc(row.time),
        spec=s.EndpointSpec.model_validate(row.spec),
    )


def _event_read(row: EndpointEventRow) -> s.EndpointEventRead:
    return s.EndpointEventRead.model_validate(
        {
            "time": as_utc(row.time),
            "variant": row.variant,
            "kind": row.kind,
            "from_replicas": row.from_replicas,
            "to_replicas": row.to_replicas,
            "reason": row.reason,
        }
    )
