"""The caller's own account: devices, sign-in history, change of login or password."""
from flask import Blueprint, current_app

from app.db import utcnow
from app.db.models import DeviceSession
from app.errors import Forbidden, RateLimited, UserExists, ValidationError
from app.http.auth import caller, token_required
from app.http.context import get_db, passwords, throttle
from app.http.parsing import body, page_params, parse
from app.http.responses import clear_refresh_cookie, ok
from app.openapi.fragments import PAGE_PARAMETERS
from app.openapi.operation import link, operation
from app.schemas import responses as shapes
from app.schemas.requests import AccountChange
from app.services.account import change_account, live_sessions, log_out_all, login_history, revoke_session
from app.services.quota import usage

bp = Blueprint("account", __name__)


def session_shape(device: DeviceSession) -> shapes.Session:
    return shapes.Session(
        id=device.id, created_at=device.created_at, last_used_at=device.last_used_at, user_agent=device.user_agent,
        ip=device.ip, current=device.id == caller().session_id,
    )


@bp.get("/sessions")
@operation("listSessions", "account", "My signed-in devices", returns=shapes.SessionList, links={
    "revokeSession": link("revokeSession", "Sign the newest device out.", sid="$response.body#/data/items/0/id"),
})
@token_required
def sessions():
    devices = live_sessions(get_db(), user_id=caller().user_id, now=utcnow())
    return ok(shapes.SessionList(items=[session_shape(device) for device in devices]))


@bp.delete("/sessions/<sid>")
@operation("revokeSession", "account", "Sign one of my devices out", returns=shapes.SessionRevoked,
           path_docs={"sid": "A session id, as listed by `GET /sessions`."},
           description="Another user's session id answers 404, like an unknown one.")
@token_required
def sign_out_device(sid: str):
    revoke_session(get_db(), user_id=caller().user_id, session_id=sid, now=utcnow())
    response = ok(shapes.SessionRevoked(id=sid))
    if sid == caller().session_id:
        clear_refresh_cookie(response)
    return response


@bp.post("/logout/all")
@operation("logoutAll", "account", "Sign all my devices out", returns=shapes.LoggedOutAll)
@token_required
def logout_all():
    count = log_out_all(get_db(), user_id=caller().user_id, now=utcnow())
    response = ok(shapes.LoggedOutAll(sessions=count))
    clear_refresh_cookie(response)
    return response


@bp.get("/login/history")
@operation("loginHistory", "account", "My sign-in attempts", returns=shapes.LoginEventPage, parameters=PAGE_PARAMETERS)
@token_required
def history():
    page, list_size = page_params()
    events, total = login_history(get_db(), user_id=caller().user_id, page=page, list_size=list_size)
    items = [shapes.LoginEvent(at=e.at, ip=e.ip, user_agent=e.user_agent, success=e.success) for e in events]
    return ok(shapes.LoginEventPage.of(items, page, list_size, total))


@bp.get("/user/usage")
@operation("getUsage", "account", "My files' count, bytes and quota", returns=shapes.Usage,
           description="`bytes` is the sum of my files' sizes; an upload or update that would take it past `quota` "
                       "is refused with 413 `quota_exceeded`. `quota` null: unlimited.")
@token_required
def storage_usage():
    counted = usage(get_db(), owner_id=caller().user_id, default_quota=current_app.config["QUOTA_BYTES"])
    return ok(shapes.Usage(files=counted.files, bytes=counted.bytes, quota=counted.quota))


@bp.patch("/user")
@operation("updateAccount", "account", "Change my login and/or password", returns=shapes.Me, body=AccountChange,
           errors=(Forbidden, UserExists, RateLimited), description=(
               "`current_password` is required; a wrong one is 403 and counts as a failed sign-in of this login "
               "(RATELIMIT_REAUTH per user; over it, 429). Give `id`, `password` or both. "
               "A new password signs out every other device."))
@token_required
def update_user():
    data = parse(AccountChange, body())
    if data.id is None and data.password is None:
        raise ValidationError.fields({"id": "id or password is required", "password": "id or password is required"})
    new_login = change_account(
        get_db(), passwords=passwords(), throttle=throttle(), user_id=caller().user_id, login=caller().login,
        session_id=caller().session_id, current_password=data.current_password, new_login=data.id,
        new_password=data.password, now=utcnow(),
    )
    return ok(shapes.Me(id=new_login))
