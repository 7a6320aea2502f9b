"""`stratus export kubernetes`: an endpoint as Kubernetes manifests, to run its model versions
on a cluster without the control plane.

Pure: from the endpoint's read model to a list of objects — per variant that takes traffic, a
Deployment of the image `stratus export dockerfile` builds (the standalone replica runtime,
started with the endpoint's batching and pass-through columns) and, when the variant
autoscales, a HorizontalPodAutoscaler (autoscaling/v2) on the requests in flight per pod; one
Service for the endpoint. Objects are built with the official client's models and turned into
plain dicts by its `sanitize_for_serialization`; `kubernetes` is imported only here, on use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import yaml

from stratus.core.errors import InvalidInput
from stratus.endpoints.schemas import EndpointRead, VariantSpec
from stratus.iac.dockerfile import LIVE_PATH, PORT, READY_PATH, RUNTIME_UID, runtime_command
from stratus.jobs.schemas import InstanceTypeRead
from stratus.registry.references import parse_ref
from stratus.secrets.schemas import as_environment

MANAGED_BY = "stratus"
PREFIX = "stratus.io/"
IN_FLIGHT_METRIC = "stratus_inference_in_flight_requests"  # the standalone runtime's /metrics
MAX_STABILIZATION_SECONDS = 3600  # the HPA's own limit
IMAGE_FIELDS = ("model", "version", "variant", "endpoint")
# where a Prometheus that discovers pods by the usual annotations scrapes each replica
SCRAPE = {
    "prometheus.io/scrape": "true",
    "prometheus.io/port": str(PORT),
    "prometheus.io/path": "/metrics",
}


@dataclass(frozen=True)
class ManifestOptions:
    """How to write the manifests.

    `image` is a template: `{model}`, `{version}`, `{variant}` and `{endpoint}` are replaced
    per variant (the default is the tag the Dockerfile's comment builds). `instance_types`
    (the catalog, by name) sets each pod's requests from its variant's instance type.
    `cpu_target`, a utilisation in percent, makes autoscalers follow CPU instead of the
    requests in flight (for a cluster with metrics-server but no custom-metrics adapter).
    """

    image: str = "{model}:{version}"
    namespace: str | None = None
    instance_types: Mapping[str, InstanceTypeRead] = field(default_factory=dict)
    cpu_target: int | None = None


def _client() -> ModuleType:
    try:
        from kubernetes import client
    except ImportError:
        raise InvalidInput(
            "exporting Kubernetes manifests needs the kubernetes package: "
            "pip install 'stratus[kubernetes]'"
        ) from None
    return client


def exported_variants(endpoint: EndpointRead) -> list[VariantSpec]:
    """The variants that get manifests: those that take traffic (a shadow's copies of requests
    need the platform's gateway, so shadows are left out)."""
    return [v for v in endpoint.spec.variants if not v.shadow]


def service_name(endpoint: str) -> str:
    """The endpoint's name as a Service may be named (a DNS-1035 label: a letter first)."""
    return endpoint if endpoint[:1].isalpha() else f"ep-{endpoint}"[:63].rstrip("-")


def manifests(
    endpoint: EndpointRead, options: ManifestOptions | None = None
) -> list[dict[str, Any]]:
    """The endpoint's manifests: a Deployment (and an autoscaler when the variant autoscales)
    per variant that takes traffic, then a Service over them all.

    Raises:
        InvalidInput: the kubernetes package is missing, the image template names an unknown
            field, or a variant has no pinned version.
    """
    options = options or ManifestOptions()
    k = _client()
    name = endpoint.metadata.name
    service = service_name(name)
    base = {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": MANAGED_BY}
    objects: list[Any] = []
    for variant in exported_variants(endpoint):
        objects += _variant_objects(k, endpoint, variant, service, base, options)
    objects.append(
        k.V1Service(
            api_version="v1",
            kind="Service",
            metadata=_metadata(k, service, base, options, _endpoint_notes(endpoint)),
            spec=k.V1ServiceSpec(
                type="ClusterIP",
                selector=dict(base),
                ports=[k.V1ServicePort(name="http", port=80, target_port="http", protocol="TCP")],
            ),
        )
    )
    api = k.ApiClient()
    try:
        return [api.sanitize_for_serialization(obj) for obj in objects]
    finally:
        api.close()


def caveats(endpoint: EndpointRead, instance_types: Mapping[str, InstanceTypeRead]) -> list[str]:
    """What the manifests of `endpoint` leave out or need besides, in words for the user."""
    exported = exported_variants(endpoint)
    notes = [
        f"shadow variant {v.name!r} is left out: mirroring requests needs the platform's gateway"
        for v in endpoint.spec.variants
        if v.shadow
    ]
    if len(exported) > 1:
        notes.append(
            "the Service spreads requests over the pods of every variant, so each variant's "
            "share follows its replica count, not its traffic weight (stratus.io/traffic)"
        )
    for v in exported:
        if v.instance_type not in instance_types:
            notes.append(
                f"variant {v.name!r}: instance type {v.instance_type!r} is not in the "
                "catalog, so its pods request no resources"
            )
        if v.autoscaling is not None and v.autoscaling.min_replicas == 0:
            notes.append(
                f"variant {v.name!r} scales to zero on the platform; its autoscaler keeps one pod"
            )
    if endpoint.spec.secrets:
        secrets = f"{service_name(endpoint.metadata.name)}-secrets"
        notes.append(
            f"the pods read the endpoint's secrets from the Kubernetes Secret {secrets} "
            "(one key per secret name): create it with kubectl before applying"
        )
    return notes


def to_yaml(objects: Sequence[Mapping[str, Any]]) -> str:
    """Multi-document YAML, one object per document, in order."""
    return yaml.safe_dump_all(objects, sort_keys=False, allow_unicode=True, width=1000)


def _endpoint_notes(endpoint: EndpointRead) -> dict[str, str]:
    where = f"{endpoint.metadata.project}/{endpoint.metadata.name}"
    return {
        f"{PREFIX}endpoint": where,
        f"{PREFIX}endpoint-revision": str(endpoint.spec.revision),
    }


def _metadata(
    k: ModuleType,
    name: str,
    labels: Mapping[str, str],
    options: ManifestOptions,
    annotations: Mapping[str, str] | None = None,
) -> Any:
    return k.V1ObjectMeta(
        name=name,
        namespace=options.namespace,
        labels=dict(labels),
        annotations=dict(annotations) if annotations else None,
    )


def _variant_objects(
    k: ModuleType,
    endpoint: EndpointRead,
    variant: VariantSpec,
    service: str,
    base: Mapping[str, str],
    options: ManifestOptions,
) -> list[Any]:
    if variant.version is None:
        raise InvalidInput(
            f"variant {variant.name!r} of endpoint {endpoint.metadata.name!r} has no pinned "
            "version yet; export it once the platform has written its spec"
        )
    model = parse_ref(variant.model).model
    name = f"{service}-{variant.name}"
    labels = {**base, f"{PREFIX}variant": variant.name}
    notes = {
        **_endpoint_notes(endpoint),
        f"{PREFIX}model": model,
        f"{PREFIX}model-version": str(variant.version),
        f"{PREFIX}traffic": str(variant.traffic),
        f"{PREFIX}instance-type": variant.instance_type,
    }
    try:
        image = options.image.format(
            model=model,
            version=variant.version,
            variant=variant.name,
            endpoint=endpoint.metadata.name,
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise InvalidInput(
            f"the image {options.image!r} is not a template of "
            f"{', '.join('{' + f + '}' for f in IMAGE_FIELDS)}: {exc}"
        ) from None
    command = runtime_command(
        name=endpoint.metadata.name,
        max_batch_size=variant.batching.max_batch_size,
        max_wait_ms=variant.batching.max_wait_ms,
        passthrough=endpoint.spec.passthrough,
    )
    secrets_name = f"{service}-secrets"
    container = k.V1Container(
        name="replica",
        image=image,
        command=command,
        ports=[k.V1ContainerPort(name="http", container_port=PORT, protocol="TCP")],
        env=[
            k.V1EnvVar(
                name=variable,
                value_from=k.V1EnvVarSource(
                    secret_key_ref=k.V1SecretKeySelector(name=secrets_name, key=secret)
                ),
            )
            for variable, secret in as_environment(endpoint.spec.secrets).items()
        ]
        or None,
        resources=_resources(k, options.instance_types.get(variant.instance_type)),
        # the model loads before the port opens: a slow load is not a dead replica
        startup_probe=_probe(k, READY_PATH, period=5, failures=60),
        readiness_probe=_probe(k, READY_PATH, period=5, failures=3),
        liveness_probe=_probe(k, LIVE_PATH, period=10, failures=3),
        security_context=k.V1SecurityContext(
            allow_privilege_escalation=False,
            capabilities=k.V1Capabilities(drop=["ALL"]),
            run_as_non_root=True,
            run_as_user=RUNTIME_UID,
        ),
    )
    scaling = variant.autoscaling
    deployment = k.V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=_metadata(k, name, labels, options, notes),
        spec=k.V1DeploymentSpec(
            # an autoscaled variant leaves the count to its autoscaler (and `kubectl apply`
            # does not reset it); a fixed one has its count
            replicas=variant.replicas if scaling is None else None,
            selector=k.V1LabelSelector(match_labels=dict(labels)),
            strategy=k.V1DeploymentStrategy(
                type="RollingUpdate",
                # as the platform rolls: a new replica is ready before an old one goes
                rolling_update=k.V1RollingUpdateDeployment(max_surge=1, max_unavailable=0),
            ),
            template=k.V1PodTemplateSpec(
                metadata=k.V1ObjectMeta(labels=dict(labels), annotations={**notes, **SCRAPE}),
                spec=k.V1PodSpec(
                    containers=[container],
                    security_context=k.V1PodSecurityContext(
                        seccomp_profile=k.V1SeccompProfile(type="RuntimeDefault")
                    ),
                ),
            ),
        ),
    )
    if scaling is None:
        return [deployment]
    if options.cpu_target is not None:
        metric = k.V2MetricSpec(
            type="Resource",
            resource=k.V2ResourceMetricSource(
                name="cpu",
                target=k.V2MetricTarget(type="Utilization", average_utilization=options.cpu_target),
            ),
        )
    else:
        metric = k.V2MetricSpec(
            type="Pods",
            pods=k.V2PodsMetricSource(
                metric=k.V2MetricIdentifier(name=IN_FLIGHT_METRIC),
                target=k.V2MetricTarget(
                    type="AverageValue", average_value=_quantity(scaling.target_concurrency)
                ),
            ),
        )
    # the platform averages over the stable window, then waits the scale-down delay
    settle = math.ceil(scaling.stable_window_seconds + scaling.scale_down_delay_seconds)
    autoscaler = k.V2HorizontalPodAutoscaler(
        api_version="autoscaling/v2",
        kind="HorizontalPodAutoscaler",
        metadata=_metadata(k, name, labels, options, notes),
        spec=k.V2HorizontalPodAutoscalerSpec(
            scale_target_ref=k.V2CrossVersionObjectReference(
                api_version="apps/v1", kind="Deployment", name=name
            ),
            # an HPA keeps one pod at least: scaling to zero needs the platform (or KEDA)
            min_replicas=max(scaling.min_replicas, 1),
            max_replicas=scaling.max_replicas,
            metrics=[metric],
            behavior=k.V2HorizontalPodAutoscalerBehavior(
                scale_up=k.V2HPAScalingRules(
                    stabilization_window_seconds=0,
                    policies=[
                        k.V2HPAScalingPolicy(
                            type="Percent",
                            value=round((scaling.max_scale_up_rate - 1) * 100),
                            period_seconds=15,
                        )
                    ],
                ),
                scale_down=k.V2HPAScalingRules(
                    stabilization_window_seconds=min(settle, MAX_STABILIZATION_SECONDS)
                ),
            ),
        ),
    )
    return [deployment, autoscaler]


def _probe(k: ModuleType, path: str, *, period: int, failures: int) -> Any:
    return k.V1Probe(
        http_get=k.V1HTTPGetAction(path=path, port="http"),
        period_seconds=period,
        timeout_seconds=2,
        failure_threshold=failures,
    )


def _resources(k: ModuleType, size: InstanceTypeRead | None) -> Any:
    """Requests of the instance type's vCPUs and memory; memory (and GPUs) as limits too, since
    a pod past its memory is killed rather than slowed. None: no type known, no resources."""
    if size is None:
        return None
    memory = _memory(size.memory_gib)
    requests = {"cpu": _quantity(size.vcpus), "memory": memory}
    limits = {"memory": memory}
    if size.gpus:
        limits["nvidia.com/gpu"] = str(size.gpus)
    return k.V1ResourceRequirements(requests=requests, limits=limits)


def _quantity(value: float) -> str:
    """A Kubernetes quantity: whole numbers as they are, others in thousandths (`2500m`)."""
    if float(value).is_integer():
        return str(int(value))
    return f"{round(value * 1000)}m"


def _memory(gib: float) -> str:
    return f"{int(gib)}Gi" if float(gib).is_integer() else f"{round(gib * 1024)}Mi"
