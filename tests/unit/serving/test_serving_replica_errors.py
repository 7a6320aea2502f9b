"""A replica's answers when the model fails: the caller reads what went wrong in one line, the
replica's log keeps the traceback; a bug in the replica says only its type."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from stratus.registry.batches import Batch
from stratus.registry.flavors.base import prediction_failed
from stratus.serving.replica import Replica, ReplicaSpec
from stratus.serving.wire import Kind


class Failing:
    supports_batching = False

    def __init__(self, error: Exception) -> None:
        self.error = error

    def predict(self, batch: Batch) -> Any:
        raise self.error


def library_call() -> None:
    raise ValueError("no good at /opt/lib/site-packages/thing/core.py:12")


def library_error() -> Exception:
    try:
        library_call()
    except ValueError as exc:
        return prediction_failed(exc)
    raise AssertionError("library_call raises")


def answer(tmp_path: Path, error: Exception) -> tuple[int, str]:
    spec = ReplicaSpec(
        model_dir=tmp_path, flavor="python", model_name="m", model_version=1,
        secret="s" * 32,
    )  # fmt: skip

    async def main() -> tuple[int, bytes]:
        replica = Replica(spec, Failing(error))
        try:
            return await replica.answer(Kind.PLAIN_PREDICT, "", b'{"instances": [[1.0]]}', 9)
        finally:
            await replica.close()

    status, body = asyncio.run(main())
    return status, body.decode()


def test_a_model_failure_is_told_without_its_traceback_which_goes_to_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="stratus.replica"):
        status, body = answer(tmp_path, library_error())
    assert status == 400
    detail = orjson.loads(body)["detail"]
    assert detail == "the model failed to predict: ValueError: no good at <path>"
    assert "Traceback" not in body and "core.py" not in body and "/opt" not in body
    assert "Traceback" in caplog.text and "in library_call" in caplog.text


def test_a_bug_is_a_500_that_names_no_internals(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="stratus.replica"):
        status, body = answer(tmp_path, RuntimeError("state at /srv/stratus/x.py is bad"))
    assert status == 500
    assert "RuntimeError" in body and "/srv" not in body and "x.py" not in body, body
    assert "/srv/stratus/x.py" in caplog.text  # the log keeps the whole story
