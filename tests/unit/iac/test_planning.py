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

    def __init__(self, kind: str, scoped: bool, fail_on: str | None = None) -> None:
        self.kind, self.scoped, self.fail_on = kind, scoped, fail_on
        self.items: dict[tuple[str | None, str], tuple[dict[str, Any], dict[str, str], int]] = {}

    def normalize(self, doc: ResourceDocument) -> dict[str, Any]:
        return {"description": str(doc.spec.get("description", ""))}

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
    assert [c.name for c in planner.apply(ADMIN, files, pinned=fresh).applied] == ["raw", "b2"]


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
