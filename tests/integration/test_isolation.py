"""The project-isolation proof, generated from the OpenAPI document.

Two projects, A and B. Alice owns A (and holds an unrestricted user key); A also has a service
account with the owner role. For EVERY operation whose path has `{project}` — whatever the
method — we call it on project B, naming B's real resources, with each of A's credentials and a
body that would be accepted. Every call must answer 404, exactly as for a project that does not
exist, and afterwards B must be exactly as it was. New routes are covered without editing this
test; a route with a path parameter this test has no resource for fails loudly, so the proof
cannot silently skip it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from stratus.client import Client
from stratus.testing import LocalPlatform

METHODS = ("get", "put", "post", "patch", "delete", "head", "options", "trace")
OBJECT_BYTES = b"B's private bytes \x00\x01\x02"


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class World:
    a: str
    b: str
    alice: str
    credentials: dict[str, str]  # who -> secret, all of them A's
    b_sa_key_id: str
    b_version_id: str
    path_values: dict[str, str]
    query_values: dict[str, str]


@pytest.fixture(scope="module")
def world(
    platform: LocalPlatform, tmp_path_factory: pytest.TempPathFactory, tiny_model: Path
) -> Iterator[World]:
    a, b, alice = uniq("iso-a"), uniq("iso-b"), uniq("alice")
    with platform.client() as admin:
        admin.projects.create(a, "project A")
        admin.projects.create(b, "project B", labels={"secret": "yes"})
        # B's real resources
        admin.buckets.create("b1", project=b, description="B's bucket")
        version = admin.buckets.upload("b1", "k/obj.txt", OBJECT_BYTES, project=b)
        admin.service_accounts.create("sa1", project=b, role="editor")
        b_sa_key = admin.service_accounts.create_key("sa1", project=b)
        artifact = tmp_path_factory.mktemp("iso-model") / "model.skops"
        artifact.write_bytes(tiny_model.read_bytes())
        admin.models.push(artifact, "m1", project=b, flavor="sklearn", card="B's card")
        admin.models.set_alias("m1", "production", 1, project=b, reason="B ships it")
        # A has resources of the same names, so a lookup that ignored the project would hit A's
        admin.buckets.create("b1", project=a)
        admin.buckets.upload("b1", "k/obj.txt", b"A's bytes", project=a)
        admin.service_accounts.create("sa1", project=a, role="owner")
        a_sa_key = admin.service_accounts.create_key("sa1", project=a)
        admin.models.push(artifact, "m1", project=a, flavor="sklearn")
        admin.models.set_alias("m1", "production", 1, project=a)
        # a dataset in each, with a version
        rows = tmp_path_factory.mktemp("iso-data") / "rows.csv"
        rows.write_text("amount,label\n1.5,0\n2.5,1\n")
        for project in (b, a):
            admin.datasets.push(rows, "d1", project=project, column_tags={"label": ["label"]})
        b_validation = admin.datasets.validate("d1:1", {"rows": {"min": 1}}, project=b)
        # a training job in each, waiting for its code (so nothing runs)
        for project in (b, a):
            code = {"sha256": "0" * 64, "size": 1, "content_hash": "1" * 64, "entrypoint": "t.py"}
            created = admin._http.post(
                f"/api/v1/projects/{project}/jobs", json={"name": "j1", "code": code}
            )
            assert created.status_code == 201 and created.json()["status"]["phase"] == "pending"
        # a pipeline in each, with a finished run
        check = {"name": "v", "type": "validate", "dataset": "d1", "rules": {"rows": {"min": 1}}}
        for project in (b, a):
            admin.pipelines.apply({"name": "p1", "steps": [check]}, project)
            run = admin.pipelines.run("p1", project)
            admin.pipelines.wait("p1", run.number, project, timeout=60)
        # an experiment in each, with a run that has a metric and an artifact
        b_run = ""
        for project in (b, a):
            admin.experiments.create("x1", project=project)
            run = admin.experiments.create_run("x1", project=project, params={"C": 1.0})
            admin.experiments.log_batch(
                run.id, metrics=[{"key": "loss", "value": 0.5}], project=project
            )
            admin.experiments.log_artifact(run.id, artifact, project=project)
            b_run = b_run or run.id
        # an endpoint in each (A's with no replicas: nothing runs, yet every route has a
        # target; B's with one, capturing, so that it has an answered request to label)
        for project in (b, a):
            spec: dict[str, Any] = {"name": "e1", "variants": [{"model": "m1:1", "replicas": 0}]}
            if project == b:
                spec = {"name": "e1", "variants": [{"model": "m1:1"}], "capture": {"sample": 1.0}}
            created = admin._http.post(f"/api/v1/projects/{project}/endpoints", json=spec)
            assert created.status_code == 201, created.text
        admin.endpoints.wait_ready("e1", project=b)
        answered = admin._http.post(f"/inference/{b}/e1/predict", json={"instances": [[0.2, 0.8]]})
        assert answered.status_code == 200, answered.text
        # a monitor of each endpoint, and a ground-truth label in B (for the captured request)
        for project in (b, a):
            admin.monitors.apply(name="mo1", endpoint="e1", project=project)
        label = {"request_id": answered.headers["x-request-id"], "label": 1}
        admin.monitors.ground_truth("e1", [label], project=b)
        # a notification channel and an alert rule in each, and an alert in B's history
        for project in (b, a):
            admin.alerts.channels.apply(
                project, name="c1", type="webhook", url="http://127.0.0.1:9/hook",
                headers={"Authorization": "Bearer B-channel-secret"},
            )  # fmt: skip
            admin.alerts.apply(
                project, name="r1", metric="stratus_endpoint_replicas", threshold=1,
                match={"endpoint": "e1"}, channels=["c1"],
            )  # fmt: skip
        admin.alerts.alertmanager(
            {"version": "4", "status": "firing", "alerts": [{
                "status": "firing", "labels": {"alertname": "b-alert"},
                "startsAt": "2026-01-01T00:00:00Z", "fingerprint": "b1",
            }]},
            b,
        )  # fmt: skip
        # alice: owner of A only
        admin.users.create(alice, "alice-password-1")
        admin.projects.set_member(a, "owner", user=alice)
        alice_key = admin.keys.create(user=alice)
    yield World(
        a=a,
        b=b,
        alice=alice,
        credentials={"alice": alice_key.secret, "a-serviceaccount": a_sa_key.secret},
        b_sa_key_id=b_sa_key.key_id,
        b_version_id=version.version_id,
        path_values={
            "project": b,
            "bucket": "b1",
            "key": "k/obj.txt",
            "name": "sa1",
            "subject": "user:admin",
            "key_id": b_sa_key.key_id,
            "model": "m1",
            "version": "1",
            "path": "model.skops",
            "alias": "production",
            "endpoint": "e1",
            "dataset": "d1",
            "variant": "main",
            "validation_id": b_validation.id,
            "job": "j1",
            "pipeline": "p1",
            "run": "1",
            "sha256": "0" * 64,
            "experiment": "x1",
            "run_id": b_run,
            "metric": "loss",
            "rule": "r1",
            "channel": "c1",
            "monitor": "mo1",
            "result": "1",
            "file": "01nofile",
        },
        query_values={"version_id": version.version_id},
    )


@pytest.fixture
def http(platform: LocalPlatform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.url, timeout=30) as client:
        yield client


# --- building requests from the OpenAPI document ---------------------------------------------


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def sample(spec: dict[str, Any], schema: dict[str, Any], field: str = "") -> Any:
    """A small valid value for a JSON schema (enough for the server to accept the body)."""
    schema = _resolve(spec, schema)
    for union in ("anyOf", "oneOf"):
        if union in schema:
            options = [s for s in schema[union] if _resolve(spec, s).get("type") != "null"]
            return sample(spec, options[0], field)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {k: sample(spec, props[k], k) for k in schema.get("required", [])}
    if kind == "string":
        return "evil" if "pattern" in schema or field == "name" else "x"
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    return None


def body_for(
    spec: dict[str, Any], operation: dict[str, Any], world: World
) -> tuple[dict[str, Any], dict[str, str]]:
    """httpx keyword arguments and extra headers for the operation's request body."""
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        schema = content["application/json"]["schema"]
        body = sample(spec, schema)
        name = _resolve(spec, schema).get("title", "")
        if name == "MemberSet":
            body = {"user": world.alice, "role": "owner"}  # alice tries to own B
        return {"json": body}, {}
    if content:
        media = next(iter(content))
        return {"content": b"x"}, {"content-type": media}
    return {}, {}


def project_operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, operations in spec["paths"].items()
        if "{project}" in path
        for method, operation in operations.items()
        if method in METHODS
    ]


def url_for(path: str, world: World) -> str:
    def value(match: re.Match[str]) -> str:
        param = match.group(1)
        assert param in world.path_values, (
            f"path parameter {{{param}}} of {path} has no resource in project B: "
            "create one in the `world` fixture so the isolation proof covers this route"
        )
        text = world.path_values[param]
        return quote(text, safe="/" if param == "key" else "")

    return re.sub(r"\{(\w+)\}", value, path)


def query_for(operation: dict[str, Any], spec: dict[str, Any], world: World) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for param in operation.get("parameters", []):
        if param["in"] != "query":
            continue
        name = param["name"]
        if name in world.query_values:
            params[name] = world.query_values[name]
        elif _resolve(spec, param.get("schema", {})).get("type") == "boolean":
            params[name] = "true"  # e.g. force=true: the most damaging variant
        elif param.get("required"):
            params[name] = sample(spec, param["schema"], name)
    return params


# --- B as admin sees it ----------------------------------------------------------------------


def snapshot(admin: Client, world: World) -> dict[str, Any]:
    b = world.b
    project = admin.projects.get(b)
    bucket = admin.buckets.get("b1", project=b)
    return {
        "project": (project.metadata.model_dump(), project.spec.model_dump()),
        "members": sorted((m.subject, m.role) for m in admin.projects.members(b)),
        "buckets": sorted(x.metadata.name for x in admin.buckets.list(project=b)),
        "bucket": (bucket.metadata.model_dump(), bucket.spec.model_dump(), bucket.status),
        "bytes": admin.buckets.read("b1", "k/obj.txt", project=b),
        "versions": [v.model_dump() for v in admin.buckets.list_versions("b1", project=b)],
        "accounts": [
            (s.metadata.model_dump(), s.status.role) for s in admin.service_accounts.list(b)
        ],
        "keys": [k.model_dump() for k in admin.service_accounts.list_keys("sa1", b)],
        "models": [m.model_dump() for m in admin.models.list(project=b)],
        "model_versions": [v.model_dump() for v in admin.models.versions("m1", project=b)],
        "card": admin.models.card("m1:1", project=b),
        "aliases": [a.model_dump() for a in admin.models.aliases("m1", project=b)],
        "alias_history": [e.model_dump() for e in admin.models.alias_history("m1", project=b)],
        "datasets": [d.model_dump() for d in admin.datasets.list(project=b)],
        "dataset_versions": [v.model_dump() for v in admin.datasets.versions("d1", project=b)],
        "validations": [v.model_dump() for v in admin.datasets.validations("d1:1", project=b)],
        "jobs": [j.model_dump(exclude={"status": {"cost"}}) for j in admin.jobs.list(project=b)],
        "pipelines": [p.model_dump() for p in admin.pipelines.list(project=b)],
        "pipeline_runs": [r.model_dump() for r in admin.pipelines.runs("p1", project=b)],
        "experiments": [e.model_dump() for e in admin.experiments.list(project=b)],
        "runs": [r.model_dump() for r in admin.experiments.runs("x1", project=b)],
        "metric_points": [
            p.model_dump()
            for r in admin.experiments.runs("x1", project=b)
            for p in admin.experiments.metric_history(r.id, "loss", project=b)
        ],
        "artifacts": [
            a.model_dump()
            for r in admin.experiments.runs("x1", project=b)
            for a in admin.experiments.artifacts(r.id, project=b)
        ],
        "endpoint": _without_status(admin._http.get(f"/api/v1/projects/{b}/endpoints/e1").json()),
        "endpoint_history": admin._http.get(f"/api/v1/projects/{b}/endpoints/e1/history").json(),
        # the evaluator writes a rule's status: the rule is its metadata and spec
        "alert_rules": [(r.metadata, r.spec) for r in admin.alerts.list(project=b)],
        "channels": [c.model_dump() for c in admin.alerts.channels.list(project=b)],
        "alert_events": [e.model_dump() for e in admin.alerts.history(b, limit=None)],
        # the controller writes a monitor's status: the monitor is its metadata and spec
        "monitors": [(m.metadata, m.spec) for m in admin.monitors.list(project=b)],
        "monitor_results": [r.model_dump() for r in admin.monitors.results("mo1", project=b)],
        "captures": admin.monitors.capture_files("e1", project=b),
    }


def _without_status(endpoint: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in endpoint.items() if k != "status"}  # the controller writes status


# --- the proof -------------------------------------------------------------------------------


def test_every_project_route_hides_b_from_a(
    world: World, platform: LocalPlatform, http: httpx.Client
) -> None:
    spec = http.get("/api/v1/openapi.json").json()
    operations = project_operations(spec)
    assert len(operations) >= 25, "the OpenAPI document lost its project routes"
    with platform.client() as admin:
        before = snapshot(admin, world)
    assert before["bytes"] == OBJECT_BYTES

    covered: set[tuple[str, str]] = set()
    wrong: list[str] = []
    for who, secret in world.credentials.items():
        for path, method, operation in operations:
            kwargs, headers = body_for(spec, operation, world)
            response = http.request(
                method.upper(),
                url_for(path, world),
                params=query_for(operation, spec, world),
                headers={"Authorization": f"Bearer {secret}", **headers},
                **kwargs,
            )
            covered.add((path, method))
            if path.startswith("/api/v1/webhooks/"):
                # a webhook's credential is its pipeline's secret, not A's key: refused with
                # the same words whether B, its pipeline or the secret exists or not
                assert response.status_code == 401, (path, response.text)
                assert response.json()["detail"] == "the webhook secret is missing or wrong"
                continue
            if response.status_code != 404:
                wrong.append(f"{who}: {method.upper()} {path} -> {response.status_code}")
                continue
            if method != "head":
                body = response.json()
                assert body["code"] == "not-found"
                # the same words as for a project that does not exist: nothing leaks
                assert body["detail"] == f"project '{world.b}' not found", body
                assert OBJECT_BYTES.decode(errors="ignore") not in response.text
    assert not wrong, "A's credentials reached project B:\n" + "\n".join(wrong)
    expected = {(path, method) for path, method, _ in operations}
    assert covered == expected
    assert len(covered) >= len(expected)

    with platform.client() as admin:
        after = snapshot(admin, world)
    assert after == before


def test_nonexistent_project_answers_the_same(world: World, http: httpx.Client) -> None:
    """What A sees for B is word for word what anyone sees for a project that is not there."""
    ghost = uniq("ghost")
    for secret in world.credentials.values():
        headers = {"Authorization": f"Bearer {secret}"}
        real = http.get(f"/api/v1/projects/{world.b}/buckets/b1", headers=headers)
        missing = http.get(f"/api/v1/projects/{ghost}/buckets/b1", headers=headers)
        assert real.status_code == missing.status_code == 404
        assert real.json()["detail"].replace(world.b, "P") == missing.json()["detail"].replace(
            ghost, "P"
        )


def test_a_still_works_with_the_same_credentials(world: World, platform: LocalPlatform) -> None:
    """The 404s above are isolation, not broken credentials."""
    for secret in world.credentials.values():
        with platform.client(secret) as c:
            assert c.buckets.read("b1", "k/obj.txt", project=world.a) == b"A's bytes"
            assert [p.metadata.name for p in c.projects.list()] == [world.a]


def test_project_list_does_not_show_b(world: World, http: httpx.Client) -> None:
    for secret in world.credentials.values():
        headers = {"Authorization": f"Bearer {secret}"}
        names: list[str] = []
        params: dict[str, Any] = {"limit": 1000}
        while True:
            page = http.get("/api/v1/projects", params=params, headers=headers).json()
            names += [p["metadata"]["name"] for p in page["items"]]
            if not page["next_page_token"]:
                break
            params["page_token"] = page["next_page_token"]
        assert world.a in names
        assert world.b not in names
        by_label = http.get("/api/v1/projects", params={"selector": "secret"}, headers=headers)
        assert world.b not in by_label.text


def test_audit_of_b_is_refused(world: World, http: httpx.Client) -> None:
    for secret in world.credentials.values():
        response = http.get(
            "/api/v1/audit",
            params={"project": world.b},
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert response.status_code == 404
        assert world.b in response.json()["detail"]


def test_unfiltered_audit_has_no_entry_of_b(
    world: World, platform: LocalPlatform, http: httpx.Client
) -> None:
    # make sure B has entries, including ones caused by A's failed attempts
    attempt = http.post(
        f"/api/v1/projects/{world.b}/buckets",
        json={"name": "intruder"},
        headers={"Authorization": f"Bearer {world.credentials['alice']}"},
    )
    assert attempt.status_code == 404
    with platform.client() as admin:
        b_entries = admin.audit.list(project=world.b)
        assert any(e.actor == f"user:{world.alice}" for e in b_entries)
    for secret in world.credentials.values():
        with platform.client(secret) as c:
            events = c.audit.list()
        assert events, "A's owner should see A's own entries"
        assert {e.project for e in events} == {world.a}
        assert not any(world.b in e.resource for e in events)


def test_the_inference_gateway_hides_b_from_a(world: World, http: httpx.Client) -> None:
    """Inference paths live outside the OpenAPI document; A's keys meet the same 404 there."""
    for secret in world.credentials.values():
        headers = {"Authorization": f"Bearer {secret}"}
        for method, path in (
            ("POST", f"/inference/{world.b}/e1/predict"),
            ("POST", f"/inference/{world.b}/e1/invocations"),
            ("POST", f"/inference/{world.b}/e1/v2/models/e1/infer"),
            ("GET", f"/inference/{world.b}/e1/v2/models/e1"),
            ("GET", f"/inference/{world.b}/e1/v2/health/ready"),
        ):
            response = http.request(method, path, json={"instances": [[1]]}, headers=headers)
            assert response.status_code == 404, (method, path, response.text)
            assert _message(response) == f"project '{world.b}' not found"
        root = http.post(
            "/v2/models/e1/infer",
            json={"inputs": []},
            headers={**headers, "X-Stratus-Project": world.b},
        )
        assert root.status_code == 404
        assert root.json()["error"] == f"project '{world.b}' not found"


def _message(response: httpx.Response) -> str:
    """The error's text: v2 paths answer the protocol's `{"error": ...}`, others a problem."""
    body = response.json()
    return str(body["error"] if "/v2/" in response.request.url.path else body["detail"])


def test_other_doors_into_b_are_shut(world: World, http: httpx.Client) -> None:
    """Routes outside /projects/{project} that take a project or a key id."""
    alice = {"Authorization": f"Bearer {world.credentials['alice']}"}
    sa = {"Authorization": f"Bearer {world.credentials['a-serviceaccount']}"}
    key_for_b = http.post("/api/v1/keys", json={"project": world.b}, headers=alice)
    assert key_for_b.status_code == 404
    assert key_for_b.json()["detail"] == f"project '{world.b}' not found"
    assert http.post("/api/v1/keys", json={"project": world.b}, headers=sa).status_code == 403
    revoke = http.delete(f"/api/v1/keys/{world.b_sa_key_id}", headers=alice)
    assert revoke.status_code == 404
    whoami = http.get("/api/v1/auth/whoami", headers=alice).json()
    assert whoami["roles"] == {world.a: "owner"}
    # admin-only routes are 403 for anyone who is not an admin (nothing project-specific leaks)
    assert http.get("/api/v1/users/admin", headers=alice).status_code == 403
    assert http.get("/api/v1/audit/verify", headers=alice).status_code == 403
