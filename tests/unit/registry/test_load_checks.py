"""Push-time load checks: a model folder loaded in a child process under memory and time limits,
with the flavors' own load code; what the caller learns is one line without paths."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from registry_samples import ArtifactMaker, Cancer

from stratus.core.errors import ServiceUnavailable
from stratus.registry.load_checks import LoadChecker, LoadLimits

skops_io = pytest.importorskip("skops.io")

GENEROUS = LoadLimits(memory_bytes=1 << 30, seconds=60)


def _context() -> Any:
    """A fork server with the libraries imported, as the local backend gives the registry
    (a spawned child would import them for every check)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["stratus.registry.load_checks", "sklearn", "skops.io"])
    return context


def checker(limits: LoadLimits = GENEROUS) -> LoadChecker:
    return LoadChecker(limits, context=_context)


def predictor(folder: Path, load_body: str) -> Path:
    (folder / "predictor.py").write_text(
        "class Predictor:\n"
        "    def load(self, path):\n"
        + "".join(f"        {line}\n" for line in load_body.splitlines())
        + "    def predict(self, batch):\n"
        "        return batch.matrix()[:, 0]\n"
    )
    return folder


def test_a_good_skops_model_loads(
    lr_pipeline: Any, cancer: Cancer, artifact_dir: ArtifactMaker
) -> None:
    folder = artifact_dir("good-skops")
    skops_io.dump(lr_pipeline, folder / "model.skops")
    outcome = checker().check(
        folder, "sklearn", trusted=False, signature=cancer.signature.model_dump(mode="json")
    )
    assert outcome.loaded, outcome.detail


def test_a_corrupt_skops_file_is_named_without_paths(artifact_dir: ArtifactMaker) -> None:
    folder = artifact_dir("corrupt-skops")
    (folder / "model.skops").write_bytes(b"this is not a zip file")
    outcome = checker().check(folder, "sklearn", trusted=False, signature=None)
    assert not outcome.loaded and not outcome.needs_trust
    assert "'model.skops'" in outcome.detail and "zip" in outcome.detail.lower()
    assert str(folder) not in outcome.detail and "Traceback" not in outcome.detail


def test_a_corrupt_onnx_file_is_refused(artifact_dir: ArtifactMaker) -> None:
    pytest.importorskip("onnxruntime")
    folder = artifact_dir("corrupt-onnx")
    (folder / "model.onnx").write_bytes(b"\x08\x07garbage that is no protobuf graph")
    outcome = checker().check(folder, "onnx", trusted=False, signature=None)
    assert not outcome.loaded
    assert "the onnx flavor could not load 'model.onnx'" in outcome.detail
    assert str(folder) not in outcome.detail


def test_a_load_past_the_memory_limit_is_refused_saying_so(artifact_dir: ArtifactMaker) -> None:
    folder = predictor(artifact_dir("hungry"), "self.weights = bytearray(2 << 30)")
    limits = LoadLimits(memory_bytes=128 << 20, seconds=60)
    outcome = checker(limits).check(folder, "python", trusted=True, signature=None)
    assert not outcome.loaded
    assert outcome.detail == (
        "loading needs more memory than the 128 MiB a load check allows "
        "(setting registry.load_check_memory_mib)"
    )


def test_a_load_past_the_time_limit_is_stopped(artifact_dir: ArtifactMaker) -> None:
    folder = predictor(artifact_dir("slow"), "while True:\n    pass")
    limits = LoadLimits(memory_bytes=1 << 30, seconds=1)
    outcome = checker(limits).check(folder, "python", trusted=True, signature=None)
    assert not outcome.loaded
    # the CPU limit or the wall-clock one, whichever comes first on a busy machine
    assert "registry.load_check_seconds" in outcome.detail, outcome.detail


def test_untrusted_code_is_never_run_by_a_check(
    artifact_dir: ArtifactMaker, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    folder = predictor(artifact_dir("untrusted"), f"open({str(ran)!r}, 'w').close()")
    outcome = checker().check(folder, "python", trusted=False, signature=None)
    assert not outcome.loaded and outcome.needs_trust
    assert "predictor.py" in outcome.detail
    assert not ran.exists()
    trusted = checker().check(folder, "python", trusted=True, signature=None)
    assert trusted.loaded and ran.exists()


def test_a_child_that_dies_while_loading_is_reported(artifact_dir: ArtifactMaker) -> None:
    folder = predictor(artifact_dir("dies"), "import os\nos._exit(7)")
    outcome = checker().check(folder, "python", trusted=True, signature=None)
    assert outcome.detail == "the load check exited while loading (exit code 7)"


def test_a_child_that_cannot_start_is_the_platforms_fault(artifact_dir: ArtifactMaker) -> None:
    class Broken:
        def Pipe(self, duplex: bool) -> Any:
            return multiprocessing.get_context("spawn").Pipe(duplex=duplex)

        def Process(self, **kwargs: Any) -> Any:
            class Refusing:
                def start(self) -> None:
                    raise OSError("no more processes")

            return Refusing()

    folder = artifact_dir("unstarted")
    with pytest.raises(ServiceUnavailable, match="cannot start a model load check"):
        LoadChecker(GENEROUS, context=Broken).check(
            folder, "sklearn", trusted=False, signature=None
        )
