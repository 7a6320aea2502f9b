"""The SDK's public surface is a decision: changing it must change this test too."""

from __future__ import annotations

import stratus


def test_exported_members() -> None:
    assert sorted(stratus.__all__) == [
        "AlreadyExists",
        "Client",
        "Conflict",
        "DataCorrupted",
        "InvalidInput",
        "NotFound",
        "PermissionDenied",
        "Prediction",
        "ServiceUnavailable",
        "StaleResource",
        "StratusError",
        "Unauthenticated",
        "__version__",
        "errors",
    ]
    for name in stratus.__all__:
        assert hasattr(stratus, name), name


def test_client_methods_are_public_and_documented() -> None:
    client = stratus.Client(url="http://127.0.0.1:1", api_key="stk_x_y")
    try:
        for api in (
            "projects",
            "users",
            "keys",
            "service_accounts",
            "buckets",
            "models",
            "endpoints",
            "audit",
        ):
            assert hasattr(client, api), api
        assert stratus.Client.__doc__ and "Args:" in stratus.Client.__doc__
    finally:
        client.close()


def test_errors_are_the_servers_classes() -> None:
    from stratus.core import errors as core

    assert stratus.NotFound is core.NotFound
    assert stratus.errors.StratusError is core.StratusError
