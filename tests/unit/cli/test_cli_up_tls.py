"""The URL `stratus up` prints and writes into the credentials file: https with TLS, and over
https an every-interface address becomes the loopback one, which the certificate names."""

from __future__ import annotations

import pytest

from stratus.cli.up import _url


@pytest.mark.parametrize(
    ("host", "https", "url"),
    [
        ("127.0.0.1", False, "http://127.0.0.1:8700"),
        ("0.0.0.0", False, "http://0.0.0.0:8700"),  # as before
        ("::1", False, "http://[::1]:8700"),
        ("127.0.0.1", True, "https://127.0.0.1:8700"),
        ("10.0.0.5", True, "https://10.0.0.5:8700"),
        ("0.0.0.0", True, "https://127.0.0.1:8700"),
        ("::", True, "https://[::1]:8700"),
        ("stratus.internal", True, "https://stratus.internal:8700"),
    ],
)
def test_the_platform_url(host: str, https: bool, url: str) -> None:
    assert _url(host, 8700, https=https) == url
