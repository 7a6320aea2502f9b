"""A plain-http platform costs the SDK no trust store, and is trusted with nothing else."""

from __future__ import annotations

import ssl

from stratus.client import Client


def test_plain_http_loads_no_trust_store_and_trusts_no_certificate() -> None:
    with Client(url="http://127.0.0.1:8700", api_key="stk_x") as client:
        pool = client._http._transport._pool  # type: ignore[attr-defined]
        context = pool._ssl_context
        assert isinstance(context, ssl.SSLContext)
        assert context.get_ca_certs() == []  # nothing loaded, so nothing trusted
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_https_verifies_against_the_system_trust_store() -> None:
    with Client(url="https://stratus.example:8700", api_key="stk_x") as client:
        context = client._http._transport._pool._ssl_context  # type: ignore[attr-defined]
        assert context.get_ca_certs()  # the default bundle
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
