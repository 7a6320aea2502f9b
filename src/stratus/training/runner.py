"""The program a training job runs: `python -m stratus.training.runner runner.json`.

The job scheduler starts it under the job's resource limits, with a spec file (mode 0600)
naming the control plane, a token for this job alone, and the job's spec. It talks to the
control plane only through the SDK, like any user:
1. fetches the code archive (and installs extra requirements), pulls the dataset version,
   restores the last checkpoint when the job resumes;
2. opens (or, on a resumed attempt, reopens) the job's tracking run;
3. runs the user's entrypoint as a child process, or in-process the built-in trainer, an
   evaluation (pulling and loading each model version, scoring it on the dataset) or a batch
   prediction (`batch_predict.py`: streaming the dataset through the model into Parquet parts,
   resuming after the last finished part, committing them as a dataset version);
4. registers the model written to `STRATUS_MODEL_DIR` with its lineage (dataset version,
   run, params, metrics, code hash) and reports the job complete (with an evaluation's
   metrics per model version, or the dataset version a batch prediction committed).
Its exit code is the job's: the child's, or 1 when a step of its own fails (said in the log).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stratus.client import Client
from stratus.client._archives import unpack
from stratus.core.errors import InvalidInput, NotFound, StratusError
from stratus.jobs.schemas import JobSpec

if TYPE_CHECKING:
    from stratus.training.batch_predict import Manifest

PREEMPTED = 143
SAMPLE_FILE = "sample.csv"
#: Seconds between a batch prediction's progress reports, and between its checkpoints.
PROGRESS_SECONDS = 1.0
CHECKPOINT_SECONDS = 30.0


def say(message: str) -> None:
    print(f"stratus: {message}", flush=True)


class Runner:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.spec = JobSpec.model_validate(config["spec"])
        self.project: str = config["project"]
        self.job: str = config["job"]
        self.attempt: int = int(config["attempt"])
        self.work = Path(config["work_dir"])
        self.ca_file = self._trust(config.get("ca_pem"))
        self.client = Client(config["url"], api_key=config["token"], ca_file=self.ca_file)
        self.code_dir = self.work / "code"
        self.data_dir = self.work / "data"
        self.checkpoint_dir = self.work / "checkpoint"
        self.model_dir = self.work / "model"
        self.deps_dir = self.work / "deps"
        self.models_dir = self.work / "models"
        self.predictions_dir = self.work / "predictions"
        # the secrets the spec names, as {variable: value}: for the user's code only
        self.secrets: dict[str, str] = dict(config.get("secrets") or {})
        self.run_id: str | None = None
        self.restored = False
        self.stop_requested = False
        self.child: subprocess.Popen[bytes] | None = None

    def _trust(self, ca_pem: str | None) -> str | None:
        """The control plane's CA (over https), as a file in the work folder: for this
        runner's client and the user's code (`STRATUS_CA_FILE`)."""
        if not ca_pem:
            return None
        path = self.work / "ca.pem"
        path.write_text(ca_pem)
        return str(path)

    # --- preparing -----------------------------------------------------------------------------

    def prepare(self) -> None:
        instance = self.spec.instance_type + (" (spot)" if self.spec.spot else "")
        say(f"job {self.job}, attempt {self.attempt}, on {instance}")
        if self.spec.code is not None:
            self._fetch_code()
        if self.spec.dataset is not None:
            self._pull_dataset()
        self._restore_checkpoint()
        shutil.rmtree(self.model_dir, ignore_errors=True)
        self.model_dir.mkdir(parents=True)

    def _fetch_code(self) -> None:
        assert self.spec.code is not None
        marker = self.code_dir / ".stratus-code"
        if not (marker.is_file() and marker.read_text() == self.spec.code.sha256):
            shutil.rmtree(self.code_dir, ignore_errors=True)
            path = f"/api/v1/projects/{self.project}/jobs/{self.job}/code"
            archive = self.work / "code.tar.gz"
            with open(archive, "wb") as f:
                for chunk in self.client._stream(path, {}):
                    f.write(chunk)
            with open(archive, "rb") as f:
                unpack(f, self.code_dir)
            archive.unlink()
            marker.write_text(self.spec.code.sha256)
            say(f"code {self.spec.code.content_hash[:12]} unpacked")
        requirements = self.spec.code.requirements
        if requirements:
            self._install(requirements)

    def _install(self, requirements: list[str]) -> None:
        digest = hashlib.sha256("\n".join(requirements).encode()).hexdigest()
        marker = self.deps_dir / ".stratus-requirements"
        if marker.is_file() and marker.read_text() == digest:
            return
        shutil.rmtree(self.deps_dir, ignore_errors=True)
        say(f"installing {len(requirements)} requirements: {' '.join(requirements)}")
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--target",
            str(self.deps_dir),
            *requirements,
        ]
        done = subprocess.run(command, cwd=self.code_dir, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"installing the requirements failed (pip exited {done.returncode})")
        marker.write_text(digest)

    def _pull_dataset(self) -> None:
        assert self.spec.dataset is not None
        marker = self.data_dir / ".stratus-dataset"
        if marker.is_file() and marker.read_text() == self.spec.dataset:
            return
        shutil.rmtree(self.data_dir, ignore_errors=True)
        say(f"pulling dataset {self.spec.dataset}")
        self.client.datasets.pull(self.spec.dataset, self.data_dir, project=self.project)
        marker.write_text(self.spec.dataset)

    def _restore_checkpoint(self) -> None:
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
        self.checkpoint_dir.mkdir(parents=True)
        if not self.config.get("resume"):
            return
        path = f"/api/v1/projects/{self.project}/jobs/{self.job}/checkpoint"
        archive = self.work / "checkpoint.tar.gz"
        try:
            with open(archive, "wb") as f:
                for chunk in self.client._stream_verified(path, "the checkpoint"):
                    f.write(chunk)
        except NotFound:
            return
        with open(archive, "rb") as f:
            unpack(f, self.checkpoint_dir)
        archive.unlink()
        self.restored = True
        state_file = self.checkpoint_dir / ".stratus-state.json"
        step = json.loads(state_file.read_text()).get("step") if state_file.is_file() else None
        say("resumed from the last checkpoint" + (f" (step {step})" if step is not None else ""))

    # --- running -------------------------------------------------------------------------------

    def open_run(self) -> None:
        from stratus.tracking import resume_run

        job = self.client.jobs.get(self.job, project=self.project)
        run = resume_run(
            job.status.run_id,
            experiment=self.spec.experiment,
            name=self.job,
            tags={"stratus.job": self.job, "stratus.instance_type": self.spec.instance_type},
            client=self.client,
            project=self.project,
        )
        self.run = run
        self.run_id = run.id
        if job.status.run_id != run.id:
            self.client.jobs.report(self.job, project=self.project, run_id=run.id)

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
        env.update(self.spec.env)
        env.update(self.secrets)
        env.update(
            {
                "STRATUS_URL": self.config["url"],
                "STRATUS_API_KEY": self.config["token"],
                "STRATUS_PROJECT": self.project,
                "STRATUS_JOB": self.job,
                "STRATUS_JOB_ATTEMPT": str(self.attempt),
                "STRATUS_CHECKPOINT_DIR": str(self.checkpoint_dir),
                "STRATUS_MODEL_DIR": str(self.model_dir),
                "STRATUS_EXPERIMENT": self.spec.experiment,
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.ca_file:
            env["STRATUS_CA_FILE"] = self.ca_file
        if self.run_id:
            env["STRATUS_RUN_ID"] = self.run_id
        if self.spec.dataset:
            env["STRATUS_DATA_DIR"] = str(self.data_dir)
            env["STRATUS_DATASET"] = self.spec.dataset
        if self.deps_dir.is_dir():
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(self.deps_dir), env.get("PYTHONPATH", "")) if p
            )
        return env

    def run_code(self) -> int:
        assert self.spec.code is not None
        command = [sys.executable, self.spec.code.entrypoint, *self.spec.code.args]
        say(f"running {' '.join(command[1:])}")
        self.child = subprocess.Popen(command, cwd=self.code_dir, env=self.environment())
        while True:
            try:
                return self.child.wait()
            except KeyboardInterrupt:  # pragma: no cover - interactive only
                continue

    def run_trainer(self) -> dict[str, Any]:
        from stratus.training.trainers import train

        assert self.spec.trainer is not None and self.spec.dataset is not None
        trainer = self.spec.trainer
        version = self.client.datasets.version(self.spec.dataset, project=self.project)
        tags = {c.name: c.tags for c in version.columns if c.tags}
        result = train(
            self.data_dir,
            self.model_dir,
            estimator=trainer.estimator,
            params=trainer.params,
            label=trainer.label,
            features=trainer.features,
            column_tags=tags,
            test_size=trainer.test_size,
            random_state=trainer.random_state,
        )
        self.run.log_params(result.params)
        self.run.log_metrics(result.metrics)
        return {"sample": result.sample, "metrics": result.metrics, "params": result.params}

    def run_evaluation(self) -> dict[str, dict[str, float]]:
        from stratus.registry.signatures import Signature
        from stratus.training.evaluation import evaluate, evaluation_features, load_version
        from stratus.training.trainers import choose_label, read_frame

        assert self.spec.evaluation is not None and self.spec.dataset is not None
        spec = self.spec.evaluation
        dataset = self.client.datasets.version(self.spec.dataset, project=self.project)
        tags = {c.name: c.tags for c in dataset.columns if c.tags}
        frame = read_frame(self.data_dir)
        columns = [str(c) for c in frame.columns]
        label = choose_label(columns, tags, spec.label)
        self.run.log_params({"models": ", ".join(spec.models), "label": label})
        results: dict[str, dict[str, float]] = {}
        for reference in spec.models:
            version = self.client.models.version(reference, project=self.project)
            folder = self.models_dir / f"{version.model}-{version.version}"
            shutil.rmtree(folder, ignore_errors=True)
            say(f"pulling model {reference}")
            self.client.models.pull(reference, folder, project=self.project)
            model = load_version(
                folder, flavor=version.flavor, trusted=version.trusted, signature=version.signature
            )
            signature = Signature.model_validate(version.signature) if version.signature else None
            features = evaluation_features(columns, label, tags, signature, spec.features)
            done = evaluate(model, frame, label=label, features=features, signature=signature)
            del model
            shown = " ".join(f"{k}={v:.4g}" for k, v in done.metrics.items())
            task = "classifier" if done.classification else "regressor"
            say(
                f"evaluated {reference} on {self.spec.dataset} ({done.rows} rows, "
                f"{len(features)} features, as a {task}): {shown}"
            )
            results[reference] = done.metrics
        self.run.log_metrics(results[spec.models[0]])
        return results

    def run_batch_predict(self) -> str | None:
        """Predict every row of the dataset into parts, then commit them as a new version of
        the output dataset; its NAME:VERSION, or None when asked to stop first."""
        from stratus.training.batch_predict import (
            BatchPrediction,
            Plan,
            choose_features,
            open_input,
            resume_folder,
        )
        from stratus.training.evaluation import load_version

        spec = self.spec.batch_predict
        assert spec is not None and self.spec.dataset is not None
        dataset = self.client.datasets.version(self.spec.dataset, project=self.project)
        key = {
            "model": spec.model,
            "dataset": self.spec.dataset,
            **spec.model_dump(mode="json", exclude={"model", "output_dataset"}),
        }
        manifest = resume_folder(
            self.predictions_dir, self.checkpoint_dir if self.restored else None, key
        )
        if manifest.parts:
            say(f"resuming after batch {len(manifest.parts)} ({manifest.rows:,} rows done)")
        version = self.client.models.version(spec.model, project=self.project)
        folder = self.models_dir / f"{version.model}-{version.version}"
        shutil.rmtree(folder, ignore_errors=True)
        say(f"pulling model {spec.model}")
        self.client.models.pull(spec.model, folder, project=self.project)
        model = load_version(
            folder, flavor=version.flavor, trusted=version.trusted, signature=version.signature
        )
        from stratus.registry.signatures import Signature

        signature = Signature.model_validate(version.signature) if version.signature else None
        source = open_input(self.data_dir)
        columns = list(source.schema.names)
        tags = {c.name: c.tags for c in dataset.columns if c.tags}
        features = choose_features(columns, tags, signature, spec.features)
        keep = columns if spec.keep is None else spec.keep
        missing = [c for c in keep if c not in columns]
        if missing:
            raise InvalidInput(f"columns to keep not in the dataset: {', '.join(missing)}")
        total = dataset.rows or 0
        if total == 0:
            raise InvalidInput(f"{self.spec.dataset} has no rows: there is nothing to predict")
        self.run.log_params(
            {"model": spec.model, "batch_rows": spec.batch_rows, "features": ", ".join(features)}
        )
        say(
            f"predicting {spec.model} on {self.spec.dataset} ({total:,} rows, "
            f"{len(features)} features) in batches of {spec.batch_rows:,} rows"
        )
        plan = Plan(
            model,
            signature,
            features,
            keep,
            spec.prediction_column,
            spec.batch_rows,
            self.predictions_dir,
        )
        job = BatchPrediction(plan, manifest)
        clock = {"report": 0.0, "checkpoint": time.monotonic(), "log": time.monotonic()}
        started, first = time.monotonic(), manifest.rows

        def on_part(done: Manifest) -> None:
            now = time.monotonic()
            if now - clock["report"] >= PROGRESS_SECONDS or done.rows == total:
                clock["report"] = now
                self._report_progress(done.rows, total)
            if now - clock["log"] >= 5 or done.rows == total:
                clock["log"] = now
                rate = (done.rows - first) / max(now - started, 1e-9)
                say(f"{done.rows:,} of {total:,} rows ({rate:,.0f} rows/s)")
            if now - clock["checkpoint"] >= CHECKPOINT_SECONDS:
                clock["checkpoint"] = now
                self._save_predictions(len(done.parts))

        if not job.run(source, on_part=on_part, should_stop=lambda: self.stop_requested):
            self._save_predictions(len(manifest.parts))
            return None
        del model
        if manifest.rows != total:
            raise RuntimeError(
                f"the predictions have {manifest.rows:,} rows but {self.spec.dataset} has "
                f"{total:,}: nothing was committed"
            )
        seconds = time.monotonic() - started
        self.run.log_metrics(
            {
                "rows": float(total),
                "rows_per_second": (manifest.rows - first) / max(job.seconds, 1e-9),
            }
        )
        say(
            f"predicted {manifest.rows - first:,} rows in {seconds:.1f} s "
            f"({(manifest.rows - first) / max(job.seconds, 1e-9):,.0f} rows/s "
            f"reading, predicting and writing; peak memory so far {peak_mib():.0f} MiB)"
        )
        say(f"committing {len(manifest.parts)} parts to dataset {spec.output_dataset}")
        output = self.client.datasets.push(
            self.predictions_dir,
            spec.output_dataset,
            project=self.project,
            description=f"predictions of {spec.model} for {self.spec.dataset} (job {self.job})",
            lineage={
                "model_version": spec.model,
                "dataset_version": self.spec.dataset,
                "job": self.job,
            },
        )
        if output.rows != total:
            raise RuntimeError(
                f"{output.dataset}:{output.version} has {output.rows} rows, the input {total}"
            )
        reference = f"{output.dataset}:{output.version}"
        say(f"committed {reference}" + (" (the same rows as before)" if output.existing else ""))
        return reference

    def _report_progress(self, done: int, total: int | None) -> None:
        try:
            self.client.jobs.report(
                self.job,
                project=self.project,
                progress={"done": done, "total": total, "unit": "rows"},
            )
        except StratusError as exc:  # progress is for people; the work goes on
            say(f"could not report progress: {exc}")

    def _save_predictions(self, parts: int) -> None:
        """Upload the finished parts as the job's checkpoint (a resume on another node)."""
        from stratus.training._checkpoints import upload_checkpoint

        try:
            size = upload_checkpoint(
                self.client, self.project, self.job, self.predictions_dir, parts
            )
        except StratusError as exc:
            say(f"could not save the checkpoint: {exc}")
            return
        say(f"checkpoint saved: {parts} batches, {size / 2**20:.1f} MiB")

    # --- finishing -----------------------------------------------------------------------------

    def register(self, trained: dict[str, Any] | None) -> str | None:
        if self.spec.model is None:
            return None
        if not any(self.model_dir.iterdir()):
            raise RuntimeError(
                f"the job should register model {self.spec.model!r} but wrote no files to "
                "STRATUS_MODEL_DIR"
            )
        if self.spec.code is not None:
            code_hash = self.spec.code.content_hash
        else:
            trainer = self.spec.trainer.model_dump(mode="json") if self.spec.trainer else {}
            digest = hashlib.sha256(json.dumps(trainer, sort_keys=True).encode()).hexdigest()
            code_hash = f"trainer:{digest[:16]}"
        sample = trained["sample"] if trained else self._sample_file()
        version = self.run.log_model(
            self.model_dir,
            name=self.spec.model,
            dataset_version=self.spec.dataset,
            source_commit=code_hash,
            sample=sample,
        )
        reference = f"{self.spec.model}:{version.version}"
        say(f"registered model {reference}")
        return reference

    def _sample_file(self) -> Any:
        """Rows the user's code left as `sample.csv` in the model folder: the model's input
        signature is inferred from them (the file is not part of the model)."""
        path = self.model_dir / SAMPLE_FILE
        if not path.is_file():
            return None
        import pandas as pd

        frame = pd.read_csv(path)
        path.unlink()
        return frame

    def main(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        try:
            self.prepare()
            self.open_run()
            trained, evaluations, predictions = None, None, None
            if self.spec.trainer is not None:
                trained = self.run_trainer()
            elif self.spec.evaluation is not None:
                evaluations = self.run_evaluation()
            elif self.spec.batch_predict is not None:
                predictions = self.run_batch_predict()
            else:
                code = self.run_code()
                if code != 0:
                    if code == PREEMPTED or self.stop_requested:
                        say("stopped before the end; the job resumes from its checkpoint")
                        return code if code > 0 else PREEMPTED
                    say(f"the entrypoint exited with code {code}")
                    self.run.end("failed")
                    return code if code > 0 else 1
            if self.stop_requested:
                say("stopped before the end; the job resumes from its checkpoint")
                return PREEMPTED
            model = self.register(trained)
            metrics = self.run.latest_metrics()
            self.run.end("finished")
            self.client.jobs.report(
                self.job,
                project=self.project,
                model_version=model,
                metrics=metrics,
                evaluations=evaluations,
                dataset_version=predictions,
                completed=True,
            )
            say("done")
            return 0
        except StratusError as exc:
            say(f"failed: {exc}")
            self._end_run("failed")
            return 1
        except Exception as exc:
            say(f"failed: {type(exc).__name__}: {exc}")
            self._end_run("failed")
            raise

    def _end_run(self, state: str) -> None:
        run = getattr(self, "run", None)
        if run is not None and not self.stop_requested:
            try:
                run.end(state)
            except Exception as exc:  # the job's failure matters more than the run's state
                say(f"could not end the tracking run: {exc}")

    def _on_term(self, signum: int, frame: Any) -> None:
        self.stop_requested = True
        say("stop requested (SIGTERM)")
        if self.spec.code is None and self.spec.batch_predict is None:
            raise SystemExit(PREEMPTED)  # the trainer or an evaluation runs in this process
        # a batch prediction stops after its current batch and saves the parts finished


def peak_mib() -> float:
    """The peak resident memory of this process (the in-process programs) or of the user's
    code, whichever is larger."""
    kib = max(
        resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return kib / 1024  # ru_maxrss is in KiB on Linux


def forget_secrets(spec_path: Path, config: dict[str, Any]) -> None:
    kept = {k: v for k, v in config.items() if k != "secrets"}
    temp = spec_path.with_suffix(".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(kept, f)
    os.replace(temp, spec_path)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m stratus.training.runner RUNNER_SPEC.json", file=sys.stderr)
        return 2
    spec_path = Path(args[0])
    config = json.loads(spec_path.read_text(encoding="utf-8"))
    if config.get("secrets"):  # read once: the file on disk keeps no secret from now on
        forget_secrets(spec_path, config)
    started = time.monotonic()
    code = Runner(config).main()
    peak = (
        max(  # KiB on Linux: this process (the in-process programs) or the user's code
            resource.getrusage(who).ru_maxrss
            for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        / 1024
    )
    say(f"exit {code} after {time.monotonic() - started:.1f} s, peak memory {peak:.0f} MiB")
    return code


if __name__ == "__main__":
    sys.exit(main())
