"""Master key rotation on a control plane that serves: objects of several projects are read
all along (each read with the keyring's cache emptied, so every data key is unwrapped again
between two batches), a rotation cut short is finished by the next start, and afterwards the
new key file opens everything while the old key is refused. Keys derived from the root secret
(blob names, the audit chain, login tokens) do not change."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import select

from stratus.api.platform import Platform
from stratus.client import Client
from stratus.core.errors import Conflict, InvalidInput, PermissionDenied
from stratus.core.settings import load_settings
from stratus.iam import schemas as iam
from stratus.iam.principals import Principal
from stratus.iam.tables import UserRow
from stratus.migrations.runner import upgrade
from stratus.storage import schemas as s
from stratus.storage.key_check import verify_master_key
from stratus.storage.key_rotation import MasterKeyRotation
from stratus.testing import LocalPlatform, wait_for

PROJECTS = ("alpha", "beta", "gamma")
Objects = dict[tuple[str, str], bytes]  # (project, key) -> content, in bucket "data"


@contextmanager
def control_plane(home: Path, **overrides: Any) -> Iterator[Platform]:
    """A control plane on `home`, started as `stratus up` starts one (migrations, the master
    key's check), stopped at the end."""
    home.mkdir(parents=True, exist_ok=True)
    settings = load_settings({"home": str(home), **overrides})
    key = Platform.master_key(settings)
    platform = Platform.build(settings, key)
    try:
        upgrade(platform.db)
        verify_master_key(platform.db, key)
        platform.start()
        yield platform
    finally:
        platform.stop()


def admin(platform: Platform) -> Principal:
    """The first start's admin."""
    with platform.db.reading() as session:
        uid = session.scalar(select(UserRow.uid).where(UserRow.name == "admin"))
    assert uid is not None
    return Principal(kind="user", uid=uid, name="admin", is_admin=True)


def put_objects(platform: Platform) -> Objects:
    objects: Objects = {}
    for project in PROJECTS:
        platform.iam.create_project(admin(platform), iam.ProjectCreate(name=project))
        platform.storage.create_bucket(project, s.BucketCreate(name="data"))
        for i in range(3):
            content = f"{project} object {i} ".encode() * (1000 + i)
            upload = platform.storage.begin_put(project, "data", f"o{i}")
            upload.write(content)
            platform.storage.finish_put(upload, actor="user:admin", content_type=None)
            objects[(project, f"o{i}")] = content
    return objects


def read(platform: Platform, project: str, key: str) -> bytes:
    _, chunks = platform.storage.open_object(project, "data", key, None)
    return b"".join(chunks)


def assert_readable(platform: Platform, objects: Objects) -> None:
    for (project, key), content in objects.items():
        assert read(platform, project, key) == content, f"{project}/{key}"


class Reader(threading.Thread):
    """Reads every object again and again, each round with a cold keyring; keeps failures."""

    def __init__(self, platform: Platform, objects: Objects) -> None:
        super().__init__(name="test-reader", daemon=True)
        self.platform, self.objects = platform, objects
        self.rounds, self.reads = 0, 0
        self.failures: list[str] = []
        self._done = threading.Event()
        self._progress = threading.Condition()

    def run(self) -> None:
        while not self._done.is_set():
            self.platform.blobs.keyring.clear_cache()
            for (project, key), content in self.objects.items():
                try:
                    if read(self.platform, project, key) != content:
                        self.failures.append(f"{project}/{key}: other bytes")
                except Exception as exc:
                    self.failures.append(f"{project}/{key}: {exc!r}")
                self.reads += 1
            with self._progress:
                self.rounds += 1
                self._progress.notify_all()

    def another_round(self, timeout: float = 30) -> None:
        """Until a whole round was read from now on."""
        with self._progress:
            wanted = self.rounds + 2  # the round under way may have begun before now
            if not self._progress.wait_for(lambda: self.rounds >= wanted, timeout):
                raise AssertionError("the reader made no progress")

    def finish(self) -> None:
        self._done.set()
        self.join(30)


def finished(platform: Platform, rotation_id: str) -> s.MasterKeyRotationRead:
    return cast(
        s.MasterKeyRotationRead,
        wait_for(
            "the rotation to stop running",
            lambda: (r := platform.master_key_rotation.get(rotation_id)).state != "running" and r,
            timeout=60,
        ),
    )


def test_objects_stay_readable_while_the_master_key_is_rotated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    with control_plane(home) as platform:
        old_key = (home / "master.key").read_bytes()
        objects = put_objects(platform)
        token, _ = platform.authenticator.signer.issue(admin(platform).uid, "admin")
        reader = Reader(platform, objects)
        reader.start()
        rewrap = MasterKeyRotation._rewrap_batch

        def batch(self: MasterKeyRotation, rotation_id: str, new_check: str) -> int:
            reader.another_round()  # reads under both keys, between every two batches
            return rewrap(self, rotation_id, new_check)

        monkeypatch.setattr(MasterKeyRotation, "_rewrap_batch", batch)
        platform.master_key_rotation.batch_size = 1
        try:
            started = platform.master_key_rotation.start("user:admin")
            done = finished(platform, started.id)
            reader.another_round()
        finally:
            reader.finish()
        monkeypatch.undo()
        assert done.state == "finished", done.error
        assert done.keys_total == done.keys_done == len(PROJECTS)
        assert reader.failures == [] and reader.rounds >= len(PROJECTS) + 1
        assert platform.audit.verify().ok
    new_key = (home / "master.key").read_bytes()
    assert new_key != old_key and not (home / "master.key.next").exists()

    with control_plane(home) as platform:  # the new key file opens everything
        assert_readable(platform, objects)
        assert platform.authenticator.signer.verify(token).username == "admin"  # same signer
        assert platform.audit.verify().ok  # the chain's key did not change
        events = platform.audit.list(action="master_key.rotation.finished")[0]
        assert [e.details["rotation"] for e in events] == [started.id]

    # The old key (as STRATUS_MASTER_KEY, on the same database) is refused before anything
    # is read or written under it.
    old = {
        "master_key": old_key.decode().strip(),
        "db": {"url": f"sqlite:///{home / 'stratus.db'}"},
    }
    with pytest.raises(InvalidInput, match="the master key does not match"):
        with control_plane(tmp_path / "elsewhere", **old):
            pass


def test_a_rotation_cut_short_is_finished_by_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    with control_plane(home) as platform:
        old_key = (home / "master.key").read_bytes()
        objects = put_objects(platform)
        rewrap = MasterKeyRotation._rewrap_batch
        batches: list[str] = []

        def crash_after_the_first_batch(self: MasterKeyRotation, *args: str) -> int:
            batches.append(args[0])
            if len(batches) > 1:
                raise RuntimeError("the control plane died here")
            return rewrap(self, *args)

        monkeypatch.setattr(MasterKeyRotation, "_rewrap_batch", crash_after_the_first_batch)
        platform.master_key_rotation.batch_size = 1
        started = platform.master_key_rotation.start("user:admin")
        stopped = finished(platform, started.id)
        monkeypatch.undo()
        assert stopped.state == "interrupted" and "died here" in stopped.error
        assert stopped.keys_done == 1
        platform.blobs.keyring.clear_cache()
        assert_readable(platform, objects)  # keys under either master key
    assert (home / "master.key").read_bytes() == old_key
    assert (home / "master.key.next").exists()

    with control_plane(home) as platform:  # carries the rotation on, serving meanwhile
        assert_readable(platform, objects)
        done = finished(platform, started.id)
        assert done.state == "finished" and done.keys_done == len(PROJECTS)
        platform.blobs.keyring.clear_cache()
        assert_readable(platform, objects)
    assert (home / "master.key").read_bytes() != old_key
    assert not (home / "master.key.next").exists()
    with control_plane(home) as platform:
        assert_readable(platform, objects)
        assert platform.audit.verify().ok


def test_a_master_key_from_the_variable_is_not_rotated(tmp_path: Path) -> None:
    key = base64.b64encode(bytes(range(32))).decode()
    with control_plane(tmp_path / "home", master_key=key) as platform:
        with pytest.raises(Exception, match="STRATUS_MASTER_KEY") as refused:
            platform.master_key_rotation.start("user:admin")
        assert getattr(refused.value, "status", None) == 409
        assert platform.master_key_rotation.list()[0] == []
    assert not (tmp_path / "home" / "master.key.next").exists()


# --- through the API, the SDK and the CLI, on a platform of its own ----------------------------


def test_cli_rotates_the_master_key_of_a_serving_platform(
    own_platform: LocalPlatform, run_cli: Callable[..., Any]
) -> None:
    home = own_platform.home
    old_key = (home / "master.key").read_bytes()
    with own_platform.client() as client:
        for project in ("alpha", "beta"):
            client.projects.create(project)
            client.buckets.create("data", project=project)
            client.buckets.upload("data", "model.bin", project.encode() * 5000, project=project)
        viewer = uniq_user(client)
        with pytest.raises(PermissionDenied):
            with Client(url=own_platform.url, api_key=viewer) as someone:
                someone.admin.rotate_master_key()

    done = run_cli("admin", "rotate-master-key", env=own_platform.cli_env())
    assert done.code == 0, done.stderr
    assert "the master key was rotated" in done.stdout
    assert (home / "master.key").read_bytes() != old_key
    listed = run_cli("admin", "master-key-rotations", "-o", "json", env=own_platform.cli_env())
    rotations = json.loads(listed.stdout)
    assert [r["state"] for r in rotations] == ["finished"]
    assert rotations[0]["started_by"] == "user:admin" and rotations[0]["keys_done"] >= 2

    with own_platform.client() as client:  # serving all along, and after a restart
        assert client.buckets.read("data", "model.bin", project="alpha") == b"alpha" * 5000
        audited = sorted((e.action, e.outcome) for e in client.audit.list(action="master_key.*"))
        assert audited == [
            ("master_key.rotation.finished", "success"),
            ("master_key.rotations.start", "denied"),  # the user who is no admin
            ("master_key.rotations.start", "success"),
        ]
    own_platform.stop()
    own_platform.start()
    with own_platform.client() as client:  # the same API key: derived keys did not change
        assert client.buckets.read("data", "model.bin", project="beta") == b"beta" * 5000
        assert client.audit.verify().ok
        again = client.admin.rotate_master_key()
        done_again = client.admin.wait_for_master_key_rotation(again.id, timeout=60)
        assert done_again.state == "finished" and again.id != rotations[0]["id"]
    queued = run_cli("admin", "rotate-master-key", "--no-wait", env=own_platform.cli_env())
    assert queued.code == 0, queued.stderr


def test_a_platform_keyed_by_the_variable_refuses_to_rotate(
    tmp_path: Path, run_cli: Callable[..., Any]
) -> None:
    key = base64.b64encode(bytes(range(32))).decode()
    platform = LocalPlatform(tmp_path / "home", env={"STRATUS_MASTER_KEY": key})
    try:
        platform.start()
        refused = run_cli("admin", "rotate-master-key", env=platform.cli_env())
        assert refused.code == 1
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "STRATUS_MASTER_KEY" in lines[0], refused.stderr
        assert key not in refused.stderr
        with platform.client() as client, pytest.raises(Conflict):
            client.admin.rotate_master_key()
    finally:
        platform.stop()
    assert not (tmp_path / "home" / "master.key.next").exists()


def uniq_user(admin: Client) -> str:
    """A new user who is no admin; their API key."""
    name = f"u-{uuid.uuid4().hex[:8]}"
    admin.users.create(name, "correct-horse-battery")
    return admin.keys.create(user=name).secret
