"""The endpoint controller: makes each endpoint's replicas match its spec.

One asyncio task on the control plane's event loop (the gateway's loop, so the routing table
needs no lock). Each pass reads every endpoint's spec, probes replicas that are starting,
replaces ones that died (with a backoff when they crash in a loop), plans starts and drains
with the pure rollout policy (`rollout.py`), rebuilds the gateway's routes and writes the
status back. Blocking work (database, store, process calls) runs in threads.

Ready means routable: the status counts a replica ready only when the gateway's routing table
holds a usable link to it (`_routed`), and the table is rebuilt before the status is written,
so a caller who reads `ready` can send traffic to every replica it counts.

Replica ids carry `endpoint uid.variant.version.template.nonce`, so after a control-plane
restart the replicas the backend still runs are re-adopted (or stopped if nobody wants them).
Each replica's secret, which the gateway presents on connecting, is derived from its id and a
key of the control plane (`replica_secret`): nothing needs to be stored to reconnect to a
re-adopted replica, and a replica accepts only whoever knows the key. A replica on the network
(TCP) also gets a certificate for its id from the replica CA (`replica_authority.py`): the
gateway reaches it over mutual TLS, and replaces it before that certificate ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import secrets
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson

from stratus.compute.addresses import parse_address
from stratus.compute.backend import ComputeBackend, ReplicaHandle, ReplicaState
from stratus.core.clock import utcnow
from stratus.core.errors import StratusError
from stratus.endpoints import schemas as s
from stratus.endpoints.autoscaler import Autoscaler, Step
from stratus.endpoints.metrics import InferenceMetrics, ReplicaCount, ReplicaFigures, Series
from stratus.endpoints.replica_authority import RENEW_BEFORE, ReplicaAuthority
from stratus.endpoints.rollout import Phase, Seen, Want, backoff_seconds, plan
from stratus.endpoints.routing import EndpointRoute, ReplicaLink, RouteTable, VariantRoute
from stratus.endpoints.service import DesiredEndpoint, EndpointService
from stratus.registry.references import parse_ref
from stratus.registry.service import RegistryService
from stratus.serving.connections import ReplicaConnection, ReplicaGone, ReplicaUntrusted
from stratus.serving.replica import ReplicaSpec
from stratus.serving.replica_tls import replica_identity
from stratus.serving.wire import Kind

log = logging.getLogger("stratus.endpoints")

T = TypeVar("T")
CRASH_LOOP = 3  # consecutive failures after which a variant counts as failing


@dataclass
class ControllerConfig:
    secret_key: bytes  # replicas' secrets are derived from it (`replica_secret`)
    interval_seconds: float = 1.0
    start_timeout_seconds: float = 120.0
    drain_seconds: float = 10.0
    stop_replicas_on_shutdown: bool = True
    prewarm: bool = True  # warm the backend at start, not at the first endpoint
    # certificates for replicas on the network, and the gateway's (None: plain TCP to them)
    replica_tls: ReplicaAuthority | None = None


FUNCTION_LABEL = ("stratus.io/kind", "function")  # billed per request, not per hour
ENDED_KEPT = 10_000  # replicas that stopped, kept for metering to read their last stretch


@dataclass(frozen=True)
class Owner:
    """Whose a replica is and what it is billed as (fixed when it starts)."""

    project: str
    endpoint: str
    instance_type: str
    per_request: bool


@dataclass(frozen=True)
class ReplicaUsage:
    """What metering needs of one replica: whose it is, since (and until) when it ran, and
    its own request counters (None when it could not be asked: starting, or gone)."""

    replica_id: str
    project: str
    endpoint: str
    variant: str
    model_version: str
    instance_type: str
    per_request: bool
    started_at: float  # wall-clock seconds
    ended_at: float | None
    requests: int | None
    busy_seconds: float | None


def owner_of(endpoint: DesiredEndpoint, variant: str) -> Owner:
    spec = next((v for v in endpoint.variants if v.name == variant), None)
    key, value = FUNCTION_LABEL
    return Owner(
        endpoint.project,
        endpoint.name,
        spec.instance_type if spec is not None else s.DEFAULT_INSTANCE_TYPE,
        endpoint.labels.get(key) == value,
    )


@dataclass
class Replica:
    id: str
    endpoint_uid: str
    variant: str
    version: int
    template: str
    handle: ReplicaHandle
    phase: Phase = Phase.starting
    model: str = ""
    link: ReplicaLink | None = None
    ready_at: float | None = None
    address: str = ""  # where it listens, once the backend says it is ready
    owner: Owner | None = None
    certificate_ends: float | None = None  # its TLS certificate's end, once connected (TCP)
    renewing: bool = False  # being replaced before its certificate ends

    @property
    def model_version(self) -> str:
        return f"{self.model}:{self.version}"

    def usage(self, ended_at: float | None, stats: dict[str, Any] | None) -> ReplicaUsage | None:
        if self.owner is None:
            return None
        o = self.owner
        return ReplicaUsage(
            self.id,
            o.project,
            o.endpoint,
            self.variant,
            self.model_version,
            o.instance_type,
            o.per_request,
            self.handle.started_at,
            ended_at,
            int(stats["requests"]) if stats else None,
            float(stats.get("busy_seconds", 0.0)) if stats else None,
        )


@dataclass
class Health:
    """A variant's crash record."""

    failures: int = 0  # in a row; reset when a replica becomes ready
    restarts: int = 0
    not_before: float = 0.0
    message: str = ""
    last_exited: ReplicaHandle | None = None


@dataclass
class _Known:
    endpoint: DesiredEndpoint
    status: dict[str, object] = field(default_factory=dict)
    written_at: float = 0.0


def template_of(
    variant: s.VariantSpec, passthrough: Sequence[str] = (), secrets: Sequence[str] = ()
) -> str:
    """What tells a variant's replicas of one spec from another's (a new one rolls)."""
    key = f"{variant.model}|{variant.version}|{variant.batching.model_dump_json()}"
    if passthrough:  # (endpoints without any keep the templates they had)
        key += "|passthrough=" + ",".join(sorted(passthrough))
    if secrets:  # other secrets: new replicas, started with them
        key += "|secrets=" + ",".join(sorted(secrets))
    if variant.instance_type != s.DEFAULT_INSTANCE_TYPE:  # a new size is new replicas
        key += "|instance_type=" + variant.instance_type
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def replica_secret(key: bytes, replica_id: str) -> str:
    """The secret replica `replica_id` is started with and the gateway presents to it."""
    return hmac.new(key, b"replica " + replica_id.encode(), hashlib.sha256).hexdigest()


def parse_replica_id(replica_id: str) -> tuple[str, str, int, str] | None:
    parts = replica_id.split(".")
    if len(parts) != 5 or not parts[2].isdigit():
        return None
    return parts[0], parts[1], int(parts[2]), parts[3]


class EndpointController:
    def __init__(
        self,
        service: EndpointService,
        registry: RegistryService,
        backend: ComputeBackend,
        routes: RouteTable,
        metrics: InferenceMetrics,
        config: ControllerConfig,
    ) -> None:
        self.service = service
        self.registry = registry
        self.backend = backend
        self.routes = routes
        self.metrics = metrics
        self.config = config
        self.replicas: dict[str, Replica] = {}
        self.health: dict[tuple[str, str], Health] = {}
        self._known: dict[str, _Known] = {}
        self._series: dict[tuple[str, str, str, str], Series] = {}
        self._drains: set[asyncio.Task[object]] = set()
        self._figures: list[ReplicaFigures] = []
        self._ended: deque[ReplicaUsage] = deque(maxlen=ENDED_KEPT)
        self.autoscaler = Autoscaler()
        # project -> why its autoscaled variants are held at their minimum (a spent budget),
        # or None; set by billing, read on each pass
        self.capped: Callable[[str], str | None] = lambda project: None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._prepared = False
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="stratus-controller")

    # --- lifecycle ---------------------------------------------------------------------------

    def _blocking(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run blocking work (database, store, processes) on the controller's own threads, so
        slow replica stops never hold up the gateway's use of the loop's default executor."""
        return asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        # what a previous control plane observed is not true any more until observed again
        await self._blocking(self.service.reset_statuses)
        # every endpoint is routed at once, pending until its replicas are observed: the
        # gateway answers a request that comes before that 503 "retry shortly", never 404
        for endpoint in await self._blocking(self.service.desired):
            self._route(endpoint)
        if self.config.prewarm:
            await self._prepare()
        self._task = asyncio.create_task(self._run(), name="stratus-endpoint-controller")

    def wake(self) -> None:
        """Reconcile now (callable from any thread)."""
        loop, event = self._loop, self._wake
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._drains:
            await asyncio.gather(*self._drains, return_exceptions=True)
        stopping = self.config.stop_replicas_on_shutdown
        for replica in self.replicas.values():
            stats = None
            if replica.link is not None:
                if stopping:
                    stats = await _stats(replica.link.connection)
                await replica.link.connection.close()
            if stopping:
                self._ended_now(replica, stats)
        self.replicas.clear()
        # a start the cancelled pass left running in a thread finishes (and is recorded) first
        await asyncio.to_thread(self._pool.shutdown, True)
        if self.config.stop_replicas_on_shutdown:
            # everything the backend runs for this platform, known to this pass or not
            handles = await asyncio.to_thread(self.backend.running)
            await asyncio.gather(
                *(asyncio.to_thread(self.backend.stop_replica, h, 5.0) for h in handles),
                return_exceptions=True,
            )
        await asyncio.to_thread(self.backend.close)

    async def _run(self) -> None:
        assert self._wake is not None
        try:
            await self._adopt()
        except Exception:
            log.exception("re-adopting replicas failed; they will be replaced")
        while True:
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:  # the controller must outlive a passing database error
                log.exception("reconciling endpoints failed; will retry")
            busy = any(r.phase is Phase.starting for r in self.replicas.values())
            interval = 0.05 if busy else self.config.interval_seconds
            if self._autoscaled():  # sampled at a steady pace
                interval = min(interval, self.autoscaler.sample_seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()

    async def _prepare(self) -> None:
        if not self._prepared:
            self._prepared = True
            await self._blocking(self.backend.prepare)

    async def _adopt(self) -> None:
        handles = await self._blocking(self.backend.running)
        if not handles:
            return
        wanted = {d.uid: d for d in await self._blocking(self.service.desired)}
        for handle in handles:
            parsed = parse_replica_id(handle.replica_id)
            if parsed is None or parsed[0] not in wanted:
                log.info("stopping replica %s: no endpoint wants it", handle.replica_id)
                await self._blocking(self.backend.stop_replica, handle, 5.0)
                continue
            endpoint_uid, variant, version, template = parsed
            spec = next((v for v in wanted[endpoint_uid].variants if v.name == variant), None)
            self.replicas[handle.replica_id] = Replica(
                id=handle.replica_id,
                endpoint_uid=endpoint_uid,
                variant=variant,
                version=version,
                template=template,
                handle=handle,
                # its greeting says for sure once it is reached; until then, its variant's
                model=parse_ref(spec.model).model if spec is not None else "",
                owner=owner_of(wanted[endpoint_uid], variant),
            )
            log.info("re-adopted replica %s on %s", handle.replica_id, handle.node)

    # --- one pass ----------------------------------------------------------------------------

    async def reconcile(self) -> None:
        desired = await self._blocking(self.service.desired)
        if desired:
            await self._prepare()
        wanted = {d.uid: d for d in desired}
        for uid in list(self._known):
            if uid not in wanted:
                gone = self._known.pop(uid).endpoint
                self.routes.remove(gone.project, gone.name)
        for replica in list(self.replicas.values()):
            if replica.endpoint_uid not in wanted and replica.phase is not Phase.draining:
                self._drain(replica)
        await self._probe()
        self.autoscaler.keep_only(
            {(d.uid, v.name) for d in desired for v in d.variants if v.autoscaling is not None}
        )
        for endpoint in desired:
            known = self._known.setdefault(endpoint.uid, _Known(endpoint))
            if known.endpoint != endpoint:
                old = known.endpoint
                if (old.project, old.name) != (endpoint.project, endpoint.name):
                    self.routes.remove(old.project, old.name)
                known.endpoint = endpoint
            await self._reconcile_endpoint(endpoint)
            self._route(endpoint)
            await self._write_status(known)

    async def _probe(self) -> None:
        """Starting replicas: ready yet, exited, or too slow? Ready ones: still connected?"""
        checks = [
            r
            for r in self.replicas.values()
            if r.phase is Phase.starting
            or (r.phase is Phase.ready and (r.link is None or not r.link.usable))
        ]  # a ready one without a usable link: reconnect it, or learn that it exited
        statuses = await asyncio.gather(
            *(self._blocking(self.backend.status, r.handle) for r in checks)
        )
        now = time.time()
        for replica, status in zip(checks, statuses, strict=True):
            if replica.id not in self.replicas or replica.phase is Phase.draining:
                continue
            if status.state is ReplicaState.exited:
                code = "killed" if status.exit_code is None else f"code {status.exit_code}"
                self._failed(replica, f"replica {replica.id} exited ({code})", status.detail)
            elif status.state is ReplicaState.ready:
                replica.address = status.address or replica.handle.address
                refused = await self._connect(replica)
                late = now - replica.handle.started_at > self.config.start_timeout_seconds
                if refused and late and replica.phase is Phase.starting:
                    # for good: re-adopted under another replica CA, say
                    self._failed(replica, f"replica {replica.id} refused the gateway", refused)
                    self._stop_later(replica)
            elif now - replica.handle.started_at > self.config.start_timeout_seconds:
                self._failed(
                    replica,
                    f"replica {replica.id} was not ready within "
                    f"{self.config.start_timeout_seconds:g} s",
                    "",
                )
                self._stop_later(replica)

    async def _connect(self, replica: Replica) -> str:
        """Connect to the replica (over mutual TLS on TCP, `replica_tls`); returns why it
        refused the gateway, or "" (connected, or out of reach for now)."""
        if replica.link is not None:
            await replica.link.connection.close()
            replica.link = None
        secret = replica_secret(self.config.secret_key, replica.id)
        try:
            tls, identity = self._tls_for(replica)
            connection = await ReplicaConnection.open(
                replica.address, secret, tls=tls, identity=identity
            )
        except (ReplicaGone, ReplicaUntrusted, ssl.SSLError) as exc:  # before OSError
            log.warning("replica %s refused the gateway, or is not it: %s", replica.id, exc)
            return str(exc) or type(exc).__name__
        except (OSError, TimeoutError, ConnectionError, ValueError) as exc:
            log.warning("cannot connect to replica %s: %s", replica.id, exc)
            return ""
        replica.certificate_ends = connection.certificate_ends
        replica.model = str(connection.hello.get("model", replica.model))
        replica.link = ReplicaLink(replica.id, connection)
        if replica.phase is Phase.starting:
            replica.phase = Phase.ready
            replica.ready_at = time.time()
            self._health(replica).failures = 0
            log.info("replica %s is ready", replica.id)
        return ""

    def _tls_for(self, replica: Replica) -> tuple[ssl.SSLContext | None, str]:
        """The gateway's TLS context and the identity to expect, for a replica on TCP."""
        authority = self.config.replica_tls
        if authority is None or parse_address(replica.address).scheme != "tcp":
            return None, ""
        return authority.client_context(), replica_identity(replica.id)

    def _failed(self, replica: Replica, what: str, log_tail: str) -> None:
        health = self._health(replica)
        health.failures += 1
        health.restarts += 1
        health.not_before = time.monotonic() + backoff_seconds(health.failures)
        last = [line for line in log_tail.splitlines() if line.strip()][-3:]
        health.message = what + (": " + " | ".join(last) if last else "")
        health.last_exited = replica.handle
        log.warning("%s", health.message)
        self.replicas.pop(replica.id, None)
        self._ended_now(replica, None)
        if replica.link is not None:
            self._spawn(replica.link.connection.close())

    def _health(self, replica: Replica) -> Health:
        return self.health.setdefault((replica.endpoint_uid, replica.variant), Health())

    async def _reconcile_endpoint(self, endpoint: DesiredEndpoint) -> None:
        mine = [r for r in self.replicas.values() if r.endpoint_uid == endpoint.uid]
        wants = [
            Want(
                v.name,
                template_of(v, endpoint.passthrough, endpoint.secrets),
                self._wanted(endpoint, v, mine),
            )
            for v in endpoint.variants
        ]
        seen = [
            Seen(r.id, r.variant, self._template_seen(r), r.phase, r.handle.started_at)
            for r in mine
        ]
        decided = plan(wants, seen)
        for replica_id in decided.drain:
            self._drain(self.replicas[replica_id])
        by_name = {v.name: v for v in endpoint.variants}
        for variant_name, count in decided.start.items():
            key = (endpoint.uid, variant_name)
            health = self.health.setdefault(key, Health())
            if time.monotonic() < health.not_before:
                continue
            for _ in range(count):
                try:
                    await self._start(endpoint, by_name[variant_name])
                except StratusError as exc:
                    health.failures += 1
                    health.not_before = time.monotonic() + backoff_seconds(health.failures + 1)
                    health.message = f"cannot start a replica: {exc.detail}"
                    log.warning("endpoint %s/%s: %s", endpoint.project, endpoint.name,
                                health.message)  # fmt: skip
                    break

    def _template_seen(self, replica: Replica) -> str:
        """A replica's template; once its certificate nears its end, one nobody wants, so the
        rollout policy replaces it (a new one first, with a new certificate)."""
        ends = replica.certificate_ends
        if ends is None or ends - time.time() > RENEW_BEFORE.total_seconds():
            return replica.template
        if replica.phase is Phase.ready and not replica.renewing:
            replica.renewing = True
            log.info("replica %s: its certificate ends soon; replacing it", replica.id)
        return replica.template + "+renew"

    def _autoscaled(self) -> bool:
        return any(
            v.autoscaling is not None for k in self._known.values() for v in k.endpoint.variants
        )

    def _wanted(
        self, endpoint: DesiredEndpoint, variant: s.VariantSpec, mine: list[Replica]
    ) -> int:
        """The replicas a variant should have: its spec's count, or what its autoscaler
        decides from the requests at the gateway (a change is recorded as an event)."""
        if variant.autoscaling is None:
            return variant.replicas
        spec, cap = variant.autoscaling, self.capped(endpoint.project)
        if cap is not None:  # a spent budget holds it at its minimum
            spec = spec.model_copy(update={"max_replicas": spec.min_replicas})
        active = arrived = 0
        for (project, name, variant_name, _), series in self._series.items():
            if (project, name, variant_name) == (endpoint.project, endpoint.name, variant.name):
                active += series.active
                arrived += series.arrived
        replicas = sum(
            1 for r in mine if r.variant == variant.name and r.phase is not Phase.draining
        )
        count, step = self.autoscaler.decide(
            (endpoint.uid, variant.name), spec, active, arrived, replicas, time.monotonic(),
        )  # fmt: skip
        if step is not None and cap is not None and step.to_replicas < step.from_replicas:
            step = Step(step.from_replicas, step.to_replicas, f"{cap}: held at its minimum")
        if step is not None:
            log.info(
                "endpoint %s/%s variant %s: %d -> %d replicas (%s)", endpoint.project,
                endpoint.name, variant.name, step.from_replicas, step.to_replicas, step.reason,
            )  # fmt: skip
            self._spawn(self._record_step(endpoint, variant.name, step))
        return count

    async def _record_step(self, endpoint: DesiredEndpoint, variant: str, step: Step) -> None:
        try:
            await self._blocking(
                self.service.record_event, endpoint.uid, variant, "scaled",
                step.from_replicas, step.to_replicas, step.reason,
            )  # fmt: skip
        except Exception as exc:  # an event lost is no reason to stop scaling
            log.warning("cannot record a scaling event of %s/%s: %s", endpoint.project,
                        endpoint.name, exc)  # fmt: skip

    def _desired_of(self, endpoint: DesiredEndpoint, variant: s.VariantSpec) -> int:
        if variant.autoscaling is None:
            return variant.replicas
        decided = self.autoscaler.desired((endpoint.uid, variant.name))
        return variant.autoscaling.min_replicas if decided is None else decided

    def desired_counts(self) -> Iterable[ReplicaCount]:
        """Each variant's desired replicas (for /metrics; the phase field is unused)."""
        return [
            ReplicaCount(
                k.endpoint.project, k.endpoint.name, v.name, "", self._desired_of(k.endpoint, v)
            )
            for k in list(self._known.values())
            for v in k.endpoint.variants
        ]

    async def _start(self, endpoint: DesiredEndpoint, variant: s.VariantSpec) -> None:
        assert variant.version is not None
        ref = parse_ref(variant.model)
        # the replica fetches the version's files from the store itself, with this grant
        version, grant = await self._blocking(
            self.registry.grant, endpoint.project, ref.model, str(variant.version)
        )
        environment = (  # the secrets its spec names, read as it starts
            await self._blocking(self.service.secret_values, endpoint.project, endpoint.secrets)
            if endpoint.secrets
            else {}
        )
        template = template_of(variant, endpoint.passthrough, endpoint.secrets)
        replica_id = (
            f"{endpoint.uid}.{variant.name}.{variant.version}.{template}.{secrets.token_hex(3)}"
        )
        spec = ReplicaSpec(
            artifact=grant,
            flavor=version.flavor or "",
            trusted=version.trusted,
            signature=version.signature,
            model_name=ref.model,
            model_version=version.version,
            endpoint=f"{endpoint.project}/{endpoint.name}",
            variant=variant.name,
            secret=replica_secret(self.config.secret_key, replica_id),
            max_batch_size=variant.batching.max_batch_size,
            max_wait_ms=variant.batching.max_wait_ms,
            passthrough=list(endpoint.passthrough),
            environment=environment,
        )
        authority = self.config.replica_tls
        if authority is not None and self.backend.replicas_on_network:  # mutual TLS on TCP
            tls = await self._blocking(authority.issue, replica_id)
            spec = spec.model_copy(update={"tls": tls})
        handle = await self._blocking(self.backend.start_replica, replica_id, spec)
        self.replicas[replica_id] = Replica(
            id=replica_id,
            endpoint_uid=endpoint.uid,
            variant=variant.name,
            version=version.version,
            template=template,
            handle=handle,
            model=ref.model,
            owner=owner_of(endpoint, variant.name),
        )

    # --- draining ----------------------------------------------------------------------------

    def _drain(self, replica: Replica) -> None:
        """Take a replica out of the routes now; stop it once its requests are answered."""
        replica.phase = Phase.draining
        known = self._known.get(replica.endpoint_uid)
        if known is not None:
            self._route(known.endpoint)
        self._spawn(self._finish_drain(replica))

    async def _finish_drain(self, replica: Replica) -> None:
        stats: dict[str, Any] | None = None
        try:
            if replica.link is not None:
                deadline = time.monotonic() + self.config.drain_seconds
                connection = replica.link.connection
                while connection.in_flight and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                stats = await _stats(connection)  # its last counts, for metering
                await connection.close()
            await self._blocking(
                self.backend.stop_replica, replica.handle, self.config.drain_seconds
            )
            log.info("stopped replica %s", replica.id)
        finally:
            self.replicas.pop(replica.id, None)
            self._ended_now(replica, stats)

    def _ended_now(self, replica: Replica, stats: dict[str, Any] | None) -> None:
        usage = replica.usage(time.time(), stats)
        if usage is not None:
            self._ended.append(usage)

    # --- metering ----------------------------------------------------------------------------

    def usage(self, timeout: float = 10.0) -> list[ReplicaUsage]:
        """Every replica running now (with its counters) and those that stopped lately (callable
        from any thread: the meter's). Replicas stopped by a control plane that was killed are
        not among them; the meter closes their time at their last observation."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return list(self._ended)
        return asyncio.run_coroutine_threadsafe(self._usage(), loop).result(timeout)

    async def _usage(self) -> list[ReplicaUsage]:
        running = list(self.replicas.values())
        answers = await asyncio.gather(
            *(
                _stats(r.link.connection)
                if r.link is not None and r.phase is Phase.ready
                else _nothing()
                for r in running
            )
        )
        found = [r.usage(None, stats) for r, stats in zip(running, answers, strict=True)]
        return [u for u in found if u is not None] + list(self._ended)

    def _stop_later(self, replica: Replica) -> None:
        self._spawn(self._blocking(self.backend.stop_replica, replica.handle, 2.0))

    def _spawn(self, work: Awaitable[object]) -> None:
        task = asyncio.ensure_future(work)
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    # --- routes and status -------------------------------------------------------------------

    def _route(self, endpoint: DesiredEndpoint) -> None:
        ready = [
            r for r in self.replicas.values()
            if r.endpoint_uid == endpoint.uid and r.phase is Phase.ready and r.link is not None
        ]  # fmt: skip
        variants = []
        for spec in endpoint.variants:
            links = [r for r in ready if r.variant == spec.name]
            # during a rolling update a variant holds replicas of two versions; the label is
            # the version that answers (the replica's own)
            by_version: dict[str, list[Replica]] = {}
            for r in links:
                by_version.setdefault(r.model_version, []).append(r)
            current = f"{parse_ref(spec.model).model}:{spec.version}"
            if not by_version:
                by_version[current] = []
            share = len(by_version)
            for model_version, group in sorted(by_version.items(), key=lambda kv: kv[0] != current):
                variants.append(
                    VariantRoute(
                        name=spec.name,
                        traffic=spec.traffic // share if share > 1 else spec.traffic,
                        shadow=spec.shadow,
                        model_version=model_version,
                        series=self._series_for(endpoint, spec.name, model_version),
                        replicas=[r.link for r in group if r.link is not None],
                    )
                )
        known = self._known.get(endpoint.uid)
        phase = str(known.status.get("phase", "pending")) if known else "pending"
        self.routes.set(
            EndpointRoute(
                uid=endpoint.uid,
                project=endpoint.project,
                name=endpoint.name,
                public=endpoint.public,
                variants=variants,
                phase=phase,
                capture=endpoint.capture.sample,
                cold_start=any(
                    v.autoscaling is not None and v.autoscaling.min_replicas == 0
                    for v in endpoint.variants
                    if not v.shadow and v.traffic > 0
                ),
                rate_limit=(
                    endpoint.access.rate_limit.limit() if endpoint.access.rate_limit else None
                ),
                networks=tuple(ipaddress.ip_network(c) for c in endpoint.access.allowed_cidrs),
            )
        )

    def _series_for(self, endpoint: DesiredEndpoint, variant: str, model_version: str) -> Series:
        key = (endpoint.project, endpoint.name, variant, model_version)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = self.metrics.series(*key)
        return series

    def _routed(self, endpoint: DesiredEndpoint) -> set[str]:
        """The replicas the gateway can send this endpoint's requests to now: those with a
        usable link in its routing table (the only replicas a status may call ready)."""
        route = self.routes.get(endpoint.project, endpoint.name)
        if route is None or route.uid != endpoint.uid:
            return set()
        return {link.id for v in route.variants for link in v.replicas if link.usable}

    def status_of(self, endpoint: DesiredEndpoint) -> s.EndpointStatus:
        mine = [r for r in self.replicas.values() if r.endpoint_uid == endpoint.uid]
        routed = self._routed(endpoint)
        variants: list[s.VariantStatus] = []
        failing = False
        for spec in endpoint.variants:
            template = template_of(spec, endpoint.passthrough, endpoint.secrets)
            live = [r for r in mine if r.variant == spec.name and r.phase is not Phase.draining]
            ready = [r for r in live if r.phase is Phase.ready and r.id in routed]
            updated = sum(1 for r in ready if r.template == template)
            health = self.health.get((endpoint.uid, spec.name), Health())
            desired = self._desired_of(endpoint, spec)
            if health.failures >= CRASH_LOOP and updated < desired:
                failing = True
            variants.append(
                s.VariantStatus(
                    name=spec.name,
                    model=parse_ref(spec.model).model,
                    version=spec.version or 0,
                    desired=desired,
                    ready=len(ready),
                    updated=updated,
                    restarts=health.restarts,
                    message=health.message if health.failures else "",
                )
            )
        wanted = {
            (v.name, template_of(v, endpoint.passthrough, endpoint.secrets))
            for v in endpoint.variants
        }
        stale = any((r.variant, r.template) not in wanted for r in mine)
        complete = all(v.updated == v.desired for v in variants)
        serving = any(v.ready for v in variants)
        messages = [f"{v.name}: {v.message}" for v in variants if v.message]
        if complete and not stale:
            phase, message = "ready", ""
        elif failing:
            phase = "degraded" if serving else "failed"
            message = "; ".join(messages)
        elif serving:
            phase = "updating"
            message = "; ".join(messages) or "rolling out the current spec"
        else:
            phase = "pending"
            message = "; ".join(messages) or "starting replicas"
        return s.EndpointStatus(
            phase=phase,
            message=message,
            observed_revision=endpoint.revision,
            variants=variants,
            replicas=[
                _replica_read(r, r.id in routed)
                for r in sorted(mine, key=lambda r: r.handle.started_at)
            ],
            observed_at=utcnow(),
        )

    async def _write_status(self, known: _Known) -> None:
        """Write what the routing table holds now (call it after `_route`): a replica the
        status says is ready is one the gateway already routes to."""
        status = self.status_of(known.endpoint)
        comparable = status.model_dump(
            mode="json", exclude={"observed_at": True, "replicas": {"__all__": {"in_flight"}}}
        )
        stale = time.monotonic() - known.written_at > 30
        if comparable != known.status or stale:
            await self._blocking(self.service.write_status, known.endpoint.uid, status)
            known.status, known.written_at = comparable, time.monotonic()
            route = self.routes.get(known.endpoint.project, known.endpoint.name)
            if route is not None:
                route.phase = status.phase

    # --- what the API and /metrics read --------------------------------------------------------

    def log_handles(
        self, endpoint_uid: str, replica_id: str | None
    ) -> list[tuple[str, ReplicaHandle]]:
        """The replicas of an endpoint whose logs can be read (and each variant's last exited
        one, to see why it crashed)."""
        handles: list[tuple[str, ReplicaHandle]] = [
            (r.id, r.handle) for r in self.replicas.values() if r.endpoint_uid == endpoint_uid
        ]
        for (uid, _), health in self.health.items():
            if uid == endpoint_uid and health.last_exited is not None:
                exited = health.last_exited
                if all(h.replica_id != exited.replica_id for _, h in handles):
                    handles.append((f"{exited.replica_id} (exited)", exited))
        if replica_id is not None:
            handles = [(n, h) for n, h in handles if h.replica_id == replica_id]
        return handles

    def read_logs(self, handles: list[tuple[str, ReplicaHandle]], lines: int) -> list[s.LogLines]:
        return [
            s.LogLines(replica=name, lines=self.backend.logs(handle, lines))
            for name, handle in handles
        ]

    def counts(self) -> Iterable[ReplicaCount]:
        tally: dict[tuple[str, str, str, str], int] = {}
        for known in self._known.values():
            for spec in known.endpoint.variants:
                for phase in Phase:
                    tally[(known.endpoint.project, known.endpoint.name, spec.name, phase.value)] = 0
        for r in self.replicas.values():
            owner = self._known.get(r.endpoint_uid)
            if owner is not None:
                key = (owner.endpoint.project, owner.endpoint.name, r.variant, r.phase.value)
                tally[key] = tally.get(key, 0) + 1
        return [ReplicaCount(*key, count) for key, count in sorted(tally.items())]

    def last_figures(self) -> list[ReplicaFigures]:
        return list(self._figures)

    async def refresh_figures(self) -> None:
        self._figures = await self.replica_figures()

    async def replica_figures(self) -> list[ReplicaFigures]:
        """Each ready replica's own counters (its STATS frame), asked for concurrently."""
        ready = [r for r in self.replicas.values() if r.phase is Phase.ready and r.link]
        answers = await asyncio.gather(*(_stats(r.link.connection) for r in ready if r.link))
        figures = []
        for replica, stats in zip(ready, answers, strict=True):
            known = self._known.get(replica.endpoint_uid)
            if known is None or stats is None:
                continue
            figures.append(
                ReplicaFigures(
                    project=known.endpoint.project,
                    endpoint=known.endpoint.name,
                    variant=replica.variant,
                    model_version=replica.model_version,
                    replica=replica.id,
                    stats=stats,
                )
            )
        return figures


async def _stats(connection: ReplicaConnection) -> dict[str, Any] | None:
    """A replica's own counters (its STATS frame), or None if it cannot say."""
    try:
        answer = await connection.call(Kind.STATS, "", b"", 2.0)
        if answer.status != 200:
            return None
        stats: dict[str, Any] = orjson.loads(answer.body)
    except (ConnectionError, TimeoutError, ValueError):  # gone, slow, or not its counters
        return None
    return stats


async def _nothing() -> None:
    return None


def _replica_read(r: Replica, routed: bool) -> s.ReplicaRead:
    # ready (to the backend) but not yet, or no longer, in the gateway's table: not ready
    phase = Phase.starting if r.phase is Phase.ready and not routed else r.phase
    return s.ReplicaRead(
        id=r.id,
        variant=r.variant,
        model_version=r.version,
        phase=phase.value,
        node=r.handle.node,
        address=r.address or r.handle.address,
        pid=_int_or_none(r.handle.details().get("pid")),
        started_at=datetime.fromtimestamp(r.handle.started_at, UTC),
        ready_at=datetime.fromtimestamp(r.ready_at, UTC) if r.ready_at else None,
        in_flight=r.link.connection.in_flight if r.link is not None else 0,
    )


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) else None
