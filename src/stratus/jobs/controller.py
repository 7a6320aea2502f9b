"""The job scheduler: start queued jobs when there is room, watch them, preempt spot jobs for
on-demand ones, and record how each attempt ended.

A thread ticks every `interval_seconds` (and at once when the service says something
changed). Each tick reads the active jobs, observes the running ones through the compute
backend, asks the pure policy (`scheduling.plan`) what to start and what to preempt, and
carries it out; stops (with their grace period) run on a small pool so a tick never waits for
one. A running job's backend handle is stored with its status, so a restarted control plane
re-adopts jobs that kept running; a clean stop stops them and queues them again, to resume from
their last checkpoint at the next start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from stratus.compute.backend import ComputeBackend, JobHandle, JobLaunch, JobState, JobStatus
from stratus.compute.limits import Resources
from stratus.core.clock import utcnow
from stratus.core.errors import NotFound, ServiceUnavailable, TemporaryError
from stratus.core.loop import BackgroundLoop
from stratus.iam.credentials import TokenSigner
from stratus.jobs.scheduling import Need, Running, Waiting, plan
from stratus.jobs.schemas import JobPhase
from stratus.jobs.service import ActiveJob, JobService

log = logging.getLogger("stratus.jobs")

RUNNER_MODULE = "stratus.training.runner"  # named, not imported: the runner is an SDK program
LOG_TAIL_LINES = 15
TOKEN_MARGIN_SECONDS = 3600
FINISH_ATTEMPTS = 3  # passes that may fail to record a job's end before it is marked failed


@dataclass(frozen=True)
class JobControllerConfig:
    work_dir: Path  # one folder per job: its spec file, code, data and checkpoint
    url: str  # where the runner reaches this control plane
    ca_pem: str | None = None  # over https: the CA the runner trusts (None: the system's)
    interval_seconds: float = 1.0
    stop_on_shutdown: bool = True
    shutdown_grace_seconds: float = 10.0


class JobController:
    def __init__(
        self,
        service: JobService,
        backend: ComputeBackend,
        signer: TokenSigner,
        config: JobControllerConfig,
    ) -> None:
        self.service = service
        self.backend = backend
        self.signer = signer
        self.config = config
        self._loop = BackgroundLoop(
            "scheduling jobs",
            lambda: self.tick(),
            config.interval_seconds,
            thread_name="stratus-jobs",
            log=log,
        )
        self._stops = _stop_pool()
        self._stopping: set[str] = set()
        self._finish_errors: dict[str, int] = {}  # job uid -> failed attempts at recording its end
        self._lock = threading.Lock()

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self.config.work_dir.mkdir(parents=True, exist_ok=True)
        self._loop.start()

    def wake(self) -> None:
        self._loop.wake()

    def stop(self) -> None:
        self._loop.stop(timeout=30)
        if self.config.stop_on_shutdown:
            self._stop_all_for_shutdown()
        self._stops.shutdown(wait=True)
        self._stops = _stop_pool()  # makes no thread until used: ready if started again

    # --- one pass ------------------------------------------------------------------------------

    def tick(self) -> None:
        jobs = self.service.active()
        running: list[Running] = []
        now = utcnow()
        for job in jobs:
            if job.phase != JobPhase.running or job.handle is None:
                continue
            try:  # one job's trouble never stalls the others
                seen = self._observe(job, now)
            except Exception:
                log.exception("watching job %s/%s failed; will retry", job.project, job.name)
                seen = _as_running(job, now)  # it may still hold its room
            if seen is not None:
                running.append(seen)
        waiting = [
            Waiting(
                job=job.uid,
                need=Need(job.instance.vcpus, job.instance.memory_bytes),
                spot=job.spec.spot,
                queued_at=(job.queued_at or now).timestamp(),
            )
            for job in jobs
            if job.phase == JobPhase.queued
        ]
        if not waiting:
            return
        capacity = self.backend.capacity()
        decision = plan(Need(capacity.vcpus, capacity.memory_bytes), running, waiting)
        by_uid = {job.uid: job for job in jobs}
        for victim, for_whom in decision.preempt:
            job = by_uid[victim]
            assert job.handle is not None
            try:
                self.service.mark_stopping(
                    victim,
                    "preempt",
                    f"preempted: on-demand job {by_uid[for_whom].name} needs the room; "
                    f"stopping within {job.spec.grace_seconds} s",
                )
            except Exception:
                log.exception("preempting job %s/%s failed; will retry", job.project, job.name)
                continue
            self._stop_in_background(
                victim, self.backend.job_from_record(job.handle), job.spec.grace_seconds
            )
        for uid in decision.start:
            try:
                self._launch(by_uid[uid])
            except Exception:
                job = by_uid[uid]
                log.exception("launching job %s/%s failed; will retry", job.project, job.name)

    def _observe(self, job: ActiveJob, now: datetime) -> Running | None:
        """Look at one running job: record its end, or stop it when it is due to stop; the job
        as the policy sees it while it runs."""
        assert job.handle is not None
        handle = self.backend.job_from_record(job.handle)
        status = self.backend.job_status(handle)
        if status.state == JobState.exited:
            if job.uid not in self._stopping:
                self._finish_or_give_up(job, handle, status)
            return None
        started = job.started_at or now
        if job.stop_reason is None and (now - started).total_seconds() > job.spec.timeout_seconds:
            self.service.mark_stopping(
                job.uid, "timeout", f"timed out after {job.spec.timeout_seconds} s: stopping"
            )
            self._stop_in_background(job.uid, handle, job.spec.grace_seconds)
            job = _with_stop(job, "timeout")
        elif job.stop_reason is not None and job.uid not in self._stopping:
            self._stop_in_background(job.uid, handle, job.spec.grace_seconds)
        return _as_running(job, now)

    def _finish_or_give_up(self, job: ActiveJob, handle: JobHandle, status: JobStatus) -> None:
        """Record how the job ended; a dependency that is down (a temporary error) is retried
        at every pass, any other error `FINISH_ATTEMPTS` times before the job is failed
        without its log, so it never stays `running` for ever."""
        try:
            self._finish(
                job, handle, status.exit_code, status.oom_killed, status.detail, status.node_lost
            )
        except (TemporaryError, ServiceUnavailable) as exc:
            log.warning("recording the end of job %s/%s: %s; will retry", job.project, job.name,
                        exc.detail)  # fmt: skip
            return
        except Exception as exc:
            errors = self._finish_errors[job.uid] = self._finish_errors.get(job.uid, 0) + 1
            if errors < FINISH_ATTEMPTS:
                log.exception("recording the end of job %s/%s failed (%d of %d); will retry",
                              job.project, job.name, errors, FINISH_ATTEMPTS)  # fmt: skip
                return
            log.exception("recording the end of job %s/%s failed %d times: marking it failed",
                          job.project, job.name, errors)  # fmt: skip
            self.service.mark_exited(
                job.uid,
                phase=JobPhase.failed,
                exit_code=status.exit_code,
                message=f"it ended, but the control plane could not record how: {exc}",
                log=b"",
            )
            with contextlib.suppress(Exception):
                self.backend.release_job(handle)
        self._finish_errors.pop(job.uid, None)

    # --- starting ------------------------------------------------------------------------------

    def _launch(self, job: ActiveJob) -> None:
        folder = self.config.work_dir / job.uid
        folder.mkdir(parents=True, exist_ok=True)
        token = self.signer.issue_workload(
            job.principal_kind,
            job.principal_uid,
            job.principal_name,
            job.project,
            f"job/{job.name}",
            job.spec.timeout_seconds + TOKEN_MARGIN_SECONDS,
        )
        try:
            secret_values = self.service.secret_values(job.project, job.spec.secrets)
        except NotFound as exc:
            self.service.mark_exited(
                job.uid,
                phase=JobPhase.failed,
                exit_code=None,
                message=f"could not start: {exc.detail}",
                log=b"",
            )
            return
        runner_spec = {
            "url": self.config.url,
            "ca_pem": self.config.ca_pem,
            "token": token,
            "project": job.project,
            "job": job.name,
            "attempt": job.attempts + 1,
            "resume": job.has_checkpoint,
            "spec": job.spec.model_dump(mode="json"),
            "work_dir": str(folder),
            "secrets": secret_values,  # the runner drops them from the file once read
        }
        spec_path = folder / "runner.json"
        temp = spec_path.with_suffix(".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds a token
        with os.fdopen(fd, "w") as f:
            json.dump(runner_spec, f)
        os.replace(temp, spec_path)
        launch = JobLaunch(
            job_id=job.uid,
            argv=[sys.executable, "-m", RUNNER_MODULE, str(spec_path)],
            env={"PYTHONUNBUFFERED": "1"},
            cwd=folder,
            resources=Resources(
                vcpus=job.instance.vcpus,
                memory_bytes=job.instance.memory_bytes,
                gpus=job.instance.gpus,
            ),
        )
        try:
            handle = self.backend.start_job(launch)
        except (ServiceUnavailable, TemporaryError) as exc:
            # the cluster is unreachable for now (a Ray head restarting): the job stays queued
            # and is tried again at the next pass, not failed for what was never its fault
            log.warning("cannot start job %s/%s yet: %s; will retry", job.project, job.name,
                        exc.detail)  # fmt: skip
            return
        except Exception as exc:
            log.exception("starting job %s/%s failed", job.project, job.name)
            self.service.mark_exited(
                job.uid,
                phase=JobPhase.failed,
                exit_code=None,
                message=f"could not start: {exc}",
                log=b"",
            )
            return
        self.service.mark_started(job.uid, self.backend.job_record(handle), handle.enforcement)
        log.info("started job %s/%s on %s", job.project, job.name, handle.node)

    # --- stopping and finishing ----------------------------------------------------------------

    def _stop_in_background(self, uid: str, handle: JobHandle, grace: float) -> None:
        with self._lock:
            if uid in self._stopping:
                return
            self._stopping.add(uid)

        def stop() -> None:
            try:
                self.backend.stop_job(handle, grace)
            except Exception:
                log.exception("stopping job %s failed", uid)
            finally:
                with self._lock:
                    self._stopping.discard(uid)
                self.wake()

        self._stops.submit(stop)

    def _finish(
        self,
        job: ActiveJob,
        handle: JobHandle,
        exit_code: int | None,
        oom_killed: bool,
        detail: str,
        node_lost: bool = False,
    ) -> None:
        log_bytes = self._read_whole_log(handle)
        reason = job.stop_reason
        if node_lost and not job.completed and reason not in ("cancel", "timeout"):
            reason = "preempt"  # the same path as a spot preemption: resume elsewhere
        phase, message = JobPhase.failed, ""
        if job.completed and exit_code in (0, None):  # done, whatever stopped it after
            phase, message = JobPhase.succeeded, "succeeded"
        elif reason == "cancel":
            phase, message = JobPhase.cancelled, "cancelled"
        elif reason in ("preempt", "shutdown"):
            phase = JobPhase.queued
            why = (
                "its node was lost"
                if node_lost
                else "preempted"
                if reason == "preempt"
                else "stopped with the control plane"
            )
            message = f"{why}; queued to resume from its last checkpoint"
        elif reason == "timeout":
            message = f"timed out after {job.spec.timeout_seconds} s"
        elif exit_code == 0 or (exit_code is None and job.completed):
            phase, message = JobPhase.succeeded, "succeeded"
        else:
            how = "its process is gone" if exit_code is None else _exit_text(exit_code)
            oom = (
                f" — it ran out of memory: the {job.instance.name} limit is "
                f"{job.instance.memory_gib:g} GiB"
                if oom_killed or b"MemoryError" in log_bytes[-4000:]
                else ""
            )
            tail = "\n".join(log_bytes.decode(errors="replace").splitlines()[-LOG_TAIL_LINES:])
            message = f"{how}{oom}" + (f"\n{tail}" if tail else (f"\n{detail}" if detail else ""))
            if job.attempts <= job.spec.max_retries:
                phase = JobPhase.queued
                message = f"attempt {job.attempts} failed ({how}); retrying\n{tail}".rstrip()
        self.service.mark_exited(
            job.uid,
            phase=phase,
            exit_code=exit_code,
            message=message,
            log=log_bytes,
            preempted=phase is JobPhase.queued and reason == "preempt",
        )
        try:
            self.backend.release_job(handle)
        except Exception:
            log.exception("releasing job %s failed", job.uid)
        if phase.finished:
            shutil.rmtree(self.config.work_dir / job.uid, ignore_errors=True)
        log.info("job %s/%s: %s", job.project, job.name, message.splitlines()[0])

    def _read_whole_log(self, handle: JobHandle) -> bytes:
        chunks: list[bytes] = []
        offset = 0
        while True:
            chunk = self.backend.read_job_log(handle, offset)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            offset += len(chunk)

    def _stop_all_for_shutdown(self) -> None:
        """Stop running jobs (each with its grace, capped) and queue them again."""
        try:
            jobs = [j for j in self.service.active() if j.phase == JobPhase.running and j.handle]
        except Exception:
            log.exception("listing running jobs at shutdown failed")
            return
        grace = self.config.shutdown_grace_seconds
        for job in jobs:
            assert job.handle is not None
            handle = self.backend.job_from_record(job.handle)
            reason = job.stop_reason or "shutdown"
            try:
                if job.stop_reason is None:
                    self.service.mark_stopping(job.uid, "shutdown", "stopping with the platform")
                code = self.backend.stop_job(handle, min(grace, job.spec.grace_seconds))
                self._finish(_with_stop(job, reason), handle, code, False, "")
            except Exception:
                log.exception("stopping job %s at shutdown failed", job.uid)


def _stop_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="stratus-job-stop")


def _as_running(job: ActiveJob, now: datetime) -> Running:
    return Running(
        job=job.uid,
        need=Need(job.instance.vcpus, job.instance.memory_bytes),
        spot=job.spec.spot,
        started_at=(job.started_at or now).timestamp(),
        stopping=job.stop_reason is not None,
    )


def _with_stop(job: ActiveJob, reason: str) -> ActiveJob:
    return replace(job, stop_reason=reason)


def _exit_text(code: int) -> str:
    if code < 0:
        import signal

        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exited with code {code}"
