"""The pipeline runner: carries each run's steps out, one after another, and starts scheduled
runs.

A thread ticks every second (and at once when a run is queued or resumed). For each active
run it takes the first step that has not succeeded: a pending step starts (a new attempt); a
running one is polled. Steps that start work elsewhere — a training, evaluation or custom job,
an endpoint rollout — keep what they started in their outputs and are polled until it ends, so
a restarted control plane picks up where it was. A failed step runs again while it has retries
left; then the run fails, and `resume` later runs it again from that step.

A new dataset version and a firing alert reach it as outbox rows (`core/outbox.py`), written in
the transaction that commits the version or records the alert; each pass delivers the due ones,
at least once, and a run remembers the row that started it, so a redelivery starts no second.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from stratus.core.clock import utcnow
from stratus.core.errors import InvalidInput, NotFound, StratusError
from stratus.core.events import AlertFired, DatasetVersionCommitted, EventBus
from stratus.core.loop import BackgroundLoop
from stratus.core.outbox import Message, Outbox
from stratus.data.service import DataService
from stratus.endpoints import schemas as es
from stratus.endpoints.canary import CanaryDecision, Verdict, decide
from stratus.endpoints.metrics import InferenceMetrics, VariantTotals
from stratus.endpoints.service import EndpointService
from stratus.jobs import schemas as js
from stratus.jobs.service import JobService
from stratus.pipelines import schemas as s
from stratus.pipelines.gates import GateVerdict, judge
from stratus.pipelines.schemas import RunState, StepState, TriggerKind
from stratus.pipelines.service import ActiveRun, PipelineService, StepView
from stratus.registry import schemas as rs
from stratus.registry.references import parse_ref
from stratus.registry.service import RegistryService

log = logging.getLogger("stratus.pipelines")

CANARY = "canary"
DATASET_TRIGGER = "pipelines.dataset-trigger"
ALERT_TRIGGER = "pipelines.alert-trigger"
TRIGGERS = (DATASET_TRIGGER, ALERT_TRIGGER)


class StepFailed(Exception):
    """A step's work failed (the message says why, for the run's record)."""


# (actor, action, resource, project, details): what the runner did, for the audit log
Audit = Callable[[str, str, str, str | None, dict[str, Any]], object]


def job_name(run: ActiveRun, step: StepView, attempt: int) -> str:
    base = f"{run.pipeline[:24]}-r{run.number}-{step.name[:16]}-{attempt}"
    return re.sub(r"-+", "-", base).strip("-")[:63]


class PipelineController:
    def __init__(
        self,
        pipelines: PipelineService,
        data: DataService,
        jobs: JobService,
        registry: RegistryService,
        endpoints: EndpointService,
        metrics: InferenceMetrics,
        outbox: Outbox,
        interval_seconds: float = 1.0,
        audit: Audit | None = None,
    ) -> None:
        self.pipelines = pipelines
        self.outbox = outbox
        self.audit: Audit = audit or (lambda *args: None)
        self.data = data
        self.jobs = jobs
        self.registry = registry
        self.endpoints = endpoints
        self.metrics = metrics
        self._loop = BackgroundLoop(
            "running pipelines",
            lambda: self.tick(),
            interval_seconds,
            thread_name="stratus-pipelines",
            log=log,
        )

    def watch(self, bus: EventBus) -> None:
        """Start the runs of pipelines that watch a dataset when it gets a new version, or an
        alert rule when it starts firing: the event writes an outbox row per pipeline in the
        publishing transaction, and a pass delivers it once that has committed."""

        def queue(session: Any, event: DatasetVersionCommitted) -> None:
            for name in self.pipelines.watching_dataset(session, event.project, event.dataset):
                payload = {"project": event.project, "pipeline": name,
                           "dataset": event.dataset, "version": event.version}  # fmt: skip
                self.outbox.add(session, DATASET_TRIGGER, payload)
                self.wake()

        bus.subscribe(DatasetVersionCommitted, queue)

        def alert(session: Any, event: AlertFired) -> None:
            for name in self.pipelines.watching_alert(session, event.project_uid, event.rule):
                payload = {
                    "project": event.project,
                    "pipeline": name,
                    "rule": event.rule,
                    "labels": dict(event.labels),
                    "value": event.value,
                }
                self.outbox.add(session, ALERT_TRIGGER, payload)
                self.wake()

        bus.subscribe(AlertFired, alert)

    def start(self) -> None:
        released = self.outbox.release(TRIGGERS)
        if released:
            log.info("delivering %d pipeline trigger(s) left over from the last run", released)
        self._loop.start()

    def wake(self) -> None:
        self._loop.wake()

    def stop(self) -> None:
        self._loop.stop(timeout=30)

    # --- one pass ------------------------------------------------------------------------------

    def tick(self) -> None:
        for message in self.outbox.claim(TRIGGERS):
            if self._loop.stopping:
                return
            self._trigger(message)
        for project, name in self.pipelines.due_schedules():
            try:
                self.pipelines.start_run(
                    project, name, trigger=TriggerKind.schedule, actor="trigger:schedule"
                )
            except StratusError as exc:
                log.warning("scheduled run of %s/%s not started: %s", project, name, exc.detail)
        for run in self.pipelines.active_runs():
            if self._loop.stopping:
                return
            try:
                self._advance(run)
            except Exception:
                log.exception("advancing run %s#%d failed", run.pipeline, run.number)

    def _trigger(self, message: Message) -> None:
        """Deliver one trigger: its run starts (once: the run keeps the row's uid as its trigger
        key), then the row goes. A trigger that can never start (its pipeline or dataset is
        gone) is dropped with a warning; any other failure is tried again later."""
        p = message.payload
        key = f"outbox:{message.uid}"
        try:
            if message.topic == DATASET_TRIGGER:
                self.pipelines.start_dataset_run(
                    p["project"], p["pipeline"], p["dataset"], int(p["version"]), key
                )
            else:
                labels = {str(k): str(v) for k, v in (p.get("labels") or {}).items()}
                self.pipelines.start_alert_run(
                    p["project"], p["pipeline"], p["rule"], labels, p.get("value"), key
                )
        except (NotFound, InvalidInput) as exc:
            log.warning("%s run of %s/%s not started: %s", message.topic, p["project"],
                        p["pipeline"], exc.detail)  # fmt: skip
        except Exception as exc:
            log.warning("pipeline trigger %s %s failed (attempt %d), will retry: %s",
                        message.topic, p, message.attempts, exc)  # fmt: skip
            self.outbox.retry(message, str(exc))
            return
        self.outbox.done(message.id)

    def _advance(self, run: ActiveRun) -> None:
        if run.state == RunState.queued:
            self.pipelines.mark_run(run.uid, RunState.running, "running")
            self._audit(run, "pipelines.run.start", {"trigger": run.trigger, **run.datasets})
        current = next((st for st in run.steps if st.state != StepState.succeeded), None)
        if current is None:
            self.pipelines.mark_run(run.uid, RunState.succeeded, "every step succeeded")
            self._audit(run, "pipelines.run.succeeded", {})
            return
        spec = run.spec.steps[current.position]
        try:
            if current.state in (StepState.pending, StepState.failed):
                if not self.pipelines.update_step(
                    current.uid,
                    state=StepState.running,
                    message="starting",
                    new_attempt=True,
                    log=f"attempt {current.attempts + 1} starts",
                ):
                    return
                current = _attempted(current)
                self._start(run, current, spec)
            else:
                self._poll(run, current, spec)
        except (StepFailed, StratusError) as exc:
            text = exc.detail if isinstance(exc, StratusError) else str(exc)
            self._fail(run, current, spec, text)

    def _fail(self, run: ActiveRun, step: StepView, spec: Any, text: str) -> None:
        first = text.splitlines()[0] if text else "failed"
        if step.attempts <= spec.retries:
            self.pipelines.update_step(
                step.uid,
                state=StepState.pending,
                message=f"attempt {step.attempts} failed: {first}; retrying",
                log=f"failed: {text}",
            )
            return
        if self.pipelines.update_step(
            step.uid, state=StepState.failed, message=first, log=f"failed: {text}"
        ):
            self.pipelines.mark_run(run.uid, RunState.failed, f"step {step.name} failed: {first}")
            self._audit(run, "pipelines.run.failed", {"step": step.name, "message": first})

    def _audit(
        self, run: ActiveRun, action: str, details: dict[str, Any], resource: str | None = None
    ) -> None:
        """Record what the runner did in the audit log, as the pipeline."""
        where = (
            resource or f"/api/v1/projects/{run.project}/pipelines/{run.pipeline}/runs/{run.number}"
        )
        try:
            self.audit(f"pipeline:{run.pipeline}", action, where, run.project, details)
        except Exception:  # the audit log must not stop a run half-way
            log.exception("writing the audit entry %s failed", action)

    def _succeed(self, step: StepView, message: str, outputs: dict[str, Any]) -> None:
        self.pipelines.update_step(
            step.uid, state=StepState.succeeded, message=message, outputs=outputs, log=message
        )

    # --- starting a step -----------------------------------------------------------------------

    def _start(self, run: ActiveRun, step: StepView, spec: Any) -> None:
        kind = spec.type
        if kind == "validate":
            self._validate(run, step, spec)
        elif kind == "train":
            self._submit(
                run,
                step,
                spec,
                self._job(
                    run,
                    step,
                    spec,
                    code=spec.code,
                    trainer=spec.trainer,
                    dataset=self._dataset(run, spec.dataset),
                    experiment=spec.experiment or run.pipeline,
                    model=spec.model,
                ),
            )
        elif kind == "evaluate":
            candidate = spec.model or self._candidate(run)
            models = [candidate]
            baseline = self._baseline(run, candidate, spec.baseline)
            if baseline is not None and baseline != candidate:
                models.append(baseline)
            self._submit(
                run,
                step,
                spec,
                self._job(
                    run,
                    step,
                    spec,
                    evaluation={"models": models, "label": spec.label},
                    dataset=self._dataset(run, spec.dataset),
                ),
                extra={"candidate": candidate, "baseline": baseline},
            )
        elif kind == "batch_predict":
            candidate = spec.model or self._candidate(run)
            settings = spec.model_dump(
                include={"output_dataset", "batch_rows", "features", "keep", "prediction_column"}
            )
            self._submit(
                run,
                step,
                spec,
                self._job(
                    run,
                    step,
                    spec,
                    batch_predict={"model": candidate, **settings},
                    dataset=self._dataset(run, spec.dataset),
                ),
                extra={"candidate": candidate},
            )
        elif kind == "gate":
            self._gate(run, step, spec)
        elif kind == "register":
            self._register(run, step, spec)
        elif kind == "deploy":
            self._deploy_start(run, step, spec)
        elif kind == "custom":
            outputs = {st.name: st.outputs for st in run.steps if st.state == StepState.succeeded}
            env = {**spec.env, "PIPELINE_OUTPUTS": json.dumps(outputs)[:100_000]}
            env["PIPELINE_NAME"], env["PIPELINE_RUN"] = run.pipeline, str(run.number)
            self._submit(
                run,
                step,
                spec,
                self._job(
                    run,
                    step,
                    spec,
                    code=spec.code,
                    dataset=self._dataset(run, spec.dataset) if spec.dataset else None,
                    experiment=run.pipeline,
                    env=env,
                ),
            )
        else:  # pragma: no cover - the schema allows no other type
            raise StepFailed(f"unknown step type {kind!r}")

    def _job(self, run: ActiveRun, step: StepView, spec: Any, **program: Any) -> js.JobCreate:
        """The job of a job step: its name, instance type, environment, timeout and the run's
        labels, with `program` (what it runs, on which dataset, ...)."""
        fields = {
            "name": job_name(run, step, step.attempts),
            "instance_type": spec.instance_type,
            "spot": spec.spot,
            "env": spec.env,
            "secrets": spec.secrets,
            "timeout_seconds": spec.timeout_seconds,
            "labels": self._labels(run),
            **program,
        }
        return js.JobCreate(**fields)

    def _labels(self, run: ActiveRun) -> dict[str, str]:
        return {"stratus.pipeline": run.pipeline, "stratus.pipeline-run": str(run.number)}

    def _dataset(self, run: ActiveRun, reference: str) -> str:
        name, _, version = reference.partition(":")
        if version:
            return reference
        if name not in run.datasets:
            raise StepFailed(f"dataset {name!r} was not pinned when the run started")
        return f"{name}:{run.datasets[name]}"

    def _validate(self, run: ActiveRun, step: StepView, spec: s.ValidateStep) -> None:
        reference = self._dataset(run, spec.dataset)
        name, _, version = reference.partition(":")
        report = self.data.validate(
            run.project, name, version, spec.rules, actor=f"pipeline:{run.pipeline}"
        )
        failed = [c for c in report.report.checks if not c.passed]
        lines = [
            f"{'ok  ' if c.passed else 'FAIL'} {c.column or '-'} {c.check}: expected "
            f"{c.expected}, observed {c.observed}"
            for c in report.report.checks
        ]
        outputs = {
            "dataset": reference,
            "validation": report.id,
            "passed": report.passed,
            "failed_checks": len(failed),
        }
        self.pipelines.update_step(step.uid, outputs=outputs, log="\n".join(lines))
        if not report.passed:
            shown = "; ".join(f"{c.column or ''} {c.check}: {c.observed}".strip() for c in failed)
            raise StepFailed(
                f"{reference} failed {len(failed)} of {len(report.report.checks)} checks: {shown}"
            )
        self._succeed(step, f"{reference} passed {len(report.report.checks)} checks", outputs)

    def _submit(
        self,
        run: ActiveRun,
        step: StepView,
        spec: Any,
        create: js.JobCreate,
        extra: dict[str, Any] | None = None,
    ) -> None:
        job, needs_code = self.jobs.submit(run.project, create, run.principal)
        if needs_code:  # the pipeline holds its code, so this cannot happen unless it was lost
            self.jobs.cancel(run.project, job.metadata.name)
            raise StepFailed("the step's code archive is no longer stored: apply the spec again")
        outputs = {"job": job.metadata.name, **(extra or {})}
        self.pipelines.update_step(
            step.uid,
            outputs=outputs,
            message=f"job {job.metadata.name} queued",
            log=f"submitted job {job.metadata.name} ({create.instance_type})",
        )

    # --- polling a step ------------------------------------------------------------------------

    def _poll(self, run: ActiveRun, step: StepView, spec: Any) -> None:
        if spec.type == "deploy":
            self._deploy_poll(run, step, spec)
            return
        name = step.outputs.get("job")
        if not name:  # the control plane stopped between starting the step and the job
            raise StepFailed("the step's job was never submitted")
        job = self.jobs.get(run.project, name)
        phase = job.status.phase
        if not phase.finished:
            message = f"job {name} {phase.value}"
            if step.outputs.get("last_phase") != phase.value:
                self.pipelines.update_step(
                    step.uid, message=message, outputs={"last_phase": phase.value}, log=message
                )
            return
        if phase != js.JobPhase.succeeded:
            raise StepFailed(f"job {name} {phase.value}: {job.status.message}")
        if spec.type == "train":
            outputs = {
                "model_version": job.status.model_version,
                "run_id": job.status.run_id,
                "metrics": job.status.metrics,
            }
            text = f"job {name} trained {job.status.model_version}"
            self._succeed(step, text, outputs)
        elif spec.type == "evaluate":
            candidate = str(step.outputs.get("candidate"))
            baseline = step.outputs.get("baseline")
            results = job.status.evaluations
            mine = results.get(candidate, {})
            outputs = {
                "metrics": mine,
                "baseline_metrics": results.get(str(baseline)) if baseline else None,
            }
            shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(mine.items()))
            text = f"{candidate}: {shown}"
            if baseline:
                base = results.get(str(baseline), {})
                text += f"; baseline {baseline}: " + ", ".join(
                    f"{k}={v:.4g}" for k, v in sorted(base.items())
                )
            self._succeed(step, text, outputs)
        elif spec.type == "batch_predict":
            output = job.status.dataset_version
            predicted = job.spec.batch_predict.model if job.spec.batch_predict else None
            text = f"job {name} wrote the predictions of {predicted} to {output}"
            self._succeed(step, text, {"dataset_version": output, "predicted_by": predicted})
        else:
            self._succeed(step, f"job {name} succeeded", {})

    # --- the candidate, gates and aliases ------------------------------------------------------

    @staticmethod
    def _candidate(run: ActiveRun) -> str:
        for step in reversed(run.steps):
            if step.state == StepState.succeeded and step.outputs.get("model_version"):
                return str(step.outputs["model_version"])
            if step.type == "evaluate" and step.outputs.get("candidate"):
                return str(step.outputs["candidate"])
        raise StepFailed("no earlier step produced a model version")

    def _baseline(self, run: ActiveRun, candidate: str, alias: str | None) -> str | None:
        if not alias:
            return None
        model = candidate.partition(":")[0].partition("@")[0]
        try:
            version = self.registry.get_version(run.project, model, alias)
        except NotFound:
            return None  # nothing behind the alias yet: the first model has no one to beat
        return f"{model}:{version.version}"

    def _gate(self, run: ActiveRun, step: StepView, spec: s.GateStep) -> None:
        evaluation = next(
            (
                st
                for st in reversed(run.steps[: step.position])
                if st.type == "evaluate" and st.state == StepState.succeeded
            ),
            None,
        )
        if evaluation is None:
            raise StepFailed("no evaluation to judge")
        verdict = judge(
            spec,
            evaluation.outputs.get("metrics") or {},
            evaluation.outputs.get("baseline_metrics"),
        )
        lines = "\n".join(
            f"{'ok  ' if c['passed'] else 'FAIL'} {c['text']}" for c in verdict.checks
        )
        outputs = {"passed": verdict.passed, "checks": verdict.checks}
        self.pipelines.update_step(step.uid, outputs=outputs, log=lines)
        candidate = evaluation.outputs.get("candidate")
        if candidate:
            self._keep_verdict(run, step, str(candidate), verdict)
        if not verdict.passed:
            raise StepFailed(f"the gate refused the candidate: {verdict.reason}")
        self._succeed(step, f"passed: {verdict.reason}", outputs)

    def _keep_verdict(
        self, run: ActiveRun, step: StepView, candidate: str, verdict: GateVerdict
    ) -> None:
        """Record the gate's verdict with the candidate version in the registry (a refused one
        becomes `rejected`); a failure to record it is logged and does not change the verdict."""
        try:
            ref = parse_ref(candidate)
            number = ref.version
            if number is None:
                number = self.registry.get_version(run.project, ref.model, ref.selector).version
            self.registry.record_verdict(
                run.project,
                ref.model,
                number,
                passed=verdict.passed,
                reason=verdict.reason,
                checks=verdict.checks,
                source=f"pipeline {run.pipeline} run {run.number}, step {step.name}",
            )
        except StratusError as exc:
            log.warning("keeping the gate's verdict on %s failed: %s", candidate, exc.detail)
            return
        self._audit(
            run,
            "models.versions.verdict",
            {
                "version": f"{ref.model}:{number}",
                "passed": verdict.passed,
                "reason": verdict.reason,
            },
            f"/api/v1/projects/{run.project}/models/{ref.model}/versions/{number}",
        )

    def _register(self, run: ActiveRun, step: StepView, spec: s.RegisterStep) -> None:
        candidate = self._candidate(run)
        model, _, version = candidate.partition(":")
        self.registry.set_alias(
            run.project,
            model,
            spec.alias,
            rs.AliasSet(version=int(version), reason=f"pipeline {run.pipeline} run {run.number}"),
            actor=f"pipeline:{run.pipeline}",
        )
        self._audit(
            run,
            "models.alias.set",
            {"alias": spec.alias, "version": candidate},
            f"/api/v1/projects/{run.project}/models/{model}/aliases/{spec.alias}",
        )
        self._succeed(step, f"{model}@{spec.alias} -> {candidate}", {"model_version": candidate})

    # --- deploying -----------------------------------------------------------------------------

    def _deploy_start(self, run: ActiveRun, step: StepView, spec: s.DeployStep) -> None:
        candidate = self._candidate(run)
        actor = f"pipeline:{run.pipeline}"
        reason = f"pipeline {run.pipeline} run {run.number}"
        try:
            endpoint = self.endpoints.get(run.project, spec.endpoint)
        except NotFound:
            self.endpoints.create(
                run.project,
                es.EndpointCreate(
                    name=spec.endpoint,
                    variants=[es.VariantSpec(name="main", model=candidate, replicas=spec.replicas)],
                    reason=reason,
                ),
                actor=actor,
            )
            self._audit(
                run, "endpoints.create", {"model_version": candidate}, _endpoint_path(run, spec)
            )
            self._deploy_record(step, "create", candidate, f"creating endpoint {spec.endpoint}")
            return
        serving = [v for v in endpoint.spec.variants if not v.shadow and v.name != CANARY]
        if any(
            f"{v.model.partition(':')[0].partition('@')[0]}:{v.version}" == candidate
            for v in serving
        ):
            self._finish_deploy(
                run, step, spec, candidate, f"{spec.endpoint} already serves {candidate}"
            )
            return
        self.endpoints.canary(
            run.project,
            spec.endpoint,
            es.CanaryCreate(model=candidate, traffic=spec.canary.traffic, reason=reason),
            actor=actor,
        )
        self._audit(
            run,
            "endpoints.canary",
            {"model_version": candidate, "traffic": spec.canary.traffic},
            _endpoint_path(run, spec),
        )
        self._deploy_record(
            step,
            "canary",
            candidate,
            f"canary {candidate} at {spec.canary.traffic}% on {spec.endpoint}: waiting for it",
        )

    def _deploy_record(self, step: StepView, mode: str, candidate: str, text: str) -> None:
        self.pipelines.update_step(
            step.uid,
            outputs={"mode": mode, "candidate": candidate, "since": time.time()},
            message=text,
            log=text,
        )

    def _deploy_poll(self, run: ActiveRun, step: StepView, spec: s.DeployStep) -> None:
        mode, candidate = step.outputs.get("mode"), str(step.outputs.get("candidate"))
        endpoint = self.endpoints.get(run.project, spec.endpoint)
        waited = time.time() - float(step.outputs.get("since", time.time()))
        if mode == "create":
            status = endpoint.status
            if status.phase == "ready" and status.observed_revision >= endpoint.spec.revision:
                self._finish_deploy(
                    run, step, spec, candidate, f"{spec.endpoint} serves {candidate}"
                )
            elif status.phase == "failed" or waited > spec.ready_timeout_seconds:
                raise StepFailed(f"endpoint {spec.endpoint} is not ready: {status.message}")
            return
        if "snapshot" not in step.outputs:
            canary = next((v for v in endpoint.status.variants if v.name == CANARY), None)
            if canary is None or canary.ready < 1:
                if waited > spec.ready_timeout_seconds:
                    self._rollback(run, spec, "the canary never became ready")
                    raise StepFailed(
                        f"the canary of {candidate} was not ready within "
                        f"{spec.ready_timeout_seconds:g} s: rolled back"
                    )
                return
            totals = self.metrics.variant_totals(run.project, spec.endpoint)
            snapshot = {name: t.as_json() for name, t in totals.items()}
            text = f"canary ready: watching its traffic ({_policy_text(spec)})"
            self.pipelines.update_step(
                step.uid,
                outputs={"snapshot": snapshot, "watching_since": time.time()},
                message=text,
                log=text,
            )
            return
        decision = self._judge_canary(run, step, spec)
        if decision.verdict == Verdict.wait:
            seen = decision.canary.requests
            if step.outputs.get("seen") != seen:
                self.pipelines.update_step(
                    step.uid,
                    outputs={"seen": seen},
                    message=f"canary: {seen} requests so far; {decision.reason}",
                )
            return
        figures = {
            "requests": decision.canary.requests,
            "errors": decision.canary.errors,
            "p95_ms": _ms(decision.canary.quantile(0.95)),
        }
        if decision.verdict == Verdict.promote:
            self.endpoints.promote(
                run.project,
                spec.endpoint,
                es.RolloutAction(reason=f"pipeline {run.pipeline}: {decision.reason}"),
                actor=f"pipeline:{run.pipeline}",
            )
            self._audit(
                run,
                "endpoints.promote",
                {"model_version": candidate, "reason": decision.reason, **figures},
                _endpoint_path(run, spec),
            )
            self.pipelines.update_step(step.uid, outputs={"canary": figures, "verdict": "promote"})
            self._finish_deploy(
                run, step, spec, candidate, f"promoted {candidate}: {decision.reason}"
            )
            return
        self._rollback(run, spec, decision.reason)
        self.pipelines.update_step(step.uid, outputs={"canary": figures, "verdict": "rollback"})
        raise StepFailed(f"rolled back {candidate}: {decision.reason}")

    def _judge_canary(self, run: ActiveRun, step: StepView, spec: s.DeployStep) -> CanaryDecision:
        now = self.metrics.variant_totals(run.project, spec.endpoint)
        before = {
            name: VariantTotals.from_json(data)
            for name, data in (step.outputs.get("snapshot") or {}).items()
        }
        empty = VariantTotals.empty()
        canary = now.get(CANARY, empty).minus(before.get(CANARY, empty))
        primaries = [n for n in now if n not in (CANARY, "shadow")]
        primary = now[primaries[0]].minus(before.get(primaries[0], empty)) if primaries else None
        elapsed = time.time() - float(step.outputs.get("watching_since", time.time()))
        return decide(spec.canary, canary, primary, elapsed)

    def _rollback(self, run: ActiveRun, spec: s.DeployStep, why: str) -> None:
        try:
            self.endpoints.rollback(
                run.project,
                spec.endpoint,
                es.RolloutAction(reason=f"pipeline {run.pipeline}: {why}"),
                actor=f"pipeline:{run.pipeline}",
            )
        except StratusError as exc:
            log.warning("rolling back %s failed: %s", spec.endpoint, exc.detail)
            return
        self._audit(run, "endpoints.rollback", {"reason": why}, _endpoint_path(run, spec))

    def _finish_deploy(
        self, run: ActiveRun, step: StepView, spec: s.DeployStep, candidate: str, text: str
    ) -> None:
        if spec.alias_on_promote:
            model, _, version = candidate.partition(":")
            self.registry.set_alias(
                run.project,
                model,
                spec.alias_on_promote,
                rs.AliasSet(version=int(version), reason=f"serving on {spec.endpoint}"),
                actor=f"pipeline:{run.pipeline}",
            )
            text += f"; {model}@{spec.alias_on_promote} -> {candidate}"
        self._succeed(step, text, {"endpoint": spec.endpoint, "model_version": candidate})


def _endpoint_path(run: ActiveRun, spec: s.DeployStep) -> str:
    return f"/api/v1/projects/{run.project}/endpoints/{spec.endpoint}"


def _attempted(step: StepView) -> StepView:
    return replace(step, attempts=step.attempts + 1, state=StepState.running, started_at=utcnow())


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _policy_text(spec: s.DeployStep) -> str:
    policy = spec.canary
    parts = [f"promote after {policy.min_requests} requests"]
    if policy.min_seconds:
        parts.append(f"and {policy.min_seconds:g} s")
    parts.append(f"if errors <= {policy.max_error_rate:.1%}")
    if policy.max_p95_latency_ms is not None:
        parts.append(f"and p95 <= {policy.max_p95_latency_ms:g} ms")
    return " ".join(parts)
