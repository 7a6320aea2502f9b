"""The composition root: one object that owns the database, the store and every service.

`Platform.build` only constructs; `start` does the work with side effects (prepare the store,
seed the first admin, start background sweeping) and `stop` undoes it.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from stratus.api.tls import trusted_ca
from stratus.billing.budgets import Budgets
from stratus.billing.controller import CostCollector, MeterController
from stratus.billing.metering import Meter
from stratus.billing.quotas import Quotas
from stratus.billing.recommendations import Recommender
from stratus.billing.reservations import Reservations
from stratus.billing.service import BillingService
from stratus.compute.backends import open_backend
from stratus.compute.instance_types import InstanceCatalog
from stratus.console.sessions import CONSOLE_SESSIONS, ConsoleSessions
from stratus.core.database import Database
from stratus.core.errors import InvalidInput, StoreUnavailable
from stratus.core.events import EventBus
from stratus.core.loop import BackgroundLoop
from stratus.core.outbox import Outbox
from stratus.core.settings import Settings
from stratus.data.service import DataService
from stratus.endpoints.controller import ControllerConfig, EndpointController
from stratus.endpoints.metrics import InferenceMetrics, ServingCollector
from stratus.endpoints.replica_authority import ReplicaAuthority
from stratus.endpoints.routing import RouteTable
from stratus.endpoints.service import EndpointService
from stratus.iac.leases import ApplyLeases
from stratus.iac.planning import Planner
from stratus.iac.project_kinds import BudgetKind, ProjectKind, SecretKind, ServiceAccountKind
from stratus.iac.serving_kinds import (
    AlertChannelKind,
    AlertRuleKind,
    BucketKind,
    EndpointKind,
    ModelAliasKind,
    MonitorKind,
    PipelineKind,
)
from stratus.iam.audit import AUDIT_CHAIN, AuditLog
from stratus.iam.authenticating import Authenticator
from stratus.iam.bootstrap import FirstStart, bootstrap
from stratus.iam.credentials import TokenSigner, derive_key, derive_signing_key
from stratus.iam.service import IamService
from stratus.iam.throttling import LoginLimits, Throttle, audited_lockouts
from stratus.jobs.controller import JobController, JobControllerConfig
from stratus.jobs.service import JobService
from stratus.monitoring.alert_evaluator import AlertEvaluator
from stratus.monitoring.alerts import AlertService
from stratus.monitoring.capture import CaptureStore, CaptureWriter, EncoderPool
from stratus.monitoring.channel_secrets import CHANNEL_SECRETS, SecretBox
from stratus.monitoring.controller import MonitorController
from stratus.monitoring.destinations import NetworkPolicy
from stratus.monitoring.gauges import EndpointRates, JobGauges, all_variant_totals
from stratus.monitoring.metrics import MonitoringCollector
from stratus.monitoring.service import MonitorService
from stratus.pipelines.controller import PipelineController
from stratus.pipelines.service import PipelineService
from stratus.registry.load_checks import LoadChecker, LoadLimits
from stratus.registry.service import RegistryService
from stratus.secrets.platform_secrets import PlatformSecrets, read_platform_secret
from stratus.secrets.service import SecretService
from stratus.serving.capture import CaptureBuffer
from stratus.storage.blobs import Blobs
from stratus.storage.blobstore import BLOB_NAMES, BlobStore, open_store
from stratus.storage.encryption import load_or_create_master_key
from stratus.storage.key_check import root_secret
from stratus.storage.key_rotation import MasterKeyRotation
from stratus.storage.keyring import Keyring
from stratus.storage.master_keys import KeyFiles, MasterKeys
from stratus.storage.reaching import StoreTimeouts
from stratus.storage.service import StorageService
from stratus.tracking.service import TrackingService

log = logging.getLogger(__name__)


def store_timeouts(settings: Settings) -> StoreTimeouts:
    return StoreTimeouts(
        connect_seconds=settings.store.connect_timeout_seconds,
        read_seconds=settings.store.read_timeout_seconds,
        attempts=settings.store.attempts,
    )


def store_credentials(settings: Settings, db: Database, root: bytes) -> tuple[str, str] | None:
    """The S3 key id and secret the settings give (each itself, or `secret:NAME`: a platform
    secret read from the database), or None for the AWS credential chain."""
    key_id = settings.store.s3_access_key_id
    secret = settings.store.s3_secret_access_key
    if key_id is None and secret is None:
        return None
    if key_id is None or secret is None:
        raise InvalidInput(
            "store.s3_access_key_id and store.s3_secret_access_key go together: give both"
        )
    return (
        read_platform_secret(db, root, key_id),
        read_platform_secret(db, root, secret.get_secret_value()),
    )


def backend_options(settings: Settings) -> dict[str, Any]:
    """The chosen compute backend's options, from the settings."""
    if settings.compute.backend == "ray":
        ray = settings.compute.ray
        options: dict[str, Any] = {
            "address": ray.address,
            "namespace": ray.namespace,
            "resources": ray.resources,
            "replica_cpus": ray.replica_cpus,
            "node_dir": ray.node_dir,
            "state_dir": settings.home / "compute",
            "fork_server": settings.serving.fork_server,
            "fork_server_idle_seconds": ray.fork_server_idle_seconds,
        }
        if ray.preload is not None:
            options["preload"] = ray.preload
        return options
    return {
        "state_dir": settings.home / "compute",
        "socket_dir": settings.runtime_dir,
        "cache_dir": settings.home / "cache" / "node",
        "fork_server": settings.serving.fork_server,
        "capacity_vcpus": settings.compute.capacity_vcpus,
        "capacity_memory_gib": settings.compute.capacity_memory_gib,
    }


def _spawn_context() -> Any:
    return multiprocessing.get_context("spawn")


def _read_ca(settings: Settings) -> str | None:
    """The PEM of the CA job runners trust the control plane's https with (they may run on
    other machines, so they get it in their spec, not as a path)."""
    path = trusted_ca(settings)
    try:
        return path.read_text() if path is not None else None
    except OSError:
        return None  # made by `stratus up` before the platform is built; absent in tests


@dataclass
class Platform:
    settings: Settings
    db: Database
    store: BlobStore
    bus: EventBus
    authenticator: Authenticator
    audit: AuditLog
    iam: IamService
    blobs: Blobs
    master_key_rotation: MasterKeyRotation
    storage: StorageService
    registry: RegistryService
    data: DataService
    tracking: TrackingService
    endpoints: EndpointService
    jobs: JobService
    job_controller: JobController
    pipelines: PipelineService
    pipeline_controller: PipelineController
    routes: RouteTable
    metrics: InferenceMetrics
    controller: EndpointController
    captures: CaptureStore
    capture_writer: CaptureWriter
    monitors: MonitorService
    monitor_controller: MonitorController
    alerts: AlertService
    alert_evaluator: AlertEvaluator
    billing: BillingService
    quotas: Quotas
    budgets: Budgets
    recommender: Recommender
    reservations: Reservations
    meter: MeterController
    throttle: Throttle
    secrets: SecretService
    platform_secrets: PlatformSecrets
    planner: Planner
    console_sessions: ConsoleSessions
    _loops: list[BackgroundLoop] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings, master_key: bytes) -> Platform:
        db = Database(settings.database_url, echo=settings.db.echo)
        # The master key wraps data keys and the root secret; every other key is derived from
        # the root secret, which a rotation of the master key leaves as it is (`key_check.py`).
        # Reading it is the one read of the database here; with a rotation under way, the key
        # it moves to is in `master.key.next`.
        files = KeyFiles(settings.master_key_path)
        upcoming = files.read_next()
        keys = MasterKeys(master_key, *([upcoming] if upcoming is not None else []))
        root = root_secret(db, keys.by_check(), master_key)
        store = open_store(
            settings.store_url,
            settings.store.s3_endpoint_url,
            name_key=derive_key(root, BLOB_NAMES),
            timeouts=store_timeouts(settings),
            credentials=store_credentials(settings, db, root),
        )
        bus = EventBus()
        signer = TokenSigner(derive_signing_key(root), settings.security.token_ttl_seconds)
        authenticator = Authenticator(db, signer, settings.security.auth_cache_seconds)
        throttle = Throttle(
            login=LoginLimits(
                failures_per_user=settings.security.login_failures_per_user,
                failures_per_address=settings.security.login_failures_per_address,
                window_seconds=settings.security.login_failure_window_seconds,
            )
        )

        def reload_limits(committed: bool = True) -> None:
            throttle.set_project_limits(iam.project_limits())

        def iam_changed() -> None:  # credentials and project limits are read afresh
            authenticator.clear_cache()
            if db.open_session() is not None:  # called inside a change: once it is over
                db.after_transaction(reload_limits)
            else:
                reload_limits()

        iam = IamService(db, bus, on_change=iam_changed)
        audit = AuditLog(db, derive_key(root, AUDIT_CHAIN), checkpoints=store)
        blobs = Blobs(db, store, Keyring(db, keys), encrypt=settings.store.encryption)
        admission = blobs.admission  # where quotas and budgets refuse what a project asks
        secret_values = SecretService(db, blobs.keyring, project_uid=iam.project_uid)
        storage = StorageService(db, blobs, bus, project_uid=iam.project_uid)
        backend = open_backend(settings.compute.backend, backend_options(settings))
        data = DataService(db, blobs, bus, project_uid=iam.project_uid)
        model_cache = settings.home / "cache" / "models"  # replicas load from here
        registry = RegistryService(
            db,
            blobs,
            bus,
            project_uid=iam.project_uid,
            datasets=data,
            load_checker=LoadChecker(
                LoadLimits(
                    memory_bytes=settings.registry.load_check_memory_mib << 20,
                    seconds=settings.registry.load_check_seconds,
                ),
                # the local backend's warm fork server, else a fresh process of this machine
                context=getattr(backend, "process_context", None) or _spawn_context,
            ),
            cache_dir=model_cache,
        )
        data.model_version = registry.pinned_version
        tracking = TrackingService(db, blobs, bus, project_uid=iam.project_uid)
        catalog = InstanceCatalog.load(
            settings.compute.instance_types or settings.home / "instance_types.yaml"
        )
        endpoints = EndpointService(
            db,
            registry,
            bus,
            project_uid=iam.project_uid,
            instance_types=catalog,
            admission=admission,
            secrets=secret_values,
        )
        jobs = JobService(
            db,
            blobs,
            bus,
            data,
            catalog,
            backend,
            registry=registry,
            project_uid=iam.project_uid,
            project_name=iam.project_name,
            admission=admission,
            secrets=secret_values,
        )
        job_controller = JobController(
            jobs,
            backend,
            signer,
            JobControllerConfig(
                work_dir=settings.home / "jobs",
                url=settings.internal_url,
                ca_pem=_read_ca(settings),
                interval_seconds=settings.compute.scheduler_interval_seconds,
                stop_on_shutdown=settings.compute.stop_jobs_on_shutdown,
            ),
        )
        jobs.on_change = job_controller.wake
        metrics = InferenceMetrics(CollectorRegistry(auto_describe=True))
        throttle.on_limited = metrics.rate_limited_by
        throttle.on_lockout = audited_lockouts(audit)
        pipelines = PipelineService(
            db,
            blobs,
            bus,
            data,
            jobs,
            project_uid=iam.project_uid,
            project_name=iam.project_name,
        )
        outbox = Outbox(db, hold_seconds=settings.outbox.hold_seconds)
        pipeline_controller = PipelineController(
            pipelines,
            data,
            jobs,
            registry,
            endpoints,
            metrics,
            outbox,
            interval_seconds=settings.compute.scheduler_interval_seconds,
            audit=audit.record,
        )
        pipeline_controller.watch(bus)
        pipelines.on_change = pipeline_controller.wake
        routes = RouteTable()
        controller = EndpointController(
            endpoints,
            registry,
            backend,
            routes,
            metrics,
            ControllerConfig(
                secret_key=derive_key(root, "stratus replica secrets"),
                interval_seconds=settings.serving.reconcile_interval_seconds,
                start_timeout_seconds=settings.serving.start_timeout_seconds,
                drain_seconds=settings.serving.drain_seconds,
                stop_replicas_on_shutdown=settings.serving.stop_replicas_on_shutdown,
                prewarm=settings.serving.prewarm,
                replica_tls=ReplicaAuthority(settings.tls_dir),  # made on first use
            ),
        )
        endpoints.on_change = controller.wake
        metrics.registry.register(
            ServingCollector(controller.counts, controller.last_figures, controller.desired_counts)
        )
        # encodes and indexes captured requests off this process
        encoder = EncoderPool(db.url, spool=settings.home / "capture-spool")
        captures = CaptureStore(
            db,
            blobs,
            bus,
            endpoints,
            registry,
            CaptureBuffer(settings.monitoring.capture_buffer_records),
            subject_key=derive_key(root, "stratus capture subjects"),
            encoder=encoder,
            indexer=encoder.index,
        )
        monitors = MonitorService(
            db,
            captures,
            data,
            registry,
            endpoints,
            project_uid=iam.project_uid,
            project_name=iam.project_name,
        )
        monitor_controller = MonitorController(monitors, settings.monitoring.interval_seconds)
        monitors.on_change = monitor_controller.wake
        metrics.registry.register(MonitoringCollector(monitors, captures))
        rates = EndpointRates(lambda: all_variant_totals(metrics), controller.counts)
        job_gauges = JobGauges(jobs.counts_by_phase, iam.project_names)
        metrics.registry.register(rates)
        metrics.registry.register(job_gauges)
        alerts = AlertService(
            db,
            bus,
            audit,
            SecretBox(derive_key(root, CHANNEL_SECRETS)),
            outbox,
            project_uid=iam.project_uid,
            project_name=iam.project_name,
            notification_timeout=settings.monitoring.notification_timeout_seconds,
            notification_networks=NetworkPolicy.allowing(
                settings.monitoring.allowed_notification_networks
            ),
            secret_values=secret_values.resolve,
        )
        alert_evaluator = AlertEvaluator(
            alerts,
            metrics.registry,
            settings.monitoring.alert_interval_seconds,
            refresh=[job_gauges.refresh, rates.snapshot],
        )
        alerts.on_change = alert_evaluator.wake
        billing = BillingService(db, job_models=jobs.models_made)
        reservations = Reservations(db, iam.project_uid, catalog)
        quotas = Quotas(
            db,
            iam.project_uid,
            iam.project_name,
            [endpoints.capacity_in_use, jobs.capacity_in_use, blobs.held_bytes],
        )
        admission.register(quotas.check)
        budgets = Budgets(db, billing, alerts, jobs, audit, iam.project_uid)
        recommender = Recommender(db, catalog, billing.prices, endpoints.desired, jobs.preemptions)
        admission.register(budgets.check)
        controller.capped = budgets.capped
        meter = MeterController(
            Meter(
                db,
                catalog,
                billing.prices,
                replicas=controller.usage,
                jobs=jobs.usage,
                storage=storage.stored_bytes,
                captures=captures.captured_bytes,
                reservations=reservations.all,
                raw_retention=timedelta(days=settings.billing.raw_retention_days),
            ),
            billing,
            settings.billing.meter_interval_seconds,
            after=[budgets.evaluate],
        )
        budgets.on_change = meter.wake
        metrics.registry.register(CostCollector(meter))
        return cls(
            settings=settings,
            db=db,
            store=store,
            bus=bus,
            authenticator=authenticator,
            audit=audit,
            iam=iam,
            blobs=blobs,
            master_key_rotation=MasterKeyRotation(
                db, keys, files, audit, from_variable=settings.master_key is not None
            ),
            storage=storage,
            registry=registry,
            data=data,
            tracking=tracking,
            endpoints=endpoints,
            jobs=jobs,
            job_controller=job_controller,
            pipelines=pipelines,
            pipeline_controller=pipeline_controller,
            routes=routes,
            metrics=metrics,
            controller=controller,
            captures=captures,
            capture_writer=CaptureWriter(captures, settings.monitoring.capture_flush_seconds),
            monitors=monitors,
            monitor_controller=monitor_controller,
            alerts=alerts,
            alert_evaluator=alert_evaluator,
            billing=billing,
            quotas=quotas,
            budgets=budgets,
            recommender=recommender,
            reservations=reservations,
            meter=meter,
            throttle=throttle,
            secrets=secret_values,
            platform_secrets=PlatformSecrets(db, root),
            console_sessions=ConsoleSessions(db, derive_key(root, CONSOLE_SESSIONS)),
            planner=Planner(
                [
                    ProjectKind(iam, quotas),
                    ServiceAccountKind(iam),
                    SecretKind(secret_values),
                    BucketKind(storage),
                    AlertChannelKind(alerts),
                    ModelAliasKind(registry),
                    EndpointKind(endpoints),
                    MonitorKind(monitors),
                    AlertRuleKind(alerts),
                    PipelineKind(pipelines),
                    BudgetKind(budgets),
                ],
                record=audit.record,
                leases=ApplyLeases(db),
                history=lambda project: audit.list(project=project, order="desc", limit=1000)[0],
            ),
        )

    @staticmethod
    def master_key(settings: Settings) -> bytes:
        configured = settings.master_key.get_secret_value() if settings.master_key else None
        return load_or_create_master_key(configured, settings.master_key_path)

    def start(self) -> FirstStart | None:
        self.store.ensure_ready()
        self.master_key_rotation.resume()  # before any data key is read or written
        first = bootstrap(self.db)
        self.throttle.set_project_limits(self.iam.project_limits())
        self.blobs.adopt_legacy_names()
        self.blobs.sweep(self.settings.store.tmp_max_age_seconds)
        self._start_loop(
            store_loop(
                "sweeping the object store",
                lambda: self.blobs.sweep(self.settings.store.tmp_max_age_seconds),
                self.settings.store.sweep_interval_seconds,
                thread_name="stratus-sweeper",
            )
        )
        self.audit.checkpoint()
        # Anchor the audit chain's head in the object store every few seconds: entries newer
        # than the last checkpoint are the only ones a truncation of the database could hide.
        self._start_loop(
            store_loop(
                "writing the audit checkpoint",
                self.audit.checkpoint,
                self.settings.security.audit_checkpoint_seconds,
                thread_name="stratus-audit-checkpoint",
            )
        )
        return first

    def _start_loop(self, loop: BackgroundLoop) -> None:
        self._loops.append(loop)  # first: `stop` stops it even if starting it fails
        loop.start()

    def stop(self) -> None:
        for loop in self._loops:
            loop.stop(timeout=5)
        self.master_key_rotation.stop(timeout=5)  # a rotation goes on at the next start
        try:
            self.audit.checkpoint()
        except Exception:
            log.exception("writing the audit checkpoint at shutdown failed")
        self.db.dispose()


def store_loop(
    name: str, work: Callable[[], object], interval_seconds: float, *, thread_name: str
) -> BackgroundLoop:
    """A loop of work on the object store, its first pass after one interval. An unreachable
    store is an outage: one line when it starts and one when it ends, not a traceback every
    pass. Any other error is logged as every loop logs one; the loop goes on either way."""

    def tick() -> None:
        work()

    return BackgroundLoop(
        name,
        tick,
        interval_seconds,
        thread_name=thread_name,
        initial_delay_seconds=interval_seconds,
        quiet=(StoreUnavailable,),
        log=log,
    )
