"""Where notifications may go: internal addresses are refused (in every spelling) unless an
admin allows their network; sending checks again and connects to the address it checked, so
a DNS answer that changes in between cannot turn a channel inward; and a stored secret
(`****`) is only kept while the channel goes to the same place."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from stratus.core.errors import InvalidInput
from stratus.monitoring.alert_schemas import ChannelApply
from stratus.monitoring.channels import _merge_secrets
from stratus.monitoring.destinations import DestinationRefused, NetworkPolicy
from stratus.monitoring.notifications import ChannelConfig, Notification, send
from stratus.testing import WebhookReceiver

N = Notification(
    rule="r", project="p", state="firing", severity="info", metric="m", comparison=">",
    threshold=1.0, value=2.0, labels={}, summary="s", started_at=datetime(2026, 1, 1, tzinfo=UTC),
)  # fmt: skip
STRICT = NetworkPolicy()
LOOPBACK = NetworkPolicy.allowing(["127.0.0.0/8"])

INTERNAL = [
    "127.0.0.1", "127.1.2.3", "localhost", "2852039166", "0x7f.1", "0177.0.0.1", "10.0.0.1",
    "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1",
    "240.0.0.1", "::1", "[::1]", "::", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
    "fe80::1", "fd00::1", "ff02::1", "2002:7f00:1::1",
]  # fmt: skip


@pytest.mark.parametrize("host", INTERNAL)
def test_internal_addresses_are_refused_in_every_spelling(host: str) -> None:
    with pytest.raises(DestinationRefused, match="address; notifications go to public"):
        STRICT.check(host, 443)


@pytest.mark.parametrize("host", ["8.8.8.8", "2606:4700::1", "::ffff:8.8.8.8"])
def test_public_addresses_pass(host: str) -> None:
    assert STRICT.check(host, 443)


def test_an_allowed_network_is_reachable_and_only_it() -> None:
    allowed = NetworkPolicy.allowing(["127.0.0.0/8", "10.1.0.0/16"])
    for host in ("127.0.0.1", "localhost", "::ffff:127.0.0.1", "10.1.2.3"):
        assert allowed.check(host, 80)
    for host in ("10.2.0.1", "::1", "169.254.169.254"):
        with pytest.raises(DestinationRefused):
            allowed.check(host, 80)


def test_the_message_names_the_name_and_the_address() -> None:
    with pytest.raises(
        DestinationRefused, match=r"^localhost resolves to 127\.0\.0\.1, a loopback"
    ):
        STRICT.check("localhost", 80)
    with pytest.raises(DestinationRefused, match=r"^169\.254\.169\.254 is a link-local address"):
        STRICT.check("169.254.169.254", 80)


# --- sending: checked again, connected to the checked address ---------------------------------


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """Answers 502 with a page the sender must neither read nor show."""
    with WebhookReceiver(answer=lambda path: (502, b"internal secret page: root:x:0:0")) as hooks:
        yield hooks


Answers = Callable[[], list[str]]


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, Answers]:
    """Names under .example.test answer what the test says (the rest resolve as usual)."""
    names: dict[str, Answers] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host in names:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in names[host]()]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names


def test_sending_refuses_an_internal_address(receiver: WebhookReceiver) -> None:
    port = receiver.port
    for url in (f"http://127.0.0.1:{port}/x", f"http://localhost:{port}/x"):
        result = send(ChannelConfig("hook", "webhook", url=url, networks=STRICT), N, timeout=5)
        assert not result.ok and "refused to send to" in result.detail
        assert "loopback" in result.detail
    mail = ChannelConfig("mail", "email", to=("a@b.io",), sender="s@b.io",
                         smtp_host="127.0.0.1", smtp_port=port, networks=STRICT)  # fmt: skip
    result = send(mail, N, timeout=5)
    assert not result.ok and "loopback" in result.detail
    assert receiver.requests == []


def test_a_dns_answer_that_turns_inward_is_refused_when_sending(
    receiver: WebhookReceiver, dns: dict[str, Answers]
) -> None:
    port = receiver.port
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])  # public when applied, loopback later
    dns["rebind.example.test"] = lambda: next(answers)
    STRICT.check("rebind.example.test", port)  # what applying the channel sees
    channel = ChannelConfig(
        "hook", "webhook", url=f"http://rebind.example.test:{port}/x", networks=STRICT
    )
    result = send(channel, N, timeout=5)
    assert not result.ok
    assert "rebind.example.test resolves to 127.0.0.1, a loopback address" in result.detail
    assert receiver.requests == []


def test_sending_connects_to_the_checked_address_and_names_the_host(
    receiver: WebhookReceiver, dns: dict[str, Answers]
) -> None:
    port = receiver.port
    lookups: list[str] = []
    dns["hooks.example.test"] = lambda: lookups.append("x") or ["127.0.0.1"]
    channel = ChannelConfig(
        "hook", "webhook", url=f"http://hooks.example.test:{port}/in?token=t0k", networks=LOOPBACK
    )
    result = send(channel, N, timeout=5)
    assert len(lookups) == 1  # resolved once, to check; the connection used that answer
    assert receiver.requests[0].headers["host"] == f"hooks.example.test:{port}"
    # the answer's status is kept, its body ("internal secret page…") is neither read nor shown
    assert result.detail == f"http://hooks.example.test:{port} answered HTTP 502"


def test_smtp_connects_to_the_checked_address(dns: dict[str, Answers]) -> None:
    controller_module = pytest.importorskip("aiosmtpd.controller")
    from stratus.testing import free_port

    got: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            got.append(envelope)
            return "250 OK"

    port = free_port()
    controller = controller_module.Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        dns["mail.example.test"] = lambda: ["127.0.0.1"]
        mail = ChannelConfig("mail", "email", to=("a@b.io",), sender="s@b.io",
                             smtp_host="mail.example.test", smtp_port=port, starttls=False,
                             networks=LOOPBACK)  # fmt: skip
        result = send(mail, N, timeout=5)
        assert result.ok, result.detail
        assert result.detail == f"sent by mail.example.test:{port} to 1 recipient(s)"
        assert len(got) == 1
        dns["mail.example.test"] = lambda: ["169.254.169.254"]
        refused = send(mail, N, timeout=5)
        assert not refused.ok and "link-local" in refused.detail
    finally:
        controller.stop()


# --- a stored secret goes only where it was given for ---------------------------------------

HOOK = "https://alerts.example.com/in"
STORED = {"url": HOOK, "headers": {"Authorization": "Bearer s3cret"}}


def hook(url: str) -> ChannelApply:
    return ChannelApply(name="c", type="webhook", url=url, headers={"Authorization": "****"})


@pytest.mark.parametrize(
    "url", [HOOK, "https://alerts.example.com:443/in", "https://ALERTS.example.com/in?x=1"]
)
def test_a_masked_header_is_kept_for_the_same_url(url: str) -> None:
    merged = _merge_secrets(hook(url), STORED, {"url": HOOK})
    assert merged["headers"] == {"Authorization": "Bearer s3cret"}


@pytest.mark.parametrize(
    "url",
    [
        "https://attacker.example.net/in",
        "http://alerts.example.com/in",
        "https://alerts.example.com:8443/in",
        "https://alerts.example.com/other",
    ],
)
def test_a_masked_header_is_not_sent_to_a_new_url(url: str) -> None:
    with pytest.raises(InvalidInput, match=r"^headers\.Authorization: .*give the value"):
        _merge_secrets(hook(url), STORED, {"url": HOOK})


MAIL_CONFIG = {"smtp_host": "smtp.example.com", "smtp_port": 587, "username": "stratus"}


def mail(**change: Any) -> ChannelApply:
    spec = {"name": "m", "type": "email", "to": ["a@example.com"], "sender": "s@example.com",
            "smtp_host": "smtp.example.com", "smtp_port": 587, "username": "stratus",
            "password": "****", **change}  # fmt: skip
    return ChannelApply.model_validate(spec)


def test_a_masked_smtp_password_is_kept_only_for_the_same_server_and_user() -> None:
    stored = {"password": "pa55"}
    assert _merge_secrets(mail(), stored, MAIL_CONFIG)["password"] == "pa55"
    assert _merge_secrets(mail(smtp_host="SMTP.example.com"), stored, MAIL_CONFIG)
    for change in ({"smtp_host": "evil.example.net"}, {"smtp_port": 2525}, {"username": "x"}):
        with pytest.raises(InvalidInput, match="^password: .*give the password"):
            _merge_secrets(mail(**change), stored, MAIL_CONFIG)
    assert _merge_secrets(mail(smtp_host="evil.example.net", password="new"), stored, MAIL_CONFIG)


def test_https_names_the_host_in_tls_while_connecting_to_the_checked_address(
    dns: dict[str, Answers], tmp_path: Any
) -> None:
    """The TLS handshake asks for the channel's host (SNI), so its certificate is checked
    against that name and not against the address; here the certificate is self-signed, so
    the check fails, after the server saw which name was asked for."""
    import ssl
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tls.example.test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    names: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    context.sni_callback = lambda _sock, server_name, _ctx: names.append(server_name)  # type: ignore[assignment,func-returns-value]
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            pass  # the client gives up on the unknown certificate
        finally:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        dns["tls.example.test"] = lambda: ["127.0.0.1"]
        channel = ChannelConfig(
            "hook", "webhook", url=f"https://tls.example.test:{port}/in", networks=LOOPBACK
        )
        result = send(channel, N, timeout=5)
        thread.join(5)
    finally:
        listener.close()
    assert names == ["tls.example.test"]
    assert not result.ok
