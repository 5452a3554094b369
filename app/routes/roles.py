"""Roles and their grants; managing them needs `roles:manage` (superusers pass every check)."""
from typing import Any

from flask import Blueprint, current_app, g, request

from app.auth import has_permission, require_permission, token_required
from app.db import get_db, utcnow
from app.errors import Forbidden, ValidationError
from app.responses import ok, role_json
from app.services.roles import (
    create_role, delete_role, effective_permissions, grant_role, list_roles, revoke_role, roles_of, update_role,
)
from app.validation import RoleCreate, RoleUpdate, body, normalize_login, parse

bp = Blueprint("roles", __name__)

MANAGE = "roles:manage"
ROLE_ID = "<int:role_id>"


def role_body() -> dict[str, Any]:
    """The body, with a form's repeated `permissions` fields read as one list."""
    data = body()
    if "permissions" in request.form:
        data["permissions"] = request.form.getlist("permissions")
    return data


def url_login(raw: str) -> str | None:
    """The login in the URL, normalised like a sign-up id; None when it cannot be anyone's."""
    try:
        return normalize_login(raw, current_app.config["DEFAULT_PHONE_REGION"])
    except ValidationError:
        return None


@bp.get("/roles")
@require_permission(MANAGE)
def index():
    return ok({"items": [role_json(role) for role in list_roles(get_db())]})


@bp.post("/roles")
@require_permission(MANAGE)
def create():
    data = parse(RoleCreate, role_body())
    role = create_role(get_db(), data.name, data.description, data.permissions, utcnow())
    return ok(role_json(role), 201)


@bp.put(f"/roles/{ROLE_ID}")
@require_permission(MANAGE)
def update(role_id: int):
    changes = parse(RoleUpdate, role_body()).model_dump(exclude_unset=True)
    if not changes:
        raise ValidationError("give name, description or permissions", {"fields": {"body": "nothing to change"}})
    return ok(role_json(update_role(get_db(), role_id, changes)))


@bp.delete(f"/roles/{ROLE_ID}")
@require_permission(MANAGE)
def delete(role_id: int):
    delete_role(get_db(), role_id)
    return ok({"id": role_id, "deleted": True})


@bp.post(f"/users/<login>/roles/{ROLE_ID}")
@require_permission(MANAGE)
def grant(login: str, role_id: int):
    user = grant_role(get_db(), url_login(login), role_id)
    return ok({"user": user.login, "role_id": role_id, "granted": True})


@bp.delete(f"/users/<login>/roles/{ROLE_ID}")
@require_permission(MANAGE)
def revoke(login: str, role_id: int):
    user = revoke_role(get_db(), url_login(login), role_id)
    return ok({"user": user.login, "role_id": role_id, "granted": False})


@bp.get("/users/<login>/roles")
@token_required
def of_user(login: str):
    target = url_login(login)
    # Checked before the lookup, so a plain user cannot probe which logins exist.
    if target != g.login and not has_permission(get_db(), g.user_id, MANAGE):
        raise Forbidden(f"reading another user's roles needs the permission {MANAGE!r}")
    user, roles = roles_of(get_db(), target)
    return ok({
        "user": user.login,
        "superuser": user.is_superuser,
        "roles": [role_json(role) for role in roles],
        "permissions": effective_permissions(roles),
    })
