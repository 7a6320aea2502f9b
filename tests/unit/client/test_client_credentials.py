"""The credentials file's profiles: the default one at the top level (a file from before
profiles reads as it), named ones beside it, mode 0600, and the environment's precedence."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from stratus.client import Client
from stratus.client.credentials import (
    Credentials,
    load_profiles,
    read_credentials,
    write_credentials,
)
from stratus.core.errors import InvalidInput

ENV = ("STRATUS_URL", "STRATUS_API_KEY", "STRATUS_PROJECT", "STRATUS_PROFILE", "STRATUS_HOME")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def test_a_file_from_before_profiles_is_the_default_profile(tmp_path: Path) -> None:
    (tmp_path / "credentials").write_text(
        json.dumps({"url": "http://127.0.0.1:9", "api_key": "stk_a_b", "user": "admin"})
    )
    creds = read_credentials(tmp_path)
    assert creds == Credentials(url="http://127.0.0.1:9", api_key="stk_a_b", user="admin")
    assert load_profiles(tmp_path).current == "default"


def test_writing_a_profile_keeps_the_others_and_the_file_private(tmp_path: Path) -> None:
    write_credentials(Credentials(url="http://a", api_key="stk_1_x", user="admin"), tmp_path)
    write_credentials(
        Credentials(url="http://b", token="t.o.k", user="alice", project="fraud"),
        tmp_path,
        "alice",
        make_current=True,
    )
    path = tmp_path / "credentials"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["api_key"] == "stk_1_x" and data["url"] == "http://a"  # default: top level
    assert data["profiles"] == {
        "alice": {"url": "http://b", "token": "t.o.k", "user": "alice", "project": "fraud"}
    }
    assert data["current"] == "alice"
    assert read_credentials(tmp_path).user == "alice"  # type: ignore[union-attr]
    assert read_credentials(tmp_path, "default").user == "admin"  # type: ignore[union-attr]
    assert read_credentials(tmp_path, "nobody") is None


def test_stratus_profile_chooses_and_a_bad_name_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_credentials(Credentials(url="http://a", api_key="stk_1_x", user="admin"), tmp_path)
    write_credentials(Credentials(url="http://b", api_key="stk_2_y", user="bob"), tmp_path, "bob")
    assert read_credentials(tmp_path).user == "admin"  # type: ignore[union-attr]
    monkeypatch.setenv("STRATUS_PROFILE", "bob")
    assert read_credentials(tmp_path).user == "bob"  # type: ignore[union-attr]
    with pytest.raises(InvalidInput, match="profile name"):
        write_credentials(Credentials(), tmp_path, "../evil")


def test_the_environment_wins_over_the_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_credentials(
        Credentials(url="http://127.0.0.1:1", api_key="stk_p_k", project="fraud"),
        tmp_path,
        "team",
        make_current=True,
    )
    with Client(home=tmp_path) as c:
        assert (c.url, c.api_key, c.default_project) == ("http://127.0.0.1:1", "stk_p_k", "fraud")
    monkeypatch.setenv("STRATUS_URL", "http://127.0.0.1:2")
    monkeypatch.setenv("STRATUS_API_KEY", "stk_e_k")
    monkeypatch.setenv("STRATUS_PROJECT", "other")
    with Client(home=tmp_path) as c:
        assert (c.url, c.api_key, c.default_project) == ("http://127.0.0.1:2", "stk_e_k", "other")


def test_a_profile_that_does_not_exist_is_an_error_unless_a_key_is_given(tmp_path: Path) -> None:
    write_credentials(Credentials(url="http://a", api_key="stk_1_x"), tmp_path)
    with pytest.raises(InvalidInput, match="no profile 'typo'.*stratus login --profile typo"):
        Client(home=tmp_path, profile="typo")
    with Client(home=tmp_path, profile="typo", api_key="stk_2_y") as c:
        assert c.api_key == "stk_2_y"
