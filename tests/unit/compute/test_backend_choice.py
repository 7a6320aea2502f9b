"""Backends by name: the local one by default, built from its own config; an unknown name or a
bad option is a clear error naming it; a backend's module loads only when it is chosen."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stratus.compute.backend import ComputeBackend
from stratus.compute.backends import BACKENDS, BackendEntry, backend_names, open_backend
from stratus.compute.local import LocalBackend
from stratus.core.errors import InvalidInput
from stratus.core.settings import load_settings


def test_the_local_backend_from_its_options(tmp_path: Path) -> None:
    backend: ComputeBackend = open_backend(
        "local", {"state_dir": tmp_path, "socket_dir": tmp_path / "s", "fork_server": False}
    )
    assert isinstance(backend, LocalBackend) and backend.name == "local"
    assert backend.socket_dir == tmp_path / "s" and backend.config.fork_server is False
    backend.close()
    assert "local" in backend_names()


def test_an_unknown_backend_names_the_known_ones() -> None:
    with pytest.raises(InvalidInput, match="unknown compute backend 'k8s'; choose one of: local"):
        open_backend("k8s", {})


def test_bad_options_name_the_option(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="bad settings for the local compute backend: "):
        open_backend("local", {"state_dir": tmp_path, "capacity_vcpus": -1})


def test_a_backend_whose_library_is_missing_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(
        BACKENDS, "nowhere", BackendEntry("stratus_no_such_module", "C", "B", needs="nowhere")
    )
    with pytest.raises(InvalidInput, match=r"pip install 'stratus\[nowhere\]'"):
        open_backend("nowhere", {})


def test_the_backend_is_a_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert load_settings({"home": str(tmp_path)}).compute.backend == "local"
    monkeypatch.setenv("STRATUS_COMPUTE_BACKEND", "ray")
    monkeypatch.setenv("STRATUS_COMPUTE_RAY", '{"address": "127.0.0.2:6379"}')
    settings = load_settings({"home": str(tmp_path)})
    assert settings.compute.backend == "ray"
    assert settings.compute.ray.address == "127.0.0.2:6379"
    assert settings.compute.ray.namespace == "stratus"
    monkeypatch.delenv("STRATUS_COMPUTE_BACKEND")
    monkeypatch.delenv("STRATUS_COMPUTE_RAY")
    (tmp_path / "stratus.toml").write_text('[compute]\nbackend = "ray"\n')
    assert load_settings({"home": str(tmp_path)}).compute.backend == "ray"


def test_choosing_a_backend_imports_only_its_module() -> None:
    code = (
        "import sys; from stratus.api import platform; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'kubernetes')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_ray_settings_reach_the_ray_backend(tmp_path: Path) -> None:
    from stratus.api.platform import backend_options

    (tmp_path / "stratus.toml").write_text(
        '[compute]\nbackend = "ray"\n'
        "[compute.ray]\n"
        'address = "127.0.0.2:6379"\n'
        "resources = {stratus = 0.01}\n"
        "replica_cpus = 0.5\n"
        'node_dir = "/srv/stratus-ray"\n'
        'preload = ["numpy"]\n'
        "fork_server_idle_seconds = 30\n"
    )
    options = backend_options(load_settings({"home": str(tmp_path)}))
    assert options["resources"] == {"stratus": 0.01}
    assert options["replica_cpus"] == 0.5
    assert options["node_dir"] == Path("/srv/stratus-ray")
    assert options["preload"] == ["numpy"]
    assert options["fork_server_idle_seconds"] == 30
    assert options["fork_server"] is True  # serving.fork_server
    # the defaults leave the backend's preload list alone
    (tmp_path / "stratus.toml").write_text('[compute]\nbackend = "ray"\n')
    assert "preload" not in backend_options(load_settings({"home": str(tmp_path)}))


def test_ray_backend_config_takes_the_options() -> None:
    pytest.importorskip("ray")
    from stratus.compute.ray_backend import RayBackendConfig

    config = RayBackendConfig(address="127.0.0.2:6379", preload=["numpy"], replica_cpus=0.5)
    assert config.preload == ["numpy"] and config.fork_server
    with pytest.raises(ValueError):
        RayBackendConfig(address="127.0.0.2:6379", fork_server_idle_seconds=0)
