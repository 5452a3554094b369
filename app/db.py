"""Declarative base, one engine per app, and the request's SQLAlchemy session on `g`."""
import time
from datetime import datetime, timezone

from flask import Flask, current_app, g
from sqlalchemy import DateTime, MetaData, String, create_engine, event
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# MySQL's DATETIME drops fractions of a second unless asked; token rotation and "newest first" need them.
UtcDateTime = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
# Logins are normalised before storing; a binary collation keeps "josé@…" and "jose@…" two users on MySQL.
Login = String(255).with_variant(mysql.VARCHAR(255, collation="utf8mb4_bin"), "mysql", "mariadb")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime}


def utcnow() -> datetime:
    """Naive UTC, the form every time column stores."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def make_engine(
    url: str, pool_size: int = 10, connect_timeout: int = 5, autocommit: bool = False, read_timeout: int = 30,
) -> Engine:
    # hide_parameters: statements' values (logins, token hashes) stay out of logs and error messages.
    if url.startswith("sqlite"):
        engine = create_engine(url, hide_parameters=True, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("mysql") and "charset=" not in url:
        url += ("&" if "?" in url else "?") + "charset=utf8mb4"
    engine = create_engine(
        url,
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=280,
        pool_timeout=connect_timeout,
        # Sessions always end their transaction on close (close_db), so the pool's extra ROLLBACK is a wasted round trip.
        pool_reset_on_return=None,
        isolation_level="AUTOCOMMIT" if autocommit else None,
        skip_autocommit_rollback=autocommit,  # no ROLLBACK round trip when an autocommit connection closes
        connect_args={"connect_timeout": connect_timeout, "read_timeout": read_timeout, "write_timeout": read_timeout},
    )
    event.listen(engine, "checkin", _remember_checkin)
    dialect = engine.dialect
    event.listen(engine, "checkout", lambda conn, record, proxy: _ping_if_idle(conn, record, proxy, dialect))
    return engine


IDLE_BEFORE_PING = 10.0


def _remember_checkin(_dbapi_connection, record) -> None:
    record.info["checked_in"] = time.monotonic()


def _ping_if_idle(dbapi_connection, record, _proxy, dialect) -> None:
    """pool_pre_ping costs a round trip on every request; ping only a connection that sat idle.

    Under load connections are never idle, and a server restart is caught by the first failing
    statement, which invalidates the whole pool (that request gets 503, the next ones reconnect).
    The dialect knows its driver's ping: PyMySQL's must be told not to reconnect behind the pool's
    back, mysqlclient's takes no argument at all (a keyword raises TypeError).
    """
    if time.monotonic() - record.info.get("checked_in", 0.0) < IDLE_BEFORE_PING:
        return
    try:
        dialect.do_ping(dbapi_connection)
    except Exception as e:
        raise DisconnectionError(str(e)) from e


def share_disconnects(*engines: Engine) -> None:
    """Pools of one server lose it together: the first disconnect seen by one empties the others too.

    SQLAlchemy already discards the failing pool; without this, the other pool's first request after a
    database restart would fail as well.
    """

    def on_error(context) -> None:
        if context.is_disconnect:
            for engine in engines:
                if engine is not context.engine:
                    engine.pool.dispose()

    for engine in engines:
        event.listen(engine, "handle_error", on_error)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def init_app(app: Flask) -> None:
    url, pool_size, timeout = app.config["DATABASE_URL"], app.config["DB_POOL_SIZE"], app.config["DB_CONNECT_TIMEOUT"]
    read_timeout = app.config["DB_READ_TIMEOUT"]
    engine = make_engine(url, pool_size, timeout, read_timeout=read_timeout)
    app.extensions["engine"] = engine
    # The bearer check, the abuse counters and read-only routes are single statements: in autocommit
    # they need no BEGIN/ROLLBACK round trips, so they get a pool of their own.
    if url.startswith("sqlite"):
        app.extensions["autocommit_engine"] = engine.execution_options(isolation_level="AUTOCOMMIT")
    else:
        app.extensions["autocommit_engine"] = make_engine(url, pool_size, timeout, autocommit=True, read_timeout=read_timeout)
        share_disconnects(engine, app.extensions["autocommit_engine"])
    app.extensions["sessionmaker"] = sessionmaker(engine, expire_on_commit=False)
    app.teardown_appcontext(close_db)


def after_fork(app: Flask) -> None:
    """In a worker forked from a process that created the app: start with empty pools of its own.

    Any connection the parent opened stays the parent's (close=False leaves it alone); this process
    opens its own on first use.
    """
    for name in ("engine", "autocommit_engine"):
        app.extensions[name].dispose(close=False)


def get_db() -> Session:
    """The request's session; opened on first use, closed at teardown."""
    if "db" not in g:
        g.db = current_app.extensions["sessionmaker"]()
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()
