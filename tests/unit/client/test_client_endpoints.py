"""The SDK's endpoint logic that needs no server: how `deploy` rolls the main variant over,
and how `wait_ready` reads a status against its spec. (What the SDK sends, and what the real
server answers, is covered end to end in tests/integration/test_endpoints_cli.py.)"""

from __future__ import annotations

import pytest

from stratus.client._endpoints import not_ready, rolled_variants
from stratus.core.errors import InvalidInput
from stratus.endpoints import schemas as ep


def test_rolled_variants_moves_main_and_keeps_the_others() -> None:
    spec = ep.EndpointSpec(
        variants=[
            ep.VariantSpec(name="main", model="m:1", version=1, replicas=2, traffic=90),
            ep.VariantSpec(name="canary", model="m:3", version=3, traffic=10),
        ]
    )
    main, canary = rolled_variants(spec, "m@prod", replicas=None, batching={"max_wait_ms": 2})
    assert (main["model"], "version" in main, main["replicas"], main["traffic"]) == (
        "m@prod", False, 2, 90,
    )  # fmt: skip
    assert main["batching"] == {"max_batch_size": 64, "max_wait_ms": 2}
    assert canary == spec.variants[1].model_dump(mode="json", exclude_none=True)


def test_rolled_variants_needs_a_main_variant() -> None:
    only_shadow = ep.EndpointSpec.model_construct(
        variants=[ep.VariantSpec(name="shadow", model="m", shadow=True, traffic=0)]
    )
    with pytest.raises(InvalidInput, match="no main variant"):
        rolled_variants(only_shadow, "m:2", replicas=1, batching={})
    spec = ep.EndpointSpec(variants=[ep.VariantSpec(name="blue", model="m:1", version=1)])
    (blue,) = rolled_variants(spec, "m:2", replicas=None, batching={})
    assert (blue["name"], blue["model"], "version" in blue) == ("blue", "m:2", False)


def _endpoint(
    phase: str, spec_version: int, seen_version: int, ready: int, observed: int = 4
) -> ep.EndpointRead:
    return ep.EndpointRead.model_validate(
        {
            "metadata": {
                "name": "api",
                "uid": "u",
                "resource_version": 1,
                "created_at": "2030-01-01T00:00:00Z",
                "updated_at": "2030-01-01T00:00:00Z",
            },
            "spec": {
                "variants": [{"model": "m", "version": spec_version, "replicas": 2}],
                "revision": 4,
            },
            "status": {
                "phase": phase,
                "observed_revision": observed,
                "variants": [
                    {
                        "name": "main",
                        "model": "m",
                        "version": seen_version,
                        "desired": 2,
                        "ready": ready,
                        "updated": ready,
                    }
                ],
            },
        }
    )


@pytest.mark.parametrize(
    ("phase", "spec_version", "seen_version", "ready", "observed", "expected"),
    [
        ("ready", 2, 2, 2, 4, None),
        ("ready", 2, 2, 2, 3, "phase ready; the controller has not yet seen revision 4"),
        ("ready", 3, 2, 2, 4, "phase ready; variant main on version 2"),
        ("updating", 2, 2, 1, 4, "phase updating; variant main: 1/2 ready, 1 updated"),
        ("degraded", 2, 2, 2, 4, "phase degraded"),
    ],
)
def test_not_ready_compares_the_status_with_the_spec(
    phase: str,
    spec_version: int,
    seen_version: int,
    ready: int,
    observed: int,
    expected: str | None,
) -> None:
    assert not_ready(_endpoint(phase, spec_version, seen_version, ready, observed)) == expected


def test_not_ready_until_the_replicas_of_an_earlier_spec_are_gone() -> None:
    done = _endpoint("ready", 2, 2, 2)
    replicas = [
        ep.ReplicaRead(id=f"r{i}", variant="main", model_version=version, phase=phase)
        for i, (version, phase) in enumerate([(2, "ready"), (2, "ready"), (1, "draining")])
    ]
    draining = done.model_copy(
        update={"status": done.status.model_copy(update={"replicas": replicas})}
    )
    assert not_ready(draining) == "phase ready; 1 replica(s) of an earlier spec still stopping"
    gone = done.model_copy(
        update={"status": done.status.model_copy(update={"replicas": replicas[:2]})}
    )
    assert not_ready(gone) is None


AUTOSCALED = {"max_replicas": 4, "min_replicas": 0, "target_concurrency": 2.0}


def test_rolled_variants_sets_autoscaling_or_a_fixed_count() -> None:
    fixed = ep.EndpointSpec(variants=[ep.VariantSpec(model="m:1", version=1, replicas=2)])
    (main,) = rolled_variants(fixed, "m:2", replicas=None, batching={}, autoscaling=AUTOSCALED)
    assert main["autoscaling"] == AUTOSCALED
    autoscaled = ep.EndpointSpec(
        variants=[ep.VariantSpec(model="m:1", version=1, autoscaling=ep.Autoscaling(**AUTOSCALED))]
    )
    (kept,) = rolled_variants(autoscaled, "m:2", replicas=None, batching={})
    assert ep.Autoscaling.model_validate(kept["autoscaling"]) == autoscaled.variants[0].autoscaling
    (turned_off,) = rolled_variants(autoscaled, "m:2", replicas=3, batching={})
    assert turned_off["replicas"] == 3 and "autoscaling" not in turned_off
    assert ep.VariantSpec.model_validate(turned_off).autoscaling is None


def test_an_autoscaled_variant_is_ready_at_what_its_autoscaler_decided() -> None:
    def endpoint(desired: int, ready: int) -> ep.EndpointRead:
        made = _endpoint("ready", 2, 2, ready)
        spec = made.spec.model_copy(
            update={
                "variants": [
                    made.spec.variants[0].model_copy(
                        update={"autoscaling": ep.Autoscaling(**AUTOSCALED)}
                    )
                ]
            }
        )
        seen = made.status.variants[0].model_copy(update={"desired": desired})
        status = made.status.model_copy(update={"variants": [seen]})
        return made.model_copy(update={"spec": spec, "status": status})

    assert not_ready(endpoint(desired=0, ready=0)) is None  # scaled to zero; replicas=2 ignored
    assert not_ready(endpoint(desired=3, ready=3)) is None
    assert not_ready(endpoint(desired=3, ready=2)) == (
        "phase ready; variant main: 2/3 ready, 2 updated"
    )
