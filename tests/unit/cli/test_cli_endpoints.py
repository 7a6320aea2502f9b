"""What `stratus endpoints` prints about a rollout, read from an endpoint's spec and status
without a server: the READY count during a rollout, what serves with which weights, and what
a rollback did."""

from __future__ import annotations

from typing import Any

from stratus.cli.endpoints import autoscaling_text, ready_count, rollback_text, serving_text
from stratus.endpoints import schemas as ep


def _endpoint(
    variants: list[dict[str, Any]], status: list[dict[str, Any]], revision: int, observed: int
) -> ep.EndpointRead:
    return ep.EndpointRead.model_validate(
        {
            "metadata": {
                "name": "churn",
                "uid": "u",
                "resource_version": revision,
                "created_at": "2030-01-01T00:00:00Z",
                "updated_at": "2030-01-01T00:00:00Z",
            },
            "spec": {"variants": variants, "revision": revision},
            "status": {"phase": "updating", "observed_revision": observed, "variants": status},
        }
    )


def _seen(name: str, version: int, ready: int, updated: int) -> dict[str, Any]:
    return {"name": name, "model": "churn", "version": version, "desired": ready,
            "ready": ready, "updated": updated}  # fmt: skip


MAIN_1 = {"name": "main", "model": "churn:1", "version": 1, "replicas": 2, "traffic": 90}
CANARY_2 = {"name": "canary", "model": "churn:2", "version": 2, "replicas": 2, "traffic": 10}
PROMOTED = {"name": "main", "model": "churn:2", "version": 2, "replicas": 2, "traffic": 100}


def test_ready_counts_only_replicas_of_the_current_spec() -> None:
    # just promoted: the status still describes the canary revision (2 + 2 ready replicas)
    stale = _endpoint([PROMOTED], [_seen("main", 1, 2, 2), _seen("canary", 2, 2, 2)], 5, 4)
    assert ready_count(stale) == "0/2"  # not 4/2
    halfway = _endpoint([PROMOTED], [_seen("main", 2, 3, 1)], 5, 5)  # 2 old, 1 new ready
    assert ready_count(halfway) == "1/2"
    done = _endpoint([PROMOTED], [_seen("main", 2, 2, 2)], 5, 5)
    assert ready_count(done) == "2/2"


def test_serving_text_names_each_version_and_its_weight() -> None:
    shadow = {"name": "shadow", "model": "churn:3", "version": 3, "shadow": True, "traffic": 0}
    endpoint = _endpoint([MAIN_1, CANARY_2, shadow], [], 7, 7)
    assert serving_text(endpoint, rolled_out=True) == (
        "endpoint churn: revision 7: churn:1 serves 90% (variant main), churn:2 serves 10% "
        "(variant canary), churn:3 gets a copy of each request (variant shadow)"
    )
    promoted = _endpoint([PROMOTED], [], 8, 7)
    assert serving_text(promoted, rolled_out=False) == (
        "endpoint churn: revision 8 is rolling out (not waited for): churn:2 will serve 100% "
        "(variant main)"
    )


def test_rollback_text_says_what_the_rollback_did() -> None:
    with_canary = _endpoint([MAIN_1, CANARY_2], [], 4, 4)
    main_only = {**MAIN_1, "traffic": 100}
    dropped = _endpoint([main_only], [], 5, 4)
    assert rollback_text(with_canary, dropped, None) == (
        "endpoint churn: dropped the canary churn:2 (now revision 5)"
    )
    promoted = _endpoint([PROMOTED], [], 5, 5)
    restored = _endpoint([MAIN_1, CANARY_2], [], 6, 5)
    assert rollback_text(promoted, restored, None) == (
        "endpoint churn: rolled back to revision 4 (now revision 6)"
    )
    assert rollback_text(with_canary, dropped, 2) == (
        "endpoint churn: rolled back to revision 2 (now revision 5)"
    )
    same = _endpoint([main_only], [], 5, 5)
    assert rollback_text(same, same, 3) == (
        "endpoint churn: nothing changed (revision 5 already serves that)"
    )


def test_ready_counts_what_an_autoscaled_variant_decided() -> None:
    autoscaled = {**PROMOTED, "autoscaling": {"min_replicas": 0, "max_replicas": 4}}
    scaled_up = _endpoint([autoscaled], [{**_seen("main", 2, 3, 3), "desired": 3}], 5, 5)
    assert ready_count(scaled_up) == "3/3"  # not 3/2: spec.replicas is ignored
    rising = _endpoint([autoscaled], [{**_seen("main", 2, 1, 1), "desired": 4}], 5, 5)
    assert ready_count(rising) == "1/4"
    assert ready_count(_endpoint([autoscaled], [], 5, 4)) == "0/0"  # its minimum, until seen
    both = _endpoint(
        [{**autoscaled, "traffic": 90}, CANARY_2],
        [{**_seen("main", 2, 0, 0), "desired": 0}, _seen("canary", 2, 2, 2)],
        5,
        5,
    )
    assert ready_count(both) == "2/2"


def test_autoscaling_text() -> None:
    assert autoscaling_text(None) == "-"
    settings = ep.Autoscaling(min_replicas=0, max_replicas=4, target_concurrency=2)
    assert autoscaling_text(settings) == "0-4 replicas, 2 in flight each"
