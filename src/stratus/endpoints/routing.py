"""The gateway's routing table: for each endpoint, its variants and their ready replicas.

The controller rebuilds an endpoint's entry whenever its replicas change; the gateway only
reads it. Both run on the same event loop, so no lock is needed. Picking is cheap: a weighted
draw among the live variants, then the replica with the fewest requests in flight.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from dataclasses import dataclass, field

from stratus.core.token_buckets import Limit
from stratus.endpoints.metrics import Series
from stratus.serving.connections import ReplicaConnection

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class ReplicaLink:
    """A ready replica the gateway may send requests to."""

    id: str
    connection: ReplicaConnection

    @property
    def usable(self) -> bool:
        return not self.connection.closed


@dataclass
class VariantRoute:
    name: str
    traffic: int
    shadow: bool
    model_version: str  # "model:version", sent back in X-Stratus-Model-Version
    series: Series
    replicas: list[ReplicaLink] = field(default_factory=list)
    _turn: int = 0

    @property
    def version(self) -> str:
        """The registry version it serves (what a v2 `/versions/{v}/` path names)."""
        return self.model_version.rpartition(":")[2]

    def pick(self, avoid: ReplicaLink | None = None) -> ReplicaLink | None:
        """The usable replica with the fewest requests in flight (ties rotate)."""
        best: ReplicaLink | None = None
        best_load = 1 << 30
        replicas = self.replicas
        n = len(replicas)
        if n == 0:
            return None
        self._turn = (self._turn + 1) % n
        for i in range(n):
            link = replicas[(self._turn + i) % n]
            if link is avoid or link.connection.closed:
                continue
            load = link.connection.in_flight
            if load < best_load:
                best, best_load = link, load
        return best


@dataclass
class EndpointRoute:
    uid: str
    project: str
    name: str
    public: bool
    variants: list[VariantRoute]
    phase: str = "pending"
    capture: float = 0.0  # the share of answered requests to capture (0: off)
    cold_start: bool = False  # a variant may be at zero replicas: requests wait for one
    rate_limit: Limit | None = None  # the owner's limit on all requests to it
    networks: tuple[IPNetwork, ...] = ()  # the source networks that may call it (empty: any)

    def admits(self, source: str | None) -> bool:
        """Whether a request from `source` (an IP address) passes the network rules."""
        if not self.networks:
            return True
        if source is None:
            return False
        try:
            address = ipaddress.ip_address(source)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def __post_init__(self) -> None:
        self.live = [v for v in self.variants if not v.shadow and v.traffic > 0]
        self.shadows = [v for v in self.variants if v.shadow]
        # the registry versions a caller may name, whatever their traffic weight
        self.serving = [v for v in self.variants if not v.shadow]
        self.versions = tuple(sorted({v.version for v in self.serving}, key=lambda v: (len(v), v)))
        self._bounds: list[int] = []
        total = 0
        for variant in self.live:
            total += variant.traffic
            self._bounds.append(total)
        self._total = total

    def pick(self) -> tuple[VariantRoute, ReplicaLink] | None:
        """A variant by traffic weight, then its least-busy replica; when the drawn variant
        has no ready replica, any live variant that has one."""
        live = self.live
        if len(live) == 1:
            chosen = live[0]
        elif live:
            draw = random.random() * self._total
            chosen = live[-1]
            for variant, bound in zip(live, self._bounds, strict=True):
                if draw < bound:
                    chosen = variant
                    break
        else:
            return None
        link = chosen.pick()
        if link is not None:
            return chosen, link
        chosen.series.arrived += 1  # wakes it if it autoscales from zero; others answer now
        return self.fallback(avoid=None)

    def fallback(
        self, avoid: ReplicaLink | None, version: str | None = None
    ) -> tuple[VariantRoute, ReplicaLink] | None:
        """A usable replica of any live variant; with `version`, of any variant serving that
        registry version (at any traffic weight: a caller may name a version on purpose)."""
        if version is not None:
            for variant in self.serving:
                if variant.version == version:
                    link = variant.pick(avoid)
                    if link is not None:
                        return variant, link
            return None
        for variant in self.live:
            link = variant.pick(avoid)
            if link is not None:
                return variant, link
        return None


class RouteTable:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], EndpointRoute] = {}
        self._waiting: dict[tuple[str, str], list[asyncio.Future[None]]] = {}

    def get(self, project: str, endpoint: str) -> EndpointRoute | None:
        return self.routes.get((project, endpoint))

    def set(self, route: EndpointRoute) -> None:
        key = (route.project, route.name)
        self.routes[key] = route
        self._wake(key)

    def remove(self, project: str, endpoint: str) -> None:
        self.routes.pop((project, endpoint), None)
        self._wake((project, endpoint))

    def waiting(self, project: str, endpoint: str) -> int:
        """Requests waiting for the endpoint's route to change (a replica from zero)."""
        return len(self._waiting.get((project, endpoint), ()))

    async def changed(self, project: str, endpoint: str, timeout: float) -> None:
        """Wait until the endpoint's route is set again (or removed), `timeout` at most."""
        key = (project, endpoint)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        try:
            await asyncio.wait_for(future, timeout)
        finally:
            waiters = self._waiting.get(key, [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._waiting.pop(key, None)

    def _wake(self, key: tuple[str, str]) -> None:
        for future in self._waiting.pop(key, []):
            if not future.done():
                future.set_result(None)
