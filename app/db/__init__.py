"""The database: declarative base and column types, the app's engines and session factory (no Flask here:
the request's session is app.http.context.get_db).

models (tables), engines (drivers and pools), reads (the hot raw-cursor reads), green_mysql (mysqlclient
on the event loop)."""
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from sqlalchemy import DateTime, MetaData, String
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from app.db.engines import make_engine, share_disconnects

if TYPE_CHECKING:
    from flask import Flask

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
LoginColumn = String(255).with_variant(mysql.VARCHAR(255, collation="utf8mb4_bin"), "mysql", "mariadb")


class folded(FunctionElement):
    """A text column lower-cased for a case-insensitive match: LOWER() on MySQL, which folds every letter;
    on SQLite, whose LOWER() folds ASCII only, Python's str.lower (registered in app.db.engines)."""

    type = String()
    name = "folded"
    inherit_cache = True


@compiles(folded)
def _folded(element: folded, compiler: Any, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(folded, "sqlite")
def _folded_sqlite(element: folded, compiler: Any, **kw: Any) -> str:
    return f"unicode_lower({compiler.process(element.clauses, **kw)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime}


def utcnow() -> datetime:
    """Naive UTC, the form every time column stores."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def init_app(app: "Flask") -> None:
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
    # A session carries the autocommit engine along (`autocommit(db)`): the services that run single statements
    # outside its transaction find it there, so no route picks an engine.
    app.extensions["sessionmaker"] = sessionmaker(
        engine, expire_on_commit=False, info={"autocommit": app.extensions["autocommit_engine"]})


def after_fork(app: "Flask") -> None:
    """In a worker forked from a process that created the app: start with empty pools of its own.

    Any connection the parent opened stays the parent's (close=False leaves it alone); this process
    opens its own on first use.
    """
    for name in ("engine", "autocommit_engine"):
        app.extensions[name].dispose(close=False)


def autocommit(db: Session) -> Engine:
    """The app's autocommit engine, for single statements that need no transaction (the hot reads of
    app.db.reads, the session's last-used time): no BEGIN/ROLLBACK round trips."""
    return db.info["autocommit"]


class OutcomeUnknown(Exception):
    """A COMMIT was sent and its answer lost, and the database cannot be asked now whether it took effect."""


def commit_checked(db: Session, took_effect: Callable[[], bool]) -> bool:
    """Commit; when the connection drops after the COMMIT was sent (a network blip, a fail-over), the commit
    may well have taken effect, so the database is asked again on a new connection (`took_effect`): yes, and
    the commit stands (True: it was checked); no, and the error is the failure it seemed; no answer at all,
    and OutcomeUnknown. What happens after a commit (removing bytes) must never follow a guess."""
    try:
        db.commit()
        return False
    except DBAPIError as e:
        if not e.connection_invalidated:
            raise
        db.rollback()
        try:
            committed = took_effect()
            db.commit()
        except DBAPIError:
            db.rollback()
            raise OutcomeUnknown() from e
        if not committed:
            raise
        return True
