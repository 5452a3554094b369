"""Users, for an operator (SPEC §10): needs `users:manage` (superusers pass every check)."""
from flask import Blueprint, request

from app.db import utcnow
from app.db.models import User
from app.errors import Forbidden, ValidationError
from app.http.auth import require_permission
from app.http.context import get_db, storage
from app.http.parsing import body, login_in_url, page_params, parse
from app.http.responses import ok
from app.openapi.fragments import PAGE_PARAMETERS
from app.openapi.operation import operation
from app.schemas import responses as shapes
from app.schemas.requests import LOGIN_MAX, QuotaChange
from app.services.account import erase_user
from app.services.admin import UserDetail, find_users, set_disabled, set_user_quota, user_by_login, user_detail

bp = Blueprint("admin", __name__, url_prefix="/admin/users")

MANAGE = "users:manage"
PATH_DOCS = {"login": "An email address or a phone number, normalised like a sign-up `id`."}
QUERY = {"name": "q", "in": "query", "required": False, "schema": {"type": "string", "maxLength": LOGIN_MAX},
         "description": "Only users whose login contains this (any case)."}


def summary(user: User) -> shapes.UserSummary:
    return shapes.UserSummary(id=user.login, created_at=user.created_at, verified=user.verified,
                              disabled=user.disabled, files=user.file_count, bytes=user.bytes_used)


def detail_shape(detail: UserDetail) -> shapes.UserDetail:
    user = detail.user
    return shapes.UserDetail(
        id=user.login, created_at=user.created_at, verified=user.verified, disabled=user.disabled, mfa=detail.mfa,
        roles=detail.roles, sessions=detail.sessions, files=user.file_count, bytes=user.bytes_used,
        quota=user.quota_bytes,
    )


@bp.get("")
@operation("listUsers", "admin", "Find users", returns=shapes.UserPage, errors=(Forbidden,),
           parameters=(QUERY, *PAGE_PARAMETERS))
@require_permission(MANAGE)
def index():
    page, list_size = page_params()
    q = request.args.get("q", "").strip()
    if len(q) > LOGIN_MAX:
        raise ValidationError.field("q", f"at most {LOGIN_MAX} characters")
    users, total = find_users(get_db(), q=q.lower(), page=page, list_size=list_size)
    items = [summary(user) for user in users]
    return ok(shapes.UserPage.of(items, page, list_size, total))


@bp.get("/<login>")
@operation("getUser", "admin", "A user, as an operator sees them", returns=shapes.UserDetail, errors=(Forbidden,),
           path_docs=PATH_DOCS)
@require_permission(MANAGE)
def show(login: str):
    return ok(detail_shape(user_detail(get_db(), login=login_in_url(login), now=utcnow())))


@bp.post("/<login>/disable")
@operation("disableUser", "admin", "Disable a user", returns=shapes.UserDetail, errors=(Forbidden,),
           path_docs=PATH_DOCS, body_required=False, description=(
               "Every session is signed out at once (their file links stop working); sign-in, refresh and every "
               "request of the user answer 403 `account_disabled` until enabled again."))
@require_permission(MANAGE)
def disable(login: str):
    return ok(detail_shape(set_disabled(get_db(), login=login_in_url(login), disabled=True, now=utcnow())))


@bp.post("/<login>/enable")
@operation("enableUser", "admin", "Enable a disabled user", returns=shapes.UserDetail, errors=(Forbidden,),
           path_docs=PATH_DOCS, body_required=False, description="The user signs in again; no session comes back.")
@require_permission(MANAGE)
def enable(login: str):
    return ok(detail_shape(set_disabled(get_db(), login=login_in_url(login), disabled=False, now=utcnow())))


@bp.put("/<login>/quota")
@operation("setUserQuota", "admin", "Set a user's quota", returns=shapes.UserDetail, body=QuotaChange, form=False,
           errors=(Forbidden,), path_docs=PATH_DOCS, description="JSON only: a form cannot say null.")
@require_permission(MANAGE)
def set_quota(login: str):
    data = parse(QuotaChange, body())
    return ok(detail_shape(set_user_quota(get_db(), login=login_in_url(login), quota_bytes=data.bytes, now=utcnow())))


@bp.delete("/<login>")
@operation("deleteUser", "admin", "Delete a user, their files and everything else of theirs",
           returns=shapes.AccountDeleted, errors=(Forbidden,), path_docs=PATH_DOCS,
           description="As `DELETE /user`, without a password.")
@require_permission(MANAGE)
def delete(login: str):
    db = get_db()
    user = user_by_login(db, login_in_url(login))
    return ok(shapes.AccountDeleted(id=erase_user(db, storage(), user_id=user.id)))
