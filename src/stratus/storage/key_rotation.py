"""Master key rotation: every data key and the root secret re-wrapped under a new master key
while the platform serves, then the key file replaced.

Each step is durable before the next, so a crash anywhere is carried on at the next start
(`resume`) or by the next rotate:
1. the new key is written to `master.key.next` (0600, fsynced, renamed into place);
2. the rotation is recorded (both keys' check values, who started it); from then on new data
   keys are wrapped under the new key;
3. data keys not under the new key are re-wrapped, a batch per transaction;
4. one transaction re-wraps any left, the root secret, and sets the check value to the new
   key's;
5. `master.key.next` is renamed over `master.key`: the old key is gone from the home;
6. the rotation is marked finished, with an audit entry, in one transaction.
Readers never wait: a data key unwraps under whichever master key wraps it (`MasterKeys`).
A master key from STRATUS_MASTER_KEY is not rotated: the platform cannot rewrite a variable.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Sequence
from typing import Literal

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from stratus.core.clock import as_utc, utcnow
from stratus.core.database import Database
from stratus.core.errors import Conflict, NotFound
from stratus.core.ids import new_id, new_request_id
from stratus.core.resources import paginate
from stratus.iam.audit import AuditEntry, AuditLog
from stratus.storage import schemas as s
from stratus.storage.encryption import (
    KEY_BYTES,
    move_key_file,
    read_key_file,
    wrap_key,
    write_key_file,
)
from stratus.storage.key_check import (
    CHECK_ID,
    check_value,
    remember_master_key,
    unfinished_rotation,
    unwrap_root_secret,
    wrap_root_secret,
    wrong_master_key,
)
from stratus.storage.master_keys import KeyFiles, MasterKeys
from stratus.storage.tables import DataKeyRow, MasterKeyCheckRow, MasterKeyRotationRow

log = logging.getLogger(__name__)

BATCH_SIZE = 200
ACTOR = "system:storage"
RUNNING, FINISHED = "running", "finished"


def key_from_variable(path: object) -> Conflict:
    return Conflict(
        "the master key comes from STRATUS_MASTER_KEY, which the control plane cannot "
        "rewrite, so it does not rotate it. To rotate: write the variable's value to "
        f"{path} (mode 0600), unset STRATUS_MASTER_KEY and restart; rotate; then, if you keep "
        "the key in the variable, set it to the new content of that file before the next "
        "start (docs/key-rotation.md)"
    )


class RotationStopped(Exception):
    """A rotation cannot go on by itself (its new key is lost, or the database disagrees)."""


class MasterKeyRotation:
    """Starts, carries on and reports master key rotations; the work runs on a thread of its
    own (one rotation at a time). `from_variable`: the master key is STRATUS_MASTER_KEY."""

    def __init__(
        self,
        db: Database,
        keys: MasterKeys,
        files: KeyFiles,
        audit: AuditLog,
        *,
        from_variable: bool = False,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.db = db
        self.keys = keys
        self.files = files
        self.audit = audit
        self.from_variable = from_variable
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._working_on: str | None = None

    # --- the API -----------------------------------------------------------------------------

    def start(self, actor: str) -> s.MasterKeyRotationRead:
        """Rotate the master key; a rotation that did not finish is carried on instead."""
        if self.from_variable:
            raise key_from_variable(self.files.current)
        with self._lock:
            if self._busy():
                assert self._working_on is not None
                return self.get(self._working_on)
            with self.db.transaction() as session:
                row = remember_master_key(session, self.keys.current)
                rotation = unfinished_rotation(session)
                if rotation is None and row.check_value != self.keys.current_check:
                    raise wrong_master_key()
                rotation_id = None if rotation is None else rotation.id
            if rotation_id is None:
                rotation_id = self._begin(actor)
            else:
                log.info("carrying on master key rotation %s", rotation_id)
            self._launch(rotation_id)
        return self.get(rotation_id)

    def get(self, rotation_id: str) -> s.MasterKeyRotationRead:
        with self.db.reading() as session:
            row = session.get(MasterKeyRotationRow, rotation_id)
            if row is None:
                raise NotFound(f"master key rotation {rotation_id!r} not found")
            return self._read(row)

    def list(
        self, limit: int | None = None, page_token: str | None = None
    ) -> tuple[list[s.MasterKeyRotationRead], str | None]:
        """Rotations, newest first."""
        with self.db.reading() as session:
            rows, token = paginate(
                session,
                select(MasterKeyRotationRow),
                MasterKeyRotationRow.id,
                limit,
                page_token,
                descending=True,
            )
            return [self._read(r) for r in rows], token

    def resume(self) -> None:
        """At start-up, before anything is served: know the new key of a rotation that did
        not finish, wrap new data keys under it, and carry the rotation on in the background."""
        with self.db.reading() as session:
            rotation = unfinished_rotation(session)
            if rotation is None:
                return
            rotation_id = rotation.id
        with self._lock:
            try:
                self._prepare(rotation)
                if self.from_variable:
                    raise RotationStopped(
                        "the master key comes from STRATUS_MASTER_KEY now: start with the key "
                        "in its file to carry the rotation on"
                    )
            except RotationStopped as exc:
                log.error("master key rotation %s cannot go on: %s", rotation_id, exc)
                self._record_error(rotation_id, str(exc))
                return
            log.info("carrying on master key rotation %s, which did not finish", rotation_id)
            self._launch(rotation_id)

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the batch in hand (the rotation is carried on at the next start)."""
        self._stopping.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def wait(self, timeout: float | None = None) -> None:
        """Until the rotation in hand (if any) stops or finishes."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # --- the steps ---------------------------------------------------------------------------

    def _begin(self, actor: str) -> str:
        """Steps 1 and 2: the new key on disk, then the rotation recorded; only then is the
        new key used (a key file without a record is a rotation that never began, and the
        next one overwrites it)."""
        new = secrets.token_bytes(KEY_BYTES)
        write_key_file(self.files.next, new)
        new_check = check_value(new)
        with self.db.transaction() as session:
            total = session.scalar(
                select(func.count()).select_from(DataKeyRow).where(_not_under(new_check))
            )
            row = MasterKeyRotationRow(
                id=new_id("mkr"),
                state=RUNNING,
                old_check=self.keys.current_check,
                new_check=new_check,
                started_by=actor,
                started_at=utcnow(),
                keys_total=int(total or 0),
                keys_done=0,
                error="",
            )
            session.add(row)
            rotation_id = row.id
        self.keys.add(new)
        self.keys.wrap_with(new_check)
        log.info("master key rotation %s started by %s", rotation_id, actor)
        return rotation_id

    def _prepare(self, rotation: MasterKeyRotationRow) -> None:
        """Know the rotation's new key (from `master.key.next` unless the key file already
        is the new key) and wrap new data keys under it."""
        if self.keys.key(rotation.new_check) is None:
            found = self.files.read_next()
            if found is None or check_value(found) != rotation.new_check:
                raise RotationStopped(
                    f"its new master key is not in {self.files.next}: data keys it re-wrapped "
                    "cannot be unwrapped without it; restore that file and restart"
                )
            self.keys.add(found)
        self.keys.wrap_with(rotation.new_check)

    def _launch(self, rotation_id: str) -> None:
        self._stopping.clear()
        self._working_on = rotation_id
        self._thread = threading.Thread(
            target=self._run, args=(rotation_id,), name="stratus-master-key-rotation", daemon=True
        )
        self._thread.start()

    def _busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self, rotation_id: str) -> None:
        try:
            with self.db.reading() as session:
                rotation = session.get(MasterKeyRotationRow, rotation_id)
                if rotation is None or rotation.state == FINISHED:
                    return
            self._prepare(rotation)
            new_check = rotation.new_check
            while self._rewrap_batch(rotation_id, new_check):
                if self._stopping.is_set():
                    log.info("master key rotation %s stops; a start carries it on", rotation_id)
                    return
            self._switch(rotation_id, new_check)
            self._replace_file(new_check)
            self._finish(rotation_id)
        except Exception as exc:
            log.exception("master key rotation %s stopped", rotation_id)
            self._record_error(rotation_id, str(exc) or type(exc).__name__)

    def _rewrap_batch(self, rotation_id: str, new_check: str) -> int:
        """Step 3: one batch, one transaction; how many were re-wrapped (0: none are left)."""
        with self.db.transaction() as session:
            rows = session.scalars(
                select(DataKeyRow)
                .where(_not_under(new_check))
                .order_by(DataKeyRow.key_id)
                .limit(self.batch_size)
                .with_for_update()
            ).all()
            self._rewrap(session, rotation_id, rows, new_check)
            return len(rows)

    def _rewrap(
        self, session: Session, rotation_id: str, rows: Sequence[DataKeyRow], new_check: str
    ) -> None:
        new = self.keys.key(new_check)
        if new is None:
            raise RotationStopped("the new master key is not known to this control plane")
        for row in rows:
            data_key = self.keys.unwrap(row.wrapped, row.key_id, row.wrapped_by)
            row.wrapped, row.wrapped_by = wrap_key(new, data_key, row.key_id), new_check
        rotation = session.get(MasterKeyRotationRow, rotation_id)
        if rotation is not None:
            rotation.keys_done += len(rows)
            rotation.error = ""

    def _switch(self, rotation_id: str, new_check: str) -> None:
        """Step 4: under the check row's lock (which every new data key shares), re-wrap any
        key still under the old master key, then the root secret, and name the new key."""
        with self.db.transaction() as session:
            row = session.get(MasterKeyCheckRow, CHECK_ID, with_for_update=True)
            if row is None:
                raise RotationStopped("the database holds no master key check value")
            if row.check_value != new_check:
                left = session.scalars(
                    select(DataKeyRow).where(_not_under(new_check)).with_for_update()
                ).all()
                self._rewrap(session, rotation_id, left, new_check)
                old = self.keys.key(row.check_value)
                new = self.keys.key(new_check)
                if old is None or new is None:
                    raise RotationStopped("the master keys the database names are not known")
                root = old if row.root_secret is None else unwrap_root_secret(old, row.root_secret)
                row.root_secret = wrap_root_secret(new, root)
                row.check_value = new_check
        self.keys.promote(new_check)

    def _replace_file(self, new_check: str) -> None:
        """Step 5: `master.key.next` renamed over `master.key` (already done if the key file
        holds the new key: a crash between this step and the next)."""
        files = self.files
        try:
            upcoming = read_key_file(files.next)
        except FileNotFoundError:
            if check_value(read_key_file(files.current)) != new_check:
                raise RotationStopped(
                    f"neither {files.current} nor {files.next} holds the new master key"
                ) from None
            return
        if check_value(upcoming) != new_check:
            raise RotationStopped(f"{files.next} does not hold this rotation's new key")
        move_key_file(files.next, files.current)

    def _finish(self, rotation_id: str) -> None:
        """Step 6: finished, and audited in the same transaction."""
        with self.db.transaction() as session:
            rotation = session.get(MasterKeyRotationRow, rotation_id)
            if rotation is None:
                return
            rotation.state, rotation.finished_at, rotation.error = FINISHED, utcnow(), ""
            self.audit.append_in(
                session,
                AuditEntry(
                    actor=ACTOR,
                    action="master_key.rotation.finished",
                    resource=f"/api/v1/admin/master-key/rotations/{rotation_id}",
                    project=None,
                    outcome="success",
                    status_code=200,
                    request_id=new_request_id(),
                    source="stratus",
                    details={
                        "rotation": rotation_id,
                        "started_by": rotation.started_by,
                        "keys_rewrapped": rotation.keys_done,
                    },
                ),
            )
        log.info("master key rotation %s finished", rotation_id)

    def _record_error(self, rotation_id: str, error: str) -> None:
        try:
            with self.db.transaction() as session:
                rotation = session.get(MasterKeyRotationRow, rotation_id)
                if rotation is not None and rotation.state != FINISHED:
                    rotation.error = error[:2000]
        except Exception:
            log.exception("could not record why master key rotation %s stopped", rotation_id)

    def _read(self, row: MasterKeyRotationRow) -> s.MasterKeyRotationRead:
        state: Literal["running", "interrupted", "finished"]
        if row.state == FINISHED:
            state = "finished"
        elif self._busy() and self._working_on == row.id:
            state = "running"
        else:
            state = "interrupted"
        return s.MasterKeyRotationRead(
            id=row.id,
            state=state,
            started_by=row.started_by,
            started_at=as_utc(row.started_at),
            finished_at=as_utc(row.finished_at) if row.finished_at else None,
            keys_total=row.keys_total,
            keys_done=row.keys_done,
            error=row.error,
        )


def _not_under(check: str) -> ColumnElement[bool]:
    return or_(DataKeyRow.wrapped_by.is_(None), DataKeyRow.wrapped_by != check)
