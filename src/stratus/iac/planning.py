"""Plan and apply: the declared documents against live state, resource by resource.

A plan reads what is live (nothing is changed) and says, per document, create, update (with
each field that differs) or no-op; a resource inside a project the same files create is a
create without a look. An apply plans again and carries the changes out in kind order
(`kinds.ORDER`), each resource in its own transaction through its service, audited with the
apply's id; the first failure stops it, and the answer says what was applied and what was
not, so a second apply finishes the rest. Every resource the files touch carries the label
`stratus.io/managed-by: iac`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from stratus.core.errors import InvalidInput, StaleResource, StratusError
from stratus.core.ids import new_id
from stratus.iac.diffing import field_changes
from stratus.iac.kinds import ORDER, KindHandler
from stratus.iac.schemas import (
    MANAGED,
    MANAGED_BY,
    ApplyRead,
    PlanRead,
    PlanSummary,
    ResourceChange,
    ResourceDocument,
    address_of,
)
from stratus.iam.principals import Principal
from stratus.iam.roles import Role

Record = Callable[[str, str, str, str | None, dict[str, Any]], object]  # actor, action, ...


class Planner:
    def __init__(self, handlers: Sequence[KindHandler], record: Record | None = None) -> None:
        self.handlers: Mapping[str, KindHandler] = {h.kind: h for h in handlers}
        self.record = record

    # --- plan ------------------------------------------------------------------------------------

    def plan(self, principal: Principal, documents: Sequence[ResourceDocument]) -> PlanRead:
        ordered = self._checked(documents)
        created: set[str] = set()  # projects the files create: what is inside is new too
        changes: list[ResourceChange] = []
        for doc in ordered:
            handler = self.handlers[doc.kind]
            project, name = doc.metadata.project, doc.metadata.name
            desired = {"labels": _labels(doc), "spec": handler.normalize(doc)}
            live = None
            if project not in created:
                handler.may_read(principal, project, name)
                live = handler.live(principal, project, name)
            if live is None:
                action = "create"
                fields = field_changes({}, desired)
                if doc.kind == "Project":
                    created.add(name)
            else:
                fields = field_changes({"labels": live.labels, "spec": live.spec}, desired)
                action = "update" if fields else "no-op"
            changes.append(
                ResourceChange(
                    kind=doc.kind,
                    project=project,
                    name=name,
                    action=action,
                    fields=fields,
                    resource_version=None if live is None else live.resource_version,
                    source=doc.source,
                )
            )
        summary = PlanSummary(
            create=sum(c.action == "create" for c in changes),
            update=sum(c.action == "update" for c in changes),
            unchanged=sum(c.action == "no-op" for c in changes),
        )
        return PlanRead(changes=changes, summary=summary)

    # --- apply -----------------------------------------------------------------------------------

    def apply(
        self,
        principal: Principal,
        documents: Sequence[ResourceDocument],
        pinned: Mapping[str, int | None] | None = None,
    ) -> ApplyRead:
        """Apply the documents; with `pinned` (a saved plan's), only if every resource is
        still as the plan saw it: else StaleResource (409), and nothing is applied."""
        plan = self.plan(principal, documents)
        if pinned is not None:
            _check_pins(plan, pinned)
        by_address = {_address(d): d for d in documents}
        apply_id = new_id("apply")
        applied: list[ResourceChange] = []
        pending = [c for c in plan.changes if c.action != "no-op"]
        for index, change in enumerate(pending):
            doc = by_address[change.address]
            handler = self.handlers[change.kind]
            labels = _labels(doc)
            try:
                handler.may_write(principal, change.project, change.name)
                if change.action == "create":
                    handler.create(principal, doc, labels)
                else:
                    assert change.resource_version is not None
                    handler.update(principal, doc, labels, change.resource_version)
            except StratusError as exc:
                return ApplyRead(
                    applied=applied,
                    failed=change,
                    error=f"{change.address}: {exc.detail}",
                    remaining=pending[index + 1 :],
                )
            applied.append(change)
            if change.kind == "Project" and change.action == "create":
                # its creator owns it (as `projects create` makes it): the rest of the files
                # may fill it, though the caller's credential was read before it existed
                roles = {**principal.roles, change.name: Role.OWNER}
                principal = replace(principal, roles=roles)
            if self.record is not None:
                self.record(
                    principal.subject,
                    f"iac.{change.action}",
                    change.address,
                    change.project,
                    {"apply": apply_id, "fields": [f.path for f in change.fields]},
                )
        return ApplyRead(applied=applied)

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
            address = _address(doc)
            if address in seen:
                first = seen[address].source or "another document"
                raise InvalidInput(f"{where}: {address} is declared twice (also in {first})")
            seen[address] = doc
        rank = {kind: i for i, kind in enumerate(ORDER)}
        return sorted(seen.values(), key=lambda d: rank.get(d.kind, len(rank)))


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


def _address(doc: ResourceDocument) -> str:
    return address_of(doc.kind, doc.metadata.project, doc.metadata.name)


def _labels(doc: ResourceDocument) -> dict[str, str]:
    return {**doc.metadata.labels, MANAGED_BY: MANAGED}
