"""Plans and applies over in-memory kinds: the field-by-field diff, the order, the checks on
the documents, and an apply that stops at a failure and says what is left."""

from __future__ import annotations

from typing import Any

import pytest

from stratus.core.errors import Conflict, InvalidInput, StaleResource
from stratus.iac.diffing import field_changes
from stratus.iac.kinds import Live
from stratus.iac.planning import Planner
from stratus.iac.schemas import MANAGED_BY, ResourceDocument
from stratus.iam.principals import Principal

ADMIN = Principal(kind="user", uid="u1", name="admin", is_admin=True)


class Memory:
    """A kind kept in a dict: {(project, name): (spec, labels, version)}."""

    labelled = True

    def __init__(self, kind: str, scoped: bool, fail_on: str | None = None) -> None:
        self.kind, self.scoped, self.fail_on = kind, scoped, fail_on
        self.items: dict[tuple[str | None, str], tuple[dict[str, Any], dict[str, str], int]] = {}

    def normalize(self, doc: ResourceDocument) -> dict[str, Any]:
        return {"description": str(doc.spec.get("description", ""))}

    def align(self, live: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        return live

    def audit_path(self, project: str | None, name: str) -> str:
        return f"/api/v1/projects/{project}/{self.kind.lower()}s/{name}"

    def live_all(self, principal: Principal, project: str) -> dict[str, Live]:
        if not self.scoped:
            return {}
        return {n: Live(*v) for (p, n), v in self.items.items() if p == project}

    def delete(self, principal: Principal, project: str | None, name: str) -> None:
        if name == self.fail_on:
            raise Conflict("the store said no")
        del self.items[(project, name)]

    def exported(self, spec: dict[str, Any]) -> dict[str, Any]:
        return spec

    def may_read(self, principal: Principal, project: str | None, name: str) -> None:
        pass

    def may_write(self, principal: Principal, project: str | None, name: str) -> None:
        pass

    def live(self, principal: Principal, project: str | None, name: str) -> Live | None:
        found = self.items.get((project, name))
        return None if found is None else Live(*found)

    def create(self, principal: Principal, doc: ResourceDocument, labels: dict[str, str]) -> None:
        if doc.metadata.name == self.fail_on:
            raise Conflict("the store said no")
        self.items[(doc.metadata.project, doc.metadata.name)] = (self.normalize(doc), labels, 1)

    def update(
        self, principal: Principal, doc: ResourceDocument, labels: dict[str, str], version: int
    ) -> None:
        self.items[(doc.metadata.project, doc.metadata.name)] = (
            self.normalize(doc),
            labels,
            version + 1,
        )


def doc(kind: str, name: str, project: str | None = None, **spec: Any) -> ResourceDocument:
    return ResourceDocument.model_validate(
        {"kind": kind, "metadata": {"name": name, "project": project}, "spec": spec,
         "source": f"{name}.yaml"}
    )  # fmt: skip


def test_field_changes_are_leaves_by_dotted_path() -> None:
    before = {"spec": {"a": 1, "b": {"c": 2, "d": 3}}, "labels": {"x": "1"}}
    after = {"spec": {"a": 1, "b": {"c": 5}, "e": [1]}, "labels": {"x": "1"}}
    assert [(f.path, f.before, f.after) for f in field_changes(before, after)] == [
        ("spec.b.c", 2, 5),
        ("spec.b.d", 3, None),
        ("spec.e", None, [1]),
    ]
    assert field_changes(after, after) == []


def test_a_plan_creates_then_shows_nothing_to_do_once_applied() -> None:
    projects, buckets = Memory("Project", False), Memory("Bucket", True)
    planner = Planner([projects, buckets])
    files = [doc("Bucket", "raw", "fraud", description="raw data"), doc("Project", "fraud")]
    first = planner.plan(ADMIN, files)
    assert [(c.kind, c.action) for c in first.changes] == [
        ("Project", "create"),
        ("Bucket", "create"),
    ]
    assert first.summary.create == 2 and first.changed
    done = planner.apply(ADMIN, files)
    assert [c.address for c in done.applied] == ["Project/fraud", "Bucket/fraud/raw"]
    assert buckets.items[("fraud", "raw")][1] == {MANAGED_BY: "iac"}
    again = planner.plan(ADMIN, files)
    assert not again.changed and again.summary.unchanged == 2


def test_a_change_made_by_hand_is_an_update_field_by_field() -> None:
    buckets = Memory("Bucket", True)
    buckets.items[("fraud", "raw")] = ({"description": "by hand"}, {MANAGED_BY: "iac"}, 7)
    planner = Planner([Memory("Project", False), buckets])
    plan = planner.plan(ADMIN, [doc("Bucket", "raw", "fraud", description="raw data")])
    (change,) = plan.changes
    assert change.action == "update" and change.resource_version == 7
    assert [(f.path, f.before, f.after) for f in change.fields] == [
        ("spec.description", "by hand", "raw data")
    ]


def test_an_apply_stops_at_a_failure_and_says_what_is_left() -> None:
    recorded: list[tuple[Any, ...]] = []
    buckets = Memory("Bucket", True, fail_on="b")
    planner = Planner(
        [Memory("Project", False), buckets], record=lambda *entry: recorded.append(entry)
    )
    files = [doc("Bucket", n, "fraud") for n in ("a", "b", "c")]
    result = planner.apply(ADMIN, files)
    assert [c.name for c in result.applied] == ["a"]
    assert result.failed is not None and result.failed.name == "b"
    assert result.error == "Bucket/fraud/b: the store said no"
    assert [c.name for c in result.remaining] == ["c"]
    assert [(r[1], r[2]) for r in recorded] == [("iac.create", "Bucket/fraud/a")]
    buckets.fail_on = None
    second = planner.apply(ADMIN, files)  # finishes the rest, leaves what is there
    assert [c.name for c in second.applied] == ["b", "c"]


def test_a_saved_plan_applies_only_while_nothing_changed() -> None:
    buckets = Memory("Bucket", True)
    buckets.items[("fraud", "raw")] = ({"description": "old"}, {}, 3)
    planner = Planner([Memory("Project", False), buckets])
    files = [doc("Bucket", "raw", "fraud", description="new"), doc("Bucket", "b2", "fraud")]
    saved = planner.plan(ADMIN, files).pins()
    assert saved == {"Bucket/fraud/raw": 3, "Bucket/fraud/b2": None}
    buckets.items[("fraud", "raw")] = ({"description": "by hand"}, {}, 4)  # since the plan
    buckets.items[("fraud", "b2")] = ({"description": ""}, {}, 1)
    with pytest.raises(StaleResource) as info:
        planner.apply(ADMIN, files, pinned=saved)
    assert str(info.value) == (
        "the saved plan is stale, nothing was applied: Bucket/fraud/raw was at version 3 when "
        "planned and is at version 4 now; Bucket/fraud/b2 was absent when planned and is at "
        "version 1 now. Plan again (stratus plan --out)"
    )
    assert buckets.items[("fraud", "raw")][0] == {"description": "by hand"}  # untouched
    fresh = planner.plan(ADMIN, files).pins()
    # b2, made by hand as declared, is adopted: no change (the managed-by label is no field)
    assert [c.name for c in planner.apply(ADMIN, files, pinned=fresh).applied] == ["raw"]


@pytest.mark.parametrize(
    ("documents", "message"),
    [
        ([doc("Widget", "w")], "kind 'Widget' is not one of Project, Bucket"),
        ([doc("Bucket", "raw")], "a Bucket needs metadata.project"),
        ([doc("Project", "p", "other")], "a Project is in no project"),
        ([doc("Project", "p"), doc("Project", "p")], "Project/p is declared twice"),
    ],
)
def test_documents_that_cannot_be_planned_are_refused(
    documents: list[ResourceDocument], message: str
) -> None:
    planner = Planner([Memory("Project", False), Memory("Bucket", True)])
    with pytest.raises(InvalidInput, match=message):
        planner.plan(ADMIN, documents)


def test_what_the_files_created_and_no_longer_declare_is_deleted_and_prune_takes_the_rest() -> None:
    buckets = Memory("Bucket", True)
    buckets.items[("fraud", "old")] = ({"description": ""}, {MANAGED_BY: "iac"}, 2)
    buckets.items[("fraud", "by-hand")] = ({"description": ""}, {}, 5)
    buckets.items[("other", "theirs")] = ({"description": ""}, {MANAGED_BY: "iac"}, 1)
    planner = Planner([Memory("Project", False), buckets])
    files = [doc("Bucket", "raw", "fraud")]
    plan = planner.plan(ADMIN, files)
    deletes = [
        (c.address, c.resource_version, c.note) for c in plan.changes if c.action == "delete"
    ]
    # only in the projects the files name, only what they created
    assert deletes == [("Bucket/fraud/old", 2, "no longer in the files")]
    pruned = planner.plan(ADMIN, files, prune=True)
    assert sorted(c.address for c in pruned.changes if c.action == "delete") == [
        "Bucket/fraud/by-hand",
        "Bucket/fraud/old",
    ]
    result = planner.apply(ADMIN, files)
    assert [(c.action, c.address) for c in result.applied] == [
        ("create", "Bucket/fraud/raw"),
        ("delete", "Bucket/fraud/old"),
    ]
    assert ("fraud", "by-hand") in buckets.items and ("other", "theirs") in buckets.items


def test_destroy_deletes_what_the_files_declare_in_reverse_order() -> None:
    projects, buckets = Memory("Project", False), Memory("Bucket", True)
    planner = Planner([projects, buckets])
    files = [doc("Project", "fraud"), doc("Bucket", "raw", "fraud"), doc("Bucket", "gone", "fraud")]
    planner.apply(ADMIN, files[:2])
    plan = planner.plan(ADMIN, files, mode="destroy")
    assert [(c.action, c.address) for c in plan.changes] == [
        ("no-op", "Bucket/fraud/gone"),
        ("delete", "Bucket/fraud/raw"),
        ("delete", "Project/fraud"),
    ]
    done = planner.apply(ADMIN, files, mode="destroy")
    assert [c.address for c in done.applied] == ["Bucket/fraud/raw", "Project/fraud"]
    assert projects.items == {} and buckets.items == {}


def test_destroy_keeps_a_project_that_still_holds_what_files_do_not_manage() -> None:
    projects = Memory("Project", False, fail_on="fraud")  # its delete is refused (Conflict)
    projects.items[(None, "fraud")] = ({"description": ""}, {}, 1)
    planner = Planner([projects, Memory("Bucket", True)])
    done = planner.apply(ADMIN, [doc("Project", "fraud")], mode="destroy")
    assert done.failed is None and done.applied == []
    assert [(c.address, c.note) for c in done.kept] == [("Project/fraud", "the store said no")]


def test_refresh_only_reports_drift_and_who_made_it_since_the_last_apply() -> None:
    from datetime import UTC, datetime

    from stratus.iam.schemas import AuditEventRead

    def entry(seq: int, actor: str, action: str, resource: str, method: str = "PATCH") -> Any:
        return AuditEventRead(
            seq=seq,
            time=datetime(2026, 12, 4, 10, seq, tzinfo=UTC),
            actor=actor,
            action=action,
            resource=resource,
            project="fraud",
            outcome="success",
            status_code=200,
            request_id=f"req-{seq}",
            source="127.0.0.1",
            details={"method": method},
            hash="",
        )

    path = "/api/v1/projects/fraud/buckets/raw"
    history = [  # newest first, as the audit log answers
        entry(5, "user:carol", "buckets.get", path, method="GET"),
        entry(4, "user:bob", "buckets.update", path),
        entry(3, "user:alice", "buckets.update", path),
        entry(2, "user:ci", "iac.update", "Bucket/fraud/raw"),
        entry(1, "user:old", "buckets.update", path),
    ]
    buckets = Memory("Bucket", True)
    buckets.items[("fraud", "raw")] = ({"description": "by hand"}, {MANAGED_BY: "iac"}, 9)
    buckets.items[("fraud", "same")] = ({"description": ""}, {MANAGED_BY: "iac"}, 1)
    planner = Planner([Memory("Project", False), buckets], history=lambda project: history)
    files = [
        doc("Bucket", "raw", "fraud", description="raw data"),
        doc("Bucket", "same", "fraud"),
        doc("Bucket", "new", "fraud"),
    ]
    plan = planner.plan(ADMIN, files, mode="refresh-only")
    by_name = {c.name: c for c in plan.changes}
    raw = by_name["raw"]
    assert raw.action == "drift"
    assert [(f.path, f.before, f.after) for f in raw.fields] == [
        ("spec.description", "raw data", "by hand")
    ]
    assert [b.actor for b in raw.changed_by] == ["user:alice", "user:bob"]  # oldest first
    assert by_name["same"].action == "no-op"
    assert (by_name["new"].action, by_name["new"].note) == ("no-op", "not created yet")
    assert plan.summary.drift == 1 and plan.changed
    with pytest.raises(InvalidInput, match="nothing to apply"):
        planner.apply(ADMIN, files, mode="refresh-only")


def test_lists_of_named_mappings_differ_name_by_name() -> None:
    before = {"variants": [{"name": "main", "replicas": 1}, {"name": "canary", "traffic": 10}]}
    after = {"variants": [{"name": "main", "replicas": 3}, {"name": "canary", "traffic": 10}]}
    assert [(f.path, f.before, f.after) for f in field_changes(before, after)] == [
        ("variants[main].replicas", 1, 3)
    ]
    renamed = {"variants": [{"name": "main", "replicas": 1}]}
    assert [f.path for f in field_changes(before, renamed)] == ["variants"]


def test_an_apply_holds_its_projects_lease_and_a_second_is_refused(tmp_path: Any) -> None:
    from stratus.core.database import Database
    from stratus.iac.leases import ApplyLeases
    from stratus.migrations.runner import upgrade

    db = Database(f"sqlite:///{tmp_path}/leases.db")
    upgrade(db)
    leases = ApplyLeases(db, ttl_seconds=60)
    seen: list[Any] = []

    class Nested(Memory):
        def create(
            self, principal: Principal, doc: ResourceDocument, labels: dict[str, str]
        ) -> None:
            seen.append(leases.held())
            with pytest.raises(Conflict, match=r"project 'fraud' is being applied by user:admin"):
                planner.apply(ADMIN, [doc])
            super().create(principal, doc, labels)

    planner = Planner([Memory("Project", False), Nested("Bucket", True)], leases=leases)
    result = planner.apply(ADMIN, [doc("Bucket", "raw", "fraud")])
    assert result.failed is None
    ((held,),) = seen
    assert (held.project, held.holder, held.apply_id) == ("fraud", "user:admin", result.id)
    assert leases.held() == []  # released
    db.dispose()


def test_a_lease_expires_by_itself_and_a_broken_one_stops_its_apply(tmp_path: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from stratus.core.database import Database
    from stratus.iac.leases import ApplyLeases
    from stratus.migrations.runner import upgrade

    db = Database(f"sqlite:///{tmp_path}/leases.db")
    upgrade(db)
    now = [datetime(2026, 12, 4, 12, 0, tzinfo=UTC)]
    leases = ApplyLeases(db, ttl_seconds=60, clock=lambda: now[0])
    leases.acquire(["fraud"], "user:crashed", "apply-1")
    with pytest.raises(Conflict, match="expires within 60 s"):
        leases.acquire(["fraud", "other"], "user:bob", "apply-2")
    assert [lease.project for lease in leases.held()] == ["fraud"]  # all or none
    now[0] += timedelta(seconds=61)
    assert leases.held() == []
    leases.acquire(["fraud"], "user:bob", "apply-2")  # the stale one expired by itself
    assert leases.renew("apply-2") and not leases.renew("apply-1")
    assert leases.break_lease("fraud").holder == "user:bob"
    assert not leases.renew("apply-2")
    db.dispose()


def test_a_field_that_cannot_change_in_place_is_a_replace() -> None:
    monitors = Memory("Monitor", True)
    monitors.replaced_on = ("description",)  # type: ignore[attr-defined]
    monitors.items[("fraud", "drift")] = ({"description": "old"}, {MANAGED_BY: "iac"}, 4)
    planner = Planner([Memory("Project", False), monitors])
    files = [doc("Monitor", "drift", "fraud", description="new")]
    (change,) = planner.plan(ADMIN, files).changes
    assert (change.action, change.note) == ("replace", "spec.description cannot change in place")
    assert planner.plan(ADMIN, files).summary.replace == 1
    done = planner.apply(ADMIN, files)
    assert [c.action for c in done.applied] == ["replace"]
    assert monitors.items[("fraud", "drift")][2] == 1  # a new one


def test_a_delete_the_platform_refuses_is_kept_and_the_rest_goes_on() -> None:
    projects = Memory("Project", False)
    buckets = Memory("Bucket", True, fail_on="full")  # holds objects: its delete is refused
    projects.items[(None, "fraud")] = ({"description": ""}, {}, 1)
    for name in ("full", "empty"):
        buckets.items[("fraud", name)] = ({"description": ""}, {MANAGED_BY: "iac"}, 1)
    planner = Planner([projects, buckets])
    files = [
        doc("Project", "fraud"),
        doc("Bucket", "full", "fraud"),
        doc("Bucket", "empty", "fraud"),
    ]
    done = planner.apply(ADMIN, files, mode="destroy")
    assert done.failed is None
    assert [c.address for c in done.kept] == ["Bucket/fraud/full"]
    assert [c.address for c in done.applied] == ["Bucket/fraud/empty", "Project/fraud"]
