"""Who am I, and the probes."""
from flask import Blueprint
from sqlalchemy import text

from app.db import autocommit
from app.errors import ServiceUnavailable
from app.http.auth import caller, token_required
from app.http.context import get_db, storage
from app.http.responses import ok
from app.openapi.operation import link, operation
from app.schemas import responses as shapes

bp = Blueprint("info", __name__)


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
        with autocommit(get_db()).connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as e:  # any failure to reach the database means "not healthy"
        raise ServiceUnavailable(f"database unreachable: {type(e).__name__}") from None
    try:
        storage().check()
    except Exception as e:  # the same for the file storage
        raise ServiceUnavailable(f"file storage unreachable: {type(e).__name__}") from None
    return ok(shapes.Health())
