"""Code and checkpoint archives: the same files make the same bytes, and extraction refuses
members that would escape the target folder."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from stratus.client._archives import code_files, pack, unpack
from stratus.core.errors import InvalidInput


def folder(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "train.py").write_text("print('hi')\n")
    (root / "train.py").chmod(0o755)
    (root / "pkg" / "util.py").write_text("X = 1\n")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\0")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref\n")
    return root


def test_the_same_files_make_the_same_archive(tmp_path: Path) -> None:
    a = folder(tmp_path / "a")
    b = folder(tmp_path / "b")
    (b / "train.py").touch()  # another mtime: still the same archive
    first, second = pack(a), pack(b)
    first[0].close()
    second[0].close()
    assert first[1:] == second[1:]
    assert [rel for rel, _ in code_files(a)] == ["pkg/util.py", "train.py"]
    (b / "pkg" / "util.py").write_text("X = 2\n")
    changed = pack(b)
    changed[0].close()
    assert changed[3] != first[3]


def test_unpack_restores_files_and_modes(tmp_path: Path) -> None:
    archive, _, size, _ = pack(folder(tmp_path / "src"))
    with archive:
        assert size == len(archive.read())
        archive.seek(0)
        unpack(archive, tmp_path / "out")
    assert (tmp_path / "out" / "pkg" / "util.py").read_text() == "X = 1\n"
    assert (tmp_path / "out" / "train.py").stat().st_mode & 0o100
    assert not (tmp_path / "out" / "__pycache__").exists()


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil", "a/../../evil"])
def test_unpack_refuses_escaping_members(tmp_path: Path, name: str) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    buffer.seek(0)
    with pytest.raises(InvalidInput, match="unsafe member"):
        unpack(buffer, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_unpack_refuses_links(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    buffer.seek(0)
    with pytest.raises(InvalidInput, match="unsafe member"):
        unpack(buffer, tmp_path / "out")


def test_an_empty_or_missing_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="holds no files"):
        pack(tmp_path / "empty")
    with pytest.raises(InvalidInput, match="is not a folder"):
        pack(tmp_path / "nope")
