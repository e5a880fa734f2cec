"""Engines, sessions and migrations. SQLite (WAL, one writer at a time) by default; PostgreSQL by URL.

>>> db = Database.open("sqlite:///:memory:")        # migrated to the latest schema
>>> with db.session() as session: ...               # commits on success, rolls back on error
>>> with db.read_session() as session: ...          # reads only; never waits for a writer
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class DatabaseError(Exception):
    """The database cannot be opened or migrated (the message says which URL and why)."""


DatabaseFailure = Literal["read-only", "full", "unavailable"]


def database_failure(exc: BaseException) -> DatabaseFailure | None:
    """Why a driver error is the database's state rather than the request's fault: it refuses writes
    (`read-only`: a read-only file or replica, `default_transaction_read_only`), it is out of space (`full`), or
    it cannot be reached or is busy (`unavailable`). None: any other error (a bug, not an outage)."""
    if not isinstance(exc, DBAPIError):
        return None
    orig = exc.orig
    sqlite_name = str(getattr(orig, "sqlite_errorname", "") or "")  # sqlite3 (Python >= 3.11)
    sqlstate = str(getattr(orig, "sqlstate", "") or "")  # psycopg
    if sqlite_name.startswith("SQLITE_READONLY") or sqlstate == "25006":
        return "read-only"
    if sqlite_name == "SQLITE_FULL" or sqlstate == "53100":
        return "full"
    if (
        exc.connection_invalidated
        or sqlite_name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_BUSY", "SQLITE_LOCKED"))
        or sqlstate.startswith(("08", "53", "57P"))
        or (isinstance(exc, OperationalError) and not sqlite_name and not sqlstate)  # e.g. a refused connection
    ):
        return "unavailable"
    return None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Autocommit at the driver level, so the `begin` hook below decides how transactions start.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged upload survives a crash or power loss
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA secure_delete=ON")  # freed pages are zeroed: a destroyed data key leaves no trace
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


READ_ONLY = "veil_read_only"


def _sqlite_begin(connection: Any) -> None:
    # Writers take the write lock up front: a read-then-write transaction (the audit chain) then never fails
    # with SQLITE_BUSY half-way, it waits its turn instead. Read-only sessions never block anyone (WAL).
    read_only = connection.get_execution_options().get(READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, future=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
    else:
        engine = create_engine(url, connect_args={"check_same_thread": False}, poolclass=StaticPool)
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the latest Alembic revision (run at every start; a no-op when current)."""
    from alembic import command  # imported here: Alembic is heavy and only needed once per start
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class Database:
    """An engine plus a session factory."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._read_engine = engine.execution_options(**{READ_ONLY: True})
        self._readers = sessionmaker(self._read_engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str, run_migrations: bool = True) -> Database:
        try:
            engine = make_engine(url)
            if run_migrations:
                migrate(engine)
        except Exception as exc:  # the driver's errors vary; the user needs the URL and the cause
            safe_url = make_url(url).render_as_string(hide_password=True)
            raise DatabaseError(f"cannot open database {safe_url}: {exc.__class__.__name__}: {exc}") from exc
        return cls(engine)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def session(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A session for reads only: never takes SQLite's write lock and never commits."""
        session = self._readers()
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    @contextmanager
    def read_connection(self) -> Iterator[Connection]:
        """A Core connection for reads only (a few columns, no ORM objects): the cheapest fresh look-up, as on
        every prediction's key check. Rolled back on exit."""
        with self._read_engine.connect() as connection:
            yield connection

    def checkpoint(self) -> None:
        """SQLite: copy the WAL into the database and truncate it, so overwritten values leave no old copy
        (used after crypto-shredding). A no-op on PostgreSQL."""
        if self.engine.dialect.name != "sqlite":
            return
        raw = self.engine.raw_connection()
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()

    def dispose(self) -> None:
        self.engine.dispose()
