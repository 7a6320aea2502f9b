"""Datasets end to end through the SDK: versions by content, schema and profile, folders of
mixed formats, tags, pulls, and the clear failures (a file that cannot be read leaves
nothing behind)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stratus.client import Client
from stratus.core.errors import Conflict, InvalidInput, NotFound

pd = pytest.importorskip("pandas")


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def project(admin: Client) -> Iterator[str]:
    name = uniq("data")
    admin.projects.create(name)
    yield name


def frame(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.normal(100, 15, rows),
            "count": rng.integers(0, 10, rows),
            "city": rng.choice(["paris", "lyon", "nice"], rows, p=[0.6, 0.3, 0.1]),
            "email": [f"u{i}@x.org" for i in range(rows)],
            "label": rng.integers(0, 2, rows),
        }
    )


def test_push_a_csv_infers_schema_and_profile(admin: Client, project: str, tmp_path: Path) -> None:
    data = frame()
    data.loc[3, "amount"] = np.nan
    path = tmp_path / "train.csv"
    data.to_csv(path, index=False)
    version = admin.datasets.push(
        path, "churn", project=project, column_tags={"email": ["pii"], "label": ["label"]}
    )
    assert (version.version, version.state, version.rows, version.existing) == (
        1, "ready", 200, False,
    )  # fmt: skip
    columns = {c.name: c for c in version.columns}
    assert columns["amount"].type == "double" and columns["city"].type == "string"
    assert columns["email"].tags == ["pii"] and columns["label"].tags == ["label"]

    profile = admin.datasets.profile("churn:1", project=project)
    stats = {c["name"]: c for c in profile["columns"]}
    amount = stats["amount"]
    assert amount["nulls"] == 1 and amount["count"] == 200
    finite = data["amount"].dropna().to_numpy()
    assert amount["numeric"]["mean"] == pytest.approx(finite.mean(), rel=1e-9)
    assert amount["numeric"]["quantiles"]["p50"] == pytest.approx(np.median(finite), rel=1e-9)
    assert sum(amount["numeric"]["histogram"]["counts"]) == len(finite)
    top = stats["city"]["categorical"]["top"]
    assert top[0]["value"] == "paris" and top[0]["count"] == (data["city"] == "paris").sum()

    again = admin.datasets.push(path, "churn", project=project)
    assert again.existing and again.version == 1  # the same content: no new version
    data.loc[0, "count"] = 99
    data.to_csv(path, index=False)
    assert admin.datasets.push(path, "churn", project=project).version == 2
    assert [v.version for v in admin.datasets.versions("churn", project=project)] == [2, 1]
    assert admin.datasets.version("churn", project=project).version == 2  # the latest

    pulled = admin.datasets.pull("churn:1", tmp_path / "pulled", project=project)
    first = pd.read_csv(pulled / "train.csv")
    assert first["count"][0] != 99 and len(first) == 200


def test_a_folder_of_parquet_csv_and_jsonl_is_one_version(
    admin: Client, project: str, tmp_path: Path
) -> None:
    folder = tmp_path / "parts"
    (folder / "more").mkdir(parents=True)
    frame(100, 1).to_parquet(folder / "a.parquet", index=False)
    frame(50, 2).to_csv(folder / "more" / "b.csv", index=False)
    frame(25, 3).to_json(folder / "c.jsonl", orient="records", lines=True)
    (folder / "README.txt").write_text("not data: skipped")
    version = admin.datasets.push(folder, "parts", project=project)
    assert version.rows == 175
    assert sorted(f.path for f in version.files) == ["a.parquet", "c.jsonl", "more/b.csv"]
    assert admin.datasets.profile("parts", project=project)["rows"] == 175


def test_bad_data_is_a_clear_error_and_leaves_nothing(
    admin: Client, project: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InvalidInput, match="bad.parquet"):
        admin.datasets.push(bad, "broken", project=project)
    assert admin.datasets.versions("broken", project=project) == []
    assert admin.datasets.get("broken", project=project).status.versions == 0
    unknown = tmp_path / "notes.txt"
    unknown.write_text("hello")
    with pytest.raises(InvalidInput, match="holds no files|notes.txt"):
        admin.datasets.push(unknown, "broken", project=project)
    with pytest.raises(NotFound):
        admin.datasets.version("broken:7", project=project)
    with pytest.raises(InvalidInput, match="unknown tag"):
        admin.datasets.tag("broken", {"x": ["secret"]}, project=project)
    good = tmp_path / "ok.csv"
    frame(5).to_csv(good, index=False)
    admin.datasets.push(good, "broken", project=project)
    with pytest.raises(Conflict, match="force"):
        admin.datasets.delete("broken", project=project)
    admin.datasets.delete("broken", project=project, force=True)
    with pytest.raises(NotFound):
        admin.datasets.get("broken", project=project)


def test_the_cli_pushes_shows_profiles_and_pulls(
    cli: Any, admin: Client, project: str, tmp_path: Path
) -> None:
    path = tmp_path / "rows.csv"
    frame(30).to_csv(path, index=False)
    pushed = cli(
        "data", "push", str(path), "--dataset", "cli", "--tag", "email=pii",
        "--tag", "label=label", "-p", project, "-o", "json",
    )  # fmt: skip
    assert pushed.code == 0, pushed.stderr
    assert json.loads(pushed.stdout)["rows"] == 30
    again = cli("data", "push", str(path), "--dataset", "cli", "-p", project)
    assert again.code == 0 and "no new version" in again.stdout
    listed = cli("data", "list", "-p", project)
    assert "cli" in listed.stdout and "pii" in listed.stdout
    shown = cli("data", "show", "cli:1", "-p", project)
    assert shown.code == 0 and "email" in shown.stdout and "pii" in shown.stdout
    profiled = cli("data", "profile", "cli", "-p", project)
    assert profiled.code == 0 and "30 rows" in profiled.stdout and "paris" in profiled.stdout
    as_json = json.loads(cli("data", "profile", "cli", "-p", project, "-o", "json").stdout)
    assert {c["name"] for c in as_json["columns"]} == {"amount", "count", "city", "email", "label"}
    pulled = cli("data", "pull", "cli:1", str(tmp_path / "out"), "-p", project)
    assert pulled.code == 0 and (tmp_path / "out" / "rows.csv").read_bytes() == path.read_bytes()
    assert cli("data", "versions", "cli", "-p", project).stdout.count("ready") == 1

    bad_tag = cli("data", "push", str(path), "--dataset", "cli", "--tag", "email=secret")
    assert bad_tag.code == 2
    missing = cli("data", "show", "nope", "-p", project)
    assert missing.code == 1 and len(missing.stderr.strip().splitlines()) == 1
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    failed = cli("data", "push", str(broken), "--dataset", "cli", "-p", project)
    assert failed.code == 1 and "broken.jsonl" in failed.stderr
    assert cli("data", "delete", "cli", "--force", "-p", project).code == 0
