"""The compute contract suite: every backend passes the same tests (`test_contract_*.py`),
through `backend_under_test`, a kit (`contract_kit.Kit`) for each backend of `KITS`.

Adding a backend is a kit class in a module of its own and one entry in `KITS`: a function of
the test's request (for session fixtures the backend needs, such as a cluster) and a short
state folder, which returns the kit.
"""

from __future__ import annotations

import multiprocessing.forkserver
import multiprocessing.resource_tracker
import shutil
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from contract_fake import FakeKit
from contract_kit import Kit, Models
from contract_local import LocalKit


def fake_kit(request: pytest.FixtureRequest, state_dir: Path) -> Kit:
    return FakeKit(state_dir)


def local_kit(request: pytest.FixtureRequest, state_dir: Path) -> Kit:
    request.getfixturevalue("own_fork_server")
    return LocalKit(state_dir)


def ray_kit(request: pytest.FixtureRequest, state_dir: Path) -> Kit:
    cluster = request.getfixturevalue("ray_cluster")  # skips the test without ray
    monkeypatch = request.getfixturevalue("monkeypatch")
    for name, value in cluster.env.items():
        monkeypatch.setenv(name, value)
    from contract_ray import RayKit  # imports ray

    return RayKit(cluster, state_dir)


#: backend name -> how to make its kit
KITS: dict[str, Callable[[pytest.FixtureRequest, Path], Kit]] = {
    "fake": fake_kit,
    "local": local_kit,
    "ray": ray_kit,
}

#: backend name -> the marks of its tests (what they need)
KIT_MARKS = {"ray": [pytest.mark.ray]}


@pytest.fixture(params=[pytest.param(name, marks=KIT_MARKS.get(name, [])) for name in KITS])
def backend_under_test(request: pytest.FixtureRequest) -> Iterator[Kit]:
    state_dir = Path(tempfile.mkdtemp(prefix="sc-", dir="/tmp"))  # unix socket paths are short
    kit = KITS[request.param](request, state_dir)
    try:
        yield kit
    finally:
        try:
            kit.close()
        finally:
            shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def own_fork_server() -> Iterator[None]:
    """Stops the fork server (and resource tracker) this test process started for replicas."""
    yield
    multiprocessing.forkserver._forkserver._stop()  # type: ignore[attr-defined]
    multiprocessing.resource_tracker._resource_tracker._stop()  # type: ignore[attr-defined]


STUBBORN_PREDICTOR = textwrap.dedent(
    '''
    """Ignores SIGTERM: only a forced stop ends a replica of this model."""
    import os
    import signal


    class Predictor:
        supports_batching = False

        def load(self, path):
            # blocked in the only thread, SIGTERM stays blocked in every thread started later
            threads = os.listdir("/proc/self/task")
            if len(threads) > 1:
                raise RuntimeError(f"{len(threads)} threads run already: SIGTERM would get in")
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

        def predict(self, batch):
            return [0] * batch.n_rows
    '''
)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    """A model folder for each replica behaviour of `contract_kit.BEHAVIOURS`."""
    joblib = pytest.importorskip("joblib")
    skops_io = pytest.importorskip("skops.io")
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("contract-models")
    model = LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0]], [0, 1])
    for behaviour in ("serves", "broken", "stubborn"):
        (root / behaviour).mkdir()
    skops_io.dump(model, root / "serves" / "model.skops")
    joblib.dump(model, root / "broken" / "model.joblib")
    (root / "stubborn" / "predictor.py").write_text(STUBBORN_PREDICTOR)
    return Models(root)
