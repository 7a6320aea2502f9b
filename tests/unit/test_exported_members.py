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
        "tracking",
        "training",
    ]
    for name in stratus.__all__:
        assert hasattr(stratus, name), name


def test_tracking_members() -> None:
    assert sorted(stratus.tracking.__all__) == [
        "ActiveRun",
        "active_run",
        "end_run",
        "log_artifact",
        "log_metric",
        "log_metrics",
        "log_model",
        "log_param",
        "log_params",
        "resume_run",
        "set_tags",
        "start_run",
    ]
    for name in stratus.tracking.__all__:
        assert callable(getattr(stratus.tracking, name)), name
    assert stratus.tracking.start_run.__doc__ and "Args:" in stratus.tracking.start_run.__doc__


def test_training_members() -> None:
    assert sorted(stratus.training.__all__) == [
        "Checkpoint",
        "JobContext",
        "checkpoint",
        "current_job",
        "preempted",
    ]
    assert (
        stratus.training.Checkpoint.save.__doc__
        and "Args:" in stratus.training.Checkpoint.save.__doc__
    )


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
            "datasets",
            "experiments",
            "endpoints",
            "jobs",
            "pipelines",
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
