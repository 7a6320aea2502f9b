"""Kubernetes manifests of an endpoint: each object valid against Kubernetes 1.30's schemas
(unknown fields included), replica counts and autoscalers as the spec says, one Deployment per
variant that takes traffic, one Service over them, and the image started as the Dockerfile
export starts it."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from stratus.core.errors import InvalidInput
from stratus.endpoints.schemas import EndpointRead, EndpointSpec, EndpointStatus
from stratus.iac.dockerfile import runtime_command
from stratus.iac.kubernetes import (
    ManifestOptions,
    caveats,
    manifests,
    service_name,
    to_yaml,
)
from stratus.jobs.schemas import InstanceTypeRead

kubernetes_validate = pytest.importorskip("kubernetes_validate")

NOW = datetime(2026, 12, 1, tzinfo=UTC)
SMALL = InstanceTypeRead(
    name="cpu.small", vcpus=1, memory_gib=2, gpus=0, price_per_hour=0.04,
    spot_price_per_hour=0.01, description="",
)  # fmt: skip
NANO = InstanceTypeRead(
    name="cpu.nano", vcpus=0.5, memory_gib=0.5, gpus=0, price_per_hour=0.01,
    spot_price_per_hour=0.004, description="",
)  # fmt: skip
GPU = InstanceTypeRead(
    name="gpu.t4", vcpus=4, memory_gib=16, gpus=1, price_per_hour=0.5,
    spot_price_per_hour=0.2, description="",
)  # fmt: skip
CATALOG = {t.name: t for t in (SMALL, NANO, GPU)}


def endpoint(variants: list[dict[str, Any]], **spec: Any) -> EndpointRead:
    return EndpointRead(
        metadata={
            "name": "churn-api",
            "uid": "e1",
            "project": "risk",
            "resource_version": 3,
            "created_at": NOW,
            "updated_at": NOW,
        },  # fmt: skip
        spec=EndpointSpec(variants=variants, revision=4, **spec),
        status=EndpointStatus(),
    )


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def validate_all(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        kubernetes_validate.validate(obj, "1.30", strict=True)


def test_an_autoscaled_variant_gets_a_deployment_an_autoscaler_and_a_service() -> None:
    ep = endpoint(
        [
            {
                "name": "main", "model": "churn:3", "version": 3, "instance_type": "cpu.small",
                "autoscaling": {"min_replicas": 2, "max_replicas": 8, "target_concurrency": 2.5},
                "batching": {"max_batch_size": 32, "max_wait_ms": 5},
            }
        ],
        passthrough=["customer_id"],
    )  # fmt: skip
    objects = manifests(ep, ManifestOptions(instance_types=CATALOG, namespace="ml"))
    validate_all(objects)
    assert [o["kind"] for o in objects] == ["Deployment", "HorizontalPodAutoscaler", "Service"]
    deployment, hpa, service = objects
    assert all(o["metadata"]["namespace"] == "ml" for o in objects)

    assert deployment["metadata"]["name"] == "churn-api-main"
    assert "replicas" not in deployment["spec"]  # the autoscaler owns the count
    labels = deployment["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "churn-api"
    assert labels["app.kubernetes.io/managed-by"] == "stratus"
    notes = deployment["metadata"]["annotations"]
    assert notes["stratus.io/model"] == "churn"
    assert notes["stratus.io/model-version"] == "3"
    assert notes["stratus.io/endpoint"] == "risk/churn-api"
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"]["stratus.io/model-version"] == "3"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8080"
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert deployment["spec"]["selector"]["matchLabels"] == pod["metadata"]["labels"]
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "churn:3"
    assert container["command"] == runtime_command(
        name="churn-api", max_batch_size=32, max_wait_ms=5, passthrough=["customer_id"]
    )
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["ports"] == [{"containerPort": 8080, "name": "http", "protocol": "TCP"}]
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"memory": "2Gi"},
    }
    assert "env" not in container  # no secrets

    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["metadata"]["name"] == "churn-api-main"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "churn-api-main",
    }  # fmt: skip
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 8)
    (metric,) = hpa["spec"]["metrics"]
    assert metric == {
        "type": "Pods",
        "pods": {
            "metric": {"name": "stratus_inference_in_flight_requests"},
            "target": {"type": "AverageValue", "averageValue": "2500m"},
        },
    }
    # the stable window (60 s) and the scale-down delay (30 s), the defaults
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 90
    assert hpa["spec"]["behavior"]["scaleUp"]["policies"] == [
        {"type": "Percent", "value": 900, "periodSeconds": 15}
    ]

    assert service["apiVersion"] == "v1"
    assert service["metadata"]["name"] == "churn-api"
    assert service["spec"]["selector"] == {
        "app.kubernetes.io/name": "churn-api",
        "app.kubernetes.io/managed-by": "stratus",
    }
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}
    ]
    assert all(
        service["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        for d in by_kind(objects, "Deployment")
    )


def test_a_fixed_count_gets_no_autoscaler() -> None:
    ep = endpoint([{"name": "main", "model": "churn@production", "version": 7, "replicas": 3}])
    objects = manifests(ep, ManifestOptions(instance_types=CATALOG))
    validate_all(objects)
    assert [o["kind"] for o in objects] == ["Deployment", "Service"]
    deployment = objects[0]
    assert deployment["spec"]["replicas"] == 3
    assert "namespace" not in deployment["metadata"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "churn:7"  # the pinned version, not the alias


def test_a_fixed_count_of_zero_stays_zero() -> None:
    ep = endpoint([{"name": "main", "model": "churn:1", "version": 1, "replicas": 0}])
    objects = manifests(ep)
    validate_all(objects)
    assert objects[0]["spec"]["replicas"] == 0


def test_every_variant_that_takes_traffic_gets_its_own_deployment() -> None:
    ep = endpoint(
        [
            {"name": "main", "model": "churn:3", "version": 3, "traffic": 90, "replicas": 2},
            {
                "name": "canary", "model": "churn:4", "version": 4, "traffic": 10,
                "instance_type": "cpu.nano",
                "autoscaling": {"min_replicas": 0, "max_replicas": 4, "target_concurrency": 4},
            },
            {"name": "shadow", "model": "churn:5", "version": 5, "traffic": 0, "shadow": True},
        ],
        secrets=["DB_PASSWORD", "TOKEN=API_TOKEN"],
    )  # fmt: skip
    objects = manifests(ep, ManifestOptions(image="registry.local/{model}:v{version}"))
    validate_all(objects)
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("Deployment", "churn-api-main"),
        ("Deployment", "churn-api-canary"),
        ("HorizontalPodAutoscaler", "churn-api-canary"),
        ("Service", "churn-api"),
    ]
    main, canary = by_kind(objects, "Deployment")
    assert main["spec"]["replicas"] == 2
    assert main["metadata"]["annotations"]["stratus.io/traffic"] == "90"
    assert canary["metadata"]["annotations"]["stratus.io/traffic"] == "10"
    images = [d["spec"]["template"]["spec"]["containers"][0]["image"] for d in (main, canary)]
    assert images == ["registry.local/churn:v3", "registry.local/churn:v4"]
    # the two variants' pods are told apart, so each Deployment owns only its own
    assert main["spec"]["selector"]["matchLabels"] != canary["spec"]["selector"]["matchLabels"]
    (hpa,) = by_kind(objects, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)  # no zero
    assert hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == "4"
    # no catalog given: no requests
    assert "resources" not in canary["spec"]["template"]["spec"]["containers"][0]
    env = main["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [
        {
            "name": "DB_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "churn-api-secrets", "key": "DB_PASSWORD"}},
        },
        {
            "name": "TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "churn-api-secrets", "key": "API_TOKEN"}},
        },
    ]


def test_what_the_manifests_leave_out_is_said() -> None:
    ep = endpoint(
        [
            {"name": "main", "model": "churn:3", "version": 3, "traffic": 90},
            {
                "name": "canary", "model": "churn:4", "version": 4, "traffic": 10,
                "instance_type": "cpu.huge",
                "autoscaling": {"min_replicas": 0, "max_replicas": 4},
            },
            {"name": "shadow", "model": "churn:5", "version": 5, "traffic": 0, "shadow": True},
        ],
        secrets=["DB_PASSWORD"],
    )  # fmt: skip
    notes = caveats(ep, CATALOG)
    assert len(notes) == 5, notes
    assert "shadow variant 'shadow' is left out" in notes[0]
    assert "not its traffic weight" in notes[1]
    assert "'cpu.huge' is not in the catalog" in notes[2]
    assert "its autoscaler keeps one pod" in notes[3]
    assert "Secret churn-api-secrets" in notes[4]
    plain = endpoint([{"name": "main", "model": "churn:3", "version": 3}])
    assert caveats(plain, CATALOG) == []


def test_resources_follow_the_instance_type() -> None:
    ep = endpoint(
        [
            {"name": "a", "model": "m:1", "version": 1, "traffic": 50, "instance_type": "cpu.nano"},
            {"name": "b", "model": "m:1", "version": 1, "traffic": 50, "instance_type": "gpu.t4"},
        ]
    )
    objects = manifests(ep, ManifestOptions(instance_types=CATALOG))
    validate_all(objects)
    nano, gpu = (
        d["spec"]["template"]["spec"]["containers"][0]["resources"]
        for d in by_kind(objects, "Deployment")
    )
    assert nano == {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "512Mi"}}
    assert gpu == {
        "requests": {"cpu": "4", "memory": "16Gi"},
        "limits": {"memory": "16Gi", "nvidia.com/gpu": "1"},
    }


def test_a_cpu_target_replaces_the_in_flight_metric() -> None:
    ep = endpoint(
        [{"name": "main", "model": "m:2", "version": 2,
          "autoscaling": {"min_replicas": 1, "max_replicas": 3}}]
    )  # fmt: skip
    objects = manifests(ep, ManifestOptions(cpu_target=70))
    validate_all(objects)
    (hpa,) = by_kind(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 70},
            },
        }
    ]


def test_long_windows_stay_within_the_autoscalers_limit() -> None:
    ep = endpoint(
        [{"name": "main", "model": "m:2", "version": 2,
          "autoscaling": {"max_replicas": 3, "stable_window_seconds": 3600,
                          "scale_down_delay_seconds": 600}}]
    )  # fmt: skip
    objects = manifests(ep)
    validate_all(objects)
    (hpa,) = by_kind(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 3600


def test_the_yaml_holds_one_document_per_object() -> None:
    ep = endpoint([{"name": "main", "model": "churn:3", "version": 3}])
    objects = manifests(ep)
    assert list(yaml.safe_load_all(to_yaml(objects))) == objects


def test_a_service_name_starts_with_a_letter() -> None:
    assert service_name("churn-api") == "churn-api"
    assert service_name("3d-model") == "ep-3d-model"
    ep = endpoint([{"name": "main", "model": "m:1", "version": 1}])
    ep.metadata.name = "7up"
    objects = manifests(ep)
    validate_all(objects)
    assert [o["metadata"]["name"] for o in objects] == ["ep-7up-main", "ep-7up"]


def test_an_unknown_image_field_is_refused() -> None:
    ep = endpoint([{"name": "main", "model": "churn:3", "version": 3}])
    with pytest.raises(InvalidInput, match=r"\{model\}, \{version\}, \{variant\}, \{endpoint\}"):
        manifests(ep, ManifestOptions(image="{name}:{version}"))


def test_without_the_kubernetes_package_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "kubernetes", None)  # import kubernetes -> ImportError
    ep = endpoint([{"name": "main", "model": "churn:3", "version": 3}])
    with pytest.raises(InvalidInput, match=r"pip install 'stratus\[kubernetes\]'"):
        manifests(ep)
