"""Engines: which MySQL driver `mysql://` takes, the pool's rules (ping only the idle, lose a server together),
and SQLite's one writer at a time."""
import importlib.util
import os
import time
import weakref
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError

from app import threads

# A MySQL URL without a driver (`mysql://`, `mariadb://`) takes mysqlclient (C) where it is installed, else
# PyMySQL (pure Python, always installed); `mysql+pymysql://` or `mysql+mysqldb://` pins one. mysqlclient
# spends far less CPU per statement (PyMySQL parses every packet in Python); in the server's event loop its
# statements wait for the answer cooperatively (GreenMySQLdb), so a slow database holds only the requests
# that asked it. bench/README.md measures both.
MYSQL_DRIVERS = (("mysqldb", "MySQLdb"), ("pymysql", "pymysql"))


def with_driver(url: str) -> str:
    """`url` with its MySQL driver named: the one `mysql://` means here (see MYSQL_DRIVERS)."""
    backend, sep, rest = url.partition("://")
    if not sep or backend not in ("mysql", "mariadb"):
        return url
    driver = next(name for name, module in MYSQL_DRIVERS if name == "pymysql" or importlib.util.find_spec(module))
    return f"{backend}+{driver}://{rest}"


def _green_mysqldb(dialect, _record, cargs, cparams):
    """mysqlclient's connection, its statements waiting for the server on the event loop (when there is one)."""
    if dialect.driver != "mysqldb" or not threads.event_loop():
        return None  # SQLAlchemy connects as usual
    from app.db.green_mysql import GreenConnection

    return GreenConnection(*cargs, **cparams)


def make_engine(
    url: str, pool_size: int = 10, connect_timeout: int = 5, autocommit: bool = False, read_timeout: int = 30,
) -> Engine:
    url = with_driver(url)
    # hide_parameters: statements' values (logins, token hashes) stay out of logs and error messages.
    if url.startswith("sqlite"):
        engine = create_engine(url, hide_parameters=True, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        OneWriter().install(engine)
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
    event.listen(engine, "do_connect", _green_mysqldb)
    event.listen(engine, "checkin", _remember_checkin)
    dialect = engine.dialect
    event.listen(engine, "checkout", lambda conn, record, proxy: _ping_if_idle(conn, record, proxy, dialect))
    return engine


IDLE_BEFORE_PING = 1.0  # seconds: under load connections are never this idle, so never pinged
RETRY_WITHIN = 0.5  # seconds: a failure faster than this was a dead connection, not a slow server


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


# Engines whose pools reach the same server (weakly: an app's engines go with the app).
_PEERS: "weakref.WeakKeyDictionary[Engine, list[weakref.ref[Engine]]]" = weakref.WeakKeyDictionary()


def share_disconnects(*engines: Engine) -> None:
    """Pools of one server lose it together: the first disconnect seen by one empties the others too.

    SQLAlchemy already discards the failing pool; without this, the other pool's first request after a
    database restart would fail as well.
    """
    peers = [weakref.ref(engine) for engine in engines]

    def on_error(context) -> None:
        if context.is_disconnect:
            for engine in engines:
                if engine is not context.engine:
                    engine.pool.dispose()

    for engine in engines:
        _PEERS[engine] = peers
        event.listen(engine, "handle_error", on_error)


def server_lost(engine: Engine) -> None:
    """Empty the pools of `engine` and of every engine sharing its server: their connections are dead too."""
    for peer in _PEERS.get(engine) or [weakref.ref(engine)]:
        if (alive := peer()) is not None:
            alive.pool.dispose()


WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class OneWriter:
    """SQLite: one write transaction at a time per process, the others waiting their turn cooperatively.

    SQLite lets one writer in at a time and makes the others wait in C (the busy timeout), which blocks
    the whole event loop of the process. If the writer that holds the lock is a greenlet of that same
    process, paused on a thread's work or a network call before its commit, it never gets to run again:
    both wait out the busy timeout. So a connection takes this lock before its first write and gives it
    back at its commit or rollback; a writer of another process still waits in SQLite, for as long as that
    process's transaction lasts. Outside the event loop, where the lock is a plain thread lock, the same
    rule only saves SQLite's busy-waiting.
    """

    def __init__(self) -> None:
        self._lock: Any = None
        self._pid = 0

    def lock(self) -> Any:
        if self._pid != os.getpid():  # made in this process, after gevent (if any) patched `threading`
            import threading

            # Reentrant: a request that writes on two connections at once waits on SQLite, as before, not here.
            self._lock, self._pid = threading.RLock(), os.getpid()
        return self._lock

    def install(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self.before_execute)
        event.listen(engine, "commit", self.release)
        event.listen(engine, "rollback", self.release)
        event.listen(engine, "checkin", lambda dbapi_connection, record: self.release_record(record))
        event.listen(engine, "close", lambda dbapi_connection, record: self.release_record(record))
        event.listen(engine, "invalidate", lambda dbapi_connection, record, _e: self.release_record(record))

    def before_execute(self, conn, _cursor, statement: str, _parameters, _context, _executemany) -> None:
        info = conn.info
        if info.get("writing") or not statement.lstrip()[:7].upper().startswith(WRITES):
            return
        if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return  # a statement that commits by itself: SQLite holds its lock only while it runs
        self.lock().acquire()
        info["writing"] = True

    def release(self, conn) -> None:
        # The event comes just before the driver's commit or rollback, which never yields to another
        # greenlet: the next writer starts after it.
        if conn.info.pop("writing", False):
            self.lock().release()

    def release_record(self, record) -> None:
        if record.info.pop("writing", False):
            self.lock().release()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
    # app.db.folded: a case-insensitive match of any letter, as MySQL's LOWER() gives (SQLite's folds ASCII only).
    dbapi_connection.create_function("unicode_lower", 1, _unicode_lower, deterministic=True)


def _unicode_lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value
