"""A version's files written to a local folder for replicas: verified, complete or absent."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from stratus.api.platform import Platform
from stratus.core.errors import Conflict, DataCorrupted
from stratus.registry import schemas as s


@pytest.fixture
def platform(embedded_platform: Callable[..., Platform]) -> Platform:
    return embedded_platform()


def _push(platform: Platform, files: dict[str, bytes], commit: bool = True) -> int:
    registry = platform.registry
    if not any(
        m.metadata.name == "m" for m in registry.list_models("default", None, None, None)[0]
    ):
        registry.create_model("default", s.ModelCreate(name="m"))
    declared = s.VersionCreate(
        files=[
            s.FileEntry(path=p, sha256=hashlib.sha256(b).hexdigest(), size=len(b))
            for p, b in files.items()
        ],
        flavor="sklearn",
    )
    version = registry.create_version("default", "m", declared, actor="test", can_trust=True)
    for path, data in files.items():
        upload = registry.begin_upload("default", "m", version.version, path)
        upload.write(data)
        registry.finish_upload(upload)
    if commit:
        registry.commit_version("default", "m", version.version)
    return version.version


def test_materialize_writes_verified_files_once(
    platform: Platform, tmp_path: Path, tiny_model: Path
) -> None:
    files = {"model.skops": tiny_model.read_bytes(), "extra/vocab.txt": b"a\nb\n"}
    number = _push(platform, files)
    cache = tmp_path / "cache"
    read, folder = platform.registry.materialize("default", "m", str(number), cache)
    assert read.version == number
    for path, data in files.items():
        assert (folder / path).read_bytes() == data
    stamp = (folder / "model.skops").stat().st_mtime_ns
    again, same = platform.registry.materialize("default", "m", "latest", cache)
    assert same == folder and (folder / "model.skops").stat().st_mtime_ns == stamp
    assert [p.name for p in cache.iterdir()] == [folder.name]  # no staging left behind


def test_pending_versions_are_not_materialized(platform: Platform, tmp_path: Path) -> None:
    number = _push(platform, {"model.skops": b"w"}, commit=False)
    with pytest.raises(Conflict, match="not committed"):
        platform.registry.materialize("default", "m", str(number), tmp_path / "cache")


def test_corrupted_bytes_leave_no_folder(
    platform: Platform, tmp_path: Path, tiny_model: Path
) -> None:
    data = tiny_model.read_bytes()
    number = _push(platform, {"model.skops": data})
    sha = hashlib.sha256(data).hexdigest()
    blob = next(  # files carry keyed names: <project>/<name[:2]>/<name>
        f
        for f in (platform.settings.home / "store" / "blobs").rglob("*")
        if f.is_file() and f.name == platform.store.blob_name(f.parent.parent.name, sha)
    )
    raw = bytearray(blob.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    blob.write_bytes(bytes(raw))
    cache = tmp_path / "cache"
    with pytest.raises(DataCorrupted):
        platform.registry.materialize("default", "m", str(number), cache)
    assert list(cache.iterdir()) == []


def test_materialized_files_are_private(
    platform: Platform, tmp_path: Path, tiny_model: Path
) -> None:
    files = {"model.skops": tiny_model.read_bytes(), "extra/vocab.txt": b"a\nb\n"}
    number = _push(platform, files)
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o755)  # a folder made by an older version, readable by all
    _, folder = platform.registry.materialize("default", "m", str(number), cache)

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(cache) == 0o700
    for path in [folder, *folder.rglob("*")]:
        expected = 0o700 if path.is_dir() else 0o600
        assert mode(path) == expected, f"{path.relative_to(cache)} has mode {mode(path):o}"
    assert (folder / "extra").is_dir() and (folder / ".stratus-version.json").is_file()
