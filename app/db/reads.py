"""The hot reads: SELECTs compiled once per database and run on a pooled DBAPI cursor (Read).

The bearer check and a page of files run one on every request, on the autocommit engine the request's
session carries.
"""
import time
import weakref
from collections import namedtuple
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from sqlalchemy import Select
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.db.engines import RETRY_WITHIN, server_lost


@dataclass(frozen=True)
class _Plan:
    """A statement as one dialect's driver takes it."""

    sql: str
    names: tuple[str, ...] | None  # the parameters' order for a positional paramstyle; None: by name
    binds: tuple[tuple[str, Callable[[Any], Any]], ...]  # the parameters a column type converts
    results: tuple[Callable[[Any], Any] | None, ...] | None  # per column; None when no column converts


class Read:
    """A SELECT compiled once per database and run on a pooled DBAPI cursor, answering named tuples.

    For the reads made on every request (the bearer check, a page of files): SQLAlchemy's execution layer
    (connection, context, result objects) costs as much CPU as the driver's whole round trip (bench/README.md,
    "The per-request reads on the driver's own cursor"). What the column types do
    still happens (SQLite keeps times as text); a driver error is raised as SQLAlchemy's own, and a lost
    connection empties the pools as a failed Core statement does. Only for autocommit engines: nothing
    here begins or ends a transaction.
    """

    def __init__(self, statement: Select):
        self.statement = statement
        self.row = namedtuple("Row", [column.key for column in statement.selected_columns])  # type: ignore[misc]
        self._plans: "weakref.WeakKeyDictionary[Dialect, _Plan]" = weakref.WeakKeyDictionary()

    def first(self, db: Session | Engine, params: Mapping[str, Any]) -> Any | None:
        rows = self.all(db, params)
        return rows[0] if rows else None

    def all(self, db: Session | Engine, params: Mapping[str, Any]) -> list[Any]:
        """The rows, read on the session's autocommit engine (outside its transaction), or on `db` if it is
        an autocommit engine itself (the bearer check, which needs no session of its own)."""
        engine = db.info["autocommit"] if isinstance(db, Session) else db
        started = time.monotonic()
        try:
            return self._all(engine, params)
        except DBAPIError as e:
            # A pooled connection the server dropped between requests (a restart, a fail-over, wait_timeout)
            # fails at once: the pools are emptied, and the read is tried once more on a new connection.
            # One that timed out is not tried again: the caller has waited long enough.
            if not e.connection_invalidated or time.monotonic() - started > RETRY_WITHIN:
                raise
            return self._all(engine, params)

    def _all(self, engine: Engine, params: Mapping[str, Any]) -> list[Any]:
        dialect = engine.dialect
        plan = self._plans.get(dialect) or self._plan(dialect)
        if plan.binds:
            params = dict(params)
            for name, process in plan.binds:
                params[name] = process(params[name])
        arguments = params if plan.names is None else tuple(params[name] for name in plan.names)
        try:
            connection = engine.raw_connection()
        except dialect.loaded_dbapi.Error as e:  # the server is unreachable
            server_lost(engine)
            raise _as_sqlalchemy_error(e, plan.sql, dialect, lost=True) from e
        cursor = None
        try:
            cursor = connection.cursor()
            cursor.execute(plan.sql, arguments)
            rows = cursor.fetchall()
            cursor.close()
        except dialect.loaded_dbapi.Error as e:
            lost = dialect.is_disconnect(e, connection.dbapi_connection, cursor)
            if lost:
                connection.invalidate(e)
                server_lost(engine)
            raise _as_sqlalchemy_error(e, plan.sql, dialect, lost) from e
        finally:
            connection.close()
        make = self.row._make
        if plan.results is None:
            return [make(row) for row in rows]
        return [make(value if process is None else process(value) for value, process in zip(row, plan.results))
                for row in rows]

    def _plan(self, dialect: Dialect) -> _Plan:
        compiled = self.statement.compile(dialect=dialect)
        binds = tuple(
            (name, process) for name, bind in compiled.binds.items()
            if (process := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        )
        results = tuple(column.type.dialect_impl(dialect).result_processor(dialect, None)
                        for column in self.statement.selected_columns)
        plan = _Plan(
            sql=compiled.string,
            names=tuple(compiled.positiontup or ()) if compiled.positional else None,
            binds=binds,
            results=results if any(results) else None,
        )
        self._plans[dialect] = plan
        return plan


def _as_sqlalchemy_error(e: Exception, sql: str, dialect: Dialect, lost: bool) -> DBAPIError:
    """The driver's exception as Core raises it (OperationalError and the like), parameters hidden."""
    return DBAPIError.instance(sql, None, e, dialect.loaded_dbapi.Error, hide_parameters=True,
                               connection_invalidated=lost, dialect=dialect)
