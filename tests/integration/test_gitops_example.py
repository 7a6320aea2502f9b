"""examples/gitops plans as its workflow runs it: `stratus plan -f examples/gitops/infra --env
prod --detailed-exitcode` on the shared platform (the project renamed with -var, so tests do
not collide) creates every resource the files declare, with the prod overlay's values, and
changes nothing; without --env the base values hold. The workflow plans and applies that
folder."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from stratus.client import Client
from stratus.errors import NotFound

CliRunner = Callable[..., Any]
ROOT = Path(__file__).resolve().parents[2]
GITOPS = ROOT / "examples" / "gitops"
INFRA = GITOPS / "infra"


def specs(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each created resource's declared spec, by kind."""
    out = {}
    for change in plan["changes"]:
        assert change["action"] == "create", change
        fields = {f["path"]: f["after"] for f in change["fields"]}
        out[change["kind"]] = fields["spec"]
    return out


def test_the_gitops_files_plan_with_the_prod_overlay(admin: Client, cli: CliRunner) -> None:
    project = f"gitops-{uuid.uuid4().hex[:6]}"
    args = ("plan", "-f", str(INFRA), "-var", f"project={project}", "-o", "json")

    planned = cli(*args, "--env", "prod", "--detailed-exitcode")
    assert planned.code == 2, planned.stdout + planned.stderr
    plan = json.loads(planned.stdout)
    assert plan["summary"]["create"] == 7 and plan["summary"]["update"] == 0
    assert {(c["kind"], c["project"], c["name"]) for c in plan["changes"]} == {
        ("Project", None, project),
        ("AlertChannel", project, "ops-webhook"),
        ("Endpoint", project, "churn-api"),
        ("Monitor", project, "churn-drift"),
        ("AlertRule", project, "churn-drift"),
        ("Pipeline", project, "churn"),
        ("Budget", project, "monthly"),
    }
    prod = specs(plan)
    (variant,) = prod["Endpoint"]["variants"]
    assert variant["model"] == "churn@production" and variant["replicas"] == 3
    assert prod["Endpoint"]["capture"]["sample"] == 0.2
    assert prod["Monitor"]["interval_seconds"] == 3600
    assert prod["Budget"]["amount"] == 500
    assert prod["AlertChannel"]["url"] == "http://127.0.0.1:9000/alerts"
    steps = {s["name"]: s for s in prod["Pipeline"]["steps"]}
    assert steps["train"]["code"]["entrypoint"] == "train.py"  # ../../churn/train, archived
    assert steps["validate"]["rules"]["columns"]["churned"]["allowed"] == [0, 1]
    with pytest.raises(NotFound):  # a plan changes nothing
        admin.projects.get(project)

    base = specs(json.loads(cli(*args).stdout))
    assert base["Endpoint"]["variants"][0]["replicas"] == 1
    assert base["Endpoint"]["capture"]["sample"] == 1.0
    assert base["Budget"]["amount"] == 20


def test_the_workflow_plans_on_pull_requests_and_applies_on_main() -> None:
    workflow = yaml.safe_load((GITOPS / ".github" / "workflows" / "stratus.yml").read_text())
    assert (ROOT / workflow["env"]["INFRA"]).resolve() == INFRA
    assert workflow["env"]["STRATUS_API_KEY"] == "${{ secrets.STRATUS_API_KEY }}"
    plan = "\n".join(s.get("run", "") for s in workflow["jobs"]["plan"]["steps"])
    assert "--detailed-exitcode --out plan.json" in plan
    apply = "\n".join(s.get("run", "") for s in workflow["jobs"]["apply"]["steps"])
    assert 'stratus apply "$SAVED"' in apply
    assert 'stratus apply -f "$INFRA" --env "$STRATUS_ENV"' in apply
