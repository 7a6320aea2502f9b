"""Plan and apply: the declared documents against live state, resource by resource.

A plan reads what is live (nothing is changed) and says, per document, create, update (with
each field that differs) or no-op, then delete for what the files no longer declare: the
resources they created (the label `stratus.io/managed-by: iac`), or with `prune` every
resource of a declared kind in a declared project. A resource inside a project the same
files create is a create without a look. A destroy plan deletes what the files declare, in
reverse kind order; a refresh-only plan reports drift: what differs from the files, and who
changed it since the files were last applied (from the audit log).

An apply takes the projects' apply lease, plans again and carries the changes out in kind
order (`kinds.ORDER`), each resource in its own transaction through its service, audited
with the apply's (or the saved plan's) id; the first failure stops it, and the answer says
what was applied and what was not, so a second apply finishes the rest.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from stratus.core.errors import Conflict, InvalidInput, NotFound, StaleResource, StratusError
from stratus.core.ids import new_id
from stratus.core.resource_schemas import validate_name
from stratus.iac.diffing import field_changes
from stratus.iac.kinds import ORDER, KindHandler, Live
from stratus.iac.leases import ApplyLeases
from stratus.iac.project_kinds import SECRET_VALUES
from stratus.iac.schemas import (
    MANAGED,
    MANAGED_BY,
    ApplyRead,
    ChangeBy,
    FieldChange,
    Mode,
    PlanRead,
    PlanSummary,
    ResourceChange,
    ResourceDocument,
    address_of,
)
from stratus.iam.principals import Principal
from stratus.iam.roles import Role
from stratus.iam.schemas import AuditEventRead

Record = Callable[[str, str, str, str | None, dict[str, Any]], object]  # actor, action, ...
History = Callable[[str], Sequence[AuditEventRead]]  # a project's newest audit entries first

_RANK = {kind: i for i, kind in enumerate(ORDER)}


class Planner:
    def __init__(
        self,
        handlers: Sequence[KindHandler],
        record: Record | None = None,
        *,
        leases: ApplyLeases | None = None,
        history: History | None = None,
    ) -> None:
        self.handlers: Mapping[str, KindHandler] = {h.kind: h for h in handlers}
        self.record = record
        self.leases = leases
        self.history = history

    # --- plan ------------------------------------------------------------------------------------

    def plan(
        self,
        principal: Principal,
        documents: Sequence[ResourceDocument],
        *,
        mode: Mode = "apply",
        prune: bool = False,
    ) -> PlanRead:
        ordered = self._checked(documents)
        listed: dict[tuple[str, str], dict[str, Live]] = {}  # (kind, project): all of them
        lives = self._lives(principal, ordered, listed, mode == "apply", prune)
        if mode == "destroy":
            changes = self._destroy_changes(principal, ordered, lives)
        elif mode == "refresh-only":
            changes = self._drift_changes(principal, ordered, lives)
        else:
            changes = self._apply_changes(principal, ordered, lives, listed, prune)
        summary = PlanSummary(
            create=sum(c.action == "create" for c in changes),
            update=sum(c.action == "update" for c in changes),
            replace=sum(c.action == "replace" for c in changes),
            delete=sum(c.action == "delete" for c in changes),
            drift=sum(c.action == "drift" for c in changes),
            unchanged=sum(c.action == "no-op" for c in changes),
        )
        return PlanRead(id=new_id("plan"), mode=mode, prune=prune, changes=changes, summary=summary)

    def _lives(
        self,
        principal: Principal,
        ordered: Sequence[ResourceDocument],
        listed: dict[tuple[str, str], dict[str, Live]],
        deleting: bool,
        prune: bool,
    ) -> dict[str, Live | None]:
        """What is live for each document, by address: one read per kind and project where
        files declare several of a kind or deletes will list it anyway (kept in `listed`),
        else one per resource. Resources in projects the files create are absent, unread."""
        lives: dict[str, Live | None] = {}
        groups: dict[tuple[str, str | None], list[ResourceDocument]] = defaultdict(list)
        for doc in ordered:
            if doc.kind == "Project":  # first (ORDER): what the files create is known below
                handler = self.handlers[doc.kind]
                handler.may_read(principal, None, doc.metadata.name)
                lives[_address(doc)] = handler.live(principal, None, doc.metadata.name)
            else:
                groups[(doc.kind, doc.metadata.project)].append(doc)
        created = {a.removeprefix("Project/") for a, live in lives.items() if live is None}
        for (kind, project), docs in groups.items():
            handler = self.handlers[kind]
            if project is not None and project in created:
                lives.update({_address(d): None for d in docs})
                continue
            handler.may_read(principal, project, docs[0].metadata.name)
            listing = len(docs) > 2 or (deleting and (prune or handler.labelled))
            if project is not None and listing:
                found = listed[(kind, project)] = self._live_all(handler, principal, project)
                lives.update({_address(d): found.get(d.metadata.name) for d in docs})
            else:
                for doc in docs:
                    lives[_address(doc)] = handler.live(principal, project, doc.metadata.name)
        return lives

    @staticmethod
    def _live_all(handler: KindHandler, principal: Principal, project: str) -> dict[str, Live]:
        try:
            return handler.live_all(principal, project)
        except NotFound:  # the project does not exist (yet)
            return {}

    def _desired(self, doc: ResourceDocument) -> dict[str, Any]:
        handler = self.handlers[doc.kind]
        desired: dict[str, Any] = {"spec": handler.normalize(doc)}
        if handler.labelled:
            desired["labels"] = dict(doc.metadata.labels)
        return desired

    def _held(self, doc: ResourceDocument, live: Live, desired: dict[str, Any]) -> dict[str, Any]:
        handler = self.handlers[doc.kind]
        held: dict[str, Any] = {"spec": handler.align(live.spec, desired["spec"])}
        if handler.labelled:
            # the managed-by label is the platform's note, not a declaration: an apply sets it
            # on what it creates or changes, and an adopted resource plans to no change
            held["labels"] = {k: v for k, v in live.labels.items() if k != MANAGED_BY}
        return held

    def _apply_changes(
        self,
        principal: Principal,
        ordered: Sequence[ResourceDocument],
        lives: Mapping[str, Live | None],
        listed: dict[tuple[str, str], dict[str, Live]],
        prune: bool,
    ) -> list[ResourceChange]:
        changes: list[ResourceChange] = []
        for doc in ordered:
            desired = self._desired(doc)
            live = lives[_address(doc)]
            forcing: list[str] = []
            if live is None:
                action, fields = "create", field_changes({}, desired)
            else:
                fields = field_changes(self._held(doc, live, desired), desired)
                action = "update" if fields else "no-op"
                forcing = _forcing(self.handlers[doc.kind], fields)
                if forcing:
                    action = "replace"
            note = f"{', '.join(forcing)} cannot change in place" if action == "replace" else ""
            if doc.kind == "Secret" and action == "create":
                note = "its value comes from the applier's environment (spec.from_env)"
            changes.append(_change(doc, action, fields, live, note))
        return changes + self._deletions(principal, ordered, lives, listed, prune)

    def _deletions(
        self,
        principal: Principal,
        ordered: Sequence[ResourceDocument],
        lives: Mapping[str, Live | None],
        listed: dict[tuple[str, str], dict[str, Live]],
        prune: bool,
    ) -> list[ResourceChange]:
        """What the files no longer declare in the projects they name: what they created
        (the managed-by label), and with `prune` everything of the kinds they declare."""
        declared = {_address(d) for d in ordered}
        kinds: dict[str, set[str]] = defaultdict(set)
        for doc in ordered:
            if doc.metadata.project is not None:
                kinds[doc.metadata.project].add(doc.kind)
            elif doc.kind == "Project":
                kinds[doc.metadata.name]  # noqa: B018 - a declared project, maybe empty
        out: list[ResourceChange] = []
        for project in sorted(kinds):
            if lives.get(address_of("Project", None, project), True) is None:
                continue  # created by these files: nothing in it yet
            if not principal.can_see(project):
                continue
            for kind in reversed(ORDER):
                handler = self.handlers.get(kind)
                if handler is None or not handler.scoped:
                    continue
                pruned = prune and kind in kinds[project]
                if not pruned and not handler.labelled:
                    continue
                try:
                    handler.may_read(principal, project, "")
                except StratusError:
                    continue  # what the caller may not read is not theirs to remove
                found = listed.get((kind, project))
                if found is None:
                    found = self._live_all(handler, principal, project)
                for name, live in sorted(found.items()):
                    address = address_of(kind, project, name)
                    if address in declared:
                        continue
                    if pruned or live.labels.get(MANAGED_BY) == MANAGED:
                        why = "pruned: not in the files" if pruned else "no longer in the files"
                        out.append(
                            ResourceChange(
                                kind=kind,
                                project=project,
                                name=name,
                                action="delete",
                                resource_version=live.resource_version,
                                note=why,
                            )
                        )
        return out

    def _destroy_changes(
        self,
        principal: Principal,
        ordered: Sequence[ResourceDocument],
        lives: Mapping[str, Live | None],
    ) -> list[ResourceChange]:
        changes = []
        for doc in reversed(ordered):
            live = lives[_address(doc)]
            action = "no-op" if live is None else "delete"
            changes.append(_change(doc, action, [], live, "absent" if live is None else ""))
        return changes

    def _drift_changes(
        self,
        principal: Principal,
        ordered: Sequence[ResourceDocument],
        lives: Mapping[str, Live | None],
    ) -> list[ResourceChange]:
        """Per declared resource: how live state differs from the files (before: the
        files, after: live), and who changed it since the files last applied it."""
        entries: dict[str, Sequence[AuditEventRead]] = {}
        changes = []
        for doc in ordered:
            project = doc.metadata.project or (doc.metadata.name if doc.kind == "Project" else "")
            if project not in entries:
                entries[project] = self.history(project) if self.history and project else []
            handler = self.handlers[doc.kind]
            address = _address(doc)
            applied, by = _since_last_apply(
                entries[project],
                address,
                handler.audit_path(doc.metadata.project, doc.metadata.name),
            )
            live = lives[address]
            desired = self._desired(doc)
            if live is None:
                if applied:
                    changes.append(_change(doc, "drift", [], None, "deleted outside the files", by))
                else:
                    changes.append(_change(doc, "no-op", [], None, "not created yet"))
                continue
            fields = field_changes(desired, self._held(doc, live, desired))
            action = "drift" if fields else "no-op"
            changes.append(_change(doc, action, fields, live, "", by if fields else []))
        return changes

    # --- apply -----------------------------------------------------------------------------------

    def apply(
        self,
        principal: Principal,
        documents: Sequence[ResourceDocument],
        pinned: Mapping[str, int | None] | None = None,
        *,
        mode: Mode = "apply",
        prune: bool = False,
        plan_id: str | None = None,
        secret_values: Mapping[str, str] | None = None,
    ) -> ApplyRead:
        """Apply the documents (or, `mode="destroy"`, delete what they declare); with
        `pinned` (a saved plan's), only if every resource is still as that plan saw it: else
        StaleResource (409), and nothing is applied. Concurrent applies to a project wait
        for none: the second is refused (409) naming the first."""
        if mode == "refresh-only":
            raise InvalidInput("a refresh-only plan reports drift; there is nothing to apply")
        apply_id = plan_id or new_id("apply")
        checked = self._checked(documents)  # before the lease: its projects are valid names
        projects = {d.metadata.project or d.metadata.name for d in checked}
        if self.leases is not None:
            self.leases.acquire(projects, principal.subject, apply_id)
        token = SECRET_VALUES.set(dict(secret_values or {}))
        try:
            plan = self.plan(principal, documents, mode=mode, prune=prune)
            if pinned is not None:
                _check_pins(plan, pinned)
            return self._carry_out(principal, plan, documents, apply_id, plan_id)
        finally:
            SECRET_VALUES.reset(token)
            if self.leases is not None:
                self.leases.release(apply_id)

    def _carry_out(
        self,
        principal: Principal,
        plan: PlanRead,
        documents: Sequence[ResourceDocument],
        apply_id: str,
        plan_id: str | None,
    ) -> ApplyRead:
        by_address = {_address(d): d for d in documents}
        pending = _in_apply_order(c for c in plan.changes if c.action != "no-op")
        applied: list[ResourceChange] = []
        kept: list[ResourceChange] = []
        for index, change in enumerate(pending):
            handler = self.handlers[change.kind]
            try:
                handler.may_write(principal, change.project, change.name)
                if change.action == "delete":
                    handler.delete(principal, change.project, change.name)
                elif change.action == "replace":
                    doc = by_address[change.address]
                    handler.delete(principal, change.project, change.name)
                    handler.create(principal, doc, _labels(doc))
                else:
                    doc = by_address[change.address]
                    if change.action == "create":
                        handler.create(principal, doc, _labels(doc))
                    else:
                        assert change.resource_version is not None
                        handler.update(principal, doc, _labels(doc), change.resource_version)
            except Conflict as exc:
                if change.action == "delete":
                    # what still holds data the files do not manage (a project's models, a
                    # bucket's objects) or is named by what they do not declare outlives them
                    kept.append(change.model_copy(update={"note": exc.detail}))
                    continue
                return self._stopped(apply_id, applied, kept, change, exc, pending[index + 1 :])
            except StratusError as exc:
                return self._stopped(apply_id, applied, kept, change, exc, pending[index + 1 :])
            applied.append(change)
            if change.kind == "Project" and change.action == "create":
                # its creator owns it (as `projects create` makes it): the rest of the files
                # may fill it, though the caller's credential was read before it existed
                roles = {**principal.roles, change.name: Role.OWNER}
                principal = replace(principal, roles=roles)
            if self.record is not None:
                details: dict[str, Any] = {
                    "apply": apply_id,
                    "fields": [f.path for f in change.fields],
                }
                if plan_id:
                    details["plan"] = plan_id
                self.record(
                    principal.subject,
                    f"iac.{change.action}",
                    change.address,
                    change.project or (change.name if change.kind == "Project" else None),
                    details,
                )
            if self.leases is not None and not self.leases.renew(apply_id):
                return ApplyRead(
                    id=apply_id,
                    applied=applied,
                    kept=kept,
                    error="the apply's lease was broken (stratus iac unlock): it stopped here",
                    remaining=pending[index + 1 :],
                )
        return ApplyRead(id=apply_id, applied=applied, kept=kept)

    @staticmethod
    def _stopped(
        apply_id: str,
        applied: list[ResourceChange],
        kept: list[ResourceChange],
        change: ResourceChange,
        exc: StratusError,
        remaining: list[ResourceChange],
    ) -> ApplyRead:
        return ApplyRead(
            id=apply_id,
            applied=applied,
            kept=kept,
            failed=change,
            error=f"{change.address}: {exc.detail}",
            remaining=remaining,
        )

    # --- checks ----------------------------------------------------------------------------------

    def _checked(self, documents: Sequence[ResourceDocument]) -> list[ResourceDocument]:
        """The documents in apply order, once each, every one of a kind this platform knows
        and with a project exactly when its kind lives in one."""
        seen: dict[str, ResourceDocument] = {}
        for doc in documents:
            handler = self.handlers.get(doc.kind)
            where = doc.source or "a document"
            if handler is None:
                known = ", ".join(k for k in ORDER if k in self.handlers)
                raise InvalidInput(f"{where}: kind {doc.kind!r} is not one of {known}")
            if handler.scoped and doc.metadata.project is None:
                raise InvalidInput(f"{where}: a {doc.kind} needs metadata.project")
            if not handler.scoped and doc.metadata.project is not None:
                raise InvalidInput(f"{where}: a {doc.kind} is in no project: drop metadata.project")
            if doc.kind == "Project":
                validate_name(doc.metadata.name, f"{where}: project name")
            address = _address(doc)
            if address in seen:
                first = seen[address].source or "another document"
                raise InvalidInput(f"{where}: {address} is declared twice (also in {first})")
            seen[address] = doc
        return sorted(seen.values(), key=lambda d: _RANK.get(d.kind, len(_RANK)))


def _forcing(handler: KindHandler, fields: Sequence[FieldChange]) -> list[str]:
    """The fields among `fields` the kind cannot change in place (a replace)."""
    fixed = getattr(handler, "replaced_on", ())
    return sorted({f"spec.{name}" for name in fixed for c in fields if c.path == f"spec.{name}"})


def _in_apply_order(changes: Iterable[ResourceChange]) -> list[ResourceChange]:
    """Creates and updates in kind order, then deletes in reverse kind order (what refers to
    a resource goes before it)."""
    changes = list(changes)
    ups = [c for c in changes if c.action != "delete"]
    downs = [c for c in changes if c.action == "delete"]
    ups.sort(key=lambda c: _RANK.get(c.kind, len(_RANK)))
    downs.sort(key=lambda c: -_RANK.get(c.kind, len(_RANK)))
    return ups + downs


def _since_last_apply(
    entries: Sequence[AuditEventRead], address: str, path: str, nested: bool = True
) -> tuple[bool, list[ChangeBy]]:
    """(whether the files ever applied the resource, the changes to it made otherwise since
    their last apply, oldest first), from a project's audit entries, newest first: requests
    that changed the resource's path (or, `nested`, one under it)."""
    by: list[ChangeBy] = []
    for entry in entries:
        if entry.action.startswith("iac.") and entry.resource == address:
            return True, by[::-1]
        if entry.outcome != "success" or entry.action.startswith("iac."):
            continue
        if str(entry.details.get("method", "")) in ("GET", "HEAD", "OPTIONS"):
            continue
        under = entry.resource.startswith(path + "/")
        if not under and entry.resource != path:
            continue
        if under and not nested and not entry.resource.startswith(_project_settings(path)):
            continue
        by.append(
            ChangeBy(
                actor=entry.actor,
                action=entry.action,
                time=entry.time,
                request_id=entry.request_id,
            )
        )
    return False, by[::-1]


def _project_settings(path: str) -> tuple[str, ...]:
    """What under a project's path changes the project itself (not what lives in it)."""
    return tuple(f"{path}/{part}" for part in ("members", "quotas", "rate-limit"))


def _check_pins(plan: PlanRead, pinned: Mapping[str, int | None]) -> None:
    stale = []
    for change in plan.changes:
        address, now = change.pinned
        if address not in pinned:
            stale.append(f"{address} is not in the saved plan")
        elif pinned[address] != now:
            was, is_ = pinned[address], now
            seen = "absent" if was is None else f"at version {was}"
            live = "absent" if is_ is None else f"at version {is_}"
            stale.append(f"{address} was {seen} when planned and is {live} now")
    if stale:
        raise StaleResource(
            "the saved plan is stale, nothing was applied: "
            + "; ".join(stale)
            + ". Plan again (stratus plan --out)"
        )


def _change(
    doc: ResourceDocument,
    action: str,
    fields: list[Any],
    live: Live | None,
    note: str = "",
    by: list[ChangeBy] | None = None,
) -> ResourceChange:
    return ResourceChange(
        kind=doc.kind,
        project=doc.metadata.project,
        name=doc.metadata.name,
        action=action,
        fields=fields,
        resource_version=None if live is None else live.resource_version,
        source=doc.source,
        note=note,
        changed_by=by or [],
    )


def _address(doc: ResourceDocument) -> str:
    return address_of(doc.kind, doc.metadata.project, doc.metadata.name)


def _labels(doc: ResourceDocument) -> dict[str, str]:
    return {**doc.metadata.labels, MANAGED_BY: MANAGED}
