"""Metadata database: one engine, short transactions, SQLite tuned for a laptop.

Every state change is one `with db.transaction() as session:` block: committed whole or
rolled back whole. On SQLite every transaction begins IMMEDIATE (one writer at a time, no
stale-snapshot failures); PostgreSQL runs read-committed with row locks where needed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event, text
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from stratus.core.errors import InvalidInput, ServiceUnavailable, StaleResource

log = logging.getLogger(__name__)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


_READ_ONLY = "stratus_read_only"
AfterTransaction = Callable[[bool], None]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def make_engine(url: str, echo: bool = False) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": 30},
        )
        _tune_sqlite(engine)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A read beside this thread's transaction begins DEFERRED: a WAL reader never waits
        # for the writer (which may be this very thread).
        if connection.get_execution_options().get(_READ_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """The metadata database of one control plane."""

    def __init__(self, url: str, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readers = sessionmaker(
            self.engine.execution_options(**{_READ_ONLY: True}), expire_on_commit=False
        )
        self._local = threading.local()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commit on success, roll back on any error.

        Transactions do not nest: on SQLite a second one in the same thread would wait for the
        first's write lock forever. Pass the open session down instead.
        """
        if self.open_session() is not None:
            raise RuntimeError("a transaction is already open in this thread: pass its session")
        session = self._sessions()
        self._local.session = session
        self._local.after = []
        committed = False
        try:
            with self._translated_errors(), session.begin():
                yield session
            committed = True
        finally:
            after: list[AfterTransaction] = self._local.after
            self._local.session, self._local.after = None, []
            session.close()
            for callback in after:
                try:
                    callback(committed)
                except Exception:  # the transaction's outcome stands; say what went wrong after
                    log.exception("a callback after a transaction failed")

    def open_session(self) -> Session | None:
        """The session of the transaction this thread has open, if any."""
        session: Session | None = getattr(self._local, "session", None)
        return session

    def after_transaction(self, callback: AfterTransaction) -> None:
        """Call `callback(committed)` once this thread's open transaction is over and closed
        (so the callback may open a transaction of its own)."""
        if self.open_session() is None:
            raise RuntimeError("no transaction is open in this thread")
        self._local.after.append(callback)

    @contextmanager
    def side_transaction(self) -> Iterator[Session]:
        """A short transaction on a connection of its own, committed whatever becomes of the
        transaction this thread may have open: for write-once rows that must be durable before
        they are used (a data key). Not on SQLite while this thread holds its one write lock:
        that would wait for itself; join the open session there instead."""
        if self.dialect == "sqlite" and self.open_session() is not None:
            raise RuntimeError("SQLite has one writer and this thread holds it: use its session")
        session = self._sessions()
        try:
            with self._translated_errors(), session.begin():
                yield session
        finally:
            session.close()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """Reads on a connection of their own, beside the transaction this thread may have open
        (they see committed rows only). On SQLite they never wait for a writer."""
        session = self._readers()
        try:
            with self._translated_errors(), session.begin():
                yield session
        finally:
            session.close()

    @staticmethod
    @contextmanager
    def _translated_errors() -> Iterator[None]:
        try:
            yield
        except StaleDataError as exc:
            raise StaleResource("the resource was changed by someone else; read it again") from exc
        except OperationalError as exc:
            raise ServiceUnavailable(f"database error: {exc.orig}") from exc
        except DataError as exc:  # a value the database cannot hold, e.g. NUL in PostgreSQL text
            raise InvalidInput(f"the database refused a value in the request: {exc.orig}") from exc

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
