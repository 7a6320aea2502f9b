"""The one error hierarchy: statuses, codes, and the round trip through problem+json."""

from __future__ import annotations

import pytest

from stratus.core.errors import (
    ERRORS,
    AlreadyExists,
    Conflict,
    DataCorrupted,
    GatewayTimeout,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PermanentError,
    PermissionDenied,
    ReconcileError,
    ServiceUnavailable,
    StaleResource,
    StratusError,
    TemporaryError,
    Unauthenticated,
    error_from_problem,
)

EXPECTED: list[tuple[type[StratusError], int, str, type[StratusError] | None]] = [
    (StratusError, 500, "internal-error", None),
    (InvalidInput, 400, "invalid-input", StratusError),
    (PayloadTooLarge, 413, "payload-too-large", InvalidInput),
    (MethodNotAllowed, 405, "method-not-allowed", InvalidInput),
    (Unauthenticated, 401, "unauthenticated", StratusError),
    (PermissionDenied, 403, "permission-denied", StratusError),
    (NotFound, 404, "not-found", StratusError),
    (Conflict, 409, "conflict", StratusError),
    (AlreadyExists, 409, "already-exists", Conflict),
    (StaleResource, 409, "stale-resource", Conflict),
    (DataCorrupted, 500, "data-corrupted", StratusError),
    (ServiceUnavailable, 503, "service-unavailable", StratusError),
    (GatewayTimeout, 504, "gateway-timeout", StratusError),
    (ReconcileError, 500, "reconcile-error", StratusError),
    (PermanentError, 500, "permanent-error", ReconcileError),
    (TemporaryError, 500, "temporary-error", ReconcileError),
]


@pytest.mark.parametrize(("cls", "status", "code", "parent"), EXPECTED)
def test_status_code_and_place_in_the_hierarchy(
    cls: type[StratusError], status: int, code: str, parent: type[StratusError] | None
) -> None:
    assert cls.status == status
    assert cls.code == code
    assert cls.title
    if parent is not None:
        assert cls.__bases__ == (parent,)
    assert issubclass(cls, Exception)


def test_registry_holds_every_class_under_its_own_code() -> None:
    assert {cls for cls, *_ in EXPECTED} <= set(ERRORS.values())
    for code, cls in ERRORS.items():
        assert cls.code == code
        assert issubclass(cls, StratusError)


def test_service_errors_register_themselves_and_codes_are_unique() -> None:
    from stratus.registry.flavors.base import ModelLoadError

    assert ERRORS["model-load-error"] is ModelLoadError
    rebuilt = error_from_problem(400, ModelLoadError("bad file").to_problem())
    assert type(rebuilt) is ModelLoadError
    with pytest.raises(TypeError, match="taken"):

        class Impostor(StratusError):  # noqa: F841
            code = "not-found"


@pytest.mark.parametrize("cls", sorted(ERRORS.values(), key=lambda c: c.code), ids=lambda c: c.code)
def test_every_class_round_trips_through_problem_json(cls: type[StratusError]) -> None:
    original = cls("something went wrong: 'x'", current_resource_version=7, hint="retry")
    body = original.to_problem(instance="/api/v1/things/x")
    assert body["type"] == f"https://stratus.dev/errors/{cls.code}"
    assert body["status"] == cls.status
    assert body["code"] == cls.code
    assert body["title"] == cls.title
    assert body["detail"] == "something went wrong: 'x'"
    assert body["instance"] == "/api/v1/things/x"
    assert body["current_resource_version"] == 7

    rebuilt = error_from_problem(cls.status, body)
    assert type(rebuilt) is cls
    assert rebuilt.detail == original.detail
    assert str(rebuilt) == original.detail
    assert rebuilt.extra == {"current_resource_version": 7, "hint": "retry"}


def test_problem_without_instance_leaves_it_out() -> None:
    body = NotFound("gone").to_problem()
    assert "instance" not in body
    assert set(body) == {"type", "title", "status", "detail", "code"}


def test_temporary_error_keeps_its_delay() -> None:
    assert TemporaryError("later", delay=2.5).delay == 2.5
    assert TemporaryError("later").delay == 1.0


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, InvalidInput),
        (401, Unauthenticated),
        (403, PermissionDenied),
        (404, NotFound),
        (409, Conflict),
        (413, PayloadTooLarge),
        (503, ServiceUnavailable),
        (500, StratusError),
        (418, StratusError),
        (502, StratusError),
    ],
)
def test_unknown_code_falls_back_to_the_status(status: int, cls: type[StratusError]) -> None:
    error = error_from_problem(status, {"code": "from-a-newer-server", "detail": "hm"})
    assert type(error) is cls
    assert error.detail == "hm"
    assert error.extra == {}


def test_validation_errors_from_the_server_are_invalid_input() -> None:
    body = {"status": 422, "code": "invalid-input", "detail": "name: bad", "errors": [{"a": 1}]}
    error = error_from_problem(422, body)
    assert type(error) is InvalidInput
    assert error.extra == {"errors": [{"a": 1}]}


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"title": "Not found"}, "Not found"),
        ({}, "HTTP 404"),
        ({"detail": "", "title": ""}, "HTTP 404"),
    ],
)
def test_detail_falls_back_to_title_then_status(body: dict[str, str], detail: str) -> None:
    error = error_from_problem(404, body)
    assert isinstance(error, NotFound)
    assert error.detail == detail


def test_except_clauses_catch_by_family() -> None:
    with pytest.raises(Conflict):
        raise error_from_problem(409, {"code": "stale-resource", "detail": "x"})
    with pytest.raises(InvalidInput):
        raise error_from_problem(413, {"code": "payload-too-large", "detail": "x"})
