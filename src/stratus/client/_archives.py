"""Folders as reproducible tar.gz archives: a job's code on its way up, a checkpoint both ways.

The same files make the same bytes (sorted, no timestamps or owners), so the archive's SHA-256
names its content and code uploaded once is never sent again. Extraction refuses any member
that would land outside the target folder, or that is not a plain file or folder.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import tempfile
from pathlib import Path
from typing import IO

from stratus.core.errors import InvalidInput

# Never part of a code folder: caches, virtual environments, version control.
SKIPPED_PARTS = {"__pycache__", ".git", ".venv", "venv", ".mypy_cache", ".pytest_cache", ".tox"}
SKIPPED_SUFFIXES = (".pyc", ".pyo")
MAX_CODE_BYTES = 200 * 2**20


def code_files(folder: Path) -> list[tuple[str, Path]]:
    """The files of a code folder that travel with a job, as (posix path, local path)."""
    if not folder.is_dir():
        raise InvalidInput(f"{folder} is not a folder")
    files = [
        (p.relative_to(folder).as_posix(), p)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        and not (SKIPPED_PARTS & set(p.relative_to(folder).parts))
        and not p.name.endswith(SKIPPED_SUFFIXES)
    ]
    if not files:
        raise InvalidInput(f"{folder} holds no files")
    return files


def pack(
    folder: Path, files: list[tuple[str, Path]] | None = None
) -> tuple[IO[bytes], str, int, str]:
    """Archive a folder: (a file positioned at 0, archive SHA-256, size, content hash over the
    files' paths and bytes)."""
    files = code_files(folder) if files is None else files
    total = sum(p.stat().st_size for _, p in files)
    if total > MAX_CODE_BYTES:
        raise InvalidInput(
            f"{folder} holds {total / 2**20:.0f} MiB; a job's code is at most "
            f"{MAX_CODE_BYTES // 2**20} MiB: keep data in datasets, not in the code folder"
        )
    out = tempfile.SpooledTemporaryFile(max_size=16 * 2**20)  # noqa: SIM115 - returned open
    content = hashlib.sha256()
    with (
        gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=6) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for rel, local in files:
            data = local.read_bytes()
            content.update(f"{rel}\0{hashlib.sha256(data).hexdigest()}\0{len(data)}\n".encode())
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mode = 0o755 if local.stat().st_mode & 0o100 else 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    size = out.tell()
    out.seek(0)
    digest = hashlib.sha256()
    for chunk in iter(lambda: out.read(1 << 20), b""):
        digest.update(chunk)
    out.seek(0)
    return out, digest.hexdigest(), size, content.hexdigest()


def unpack(archive: IO[bytes], dest: Path) -> None:
    """Extract an archive made by `pack` into `dest` (created), refusing unsafe members."""
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    with tarfile.open(fileobj=archive, mode="r:gz") as tar:
        for member in tar:
            target = (root / member.name).resolve()
            if not target.is_relative_to(root) or not (member.isfile() or member.isdir()):
                raise InvalidInput(f"the archive holds an unsafe member: {member.name!r}")
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            with source, open(target, "wb") as f:
                while chunk := source.read(1 << 20):
                    f.write(chunk)
            target.chmod(0o755 if member.mode & 0o100 else 0o644)
