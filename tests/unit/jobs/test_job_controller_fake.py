"""The job controller on the fake compute backend, tick by tick, over a real job service (an
in-process platform on SQLite): a job runs and succeeds, a failing one is failed with its log's
tail, an on-demand job preempts a spot job (stopped with its grace, queued again, resumed once
there is room), and a restarted controller re-adopts the jobs that kept running."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stratus.api.platform import Platform
from stratus.compute.backend import ComputeBackend
from stratus.compute.fake import FakeBackend, FakeCluster
from stratus.compute.limits import Resources
from stratus.iam.principals import Principal
from stratus.jobs import schemas as s
from stratus.jobs.controller import RUNNER_MODULE, JobController, JobControllerConfig
from stratus.jobs.schemas import JobPhase
from stratus.jobs.service import JobService
from stratus.testing import wait_for

ADMIN = Principal(kind="user", uid="u-admin", name="admin", is_admin=True)


@dataclass
class World:
    """A job service on a fresh database, over a fake cluster of 2 vCPUs; `sleeps` are the
    grace periods the cluster waited out (without sleeping)."""

    platform: Platform
    work_dir: Path
    cluster: FakeCluster = field(init=False)
    jobs: JobService = field(init=False)
    sleeps: list[float] = field(default_factory=list)
    controllers: list[JobController] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cluster = FakeCluster(
            capacity=Resources(vcpus=2.0, memory_bytes=8 << 30), sleep=self.sleeps.append
        )
        p = self.platform
        self.jobs = JobService(
            p.db, p.blobs, p.bus, p.data, p.jobs.catalog, FakeBackend(self.cluster),
            registry=p.registry, project_uid=p.iam.project_uid, project_name=p.iam.project_name,
        )  # fmt: skip

    def controller(self) -> JobController:
        """A control plane's job controller, with a backend of its own over the cluster."""
        backend: ComputeBackend = FakeBackend(self.cluster)
        made = JobController(
            self.jobs,
            backend,
            self.platform.job_controller.signer,
            JobControllerConfig(work_dir=self.work_dir, url="http://127.0.0.1:9"),
        )
        self.controllers.append(made)
        return made

    def submit(self, name: str, *, spot: bool = False, **spec: Any) -> str:
        trainer = s.TrainerSpec(estimator="sklearn.dummy.DummyClassifier")
        # no dataset: the job never really runs, so the request's checks are skipped
        data = s.JobCreate.model_construct(name=name, trainer=trainer, spot=spot, **spec)
        job, needs_code = self.jobs.submit("default", data, ADMIN)
        assert not needs_code
        return job.metadata.uid

    def job(self, name: str) -> s.JobRead:
        return self.jobs.get("default", name)

    def running(self) -> list[str]:
        return [j.job_id for j in FakeBackend(self.cluster).running_jobs()]


@pytest.fixture
def world(embedded_platform: Callable[..., Platform], tmp_path: Path) -> Iterator[World]:
    made = World(embedded_platform(), tmp_path / "jobs")
    yield made
    for controller in made.controllers:
        controller.stop()


def test_a_job_runs_and_succeeds(world: World) -> None:
    uid = world.submit("fits", instance_type="cpu.medium")
    controller = world.controller()
    controller.tick()
    assert world.job("fits").status.phase == JobPhase.running
    launch = world.cluster.jobs[uid].launch
    assert launch.argv[1:3] == ["-m", RUNNER_MODULE] and launch.cwd == world.work_dir / uid
    assert launch.resources == Resources(vcpus=2.0, memory_bytes=4 << 30)

    world.cluster.write_job_log(uid, b"epoch 1\nsaved the model\n")
    world.cluster.exit_job(uid, 0)
    controller.tick()
    job = world.job("fits")
    assert job.status.phase == JobPhase.succeeded and job.status.exit_code == 0
    assert world.jobs.read_log("default", "fits", 0)[0] == b"epoch 1\nsaved the model\n"
    assert uid not in world.cluster.jobs  # released


@pytest.mark.parametrize(
    "exit_code, oom_killed, how",
    [
        (2, False, "exited with code 2"),
        (-9, True, "killed by SIGKILL — it ran out of memory: the cpu.small limit is 2 GiB"),
    ],
)
def test_a_failing_job_is_failed_with_its_log_tail(
    world: World, exit_code: int, oom_killed: bool, how: str
) -> None:
    uid = world.submit("breaks")
    controller = world.controller()
    controller.tick()
    world.cluster.write_job_log(uid, b"epoch 1\nTraceback (most recent call last):\nboom\n")
    world.cluster.exit_job(uid, exit_code, oom_killed=oom_killed)
    controller.tick()
    status = world.job("breaks").status
    assert status.phase == JobPhase.failed and status.exit_code == exit_code
    assert status.message.splitlines() == [how, "epoch 1", "Traceback (most recent call last):",
                                           "boom"]  # fmt: skip


def test_an_on_demand_job_preempts_a_spot_job_which_resumes_later(world: World) -> None:
    spot = world.submit("spot", spot=True, instance_type="cpu.medium", grace_seconds=7)
    controller = world.controller()
    controller.tick()
    assert world.running() == [spot]
    world.cluster.jobs[spot].ignores_stop = True  # it takes its whole grace period

    urgent = world.submit("urgent", instance_type="cpu.medium")  # all 2 vCPUs
    controller.tick()  # preempts the spot job: stopped in the background, with its grace
    assert world.job("spot").status.message.startswith("preempted: on-demand job urgent")

    def settled() -> bool:
        controller.tick()
        return world.running() == [urgent]

    wait_for("the on-demand job to take the spot job's place", settled, 30, interval=0.02)
    assert world.sleeps == [7]  # asked to stop, waited out its grace, then killed
    spot_status = world.job("spot").status
    assert spot_status.phase == JobPhase.queued and spot_status.preemptions == 1
    assert spot_status.preempted_seconds >= 0  # its attempt's run time, kept apart
    assert spot_status.message == "preempted; queued to resume from its last checkpoint"
    controller.tick()
    assert world.running() == [urgent]  # no room for the spot job yet

    world.cluster.exit_job(urgent, 0)
    controller.tick()  # the urgent job is done: the spot job starts again in its room
    assert world.job("urgent").status.phase == JobPhase.succeeded
    assert world.running() == [spot] and world.job("spot").status.attempts == 2


def test_a_restarted_controller_adopts_the_jobs_that_kept_running(world: World) -> None:
    done, lost = world.submit("done"), world.submit("lost")  # one vCPU each
    world.controller().tick()
    assert sorted(world.running()) == sorted([done, lost])

    restarted = world.controller()  # a new control plane over the same database and cluster
    restarted.tick()
    assert sorted(world.running()) == sorted([done, lost])
    assert [what for what, _ in world.cluster.events] == ["start", "start"]  # none again

    # a re-adopted job's exit code is not known: what its runner reported decides
    world.jobs.report("default", "done", s.JobReport(completed=True))
    world.cluster.write_job_log(done, b"done\n")
    world.cluster.exit_job(done, 0)
    world.cluster.exit_job(lost, 0)
    restarted.tick()
    finished = world.job("done").status
    assert finished.phase == JobPhase.succeeded and finished.exit_code is None
    assert world.jobs.read_log("default", "done", 0)[0] == b"done\n"
    failed = world.job("lost").status
    assert failed.phase == JobPhase.failed and failed.message == "its process is gone"
    assert world.cluster.jobs == {} and FakeBackend(world.cluster).running_jobs() == []


def test_a_job_whose_node_is_lost_is_queued_to_resume_like_a_preempted_one(world: World) -> None:
    """A job that ended because its machine was lost did not fail: it goes back to the queue,
    counted as a preemption, and resumes from its last checkpoint on the next start."""
    uid = world.submit("wanders", instance_type="cpu.medium")
    controller = world.controller()
    controller.tick()
    world.cluster.write_job_log(uid, b"epoch 1\ncheckpoint saved\n")
    world.cluster.exit_job(uid, None, node_lost=True)
    controller.tick()
    status = world.job("wanders").status
    assert status.phase == JobPhase.queued and status.preemptions == 1
    assert status.message == "its node was lost; queued to resume from its last checkpoint"
    assert world.jobs.read_log("default", "wanders", 0)[0] == b"epoch 1\ncheckpoint saved\n"
    controller.tick()  # there is room: it starts again, as attempt 2
    assert world.job("wanders").status.phase == JobPhase.running
    assert world.running() == [uid]


def test_a_job_stays_queued_while_the_backend_is_unreachable(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster that cannot be reached for now (a Ray head restarting) does not fail the jobs
    waiting to start: they stay queued and start once it answers again."""
    from stratus.core.errors import ServiceUnavailable

    uid = world.submit("patient")
    controller = world.controller()

    def unreachable(launch: Any) -> Any:
        raise ServiceUnavailable("cannot reach the Ray cluster at 127.0.0.2:6379")

    monkeypatch.setattr(controller.backend, "start_job", unreachable)
    controller.tick()
    assert world.job("patient").status.phase == JobPhase.queued
    monkeypatch.undo()
    controller.tick()
    assert world.job("patient").status.phase == JobPhase.running
    assert world.running() == [uid]
