"""Validating dataset versions end to end: the SDK and `stratus data validate` with a YAML
rules file, the stored reports, drift against the previous version, and the clear errors."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stratus.client import Client
from stratus.core.errors import InvalidInput, NotFound

pd = pytest.importorskip("pandas")

RULES = """
rows: {min: 100}
columns:
  customer_id: {type: string, not_null: true, unique: true}
  tenure: {type: integer, min: 0, max: 120}
  charges: {type: number, finite: true, min: 0}
  plan: {allowed: [basic, pro], max_null_share: 0.05}
drift:
  reference: previous
  max_psi: 0.25
"""


def frame(rows: int = 300, seed: int = 0, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": [f"c{seed}-{i}" for i in range(rows)],
            "tenure": rng.integers(0, 72, rows),
            "charges": rng.normal(70 + shift, 10, rows).clip(0),
            "plan": rng.choice(["basic", "pro"], rows),
        }
    )


@pytest.fixture
def project(admin: Client) -> Iterator[str]:
    name = f"val-{uuid.uuid4().hex[:8]}"
    admin.projects.create(name)
    yield name


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return path


def push(admin: Client, project: str, data: pd.DataFrame, folder: Path, name: str) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    data.to_csv(folder / "data.csv", index=False)
    return admin.datasets.push(folder / "data.csv", name, project=project).version


def test_good_data_passes_and_bad_data_fails_with_examples(
    admin: Client, project: str, rules: Path, tmp_path: Path
) -> None:
    push(admin, project, frame(seed=0), tmp_path / "v1", "churn")
    first = admin.datasets.validate("churn:1", rules, project=project)
    assert first.passed, [c for c in first.report.checks if not c.passed]
    drift = [c for c in first.report.checks if c.check == "drift"]
    assert drift and "skipped" in drift[0].observed  # nothing before version 1

    bad = frame(seed=1)
    bad.loc[5, "tenure"] = -3
    bad.loc[7, "customer_id"] = bad.loc[8, "customer_id"]
    bad.loc[0:40, "plan"] = None
    push(admin, project, bad, tmp_path / "v2", "churn")
    report = admin.datasets.validate("churn", rules, project=project)  # the latest: 2
    assert (report.version, report.passed, report.reference) == (2, False, "churn:1")
    failed = {(c.column, c.check): c for c in report.report.checks if not c.passed}
    assert set(failed) == {("tenure", "min"), ("customer_id", "unique"), ("plan", "null share")}
    assert failed[("tenure", "min")].examples[0]["row"] == 5
    assert failed[("tenure", "min")].examples[0]["values"]["tenure"] == -3
    assert failed[("customer_id", "unique")].failing == 2

    stored = admin.datasets.validations("churn:2", project=project)
    assert [v.id for v in stored] == [report.id] and stored[0].rules.rows is not None
    version = admin.datasets.version("churn:2", project=project)
    assert version.validation is not None and version.validation.passed is False
    earlier = admin.datasets.version("churn:1", project=project).validation
    assert earlier is not None and earlier.passed is True


def test_drift_from_the_previous_version_fails_the_rules(
    admin: Client, project: str, rules: Path, tmp_path: Path
) -> None:
    push(admin, project, frame(seed=0), tmp_path / "v1", "drifty")
    push(admin, project, frame(seed=1, shift=40), tmp_path / "v2", "drifty")
    report = admin.datasets.validate("drifty:2", rules, project=project)
    failed = [(c.column, c.check) for c in report.report.checks if not c.passed]
    assert failed == [("charges", "drift (PSI)")]
    charges = next(d for d in report.report.drift if d.column == "charges")
    assert charges.psi is not None and charges.psi > 0.25
    # A reference named explicitly: another dataset's version.
    explicit = admin.datasets.validate(
        "drifty:2",
        {"drift": {"reference": "drifty:2", "max_psi": 0.01}},
        project=project,
    )
    assert explicit.passed and explicit.reference == "drifty:2"


def test_the_cli_prints_each_rule_and_exits_1_on_failure(
    admin: Client, cli: Any, project: str, rules: Path, tmp_path: Path
) -> None:
    run = cli
    push(admin, project, frame(seed=0), tmp_path / "v1", "cli")
    ok = run("data", "validate", "cli:1", "--rules", str(rules), "-p", project)
    assert ok.code == 0, ok.stderr
    assert "passed" in ok.stdout and "customer_id" in ok.stdout and "unique" in ok.stdout

    bad = frame(seed=2)
    bad.loc[3, "charges"] = float("inf")
    push(admin, project, bad, tmp_path / "v2", "cli")
    failed = run("data", "validate", "cli:2", "-r", str(rules), "-p", project)
    assert failed.code == 1
    assert "failing rows of charges finite" in failed.stdout and "row 3" in failed.stdout
    assert "failed: 1 of" in failed.stdout
    as_json = run("data", "validate", "cli:2", "-r", str(rules), "-p", project, "-o", "json")
    assert as_json.code == 1 and json.loads(as_json.stdout)["passed"] is False
    listed = run("data", "validations", "cli:2", "-p", project)
    assert listed.code == 0 and listed.stdout.count("failed") == 2
    versions = run("data", "versions", "cli", "-p", project)
    assert "VALIDATION" in versions.stdout and "passed" in versions.stdout

    broken = tmp_path / "broken.yaml"
    broken.write_text("columns:\n  tenure: {minimum: 0}\n")
    refused = run("data", "validate", "cli:1", "-r", str(broken), "-p", project)
    assert refused.code == 1 and "columns.tenure.minimum" in refused.stderr
    missing = run("data", "validate", "cli:1", "-r", str(tmp_path / "nope.yaml"), "-p", project)
    assert missing.code == 1 and "cannot be read" in missing.stderr


def test_bad_requests_are_clear_4xx(admin: Client, project: str, tmp_path: Path) -> None:
    push(admin, project, frame(seed=0), tmp_path / "v1", "errs")
    with pytest.raises(InvalidInput, match=r"columns\.plan\.min"):
        admin.datasets.validate("errs:1", {"columns": {"plan": {"min": 0}}}, project=project)
    with pytest.raises(NotFound):
        admin.datasets.validate("errs:1", {"drift": {"reference": "ghost:1"}}, project=project)
    with pytest.raises(NotFound):
        admin.datasets.validate("errs:9", {}, project=project)
    for huge in ("99999999999999999999", "18446744073709551616"):
        with pytest.raises(NotFound):
            admin.datasets.validate(f"errs:{huge}", {}, project=project)
        with pytest.raises(NotFound):
            admin.datasets.validate("errs:1", {"drift": {"reference": huge}}, project=project)
    raw = admin._http.post(
        f"/api/v1/projects/{project}/datasets/errs/versions/1/validations",
        json={"rules": {"columns": {"x": {"min": 5, "max": 1}}}},
    )
    assert raw.status_code == 422 and "min (5) is above max (1)" in raw.text
    # A failed validation request stored nothing.
    assert admin.datasets.validations("errs:1", project=project) == []
