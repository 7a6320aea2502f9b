"""Metadata database: one engine, short transactions, SQLite tuned for a laptop.

Every state change is one `with db.transaction() as session:` block: committed whole or
rolled back whole. On SQLite every transaction begins IMMEDIATE (one writer at a time, no
stale-snapshot failures); PostgreSQL runs read-committed with row locks where needed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event, text
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from stratus.core.errors import InvalidInput, ServiceUnavailable, StaleResource

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


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
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """The metadata database of one control plane."""

    def __init__(self, url: str, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
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
        if getattr(self._local, "open", False):
            raise RuntimeError("a transaction is already open in this thread: pass its session")
        session = self._sessions()
        self._local.open = True
        try:
            with session.begin():
                yield session
        except StaleDataError as exc:
            raise StaleResource("the resource was changed by someone else; read it again") from exc
        except OperationalError as exc:
            raise ServiceUnavailable(f"database error: {exc.orig}") from exc
        except DataError as exc:  # a value the database cannot hold, e.g. NUL in PostgreSQL text
            raise InvalidInput(f"the database refused a value in the request: {exc.orig}") from exc
        finally:
            self._local.open = False
            session.close()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
