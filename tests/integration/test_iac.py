"""Plan and apply from files on a real control plane, with the CLI as a user runs it: a project
and its buckets declared in YAML are planned (exit 2: changes), applied, planned again to no
change (exit 0); a change made by hand shows in the plan field by field and the next apply
puts it back; bad documents are refused naming the file and the field; a caller plans only
what it may see."""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stratus.client import Client
from stratus.errors import InvalidInput
from stratus.testing import LocalPlatform

CliRunner = Callable[..., Any]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def test_files_plan_apply_and_plan_to_no_change(
    platform: LocalPlatform, admin: Client, cli: CliRunner, tmp_path: Path
) -> None:
    project = f"iac-{uuid.uuid4().hex[:6]}"
    infra = tmp_path / "infra"
    infra.mkdir()
    write(
        infra,
        "project.yaml",
        f"""
        kind: Project
        metadata: {{name: {project}, labels: {{team: risk}}}}
        spec: {{description: fraud models}}
        """,
    )
    write(
        infra,
        "buckets.yaml",
        f"""
        kind: Bucket
        metadata: {{name: raw, project: {project}}}
        spec: {{description: raw data}}
        ---
        kind: Bucket
        metadata: {{name: features, project: {project}}}
        """,
    )
    try:
        planned = cli("plan", "-f", str(infra), "--detailed-exitcode")
        assert planned.code == 2, planned.stderr
        assert f"+ create Project/{project}" in planned.stdout
        assert f"+ create Bucket/{project}/raw" in planned.stdout
        assert "Plan: 3 to create, 0 to update, 0 to delete (0 unchanged)." in planned.stdout
        assert all(p.metadata.name != project for p in admin.projects.list())  # unchanged

        applied = cli("apply", "-f", str(infra))
        assert applied.code == 0, applied.stderr
        assert "Applied 3 change(s)." in applied.stdout
        raw = admin.buckets.get("raw", project)
        assert raw.spec.description == "raw data"
        assert raw.metadata.labels == {"stratus.io/managed-by": "iac"}
        assert admin.projects.get(project).metadata.labels == {
            "team": "risk",
            "stratus.io/managed-by": "iac",
        }

        again = cli("plan", "-f", str(infra), "--detailed-exitcode")
        assert again.code == 0, again.stdout + again.stderr
        assert "Plan: 0 to create, 0 to update, 0 to delete (3 unchanged)." in again.stdout

        admin.buckets.update("raw", project=project, description="changed by hand")
        drift = cli("plan", "-f", str(infra), "-o", "json", "--detailed-exitcode")
        assert drift.code == 2
        changes = [c for c in json.loads(drift.stdout)["changes"] if c["action"] != "no-op"]
        assert changes == [
            {
                "kind": "Bucket",
                "project": project,
                "name": "raw",
                "action": "update",
                "fields": [
                    {
                        "path": "spec.description",
                        "before": "changed by hand",
                        "after": "raw data",
                    }
                ],
                "resource_version": admin.buckets.get("raw", project).metadata.resource_version,
                "source": str(infra / "buckets.yaml#1"),
                "changed_by": [],
                "note": "",
            }
        ]
        assert cli("apply", "-f", str(infra)).code == 0
        assert admin.buckets.get("raw", project).spec.description == "raw data"
        audit = admin.audit.list(project=project, action="iac.update")
        assert [e.resource for e in audit] == [f"Bucket/{project}/raw"]
    finally:
        for bucket in ("raw", "features"):
            try:
                admin.buckets.delete(bucket, project)
            except Exception:
                pass
        try:
            admin.projects.delete(project)
        except Exception:
            pass


def test_alert_rules_plan_to_no_change_after_an_apply(admin: Client, tmp_path: Path) -> None:
    """Server defaults (comparison, severity, summary, for_seconds ...) and the implied
    `match.project` normalised away: the apply's result plans to no change."""
    project = f"iac-{uuid.uuid4().hex[:6]}"
    admin.projects.create(project)
    rules = write(
        tmp_path,
        "rules.yaml",
        f"""
        kind: AlertRule
        metadata: {{name: errors, project: {project}, labels: {{team: ml}}}}
        spec:
          metric: stratus_endpoint_error_ratio
          match: {{endpoint: churn-api, project: {project}}}
          threshold: 0.05
        """,
    )
    try:
        first = admin.iac.plan(rules)
        assert [c.action for c in first.changes] == ["create"]
        assert admin.iac.apply(rules).failed is None
        live = admin.alerts.get("errors", project)
        assert live.spec.comparison == ">" and live.spec.match == {"endpoint": "churn-api"}
        assert live.metadata.labels == {"team": "ml", "stratus.io/managed-by": "iac"}
        assert not admin.iac.plan(rules).changed
        admin.alerts.apply(
            project, name="errors", metric="stratus_endpoint_error_ratio", threshold=0.2,
            match={"endpoint": "churn-api"}, labels={"team": "ml"},
        )  # fmt: skip
        (drift,) = admin.iac.plan(rules).changes
        assert drift.action == "update"
        assert [(f.path, f.before, f.after) for f in drift.fields] == [
            ("spec.threshold", 0.2, 0.05),
        ]  # the managed-by label is bookkeeping, not a declared field
        assert admin.iac.apply(rules).failed is None
        assert admin.alerts.get("errors", project).metadata.labels["stratus.io/managed-by"]
        assert not admin.iac.plan(rules).changed
    finally:
        admin.alerts.delete("errors", project)
        admin.projects.delete(project)


def test_a_saved_plan_is_applied_as_planned_and_refused_once_stale(
    admin: Client, cli: CliRunner, tmp_path: Path
) -> None:
    project = f"iac-{uuid.uuid4().hex[:6]}"
    admin.projects.create(project)
    admin.buckets.create("raw", project=project, description="before")
    files = write(
        tmp_path,
        "raw.yaml",
        f"kind: Bucket\nmetadata: {{name: raw, project: {project}}}\n"
        "spec: {description: after}\n",
    )
    saved = tmp_path / "plan.json"
    try:
        planned = cli("plan", "-f", str(files), "--out", str(saved))
        assert planned.code == 0, planned.stderr
        assert f"saved the plan to {saved}" in planned.stderr
        admin.buckets.update("raw", project=project, description="someone else")
        stale = cli("apply", str(saved))
        assert stale.code != 0
        said = " ".join(stale.stderr.split())
        assert "the saved plan is stale, nothing was applied" in said
        assert f"Bucket/{project}/raw was at version" in said
        assert admin.buckets.get("raw", project).spec.description == "someone else"

        assert cli("plan", "-f", str(files), "--out", str(saved)).code == 0
        applied = cli("apply", str(saved))
        assert applied.code == 0, applied.stderr
        assert f"~ update Bucket/{project}/raw" in applied.stdout
        assert admin.buckets.get("raw", project).spec.description == "after"
    finally:
        admin.buckets.delete("raw", project)
        admin.projects.delete(project)


def test_bad_documents_are_refused_naming_the_file_and_field(admin: Client, tmp_path: Path) -> None:
    bad = write(
        tmp_path,
        "bad.yaml",
        """
        kind: Bucket
        metadata: {name: raw, project: default}
        spec: {description: 5, colour: red}
        """,
    )
    with pytest.raises(InvalidInput, match=r"bad.yaml: Bucket raw: spec\.") as info:
        admin.iac.plan(bad)
    assert "colour" in str(info.value) or "description" in str(info.value)
    widget = write(tmp_path, "w.yaml", "kind: Widget\nmetadata: {name: w}\n")
    with pytest.raises(
        InvalidInput,
        match="kind .Widget. is not one of Project, ServiceAccount, Secret, Bucket, AlertChannel",
    ):
        admin.iac.plan(widget)
    broken = write(tmp_path, "broken.yaml", "kind: [\n")
    with pytest.raises(InvalidInput, match="broken.yaml: not valid YAML"):
        admin.iac.plan(broken)


def test_a_user_creates_a_project_and_fills_it_in_one_apply(
    platform: LocalPlatform, admin: Client, tmp_path: Path
) -> None:
    name, project = f"u-{uuid.uuid4().hex[:4]}", f"own-{uuid.uuid4().hex[:6]}"
    admin.users.create(name)
    key = admin.keys.create("k", user=name)
    files = write(
        tmp_path,
        "mine.yaml",
        f"""
        kind: Project
        metadata: {{name: {project}}}
        ---
        kind: Bucket
        metadata: {{name: raw, project: {project}}}
        """,
    )
    with Client(platform.url, key.secret) as user:
        result = user.iac.apply(files)
        assert result.failed is None, result.error
        assert [c.address for c in result.applied] == [
            f"Project/{project}",
            f"Bucket/{project}/raw",
        ]
        assert not user.iac.plan(files).changed
    admin.buckets.delete("raw", project)
    admin.projects.delete(project)


def test_a_caller_plans_only_what_it_may_see(
    platform: LocalPlatform, admin: Client, tmp_path: Path
) -> None:
    name = f"u-{uuid.uuid4().hex[:4]}"
    admin.users.create(name)
    key = admin.keys.create("k", user=name)
    secret = write(
        tmp_path, "theirs.yaml", "kind: Bucket\nmetadata: {name: raw, project: default}\n"
    )
    with Client(platform.url, key.secret) as stranger:
        with pytest.raises(Exception, match="project 'default' not found"):
            stranger.iac.plan(secret)


def test_a_pipeline_with_code_in_a_project_the_same_files_create(
    platform: LocalPlatform, admin: Client, cli: CliRunner, tmp_path: Path
) -> None:
    project = f"code-{uuid.uuid4().hex[:6]}"
    (tmp_path / "step").mkdir()
    (tmp_path / "step" / "run.py").write_text("print('hi')\n")
    write(
        tmp_path,
        "infra.yaml",
        f"""
        kind: Project
        metadata: {{name: {project}}}
        ---
        kind: Pipeline
        metadata: {{name: hello, project: {project}}}
        spec:
          steps:
            - {{name: hi, type: custom, code: step, entrypoint: run.py, args: [--loud]}}
        """,
    )
    applied = cli("apply", "-f", str(tmp_path))
    assert applied.code == 0, applied.stdout + applied.stderr
    assert "Applied 2 change(s)." in applied.stdout  # the code went up once the project was
    (step,) = admin.pipelines.get("hello", project=project).spec.steps
    assert step.code is not None and step.code.args == ["--loud"]
    assert cli("plan", "-f", str(tmp_path), "--detailed-exitcode").code == 0
    (tmp_path / "step" / "run.py").write_text("print('hello')\n")  # new code: a new archive
    changed = cli("plan", "-f", str(tmp_path), "-o", "json")
    (change,) = [c for c in json.loads(changed.stdout)["changes"] if c["action"] != "no-op"]
    paths = {f["path"] for f in change["fields"]}
    assert {"spec.steps[hi].code.sha256", "spec.steps[hi].code.content_hash"} <= paths
    assert cli("destroy", "-f", str(tmp_path), "--yes").code == 0
    assert all(p.metadata.name != project for p in admin.projects.list())


def test_with_detailed_exitcode_every_error_exits_1_and_only_changes_exit_2(
    cli: CliRunner, tmp_path: Path
) -> None:
    files = write(
        tmp_path, "p.yaml", f"kind: Project\nmetadata: {{name: x-{uuid.uuid4().hex[:6]}}}\n"
    )
    assert cli("plan", "-f", str(files), "--detailed-exitcode").code == 2  # a create
    assert cli("plan", "-f", str(files), "--detailed-exitcode", "--bogus").code == 1
    assert cli("plan", "-f", str(tmp_path / "nope"), "--detailed-exitcode").code == 1
    assert cli("plan", "-f", str(files), "--bogus").code == 2  # without it: click's usage code


def test_an_apply_is_refused_while_another_holds_the_projects_lease(
    platform: LocalPlatform, admin: Client, cli: CliRunner, tmp_path: Path
) -> None:
    """Another apply (here: a lease taken straight in the platform's database, as a crashed
    apply leaves it) holds the project: apply is refused naming it, `stratus iac leases`
    shows it, and `stratus iac unlock` lets the next apply through."""
    from stratus.core.database import Database
    from stratus.iac.leases import ApplyLeases

    project = f"lease-{uuid.uuid4().hex[:6]}"
    files = write(tmp_path, "p.yaml", f"kind: Project\nmetadata: {{name: {project}}}\n")
    db = Database(f"sqlite:///{platform.home / 'stratus.db'}")
    try:
        ApplyLeases(db).acquire([project], "user:ci-bot", "apply-elsewhere")
        refused = cli("apply", "-f", str(files))
        assert refused.code == 1
        assert f"project '{project}' is being applied by user:ci-bot (apply-elsewhere" in (
            refused.stderr.replace("\n", " ")
        )
        assert all(p.metadata.name != project for p in admin.projects.list())
        shown = cli("iac", "leases", "-o", "json")
        assert [(h["project"], h["holder"]) for h in json.loads(shown.stdout)] == [
            (project, "user:ci-bot")
        ]
        assert cli("iac", "unlock", project, "--yes").code == 0
        assert cli("apply", "-f", str(files)).code == 0
        assert json.loads(cli("iac", "leases", "-o", "json").stdout) == []
    finally:
        db.dispose()
    admin.projects.delete(project)


def test_the_schema_is_served_and_written(cli: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "stratus.schema.json"
    assert cli("iac", "schema", "-o", str(target)).code == 0
    schema = json.loads(target.read_text())
    assert schema["$schema"].endswith("2020-12/schema")
    assert "Endpoint" in {v["title"] for v in schema["oneOf"]}


def test_an_exported_project_that_files_never_applied_plans_to_no_change(
    admin: Client, cli: CliRunner, tmp_path: Path
) -> None:
    """Adopting a project made by hand: its export plans to no change (the managed-by label is
    the platform's note, not a declaration), and a change applied from the files labels it."""
    project = f"adopt-{uuid.uuid4().hex[:6]}"
    admin.projects.create(project, description="made by hand", labels={"team": "risk"})
    admin.buckets.create("raw", project=project, description="by hand")
    try:
        assert cli("export", "iac", "-p", project, "-o", str(tmp_path)).code == 0
        planned = cli("plan", "-f", str(tmp_path), "--detailed-exitcode")
        assert planned.code == 0, planned.stdout
        bucket = tmp_path / "bucket.yaml"
        bucket.write_text(bucket.read_text().replace("by hand", "in Git"))
        assert cli("apply", "-f", str(tmp_path)).code == 0
        labels = admin.buckets.get("raw", project).metadata.labels
        assert labels == {"stratus.io/managed-by": "iac"}
        assert "stratus.io/managed-by" not in admin.projects.get(project).metadata.labels
    finally:
        admin.buckets.delete("raw", project)
        admin.projects.delete(project)
