"""Job processes of the local backend, for real: exit codes and logs, stopping a job and its
children (SIGTERM, then SIGKILL after the grace), enforced memory and CPU limits, re-adoption
by a restarted backend, and the environment a job gets. Every process started is stopped."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stratus.compute.backend import ComputeBackend, JobHandle, JobLaunch, JobState, JobStatus
from stratus.compute.limits import CGROUP_V2, RLIMIT_AFFINITY, Resources, cgroup_v2_root
from stratus.compute.local import LocalBackend, LocalBackendConfig
from stratus.compute.local_jobs import LocalJobHandle
from stratus.compute.processes import process_start_ticks

pytestmark = pytest.mark.timeout(30)

GIB = 2**30
SMALL = Resources(vcpus=1, memory_bytes=2 * GIB)
SLEEPER = "import time\nprint('ready', flush=True)\ntime.sleep(60)\n"


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


class Jobs:
    """A backend and the jobs (and their children) a test started, to stop them all."""

    def __init__(self, state_dir: Path, prefer_cgroup: bool = False) -> None:
        self.state_dir = state_dir
        self.config = LocalBackendConfig(
            state_dir=state_dir, fork_server=False, prefer_cgroup=prefer_cgroup
        )
        self.backend = LocalBackend(self.config)
        self.backends = [self.backend]
        self.handles: list[JobHandle] = []
        self.stray_pids: list[int] = []

    def another_backend(self) -> LocalBackend:
        backend = LocalBackend(self.config)
        self.backends.append(backend)
        return backend

    def start(
        self,
        code: str,
        job_id: str = "j1",
        resources: Resources = SMALL,
        env: dict[str, str] | None = None,
    ) -> JobHandle:
        handle = self.backend.start_job(
            JobLaunch(job_id, [sys.executable, "-c", code], env or {}, self.state_dir, resources)
        )
        self.handles.append(handle)
        return handle

    def wait(self, handle: JobHandle, timeout: float = 10.0) -> JobStatus:
        deadline = time.monotonic() + timeout
        while (status := self.backend.job_status(handle)).state == JobState.running:
            assert time.monotonic() < deadline, f"job {handle.job_id} still running"
            time.sleep(0.02)
        return status

    def wait_for_output(self, handle: JobHandle, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in (log := self.backend.read_job_log(handle).decode()):
            assert time.monotonic() < deadline, f"no {text!r} in the log: {log!r}"
            assert self.backend.job_status(handle).state == JobState.running, log
            time.sleep(0.02)
        return log

    def cleanup(self) -> None:
        for handle in self.handles:
            for backend in self.backends:  # the starter reaps its children
                backend.stop_job(handle, 0)
        for pid in self.stray_pids:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
        for backend in self.backends:
            backend.close()


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[Jobs]:
    harness = Jobs(tmp_path)
    try:
        yield harness
    finally:
        harness.cleanup()


def test_local_backend_is_a_job_backend(tmp_path: Path) -> None:
    backend: ComputeBackend = LocalBackend(
        LocalBackendConfig(state_dir=tmp_path, capacity_vcpus=3, capacity_memory_gib=1.5)
    )
    assert backend.capacity() == Resources(vcpus=3, memory_bytes=int(1.5 * GIB))
    machine = LocalBackend(LocalBackendConfig(state_dir=tmp_path)).capacity()
    assert machine.vcpus == len(os.sched_getaffinity(0)) and machine.memory_bytes > 256 * 2**20
    assert backend.running_jobs() == []  # nothing started: no state folder either
    assert not (tmp_path / "jobs").exists()


def test_a_job_exits_with_its_code_and_leaves_a_log(jobs: Jobs) -> None:
    code = "import sys\nfor i in range(3): print(f'line {i}')\nprint('oops', file=sys.stderr)\n"
    handle = jobs.start(code + "sys.exit(3)")
    assert handle.process_start_ticks == process_start_ticks(handle.pid)
    assert handle.enforcement == RLIMIT_AFFINITY and handle.cgroup is None
    record = jobs.state_dir / "jobs" / "j1.json"
    assert json.loads(record.read_text())["pid"] == handle.pid

    status = jobs.wait(handle)
    assert status.state == JobState.exited and status.exit_code == 3
    assert not status.oom_killed and status.detail.endswith("oops")
    log = jobs.backend.read_job_log(handle)
    assert log == b"line 0\nline 1\nline 2\noops\n"
    assert jobs.backend.read_job_log(handle, 5, 8) == log[5:13]
    assert jobs.backend.read_job_log(handle, len(log)) == b""
    assert jobs.backend.stop_job(handle, 1) == 3  # idempotent: nothing left to stop
    assert jobs.backend.job_status(handle).exit_code == 3

    jobs.backend.release_job(handle)
    assert not record.exists() and not handle.log_path.exists()
    assert jobs.backend.read_job_log(handle) == b""


def test_start_refuses_bad_launches(jobs: Jobs, tmp_path: Path) -> None:
    for job_id in ("", "../x", "a/b", ".hidden"):
        with pytest.raises(ValueError):
            jobs.start("pass", job_id=job_id)
    with pytest.raises(ValueError, match="empty argv"):
        jobs.backend.start_job(JobLaunch("e", [], {}, tmp_path, SMALL))
    with pytest.raises(ValueError, match="no folder"):
        jobs.backend.start_job(JobLaunch("e", ["true"], {}, tmp_path / "missing", SMALL))
    handle = jobs.start(SLEEPER, job_id="twice")
    with pytest.raises(ValueError, match="already running"):
        jobs.start(SLEEPER, job_id="twice")
    with pytest.raises(ValueError, match="still running"):
        jobs.backend.release_job(handle)


def test_a_program_that_cannot_start_fails_with_127(jobs: Jobs, tmp_path: Path) -> None:
    launch = JobLaunch("nope", ["/nonexistent/program"], {}, tmp_path, SMALL)
    handle = jobs.backend.start_job(launch)
    jobs.handles.append(handle)
    status = jobs.wait(handle)
    assert status.exit_code == 127 and "cannot start the job" in status.detail


def test_stop_sends_sigterm_to_the_job_and_its_children(jobs: Jobs) -> None:
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('child', child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    handle = jobs.start(code)
    log = jobs.wait_for_output(handle, "child ")
    child = int(log.split()[1])
    jobs.stray_pids.append(child)
    started = time.monotonic()
    assert jobs.backend.stop_job(handle, 5) == -signal.SIGTERM
    assert time.monotonic() - started < 3
    assert _gone(child)
    assert jobs.backend.job_status(handle) == JobStatus(
        JobState.exited, -signal.SIGTERM, False, jobs.backend.job_status(handle).detail
    )
    assert jobs.backend.stop_job(handle, 5) == -signal.SIGTERM  # idempotent


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace(jobs: Jobs) -> None:
    code = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"  # the child inherits the ignoring
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('child', child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    handle = jobs.start(code)
    child = int(jobs.wait_for_output(handle, "child ").split()[1])
    jobs.stray_pids.append(child)
    started = time.monotonic()
    assert jobs.backend.stop_job(handle, 0.5) == -signal.SIGKILL
    assert 0.5 <= time.monotonic() - started < 3.5
    assert _gone(child)


def test_children_left_behind_by_a_finished_job_are_killed(jobs: Jobs) -> None:
    code = (
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('child', child.pid, flush=True)\n"
    )
    handle = jobs.start(code)
    status = jobs.wait(handle)
    assert status.exit_code == 0
    child = int(jobs.backend.read_job_log(handle).split()[1])
    jobs.stray_pids.append(child)
    deadline = time.monotonic() + 5
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _gone(child)


def test_memory_limit_by_rlimit(jobs: Jobs) -> None:
    hog = "x = bytes(1 << 30)\nprint('allocated', len(x), flush=True)\n"
    small = jobs.start(hog, "small", Resources(vcpus=1, memory_bytes=256 * 2**20))
    status = jobs.wait(small)
    assert status.exit_code not in (0, None) and "MemoryError" in status.detail
    assert status.oom_killed
    big = jobs.start(hog, "big", Resources(vcpus=1, memory_bytes=2 * GIB))
    status = jobs.wait(big)
    assert status.exit_code == 0 and "allocated" in status.detail and not status.oom_killed


def test_a_nano_job_can_import_sklearn_but_not_allocate_past_its_memory(jobs: Jobs) -> None:
    pytest.importorskip("sklearn")
    code = (
        "import numpy, sklearn.linear_model\n"
        "print('imported', flush=True)\n"
        "numpy.ones(1 << 27)\n"  # 1 GiB of float64
    )
    handle = jobs.start(code, "nano", Resources(vcpus=0.5, memory_bytes=512 * 2**20))
    status = jobs.wait(handle, timeout=20)
    assert "imported" in status.detail and status.exit_code == 1 and status.oom_killed


def test_cpu_affinity(jobs: Jobs) -> None:
    allowed = os.sched_getaffinity(0)
    show = "import os\nprint(sorted(os.sched_getaffinity(0)))\n"
    one = jobs.start(show, "one", Resources(vcpus=1, memory_bytes=GIB))
    many = jobs.start(show, "many", Resources(vcpus=64, memory_bytes=GIB))
    cpus = json.loads(jobs.wait(one).detail)
    assert len(cpus) == 1 and set(cpus) <= allowed
    assert set(json.loads(jobs.wait(many).detail)) == allowed  # capped to what there is


def test_running_jobs_are_spread_over_the_cpus(jobs: Jobs) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    first = jobs.start(SLEEPER, "first", Resources(vcpus=1, memory_bytes=GIB))
    second = jobs.start(SLEEPER, "second", Resources(vcpus=1, memory_bytes=GIB))
    jobs.wait_for_output(first, "ready")
    jobs.wait_for_output(second, "ready")
    assert os.sched_getaffinity(first.pid).isdisjoint(os.sched_getaffinity(second.pid))


def test_enforcement_is_cgroup_v2_where_usable(tmp_path: Path) -> None:
    root = cgroup_v2_root()
    harness = Jobs(tmp_path, prefer_cgroup=True)
    try:
        handle = harness.start("print('hi')")
        assert handle.enforcement == (CGROUP_V2 if root else RLIMIT_AFFINITY)
        assert harness.wait(handle).exit_code == 0
        harness.backend.release_job(handle)
    finally:
        harness.cleanup()


@pytest.mark.skipif(cgroup_v2_root() is None, reason="cgroup v2 is not usable here")
def test_memory_and_cpu_limits_by_cgroup_v2(tmp_path: Path) -> None:
    harness = Jobs(tmp_path, prefer_cgroup=True)
    try:
        hog = "import time\nx = bytearray(1 << 30)\ntime.sleep(60)\n"  # touches every page
        handle = harness.start(hog, "cg", Resources(1.5, 256 * 2**20))
        assert handle.enforcement == CGROUP_V2 and handle.cgroup is not None
        cgroup = Path(handle.cgroup)
        assert (cgroup / "memory.max").read_text().strip() == str(256 * 2**20)
        assert (cgroup / "cpu.max").read_text().split() == ["150000", "100000"]
        status = harness.wait(handle)
        assert status.exit_code is not None and status.exit_code != 0
        assert status.oom_killed or "MemoryError" in status.detail
        harness.backend.release_job(handle)
        assert not cgroup.exists()
    finally:
        harness.cleanup()


def test_a_restarted_backend_adopts_running_jobs(jobs: Jobs) -> None:
    handle = jobs.start(SLEEPER, "live")
    jobs.wait_for_output(handle, "ready")
    done = jobs.start("print('bye')", "done")
    jobs.wait(done)
    jobs.backend.close()  # jobs keep running

    second = jobs.another_backend()
    assert second.running_jobs() == [handle]
    assert not (jobs.state_dir / "jobs" / "done.json").exists()  # the dead one's record
    assert second.read_job_log(done) == b"bye\n"  # its log stays until released
    assert second.job_status(handle).state == JobState.running
    # not the second backend's child: it cannot learn the exit code (its starter, here the
    # same test process, can)
    assert second.stop_job(handle, 5) is None
    assert jobs.backend.job_status(handle).exit_code == -signal.SIGTERM
    assert second.running_jobs() == []


def test_records_of_reused_pids_are_dropped(tmp_path: Path) -> None:
    backend = LocalBackend(LocalBackendConfig(state_dir=tmp_path, fork_server=False))
    (tmp_path / "jobs").mkdir()
    impostor = LocalJobHandle(
        "impostor", "here", time.time(), "rlimit", os.getpid(), tmp_path / "x.log", 1
    )
    record = tmp_path / "jobs" / "impostor.json"
    record.write_text(json.dumps({**impostor.__dict__, "log_path": str(impostor.log_path)}))
    (tmp_path / "jobs" / "junk.json").write_text("{not json")
    assert backend.running_jobs() == []
    assert not record.exists()
    assert backend.job_status(impostor).state == JobState.exited
    assert backend.stop_job(impostor, 0) is None  # this test process is never signalled
    backend.close()


def test_the_environment_drops_the_control_planes_stratus_settings(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATUS_DATABASE__URL", "postgresql://secret")
    monkeypatch.setenv("UNRELATED_SETTING", "kept")
    show = (
        "import json, os\n"
        "print(json.dumps({k: v for k, v in os.environ.items()"
        " if k.startswith(('STRATUS_', 'UNRELATED_', 'JOB_'))}))\n"
    )
    handle = jobs.start(show, env={"STRATUS_JOB_TOKEN": "t", "JOB_SEED": "7"})
    env = json.loads(jobs.wait(handle).detail)
    assert env == {"STRATUS_JOB_TOKEN": "t", "JOB_SEED": "7", "UNRELATED_SETTING": "kept"}
