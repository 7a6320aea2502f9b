"""Redaction: URLs keep where they go and lose what may be a credential; log lines formatted
by `RedactingFormatter` carry no URL credential and no API key secret."""

from __future__ import annotations

import logging

import pytest

from stratus.core.redaction import RedactingFormatter, redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://example.com/hook?token=SECRET", "https://example.com/hook?token=****"),
        ("http://127.0.0.1:8080/a/b?x=1&token=SECRET#frag", "http://127.0.0.1:8080/a/b?x=****&token=****"),
        ("https://user:SECRET@example.com/in", "https://example.com/in"),
        ("https://hooks.slack.com/services/T0/B0/SECRET", "https://hooks.slack.com/****"),
        ("https://discord.com/api/webhooks/1/SECRET", "https://discord.com/****"),
        ("https://acme.webhook.office.com/webhookb2/SECRET", "https://acme.webhook.office.com/****"),
        ("http://[::1]:9000/p?SECRET", "http://[::1]:9000/p?****"),
        ("https://example.com", "https://example.com"),
        ("not a url SECRET", "****"),
        ("http://[bad/SECRET", "****"),
    ],
)  # fmt: skip
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "SECRET" not in redact_url(url)


def test_redact_text_masks_urls_and_api_keys_in_a_line() -> None:
    line = (
        'HTTP Request: POST https://hooks.example.com/in?token=SECRET1 "HTTP/1.1 200 OK" '
        "key stk_0123abcd_SECRET2-x_y and https://hooks.slack.com/services/T/B/SECRET3."
    )
    text = redact_text(line)
    assert "SECRET" not in text
    assert "https://hooks.example.com/in?token=****" in text
    assert "stk_0123abcd_****" in text and '"HTTP/1.1 200 OK"' in text
    assert redact_text("nothing to hide here") == "nothing to hide here"


def test_the_formatter_redacts_arguments_and_tracebacks() -> None:
    formatter = RedactingFormatter("%(levelname)s %(message)s")
    try:
        raise RuntimeError("failed to reach https://x.example/p?token=SECRET1")
    except RuntimeError:
        import sys

        record = logging.LogRecord(
            "t", logging.ERROR, __file__, 1, "posting to %s failed", ("http://u:SECRET2@h/p",),
            sys.exc_info(),
        )  # fmt: skip
    out = formatter.format(record)
    assert "SECRET" not in out
    assert "posting to http://h/p failed" in out and "RuntimeError" in out
