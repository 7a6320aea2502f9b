"""The resource base: names, labels, selectors (in Python and in SQL), pagination, versions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from sqlalchemy import JSON, Integer, MetaData, select
from sqlalchemy import Column as SAColumn
from sqlalchemy import Table as SATable

from stratus.core.database import Base, Database
from stratus.core.errors import InvalidInput, StaleResource
from stratus.core.resources import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    NAME_MAX,
    Labels,
    Name,
    Requirement,
    check_limit,
    check_version,
    decode_token,
    encode_token,
    paginate,
    parse_selector,
    selector_clause,
    validate_labels,
    validate_name,
)
from stratus.iam.tables import ProjectRow

# --- names -----------------------------------------------------------------------------------

GOOD_NAMES = ["a", "0", "ab", "a-b", "a--b", "fraud-models-2", "9lives", "x" * NAME_MAX]
BAD_NAMES = [
    "A",
    "Fraud",
    "-a",
    "a-",
    "-",
    "a_b",
    "a.b",
    "a b",
    " a",
    "a ",
    "a/b",
    "é",
    "a\n",
    "x" * (NAME_MAX + 1),
]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_names_are_accepted_unchanged(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", [n for n in BAD_NAMES if len(n) <= NAME_MAX])
def test_bad_names_say_what_is_allowed(name: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_name(name, "bucket name")
    message = info.value.detail
    assert message.startswith("bucket name ")
    assert repr(name) in message
    assert "lower-case letters, digits and '-'" in message
    assert "starting and ending with a letter or digit" in message


def test_empty_name_is_refused() -> None:
    with pytest.raises(InvalidInput, match="project must not be empty"):
        validate_name("", "project")


def test_too_long_name_says_the_limit() -> None:
    with pytest.raises(InvalidInput, match=f"longer than {NAME_MAX} characters"):
        validate_name("a" * (NAME_MAX + 1))


def test_non_string_name_is_refused() -> None:
    with pytest.raises(InvalidInput):
        validate_name(None)  # type: ignore[arg-type]


class _Named(BaseModel):
    name: Name
    labels: Labels = {}


def test_name_in_a_schema_gives_the_same_message() -> None:
    assert _Named(name="ok-name").name == "ok-name"
    with pytest.raises(ValidationError) as info:
        _Named(name="Bad_Name")
    text = str(info.value)
    assert "lower-case letters, digits and '-'" in text


def test_name_json_schema_states_the_rule() -> None:
    schema = _Named.model_json_schema()["properties"]["name"]
    assert schema["maxLength"] == NAME_MAX
    assert schema["minLength"] == 1
    assert schema["pattern"].startswith("^[a-z0-9]")


# --- labels ----------------------------------------------------------------------------------

GOOD_LABELS: list[dict[str, str]] = [
    {},
    {"team": "risk"},
    {"Team": "Risk"},
    {"app.kubernetes.io/name": "fraud"},
    {"example.com/tier": "prod_1.2-a"},
    {"empty": ""},
    {"k": "v" * 63},
    {"a_b.c-d": "x"},
]
BAD_LABELS: list[dict[str, Any]] = [
    {"": "v"},
    {"-team": "v"},
    {"team-": "v"},
    {"te am": "v"},
    {"Example.com/tier": "v"},  # the prefix is a DNS name: lower case
    {"/tier": "v"},
    {"a/b/c": "v"},
    {"k" * 254: "v"},
    {"team": "-risk"},
    {"team": "risk-"},
    {"team": "ri sk"},
    {"team": "v" * 64},
    {"team": "a/b"},
    {"team": 3},
    {"team\n": "v"},
    {"team": "risk\n"},
]


@pytest.mark.parametrize("labels", GOOD_LABELS)
def test_good_labels_are_accepted(labels: dict[str, str]) -> None:
    assert validate_labels(labels) == labels


@pytest.mark.parametrize("labels", BAD_LABELS)
def test_bad_labels_are_refused_naming_the_label(labels: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_labels(labels)
    key, value = next(iter(labels.items()))
    assert "label" in info.value.detail
    assert repr(key) in info.value.detail or repr(value) in info.value.detail


def test_labels_in_a_schema_are_validated() -> None:
    assert _Named(name="a", labels={"team": "risk"}).labels == {"team": "risk"}
    with pytest.raises(ValidationError, match="label key"):
        _Named(name="a", labels={"bad key": "x"})


# --- selectors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("team=risk", [Requirement("team", "=", ("risk",))]),
        ("team==risk", [Requirement("team", "=", ("risk",))]),
        (" team = risk ", [Requirement("team", "=", ("risk",))]),
        ("team!=risk", [Requirement("team", "!=", ("risk",))]),
        ("team=", [Requirement("team", "=", ("",))]),
        ("tier in (prod, dev)", [Requirement("tier", "in", ("prod", "dev"))]),
        ("tier in (prod,dev,)", [Requirement("tier", "in", ("prod", "dev"))]),
        ("tier notin (dev)", [Requirement("tier", "notin", ("dev",))]),
        ("gpu", [Requirement("gpu", "exists")]),
        ("!gpu", [Requirement("gpu", "!exists")]),
        ("! gpu", [Requirement("gpu", "!exists")]),
        ("app.kubernetes.io/name=x", [Requirement("app.kubernetes.io/name", "=", ("x",))]),
        (
            "a=b,c!=d,e in (x,y),f notin (z),g,!h",
            [
                Requirement("a", "=", ("b",)),
                Requirement("c", "!=", ("d",)),
                Requirement("e", "in", ("x", "y")),
                Requirement("f", "notin", ("z",)),
                Requirement("g", "exists"),
                Requirement("h", "!exists"),
            ],
        ),
    ],
)
def test_parse_selector(selector: str, expected: list[Requirement]) -> None:
    assert parse_selector(selector) == expected


@pytest.mark.parametrize("selector", [None, "", "   "])
def test_empty_selector_selects_everything(selector: str | None) -> None:
    assert parse_selector(selector) == []


@pytest.mark.parametrize(
    "selector",
    [
        "a=b,",
        ",a=b",
        "a=b,,c=d",
        "=b",
        "!=b",
        "!",
        "bad key=x",
        "tier in ()",
        "tier in ( , )",
        "tier in (a,b",
        "tier in a,b",
        "-team=x",
        "team/=x",
        '"team"=x',
        "!a=b",
    ],
)
def test_bad_selectors_are_invalid_input(selector: str) -> None:
    with pytest.raises(InvalidInput):
        parse_selector(selector)


def test_bad_selector_message_names_the_selector() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_selector("ok=1,bad key=2")
    assert "'bad key'" in info.value.detail and "not a label key" in info.value.detail


LABEL_SETS: list[dict[str, str]] = [
    {},
    {"team": "risk"},
    {"team": "risk", "tier": "prod"},
    {"team": "ml", "tier": "dev"},
    {"team": "ml", "tier": "prod", "gpu": ""},
    {"tier": "staging", "app.kubernetes.io/name": "fraud"},
    {"team": "1"},
]


@pytest.mark.parametrize(
    ("req", "labels", "expected"),
    [
        (Requirement("team", "=", ("risk",)), {"team": "risk"}, True),
        (Requirement("team", "=", ("risk",)), {"team": "ml"}, False),
        (Requirement("team", "=", ("risk",)), {}, False),
        (Requirement("team", "=", ("",)), {"team": ""}, True),
        (Requirement("team", "=", ("",)), {}, False),
        (Requirement("team", "!=", ("risk",)), {"team": "ml"}, True),
        (Requirement("team", "!=", ("risk",)), {"team": "risk"}, False),
        (Requirement("team", "!=", ("risk",)), {}, True),  # absent keys match !=
        (Requirement("tier", "in", ("prod", "dev")), {"tier": "dev"}, True),
        (Requirement("tier", "in", ("prod", "dev")), {"tier": "staging"}, False),
        (Requirement("tier", "in", ("prod", "dev")), {}, False),
        (Requirement("tier", "notin", ("prod",)), {"tier": "dev"}, True),
        (Requirement("tier", "notin", ("prod",)), {"tier": "prod"}, False),
        (Requirement("tier", "notin", ("prod",)), {}, True),
        (Requirement("gpu", "exists"), {"gpu": ""}, True),
        (Requirement("gpu", "exists"), {"cpu": "x"}, False),
        (Requirement("gpu", "!exists"), {"cpu": "x"}, True),
        (Requirement("gpu", "!exists"), {"gpu": "x"}, False),
    ],
)
def test_requirement_matches(req: Requirement, labels: dict[str, str], expected: bool) -> None:
    assert req.matches(labels) is expected


SELECTORS = [
    "team=risk",
    "team==ml",
    "team!=risk",
    "tier in (prod,dev)",
    "tier notin (prod)",
    "gpu",
    "!gpu",
    "team=ml,tier=prod",
    "team,!tier",
    "team!=ml,tier notin (dev,staging)",
    "app.kubernetes.io/name=fraud",
    "app.kubernetes.io/name",
    "team=1",
    "team in (1,risk)",
    "gpu=",
    "nothing=here",
    "",
]


@pytest.fixture
def labelled_db() -> Iterator[tuple[Database, SATable]]:
    """An in-memory SQLite database with a small table of labelled rows."""
    db = Database("sqlite://")
    meta = MetaData()
    table = SATable(
        "things",
        meta,
        SAColumn("id", Integer, primary_key=True),
        SAColumn("labels", JSON, nullable=False),
    )
    meta.create_all(db.engine)
    with db.engine.begin() as conn:
        conn.execute(table.insert(), [{"id": i, "labels": ls} for i, ls in enumerate(LABEL_SETS)])
    try:
        yield db, table
    finally:
        db.dispose()


@pytest.mark.parametrize("selector", SELECTORS)
def test_selector_clause_agrees_with_matches(
    labelled_db: tuple[Database, SATable], selector: str
) -> None:
    db, table = labelled_db
    reqs = parse_selector(selector)
    expected = {i for i, ls in enumerate(LABEL_SETS) if all(r.matches(ls) for r in reqs)}
    stmt = select(table.c.id).where(selector_clause(table.c.labels, reqs, db.dialect))
    with db.engine.connect() as conn:
        found = set(conn.scalars(stmt))
    assert found == expected


def test_selector_clause_examples(labelled_db: tuple[Database, SATable]) -> None:
    db, table = labelled_db

    def ids(selector: str) -> set[int]:
        clause = selector_clause(table.c.labels, parse_selector(selector), db.dialect)
        with db.engine.connect() as conn:
            return set(conn.scalars(select(table.c.id).where(clause)))

    assert ids("team=risk") == {1, 2}
    assert ids("team!=risk") == {0, 3, 4, 5, 6}
    assert ids("tier in (prod,dev)") == {2, 3, 4}
    assert ids("gpu") == {4}
    assert ids("!team") == {0, 5}
    assert ids("") == set(range(len(LABEL_SETS)))


@pytest.fixture
def project_db() -> Iterator[Database]:
    db = Database("sqlite://")
    Base.metadata.create_all(db.engine)
    try:
        yield db
    finally:
        db.dispose()


def test_selector_clause_on_a_resource_table(project_db: Database) -> None:
    with project_db.transaction() as session:
        for i, labels in enumerate(LABEL_SETS):
            session.add(ProjectRow(name=f"p{i}", labels=labels))
    reqs = parse_selector("team in (ml,risk),tier!=dev")
    with project_db.transaction() as session:
        stmt = select(ProjectRow.name).where(
            selector_clause(ProjectRow.labels, reqs, project_db.dialect)
        )
        names = set(session.scalars(stmt))
    assert names == {"p1", "p2", "p4"}


# --- pagination ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "position", [0, 42, "alpha", "", ["key/with/slash", "v0123"], {"a": 1}, "ünï©ødé"]
)
def test_page_token_round_trip(position: Any) -> None:
    token = encode_token(position)
    assert "=" not in token and "+" not in token and "/" not in token  # URL-safe
    assert decode_token(token) == position


@pytest.mark.parametrize("token", [None, ""])
def test_no_page_token_means_the_first_page(token: str | None) -> None:
    assert decode_token(token) is None


@pytest.mark.parametrize("token", ["!!!", "a", "abc", "not a token", "eyJ", "e30x", "%%%%"])
def test_bad_page_token_is_invalid_input(token: str) -> None:
    with pytest.raises(InvalidInput, match="page_token"):
        decode_token(token)


@pytest.mark.parametrize(("limit", "expected"), [(None, DEFAULT_LIMIT), (1, 1), (MAX_LIMIT, 1000)])
def test_check_limit_accepts(limit: int | None, expected: int) -> None:
    assert check_limit(limit) == expected


@pytest.mark.parametrize("limit", [0, -1, MAX_LIMIT + 1, 10**9])
def test_check_limit_refuses(limit: int) -> None:
    with pytest.raises(InvalidInput, match=f"between 1 and {MAX_LIMIT}"):
        check_limit(limit)


def test_paginate_visits_every_row_once_in_order(project_db: Database) -> None:
    names = [f"p{i:02d}" for i in range(11)]
    with project_db.transaction() as session:
        for name in reversed(names):
            session.add(ProjectRow(name=name))
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        with project_db.transaction() as session:
            rows, token = paginate(session, select(ProjectRow), ProjectRow.name, 3, token)
            seen += [r.name for r in rows]
        pages += 1
        assert len(rows) <= 3
        if token is None:
            break
    assert seen == names
    assert pages == 4


def test_paginate_exact_multiple_has_no_empty_last_page(project_db: Database) -> None:
    with project_db.transaction() as session:
        session.add_all([ProjectRow(name=f"q{i}") for i in range(4)])
    with project_db.transaction() as session:
        rows, token = paginate(session, select(ProjectRow), ProjectRow.name, 2, None)
        assert [r.name for r in rows] == ["q0", "q1"] and token is not None
        rows, token = paginate(session, select(ProjectRow), ProjectRow.name, 2, token)
        assert [r.name for r in rows] == ["q2", "q3"] and token is None


@pytest.mark.parametrize("position", [[1, 2], {"a": 1}, 1.5, True])
def test_paginate_refuses_a_token_of_the_wrong_shape(project_db: Database, position: Any) -> None:
    token = encode_token(position)
    with project_db.transaction() as session:
        with pytest.raises(InvalidInput, match="page_token"):
            paginate(session, select(ProjectRow), ProjectRow.name, 2, token)


# --- optimistic concurrency ------------------------------------------------------------------


def test_resource_version_increments_and_stale_writes_are_refused(project_db: Database) -> None:
    with project_db.transaction() as session:
        row = ProjectRow(name="versioned")
        session.add(row)
    assert row.resource_version == 1
    with project_db.transaction() as session:
        current = session.scalar(select(ProjectRow).where(ProjectRow.name == "versioned"))
        assert current is not None
        check_version(current, 1, "project")
        check_version(current, None, "project")
        current.description = "changed"
    assert current.resource_version == 2
    with pytest.raises(StaleResource) as info:
        check_version(current, 1, "project")
    assert info.value.extra["current_resource_version"] == 2
    assert "resource_version 2, not 1" in info.value.detail
    assert "'versioned'" in info.value.detail


def test_concurrent_write_to_a_stale_row_is_stale_resource(project_db: Database) -> None:
    with project_db.transaction() as session:
        session.add(ProjectRow(name="raced"))
    with project_db.transaction() as session:
        stale = session.scalar(select(ProjectRow).where(ProjectRow.name == "raced"))
    assert stale is not None
    with project_db.transaction() as session:
        fresh = session.scalar(select(ProjectRow).where(ProjectRow.name == "raced"))
        assert fresh is not None
        fresh.description = "first"
    with pytest.raises(StaleResource):
        with project_db.transaction() as session:
            session.add(stale)
            stale.description = "second"


def test_labels_column_defaults_to_empty(project_db: Database) -> None:
    with project_db.transaction() as session:
        session.add(ProjectRow(name="plain"))
    with project_db.transaction() as session:
        row = session.scalar(select(ProjectRow).where(ProjectRow.name == "plain"))
        assert row is not None and row.labels == {} and row.uid
