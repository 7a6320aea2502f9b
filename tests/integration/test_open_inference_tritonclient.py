"""NVIDIA's real `tritonclient` (HTTP) against an endpoint, with its defaults: binary tensors
in and out, JSON tensors, server and model metadata, a version route, and errors that surface
as its InferenceServerException with Stratus's message. Both URL layouts: the endpoint's own
prefix (`HOST/inference/PROJECT/ENDPOINT`) and the server root (`HOST`, the project in the
X-Stratus-Project header)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from stratus.core.errors import NotFound
from stratus.testing import LocalPlatform

pytest.importorskip("sklearn")
skops_io = pytest.importorskip("skops.io")
httpclient = pytest.importorskip("tritonclient.http")
triton_utils = pytest.importorskip("tritonclient.utils")

READY_TIMEOUT = 120.0
ENDPOINT = "iris"


@pytest.fixture(scope="module")
def served(platform: LocalPlatform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A project whose endpoint `iris` serves version 1 of a classifier (all its traffic) and
    version 2 as a 10 % canary."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris(as_frame=True)
    x = data.data.astype("float64")
    root = tmp_path_factory.mktemp("oip-models")
    models = []
    for c in (1.0, 0.01):
        model = LogisticRegression(C=c, max_iter=2000).fit(x.to_numpy(), data.target)
        path = root / f"c{c}" / "model.skops"
        path.parent.mkdir()
        skops_io.dump(model, path)
        models.append((model, path))
    project = f"oip-{uuid.uuid4().hex[:8]}"
    with platform.client() as client:
        client.projects.create(project)
        for _, path in models:
            client.models.push(path, "flowers", project=project, sample=x.head(10))
        client.endpoints.deploy(ENDPOINT, "flowers:1", replicas=1, project=project)
        client.endpoints.canary(ENDPOINT, "flowers:2", 10, replicas=1, project=project)
        try:
            client.endpoints.wait_ready(ENDPOINT, timeout=READY_TIMEOUT, project=project)
            yield project, x.to_numpy(), [m for m, _ in models]
        finally:
            try:
                client.endpoints.delete(ENDPOINT, project)
            except NotFound:
                pass


def layouts(platform: LocalPlatform, project: str) -> list[tuple[Any, dict[str, str]]]:
    """tritonclient at the endpoint's prefix, and at the server's root."""
    host = platform.url.removeprefix("http://")
    auth = {"Authorization": f"Bearer {platform.api_key}"}
    return [
        (httpclient.InferenceServerClient(f"{host}/inference/{project}/{ENDPOINT}"), auth),
        (httpclient.InferenceServerClient(host), {**auth, "X-Stratus-Project": project}),
    ]


@pytest.mark.parametrize("layout", [0, 1], ids=["gateway prefix", "server root"])
def test_tritonclient_with_its_defaults(platform: LocalPlatform, served: Any, layout: int) -> None:
    project, x, (v1, v2) = served
    client, given = layouts(platform, project)[layout]

    def headers_() -> dict[str, str]:
        # tritonclient writes Inference-Header-Content-Length into the dict it is given: a
        # dict kept across calls would carry a binary call's header into the next JSON call
        return dict(given)

    try:
        assert client.is_server_live(headers=headers_())
        server = client.get_server_metadata(headers=headers_())
        assert server["name"] == "stratus" and "binary_tensor_data" in server["extensions"]

        meta = client.get_model_metadata(ENDPOINT, headers=headers_())
        assert meta["name"] == ENDPOINT
        assert [i["name"] for i in meta["inputs"]] == load_feature_names(), meta
        pinned = client.get_model_metadata(ENDPOINT, model_version="2", headers=headers_())
        assert pinned["versions"] == ["2"]
        assert client.is_model_ready(ENDPOINT, headers=headers_())
        assert client.is_model_ready(ENDPOINT, model_version="1", headers=headers_())

        rows = x[:5]
        # binary input (set_data_from_numpy's default) and, with no outputs named,
        # binary outputs (tritonclient asks for binary_data_output)
        binary = httpclient.InferInput("x", list(rows.shape), "FP64")
        binary.set_data_from_numpy(rows)
        result = client.infer(ENDPOINT, [binary], model_version="1", headers=headers_())
        response = result.get_response()
        assert response["model_name"] == ENDPOINT and response["model_version"] == "1"
        label = response["outputs"][0]["name"]
        assert "binary_data_size" in response["outputs"][0]["parameters"]
        np.testing.assert_array_equal(result.as_numpy(label), v1.predict(rows))

        # JSON input, a JSON output, version 2 by number
        as_json = httpclient.InferInput("x", list(rows.shape), "FP64")
        as_json.set_data_from_numpy(rows, binary_data=False)
        wanted = httpclient.InferRequestedOutput(label, binary_data=False)
        result = client.infer(
            ENDPOINT, [as_json], model_version="2", outputs=[wanted], headers=headers_()
        )
        response = result.get_response()
        assert response["model_version"] == "2" and "data" in response["outputs"][0]
        np.testing.assert_array_equal(result.as_numpy(label), v2.predict(rows))

        # one binary input per column, FP32; the answer comes from whichever variant drew it
        columns = []
        for j, name in enumerate(load_feature_names()):
            column = httpclient.InferInput(name, [len(rows)], "FP32")
            column.set_data_from_numpy(rows[:, j].astype(np.float32))
            columns.append(column)
        result = client.infer(ENDPOINT, columns, headers=headers_())
        assert result.get_response()["model_version"] in ("1", "2")
        assert result.as_numpy(label).shape == (5,)

        # Stratus's message surfaces in tritonclient's exception
        short = httpclient.InferInput("x", [1, 3], "FP64")
        short.set_data_from_numpy(rows[:1, :3])
        with pytest.raises(triton_utils.InferenceServerException) as refused:
            client.infer(ENDPOINT, [short], headers=headers_())
        assert "does not fit the signature's 4 inputs" in refused.value.message()
        assert refused.value.status() == "400"
        with pytest.raises(triton_utils.InferenceServerException) as unknown:
            client.infer(ENDPOINT, [binary], model_version="9", headers=headers_())
        assert "serves no version '9' (versions served: 1, 2)" in unknown.value.message()
        assert not client.is_model_ready(ENDPOINT, model_version="9", headers=headers_())
    finally:
        client.close()


def load_feature_names() -> list[str]:
    from sklearn.datasets import load_iris

    return [str(name) for name in load_iris(as_frame=True).data.columns]
