"""The bearer-token and permission decorators: the only code that reads `Authorization` on protected routes."""
import functools
import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

from flask import current_app, g, request
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from app.db import utcnow
from app.db.models import DeviceSession, Role, User, UserRole
from app.db.reads import Read
from app.errors import AccountDisabled, Forbidden, InvalidToken, MissingToken, NotFound
from app.http.context import get_db, tokens
from app.server.multiprocess import METRICS_LISTENER

# Built once: composing a statement costs more than running it over a warm connection.
# One primary-key lookup (plus the user's row) on a plain cursor, no ORM objects; a row only for a live session.
SESSION_LOOKUP = Read(
    select(DeviceSession.user_id, DeviceSession.last_used_at, User.login, User.file_count, User.bytes_used,
           User.bytes_reserved, User.quota_bytes, User.verified, User.disabled)
    .join(User, User.id == DeviceSession.user_id)
    .where(DeviceSession.id == bindparam("sid"), DeviceSession.live(bindparam("now")))
)
# Read only when a validly signed token's session is gone: was its user disabled (SPEC §10)?
USER_DISABLED = Read(select(User.disabled).where(User.id == bindparam("uid")))
# REQUIRE_VERIFIED=true: the blueprints an unverified user is refused (SPEC §10).
NEED_VERIFIED = {"files", "links", "uploads"}
SESSION_TOUCH = update(DeviceSession).where(DeviceSession.id == bindparam("sid")).values(last_used_at=bindparam("now"))


def bearer_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def metrics_allowed() -> None:
    """GET /metrics: anyone on the loopback metrics port; elsewhere METRICS_TOKEN, compared in constant time.
    Without METRICS_TOKEN the route answers as one that does not exist."""
    if request.environ.get(METRICS_LISTENER):
        return
    expected = current_app.config["METRICS_TOKEN"]
    if not expected:
        raise NotFound(f"no such route: {request.method} {request.path}")
    given = bearer_token()
    if given is None:
        raise MissingToken("Authorization: Bearer <METRICS_TOKEN> is required")
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")):
        raise InvalidToken("the metrics token is wrong")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking, as the bearer check found them: one row read with the session, nothing lazy.

    The counters ride along for free: the file list's total needs no query of its own, and an upload
    reads no row before its body to know the room left under the quota.
    """

    user_id: int
    session_id: str
    login: str
    file_count: int
    bytes_used: int
    bytes_reserved: int
    quota_bytes: int | None
    verified: bool


def caller() -> Caller:
    """The caller of a view behind @token_required or @require_permission."""
    return g.caller


@dataclass(frozen=True)
class Auth:
    """What a protected view needs, read by the OpenAPI document: a bearer token, perhaps a permission."""

    permission: str | None = None


def token_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        authenticate()
        return view(*args, **kwargs)

    wrapped.auth = Auth()  # type: ignore[attr-defined]
    return wrapped


def authenticate() -> None:
    token = bearer_token()
    if token is None:
        raise MissingToken()
    claims = tokens().decode_access(token)
    now = utcnow()
    engine = current_app.extensions["autocommit_engine"]  # one read, no Session needed for it
    row = SESSION_LOOKUP.first(engine, {"sid": claims["sid"], "now": now})
    if row is None or str(row.user_id) != claims["sub"]:
        # Disabling revokes the sessions; the client still learns why its token stopped working.
        owner = USER_DISABLED.first(engine, {"uid": int(claims["sub"])}) if claims["sub"].isdigit() else None
        if owner is not None and owner.disabled:
            raise AccountDisabled()
        raise InvalidToken("the session of this token has been signed out")
    if row.disabled:
        raise AccountDisabled()
    if not row.verified and request.blueprint in NEED_VERIFIED and current_app.config["REQUIRE_VERIFIED"]:
        raise Forbidden("confirm your login first: POST /verify/request sends the message")
    # last_used_at is written at most every SESSION_TOUCH_SECONDS, not on every request
    if now - row.last_used_at > timedelta(seconds=current_app.config["SESSION_TOUCH_SECONDS"]):
        with engine.connect() as connection:
            connection.execute(SESSION_TOUCH, {"sid": claims["sid"], "now": now})
    g.caller = Caller(row.user_id, claims["sid"], row.login, row.file_count, row.bytes_used, row.bytes_reserved,
                      row.quota_bytes, bool(row.verified))


def require_permission(permission: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Authenticate, then check the permission in the database, so a revoked role counts on the next request."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            authenticate()
            if not has_permission(get_db(), user_id=caller().user_id, permission=permission):
                raise Forbidden(f"this needs the permission {permission!r}")
            return view(*args, **kwargs)

        wrapped.auth = Auth(permission)  # type: ignore[attr-defined]
        return wrapped

    return decorator


def has_permission(db: Session, *, user_id: int, permission: str) -> bool:
    """True for a superuser or a holder of any role that lists the permission; one query."""
    rows = db.execute(
        select(User.is_superuser, Role.permissions)
        .outerjoin(UserRole, UserRole.user_id == User.id)
        .outerjoin(Role, Role.id == UserRole.role_id)
        .where(User.id == user_id)
    ).all()
    return any(row.is_superuser or permission in (row.permissions or ()) for row in rows)
