"""The caller's own account: devices, sign-in history, change of login or password."""
from flask import Blueprint, current_app

from app.db import utcnow
from app.db.models import DeviceSession
from app.errors import Forbidden, InvalidCode, MfaRequired, RateLimited, UserExists, ValidationError
from app.http.auth import caller, token_required
from app.http.context import factor_keys, get_db, mailing, passwords, storage, throttle
from app.http.parsing import body, page_params, parse
from app.http.responses import clear_refresh_cookie, ok
from app.openapi.fragments import PAGE_PARAMETERS
from app.openapi.operation import link, operation
from app.schemas import responses as shapes
from app.schemas.requests import SECOND_FACTOR_DOC, AccountChange, AccountDelete
from app.services.account import (
    Proof, change_account, delete_account, live_sessions, log_out_all, login_history, revoke_session
)
from app.services.export import export_account
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
    items = [shapes.LoginEvent(at=e.at, ip=e.ip, user_agent=e.user_agent, success=e.success, method=e.method)
             for e in events]
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
           errors=(Forbidden, MfaRequired, InvalidCode, UserExists, RateLimited), description=(
               "`current_password` is required; a wrong one is 403 and counts as a failed sign-in of this login "
               "(RATELIMIT_REAUTH per user; over it, 429). " + SECOND_FACTOR_DOC + " Give `id`, `password` or both. "
               "A new password signs out every other device. A new login is unverified until proven; an email "
               "one is sent a verification message at once."))
@token_required
def update_user():
    data = parse(AccountChange, body())
    if data.id is None and data.password is None:
        raise ValidationError.fields({"id": "id or password is required", "password": "id or password is required"})
    me = caller()
    user = change_account(
        get_db(), passwords=passwords(), throttle=throttle(), mailing=mailing(), user_id=me.user_id, login=me.login,
        session_id=me.session_id, keys=factor_keys(), proof=Proof(data.current_password, data.code, data.recovery_code),
        new_login=data.id, new_password=data.password, now=utcnow(),
    )
    return ok(shapes.Me(id=user.login, verified=user.verified))


@bp.delete("/user")
@operation("deleteAccount", "account", "Delete my account, my files and everything else of mine",
           returns=shapes.AccountDeleted, body=AccountDelete, errors=(Forbidden, MfaRequired, InvalidCode, RateLimited),
           description=(
               "`current_password` is required (a wrong one is 403 and counts as in `PATCH /user`). "
               + SECOND_FACTOR_DOC + " Final: the "
               "answer comes once every row of the user is gone and their files' bytes are removed; the login "
               "is free again."))
@token_required
def delete_user():
    data = parse(AccountDelete, body())
    me = caller()
    login = delete_account(get_db(), storage(), passwords=passwords(), throttle=throttle(), keys=factor_keys(),
                           user_id=me.user_id, login=me.login,
                           proof=Proof(data.current_password, data.code, data.recovery_code), now=utcnow())
    return ok(shapes.AccountDeleted(id=login))


@bp.get("/user/export")
@operation("exportAccount", "account", "All my data as a zip", responses={"200": {
    "description": "`account.json` (profile, sessions, sign-in history, files' metadata) and every file's bytes "
                   "under `files/<id>-<name>`, stored uncompressed, streamed as it is made.",
    "headers": {"Content-Disposition": {"description": "`attachment; filename=account-export.zip`", "required": True,
                                        "schema": {"type": "string"}},
                "Content-Length": {"description": "The zip's size.", "required": True,
                                   "schema": {"type": "integer", "minimum": 0}}},
    "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
}})
@token_required
def export():
    made = export_account(get_db(), storage(), user_id=caller().user_id, now=utcnow())
    response = current_app.response_class(made.chunks, mimetype="application/zip", direct_passthrough=True)
    response.headers["Content-Length"] = str(made.size)
    response.headers["Content-Disposition"] = "attachment; filename=account-export.zip"
    response.headers["Cache-Control"] = "private, no-store"
    return response
