"""Who am I, and the probes."""
import logging
from typing import Callable

from flask import Blueprint
from sqlalchemy import text

from app.db import autocommit
from app.errors import ServiceUnavailable
from app.http.auth import caller, token_required
from app.http.context import get_db, storage, throttle
from app.http.responses import ok
from app.openapi.operation import link, operation
from app.schemas import responses as shapes

bp = Blueprint("info", __name__)
log = logging.getLogger("app.health")


@bp.get("/info")
@operation("info", "account", "Who am I", returns=shapes.Me,
           links={"rolesOfUser": link("rolesOfUser", "My roles.", login="$response.body#/data/id")})
@token_required
def info():
    me = caller()
    return ok(shapes.Me(id=me.login, verified=me.verified))


@bp.get("/ping")
@operation("ping", "service", "Liveness, without touching the database", returns=shapes.Pong, database=False)
def ping():
    """Liveness without touching the database (and the floor the benchmarks compare against)."""
    return ok(shapes.Pong())


@bp.get("/health")
@operation("health", "service", "Readiness: the database and the file storage answer", returns=shapes.Health)
def health():
    try:
        _database_answers()
    except Exception as e:  # any failure to reach the database means "not healthy"
        raise ServiceUnavailable(f"database unreachable: {type(e).__name__}") from None
    try:
        storage().check()
    except Exception as e:  # the same for the file storage
        raise ServiceUnavailable(f"file storage unreachable: {type(e).__name__}") from None
    return ok(shapes.Health())


@bp.get("/health/ready")
@operation("ready", "service", "Readiness: the database, the file storage and, when configured, Redis answer",
           returns=shapes.Ready, description=(
               "503 `service_unavailable` names each part that failed in `details.failed` (`database`, `storage`, "
               "`redis`); while Redis is down the limits count in the database, so the service still works."))
def ready():
    checks: dict[str, Callable[[], object]] = {"database": _database_answers, "storage": storage().check}
    counters = throttle().counters
    if hasattr(counters, "check"):
        checks["redis"] = counters.check
    failed = []
    for name, check in checks.items():
        try:
            check()
        except Exception as e:  # whatever the failure, the part is not ready
            log.warning("not ready: %s (%s)", name, type(e).__name__)
            failed.append(name)
    if failed:
        raise ServiceUnavailable(f"not ready: {', '.join(failed)} unreachable", {"failed": failed})
    return ok(shapes.Ready(redis="ok" if "redis" in checks else "not configured"))


def _database_answers() -> None:
    with autocommit(get_db()).connect() as connection:
        connection.execute(text("SELECT 1"))
