"""Channels through the API, on a platform that allows one loopback address (127.0.0.2) and
nothing else internal: a channel at loopback, a private range, the metadata address (in any
spelling) or a name resolving to loopback is refused with a 400 naming the address; the
allowed one is accepted; and a stored secret (`****`) is kept only while the channel goes to
the same place."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from stratus.testing import LocalPlatform

ALLOWED = "127.0.0.2"
C = "/notification-channels"


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    platform = LocalPlatform(
        tmp_path_factory.mktemp("destinations-home"),
        env={"STRATUS_MONITORING_ALLOWED_NOTIFICATION_NETWORKS": f"{ALLOWED}/32"},
    )
    platform.start()
    try:
        with httpx.Client(
            base_url=f"{platform.url}/api/v1/projects/default",
            headers={"authorization": f"Bearer {platform.api_key}"},
        ) as client:
            yield client
    finally:
        platform.stop()


@pytest.mark.parametrize(
    ("host", "shown"),
    [
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("10.0.0.1", "10.0.0.1 is a private address"),
        ("169.254.169.254", "169.254.169.254 is a link-local address"),
        ("2852039166", "2852039166 resolves to 169.254.169.254, a link-local address"),
        ("[::1]", "::1 is a loopback address"),
        ("[::ffff:127.0.0.1]", "is a loopback address"),
        ("localhost", "localhost resolves to 127.0.0.1, a loopback address"),
    ],
)
def test_internal_addresses_are_refused(http: httpx.Client, host: str, shown: str) -> None:
    for kind in ("webhook", "slack"):
        answer = http.put(C, json={"name": "c", "type": kind, "url": f"http://{host}:9/x"})
        assert answer.status_code == 400, answer.text
        detail = answer.json()["detail"]
        assert detail.startswith("url: ") and shown in detail
        assert "allowed_notification_networks" in detail
    mail = {"name": "m", "type": "email", "to": ["a@example.com"], "sender": "s@example.com",
            "smtp_host": host.strip("[]")}  # fmt: skip
    answer = http.put(C, json=mail)
    assert answer.status_code == 400 and answer.json()["detail"].startswith("smtp_host: ")
    assert http.get(f"{C}/c").status_code == 404


def test_an_allowed_network_is_accepted(http: httpx.Client) -> None:
    for url in (f"http://{ALLOWED}:9/x", f"http://[::ffff:{ALLOWED}]:9/x"):
        answer = http.put(C, json={"name": "ok", "type": "webhook", "url": url})
        assert answer.status_code in (200, 201), answer.text
    http.delete(f"{C}/ok")


def test_a_stored_header_is_not_sent_to_a_new_url(http: httpx.Client) -> None:
    first = {
        "name": "moving", "type": "webhook", "url": f"http://{ALLOWED}:9/in",
        "headers": {"Authorization": "Bearer s3cret"},
    }  # fmt: skip
    assert http.put(C, json=first).status_code == 201
    masked = {**first, "headers": {"Authorization": "****"}}
    assert http.put(C, json=masked).status_code == 200  # the same url: kept
    moved = http.put(C, json={**masked, "url": f"http://{ALLOWED}:10/in"})
    assert moved.status_code == 400
    assert moved.json()["detail"].startswith("headers.Authorization: '****' keeps the stored")
    given = http.put(C, json={**first, "url": f"http://{ALLOWED}:10/in"})
    assert given.status_code == 200
    http.delete(f"{C}/moving")


def test_a_stored_smtp_password_is_not_sent_to_a_new_server(http: httpx.Client) -> None:
    first = {
        "name": "mail", "type": "email", "to": ["a@example.com"], "sender": "s@example.com",
        "smtp_host": ALLOWED, "smtp_port": 2525, "username": "stratus", "password": "pa55",
    }  # fmt: skip
    assert http.put(C, json=first).status_code == 201
    assert http.put(C, json={**first, "password": "****"}).status_code == 200
    for change in ({"smtp_port": 2526}, {"username": "other"}):
        moved = http.put(C, json={**first, **change, "password": "****"})
        assert moved.status_code == 400, change
        assert moved.json()["detail"].startswith("password: '****' keeps the stored password")
    http.delete(f"{C}/mail")


def test_names_that_do_not_resolve_are_left_to_sending(http: httpx.Client) -> None:
    answer = http.put(
        C, json={"name": "later", "type": "webhook", "url": "https://hooks.invalid/x"}
    )
    assert answer.status_code == 201, answer.text
    http.delete(f"{C}/later")
