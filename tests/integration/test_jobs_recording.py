"""How a job's end is recorded when things go wrong: after a restart (no data key cached, the
log blob written inside the job's transaction), and when one job's end cannot be recorded at
all (the scheduling pass goes on for the others). An in-process platform on SQLite, and on
PostgreSQL where the `postgres` marker runs."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stratus.api.platform import Platform
from stratus.compute.backend import JobHandle, JobState, JobStatus
from stratus.compute.local_jobs import LocalJobHandle
from stratus.core.errors import ServiceUnavailable
from stratus.iam.principals import Principal
from stratus.jobs import schemas as s
from stratus.jobs.controller import (
    FINISH_ATTEMPTS,
    JobController,
    JobControllerConfig,
)
from stratus.jobs.schemas import JobPhase
from stratus.storage.keyring import Keyring

ADMIN = Principal(kind="user", uid="u-admin", name="admin", is_admin=True)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None (SQLite in the home), or a fresh PostgreSQL database of this test's own."""
    if request.param == "sqlite":
        yield None
        return
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(request.getfixturevalue("postgres_url"))
    name = f"jobs_{uuid.uuid4().hex[:12]}"
    server = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield url.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def platform(embedded_platform: Callable[..., Platform], database_url: str | None) -> Platform:
    return embedded_platform(db={"url": database_url})


def running_job(platform: Platform, name: str) -> str:
    """A job the scheduler started (its process is whatever the backend says)."""
    trainer = s.TrainerSpec(estimator="sklearn.dummy.DummyClassifier")
    # no dataset: the job never runs, so the request's checks are skipped
    data = s.JobCreate.model_construct(name=name, trainer=trainer)
    job, _ = platform.jobs.submit("default", data, ADMIN)
    uid = job.metadata.uid
    handle = LocalJobHandle(
        job_id=uid,
        node="here",
        pid=1,
        log_path=Path("/nonexistent") / f"{uid}.log",
        started_at=0.0,
        process_start_ticks=None,
        enforcement="rlimit",
    )
    platform.jobs.mark_started(uid, platform.jobs.backend.job_record(handle), "rlimit")
    return uid


def default_project(platform: Platform) -> str:
    with platform.db.reading() as session:
        return platform.iam.project_uid(session, "default")


def restart_keyring(platform: Platform) -> None:
    """What a restarted control plane has: the same database, no data key in memory."""
    platform.blobs.keyring = Keyring(platform.db, Platform.master_key(platform.settings))


def test_a_job_that_ends_after_a_restart_is_recorded(platform: Platform) -> None:
    uid = running_job(platform, "after-restart")
    platform.blobs.write(default_project(platform), [b"the project has a data key"])
    platform.jobs.mark_exited(uid, phase=JobPhase.queued, exit_code=1, message="", log=b"one\n")
    platform.jobs.mark_started(uid, platform.jobs.active()[0].handle or {}, "rlimit")
    restart_keyring(platform)

    # The old log is read, and the longer one written, inside the job's transaction.
    platform.jobs.mark_exited(
        uid, phase=JobPhase.succeeded, exit_code=0, message="succeeded", log=b"two\n"
    )

    job = platform.jobs.get("default", "after-restart")
    assert job.status.phase == JobPhase.succeeded
    log, _ = platform.jobs.read_log("default", "after-restart", 0)
    assert log == b"one\ntwo\n"


def test_a_project_first_key_made_inside_a_transaction_survives_its_rollback(
    platform: Platform,
) -> None:
    project_uid = default_project(platform)
    with pytest.raises(RuntimeError, match="rolled back"), platform.db.transaction():
        info = platform.blobs.write(project_uid, [b"written under a brand-new key"])
        raise RuntimeError("rolled back")
    restart_keyring(platform)  # the key was written again, so the blob still decrypts
    assert b"".join(platform.blobs.open(project_uid, info.sha256)) == (
        b"written under a brand-new key"
    )


class Backend:
    """Every job has exited; reading one job's log fails as `failures` says."""

    def __init__(self, failures: dict[str, Exception]) -> None:
        self.failures = failures
        self.released: list[str] = []

    def job_from_record(self, record: dict[str, Any]) -> JobHandle:
        return LocalJobHandle(**{**record, "log_path": Path(record["log_path"])})

    def job_status(self, handle: JobHandle) -> JobStatus:
        return JobStatus(JobState.exited, exit_code=0)

    def read_job_log(self, handle: JobHandle, offset: int) -> bytes:
        failure = self.failures.get(handle.job_id)
        if failure is not None:
            raise failure
        return b"" if offset else b"done\n"

    def release_job(self, handle: JobHandle) -> None:
        self.released.append(handle.job_id)


def test_one_job_that_cannot_be_recorded_does_not_stall_the_others(
    platform: Platform, tmp_path: Path
) -> None:
    broken, down, fine = (running_job(platform, n) for n in ("broken", "down", "fine"))
    backend = Backend(
        {
            broken: RuntimeError("a bug in recording this job"),
            down: ServiceUnavailable("the store is down"),
        }
    )
    controller = JobController(
        platform.jobs,
        backend,  # type: ignore[arg-type]
        platform.job_controller.signer,
        JobControllerConfig(work_dir=tmp_path / "jobs", url="http://127.0.0.1:9"),
    )

    def phases() -> dict[str, JobPhase]:
        return {n: platform.jobs.get("default", n).status.phase for n in ("broken", "down", "fine")}

    controller.tick()
    assert phases() == {
        "broken": JobPhase.running,  # retried at the next pass
        "down": JobPhase.running,
        "fine": JobPhase.succeeded,
    }
    for _ in range(FINISH_ATTEMPTS - 1):
        controller.tick()
    assert phases()["broken"] == JobPhase.failed
    assert "could not record how" in platform.jobs.get("default", "broken").status.message
    assert phases()["down"] == JobPhase.running  # a dependency that is down: waited for
    assert sorted(backend.released) == sorted([broken, fine])

    backend.failures.clear()  # the store is back
    controller.tick()
    assert phases()["down"] == JobPhase.succeeded
