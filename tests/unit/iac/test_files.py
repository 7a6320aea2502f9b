"""Reading resource files: variables from values.yaml, an environment's overlay and -var, in
that order; typed whole-string values; refusals that name the file and the variable; and the
JSON Schema that editors check files with."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from stratus.client._iac import load_documents
from stratus.core.errors import InvalidInput
from stratus.iac.exports import json_schema


def write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(textwrap.dedent(text))


@pytest.fixture
def infra(tmp_path: Path) -> Path:
    write(
        tmp_path,
        "endpoint.yaml",
        """
        kind: Endpoint
        metadata: {name: api, project: "${project}"}
        spec:
          description: "serves ${model} in ${env}, costs $${literal}"
          variants:
            - {model: "${model}", replicas: "${replicas}"}
        """,
    )
    write(
        tmp_path, "values.yaml", "project: churn\nmodel: churn@production\nreplicas: 1\nenv: dev\n"
    )
    write(tmp_path, "values.prod.yaml", "replicas: 4\nenv: prod\n")
    return tmp_path


def test_values_then_the_environment_then_vars_and_whole_strings_keep_their_type(
    infra: Path,
) -> None:
    (dev,) = load_documents([infra])
    assert dev["metadata"]["project"] == "churn"
    assert dev["spec"]["variants"] == [{"model": "churn@production", "replicas": 1}]
    assert dev["spec"]["description"] == ("serves churn@production in dev, costs ${literal}")
    (prod,) = load_documents([infra], env="prod")
    assert prod["spec"]["variants"][0]["replicas"] == 4  # an int, not "4"
    assert "in prod" in prod["spec"]["description"]
    (given,) = load_documents([infra], env="prod", variables={"replicas": "8"})
    assert given["spec"]["variants"][0]["replicas"] == "8"  # -var values are strings
    assert dev["source"] == str(infra / "endpoint.yaml")  # values files are not documents


def test_a_missing_variable_or_environment_is_named(infra: Path) -> None:
    (infra / "values.yaml").write_text("project: churn\n")
    with pytest.raises(InvalidInput, match=r"endpoint.yaml: \$\{model\} has no value"):
        load_documents([infra])
    with pytest.raises(InvalidInput, match="--env staging: there is no values.staging.yaml"):
        load_documents([infra], env="staging")


def test_the_schema_takes_every_kind_and_refuses_unknown_fields() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json_schema()
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    good = [
        {"kind": "Project", "metadata": {"name": "churn"}, "spec": {"members": {"ann": "editor"}}},
        {"kind": "Bucket", "metadata": {"name": "raw", "project": "churn"}},
        {
            "kind": "Endpoint",
            "metadata": {"name": "api", "project": "churn", "labels": {"team": "risk"}},
            "spec": {"variants": [{"model": "churn@production", "replicas": 2}]},
        },
        {"kind": "ModelAlias", "metadata": {"name": "churn@prod", "project": "churn"},
         "spec": {"version": 3}},
        {"kind": "Secret", "metadata": {"name": "TOKEN", "project": "churn"},
         "spec": {"from_env": "TOKEN"}},
        {"kind": "Budget", "metadata": {"name": "monthly", "project": "churn"},
         "spec": {"amount": 100}},
    ]  # fmt: skip
    for document in good:
        assert list(validator.iter_errors(document)) == [], document
    assert {v["title"] for v in schema["oneOf"]} == {
        "Project", "ServiceAccount", "Secret", "Bucket", "AlertChannel", "ModelAlias",
        "Endpoint", "Monitor", "AlertRule", "Pipeline", "Budget",
    }  # fmt: skip
    bad = {"kind": "Bucket", "metadata": {"name": "raw", "project": "churn"},
           "spec": {"colour": "red"}}  # fmt: skip
    assert list(validator.iter_errors(bad))
    assert list(validator.iter_errors({"kind": "Widget", "metadata": {"name": "w"}}))
