from flask import Blueprint, current_app, g
from sqlalchemy import text

from app.auth import token_required
from app.errors import ServiceUnavailable
from app.responses import ok
from app.storage import get_storage

bp = Blueprint("info", __name__)


@bp.get("/info")
@token_required
def info():
    return ok({"id": g.login})


@bp.get("/ping")
def ping():
    """Liveness without touching the database (and the floor the benchmarks compare against)."""
    return ok({"pong": True})


@bp.get("/health")
def health():
    try:
        with current_app.extensions["engine"].connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as e:  # any failure to reach the database means "not healthy"
        raise ServiceUnavailable(f"database unreachable: {type(e).__name__}") from None
    try:
        get_storage().check()
    except Exception as e:  # the same for the file storage
        raise ServiceUnavailable(f"file storage unreachable: {type(e).__name__}") from None
    return ok({"status": "ok", "database": "ok", "storage": "ok"})
