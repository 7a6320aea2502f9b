"""Every kind from files, on a real control plane: a project with members and quotas, a service
account, a secret reference, a bucket, an alert channel whose credential is a secret, a model
alias, an endpoint serving through it, a monitor, an alert rule, a pipeline with a code folder
and a budget are applied, then planned to no change. The project is exported and the export
plans to no change; what the files manage is destroyed and applied back from the export, and
the endpoint serves again with the same alerts and pipeline. A change by hand shows as drift
with its author; a saved plan applies, a stale one is refused; no secret value appears in a
plan, an apply, an export or the audit log."""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stratus.client import Client
from stratus.errors import StaleResource
from stratus.testing import LocalPlatform

CliRunner = Callable[..., Any]
TOKEN = "tok-" + uuid.uuid4().hex  # the secret's value: must never show up anywhere


def files(folder: Path, project: str, user: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "code").mkdir(exist_ok=True)
    (folder / "code" / "run.py").write_text("print('hello from a pipeline step')\n")
    (folder / "infra.yaml").write_text(
        textwrap.dedent(
            f"""
            kind: Project
            metadata: {{name: {project}, labels: {{team: churn}}}}
            spec:
              description: ${{description}}
              members: {{admin: owner, {user}: editor}}
              quotas: {{jobs: 5}}
            ---
            kind: ServiceAccount
            metadata: {{name: ci, project: {project}}}
            spec: {{description: deploys from CI, role: editor}}
            ---
            kind: Secret
            metadata: {{name: HOOK_TOKEN, project: {project}}}
            spec: {{description: the webhook's token, from_env: IAC_TEST_HOOK_TOKEN}}
            ---
            kind: Bucket
            metadata: {{name: raw, project: {project}}}
            spec: {{description: raw data}}
            ---
            kind: AlertChannel
            metadata: {{name: ops, project: {project}}}
            spec:
              type: webhook
              url: http://127.0.0.1:9/alerts
              headers: {{Authorization: "secret:HOOK_TOKEN"}}
            ---
            kind: ModelAlias
            metadata: {{name: m@prod, project: {project}}}
            spec: {{version: 1}}
            ---
            kind: Endpoint
            metadata: {{name: api, project: {project}}}
            spec:
              description: the churn endpoint
              variants:
                - {{model: m@prod, replicas: "${{replicas}}"}}
              capture: {{sample: 0.5}}
            ---
            kind: Monitor
            metadata: {{name: drift, project: {project}}}
            spec: {{endpoint: api, interval_seconds: 3600, window: {{rows: 500}}}}
            ---
            kind: AlertRule
            metadata: {{name: drifted, project: {project}}}
            spec:
              metric: stratus_drift_detected
              match: {{endpoint: api}}
              comparison: ">"
              threshold: 0
              channels: [ops]
            ---
            kind: Pipeline
            metadata: {{name: nightly, project: {project}}}
            spec:
              description: say hello
              steps:
                - {{name: hello, type: custom, code: code, entrypoint: run.py}}
            ---
            kind: Budget
            metadata: {{name: monthly, project: {project}}}
            spec: {{amount: 100, channels: [ops]}}
            """
        )
    )
    (folder / "values.yaml").write_text("description: churn models\nreplicas: 1\n")
    return folder


def test_every_kind_applies_plans_to_no_change_exports_and_comes_back(
    platform: LocalPlatform,
    admin: Client,
    cli: CliRunner,
    tiny_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project, user = f"kinds-{uuid.uuid4().hex[:6]}", f"u-{uuid.uuid4().hex[:4]}"
    admin.users.create(user)
    admin.projects.create(project)
    admin.models.push(tiny_model, "m", project=project, sample=[[0.0, 1.0], [1.0, 0.0]])
    monkeypatch.setenv("IAC_TEST_HOOK_TOKEN", TOKEN)
    infra = files(tmp_path / "infra", project, user)
    seen: list[str] = []  # every answer, to look for the secret's value in

    planned = cli("plan", "-f", str(infra), "-o", "json")
    assert planned.code == 0, planned.stderr
    seen.append(planned.stdout)
    first = json.loads(planned.stdout)
    actions = {c["kind"]: c["action"] for c in first["changes"]}
    assert actions["Project"] == "update" and actions["Endpoint"] == "create"
    assert {c["kind"] for c in first["changes"]} == {
        "Project", "ServiceAccount", "Secret", "Bucket", "AlertChannel", "ModelAlias",
        "Endpoint", "Monitor", "AlertRule", "Pipeline", "Budget",
    }  # fmt: skip

    applied = cli("apply", "-f", str(infra), "-o", "json")
    assert applied.code == 0, applied.stdout + applied.stderr
    seen.append(applied.stdout)
    assert len(json.loads(applied.stdout)["applied"]) == 11

    again = cli("plan", "-f", str(infra), "--detailed-exitcode", "-o", "json")
    seen.append(again.stdout)
    left = [c for c in json.loads(again.stdout)["changes"] if c["action"] != "no-op"]
    assert left == [] and again.code == 0, left

    # what the files declared is live
    members = {m.subject: m.role for m in admin.projects.members(project)}
    assert members[f"user:{user}"] == "editor"
    assert admin.quotas.get(project).limits.jobs == 5
    assert admin.models.version("m@prod", project=project).version == 1
    admin.endpoints.wait_ready("api", project=project, timeout=120)
    answer = admin.endpoints.predict("api", [[0.0, 1.0]], project=project)
    rule = admin.alerts.get("drifted", project=project)
    pipeline = admin.pipelines.get("nightly", project=project)

    # the export plans to no change, and reads no credential
    exported = tmp_path / "exported"
    out = cli("export", "iac", "-p", project, "-o", str(exported))
    assert out.code == 0, out.stderr
    assert (exported / "code" / "nightly" / "hello" / "run.py").is_file()
    seen += [p.read_text() for p in exported.glob("*.yaml")]
    check = cli("plan", "-f", str(exported), "--detailed-exitcode")
    assert check.code == 0, check.stdout + check.stderr

    # destroy what the files manage; the project, holding a model, is kept
    gone = cli("destroy", "-f", str(exported), "--yes")
    assert gone.code == 0, gone.stdout + gone.stderr
    seen.append(gone.stdout)
    assert f"kept Project/{project}" in gone.stdout
    assert admin.endpoints.list(project=project) == []
    assert admin.pipelines.list(project=project) == []

    # ... and back from the export: the same endpoint serving, the same alert and pipeline
    monkeypatch.delenv("IAC_TEST_HOOK_TOKEN")
    back = cli("apply", "-f", str(exported))
    # the secret is gone with the destroy and files hold no value: the apply says so
    assert back.code == 1 and "HOOK_TOKEN does not exist" in back.stderr
    monkeypatch.setenv("IAC_TEST_HOOK_TOKEN", TOKEN)
    (exported / "secret.yaml").write_text(
        (exported / "secret.yaml")
        .read_text()
        .replace("description:", "from_env: IAC_TEST_HOOK_TOKEN\n  description:")
    )
    back = cli("apply", "-f", str(exported))
    assert back.code == 0, back.stdout + back.stderr
    seen.append(back.stdout)
    admin.endpoints.wait_ready("api", project=project, timeout=120)
    again_answer = admin.endpoints.predict("api", [[0.0, 1.0]], project=project)
    assert again_answer.predictions == answer.predictions
    assert admin.alerts.get("drifted", project=project).spec == rule.spec
    assert admin.pipelines.get("nightly", project=project).spec == pipeline.spec
    assert not admin.iac.plan(exported).changed

    # a change by hand is drift, with its author
    admin.endpoints.update("api", project=project, description="changed by hand")
    drift = cli("plan", "-f", str(exported), "--refresh-only", "-o", "json", "--detailed-exitcode")
    assert drift.code == 2
    drifted = [c for c in json.loads(drift.stdout)["changes"] if c["action"] == "drift"]
    assert [c["name"] for c in drifted] == ["api"]
    assert drifted[0]["fields"][0]["path"] == "spec.description"
    assert drifted[0]["fields"][0]["after"] == "changed by hand"
    assert [b["actor"] for b in drifted[0]["changed_by"]] == ["user:admin"]
    assert drifted[0]["changed_by"][0]["action"] == "endpoints.update"
    # a whole spec applied to a collection names its resource in the audit log
    admin.alerts.apply(project, **{**rule.spec.model_dump(mode="json"), "name": "drifted",
                                   "threshold": 0.5})  # fmt: skip
    drift = cli("plan", "-f", str(exported), "--refresh-only", "-o", "json")
    drifted = [c for c in json.loads(drift.stdout)["changes"] if c["action"] == "drift"]
    assert {c["name"]: [b["action"] for b in c["changed_by"]] for c in drifted} == {
        "api": ["endpoints.update"],
        "drifted": ["alerts.rules.apply"],
    }
    assert cli("apply", "-f", str(exported)).code == 0
    admin.endpoints.update("api", project=project, description="changed by hand")

    # a saved plan applies exactly; a stale one is refused whole
    saved = tmp_path / "plan.json"
    assert cli("plan", "-f", str(exported), "--out", str(saved)).code == 0
    seen.append(saved.read_text())
    assert cli("apply", str(saved)).code == 0
    assert admin.endpoints.get("api", project=project).spec.description == "the churn endpoint"
    saved_plan = json.loads(saved.read_text())["plan"]
    audit = admin.audit.list(project=project, action="iac.update")
    assert any(e.details.get("plan") == saved_plan["id"] for e in audit)
    admin.endpoints.update("api", project=project, description="changed again")
    assert cli("plan", "-f", str(exported), "--out", str(saved)).code == 0
    admin.buckets.update("raw", project=project, description="moved under the plan")
    stale = cli("apply", str(saved))
    assert stale.code == 1 and "stale" in stale.stderr
    with pytest.raises(StaleResource):
        plan = admin.iac.plan(exported)
        admin.buckets.update("raw", project=project, description="and again")
        admin.iac.apply(exported, pinned=plan.pins())
    assert admin.endpoints.get("api", project=project).spec.description == "changed again"

    # no secret value anywhere
    entries = admin.audit.list(project=project, limit=None)
    seen.append(json.dumps([e.model_dump(mode="json") for e in entries]))
    assert all(TOKEN not in text for text in seen)

    gone = cli("destroy", "-f", str(exported), "--yes")
    assert gone.code == 0, gone.stdout + gone.stderr
