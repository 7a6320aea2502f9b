"""A gate's verdict kept with a model version: a rejected version gets no alias and no new
deployment, `latest` passes it by, an owner may accept it (the verdict keeps who, when, why),
and a later passing verdict makes it ready again. Driven in-process through the services."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from stratus.api.platform import Platform
from stratus.core.errors import Conflict, PermissionDenied
from stratus.endpoints import schemas as es
from stratus.registry import schemas as s

CHECKS = [{"passed": False, "text": "accuracy 0.61 < 0.8", "metric": "accuracy", "value": 0.61}]


@pytest.fixture
def platform(embedded_platform: Callable[..., Platform]) -> Platform:
    return embedded_platform()


def push(platform: Platform, model: Path) -> int:
    registry, data = platform.registry, model.read_bytes()
    if not registry.list_models("default", None, None, None)[0]:
        registry.create_model("default", s.ModelCreate(name="m"))
    entry = s.FileEntry(path="model.skops", sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    declared = s.VersionCreate(files=[entry])
    version = registry.create_version("default", "m", declared, actor="test", can_trust=True)
    if not version.files[0].stored:
        upload = registry.begin_upload("default", "m", version.version, "model.skops")
        upload.write(data)
        registry.finish_upload(upload)
    return registry.commit_version("default", "m", version.version).version


def test_a_rejected_version_is_kept_from_aliases_and_deployments(
    platform: Platform, tiny_model: Path
) -> None:
    registry = platform.registry
    first, second = push(platform, tiny_model), push(platform, tiny_model)
    rejected = registry.record_verdict(
        "default", "m", second, passed=False, reason="accuracy 0.61 < 0.8", checks=CHECKS,
        source="pipeline retrain run 4, step gate",
    )  # fmt: skip
    assert rejected.state == "rejected" and rejected.verdict is not None
    assert rejected.verdict.status == "rejected" and rejected.verdict.checks == CHECKS
    assert registry.get_version("default", "m", "latest").version == first
    model = registry.get_model("default", "m")
    assert model.status.versions == 2 and model.status.latest_version == first
    with pytest.raises(Conflict) as refused:
        registry.set_alias("default", "m", "production", s.AliasSet(version=second), actor="me")
    assert refused.value.detail == (
        "m:2 was rejected by pipeline retrain run 4, step gate: accuracy 0.61 < 0.8; an owner "
        "of the project may accept it anyway (stratus models accept m:2 --reason WHY)"
    )
    with pytest.raises(Conflict, match="m:2 was rejected"):
        platform.endpoints.create(
            "default",
            es.EndpointCreate(name="api", variants=[es.VariantSpec(model="m:2")]),
            actor="me",
        )
    # an endpoint on a version that was not rejected is fine; a served version's files still
    # materialize once rejected (replicas that restart keep serving it)
    platform.endpoints.create(
        "default", es.EndpointCreate(name="api", variants=[es.VariantSpec(model="m:1")]),
        actor="me",
    )  # fmt: skip
    _, folder = registry.materialize("default", "m", str(second), platform.settings.home / "c")
    assert (folder / "model.skops").is_file()

    with pytest.raises(PermissionDenied, match="owners"):
        registry.accept_version(
            "default", "m", "2", s.VersionAccept(reason="looks fine"), actor="user:bob",
            can_override=False,
        )  # fmt: skip
    accepted = registry.accept_version(
        "default", "m", "2", s.VersionAccept(reason="holdout was mislabelled"),
        actor="user:admin", can_override=True,
    )  # fmt: skip
    assert accepted.state == "ready" and accepted.verdict is not None
    assert accepted.verdict.status == "overridden"
    assert accepted.verdict.reason == "accuracy 0.61 < 0.8"  # the refusal is kept
    assert accepted.verdict.override_reason == "holdout was mislabelled"
    assert accepted.verdict.overridden_by == "user:admin"
    registry.set_alias("default", "m", "production", s.AliasSet(version=second), actor="me")
    assert registry.get_version("default", "m", "latest").version == second


def test_a_later_passing_verdict_makes_a_rejected_version_ready(
    platform: Platform, tiny_model: Path
) -> None:
    registry = platform.registry
    number = push(platform, tiny_model)
    registry.record_verdict(
        "default", "m", number, passed=False, reason="no", checks=[], source="gate one"
    )
    passed = registry.record_verdict(
        "default", "m", number, passed=True, reason="every check passed", checks=[],
        source="gate two",
    )  # fmt: skip
    assert passed.state == "ready" and passed.verdict is not None
    assert passed.verdict.status == "passed" and passed.verdict.source == "gate two"
