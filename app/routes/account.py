"""The caller's own account: devices, sign-in history, change of login or password."""
from flask import Blueprint, current_app, g

from app.auth import token_required
from app.db import get_db, utcnow
from app.errors import ValidationError
from app.responses import clear_refresh_cookie, login_event_json, ok, page_json, session_json
from app.services.access import change_account, live_sessions, log_out_all, login_history, revoke_session
from app.validation import AccountChange, body, normalize_login, page_params, parse

bp = Blueprint("account", __name__)


@bp.get("/sessions")
@token_required
def sessions():
    devices = live_sessions(get_db(), g.user_id, utcnow())
    return ok({"items": [session_json(device, g.session_id) for device in devices]})


@bp.delete("/sessions/<sid>")
@token_required
def sign_out_device(sid: str):
    revoke_session(get_db(), g.user_id, sid, utcnow())
    response, status = ok({"id": sid, "revoked": True})
    if sid == g.session_id:
        clear_refresh_cookie(response)
    return response, status


@bp.post("/logout/all")
@token_required
def logout_all():
    count = log_out_all(get_db(), g.user_id, utcnow())
    response, status = ok({"logged_out": True, "sessions": count})
    clear_refresh_cookie(response)
    return response, status


@bp.get("/login/history")
@token_required
def history():
    page, list_size = page_params()
    events, total = login_history(get_db(), g.user_id, page, list_size)
    return ok(page_json([login_event_json(event) for event in events], page, list_size, total))


@bp.patch("/user")
@token_required
def update_user():
    data = parse(AccountChange, body())
    login = normalize_login(data.id, current_app.config["DEFAULT_PHONE_REGION"]) if data.id is not None else None
    password = data.password
    if login is None and password is None:
        raise ValidationError(
            "give a new id, a new password, or both",
            {"fields": {"id": "id or password is required", "password": "id or password is required"}},
        )
    new_login = change_account(
        get_db(), current_app.extensions["passwords"], g.user_id, g.session_id,
        data.current_password, login, password, utcnow(),
    )
    return ok({"id": new_login})
