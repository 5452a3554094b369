"""Roles and their grants; managing them needs `roles:manage` (superusers pass every check)."""
from typing import Any

from flask import Blueprint, request

from app.db import utcnow
from app.db.models import Role
from app.errors import Forbidden, RoleExists, ValidationError
from app.http.auth import caller, has_permission, require_permission, token_required
from app.http.context import get_db
from app.http.parsing import body, login_in_url, parse
from app.http.responses import ok
from app.openapi.operation import link, operation
from app.schemas import responses as shapes
from app.schemas.requests import RoleCreate, RoleUpdate
from app.services.roles import (
    create_role, delete_role, effective_permissions, grant_role, list_roles, revoke_role, roles_of, update_role
)

bp = Blueprint("roles", __name__)

MANAGE = "roles:manage"
ROLE_ID = "<int:role_id>"
PATH_DOCS = {
    "role_id": "The role's id.",
    "login": "An email address or a phone number, normalised like a sign-up `id`.",
}
FORM_LISTS = ("A form-encoded body is also taken, with `permissions` repeated once per item (so a form cannot "
              "give an empty list).")
ROLE_LINKS = {
    "updateRole": link("updateRole", "Change the role just created.", role_id="$response.body#/data/id"),
    "deleteRole": link("deleteRole", "Delete the role just created.", role_id="$response.body#/data/id"),
}


def role_shape(role: Role) -> shapes.Role:
    return shapes.Role(id=role.id, name=role.name, description=role.description, permissions=role.permissions)


def role_body() -> dict[str, Any]:
    """The body, with a form's repeated `permissions` fields read as one list."""
    data = body()
    if "permissions" in request.form:
        data["permissions"] = request.form.getlist("permissions")
    return data


@bp.get("/roles")
@operation("listRoles", "roles", "List roles", returns=shapes.RoleList, errors=(Forbidden,))
@require_permission(MANAGE)
def index():
    return ok(shapes.RoleList(items=[role_shape(role) for role in list_roles(get_db())]))


@bp.post("/roles")
@operation("createRole", "roles", "Create a role", returns=shapes.Role, status=201, body=RoleCreate, form=False,
           errors=(Forbidden, RoleExists), links=ROLE_LINKS, description=FORM_LISTS)
@require_permission(MANAGE)
def create():
    data = parse(RoleCreate, role_body())
    role = create_role(
        get_db(), name=data.name, description=data.description, permissions=data.permissions, now=utcnow(),
    )
    return ok(role_shape(role), 201)


@bp.put(f"/roles/{ROLE_ID}")
@operation("updateRole", "roles", "Rename a role or change its description or permissions", returns=shapes.Role,
           body=RoleUpdate, form=False, errors=(Forbidden, RoleExists), path_docs=PATH_DOCS,
           description="Only the fields sent change. " + FORM_LISTS)
@require_permission(MANAGE)
def update(role_id: int):
    changes = parse(RoleUpdate, role_body()).model_dump(exclude_unset=True)
    if not changes:
        raise ValidationError.field("body", "nothing to change: give name, description or permissions")
    return ok(role_shape(update_role(get_db(), role_id=role_id, changes=changes)))


@bp.delete(f"/roles/{ROLE_ID}")
@operation("deleteRole", "roles", "Delete a role (and its grants)", returns=shapes.RoleDeleted, errors=(Forbidden,),
           path_docs=PATH_DOCS)
@require_permission(MANAGE)
def delete(role_id: int):
    delete_role(get_db(), role_id=role_id)
    return ok(shapes.RoleDeleted(id=role_id))


@bp.post(f"/users/<login>/roles/{ROLE_ID}")
@operation("grantRole", "roles", "Grant a role", returns=shapes.Grant, errors=(Forbidden,), path_docs=PATH_DOCS,
           description="Granting twice changes nothing.")
@require_permission(MANAGE)
def grant(login: str, role_id: int):
    user = grant_role(get_db(), login=login_in_url(login), role_id=role_id)
    return ok(shapes.Grant(user=user.login, role_id=role_id, granted=True))


@bp.delete(f"/users/<login>/roles/{ROLE_ID}")
@operation("revokeRole", "roles", "Revoke a role", returns=shapes.Grant, errors=(Forbidden,), path_docs=PATH_DOCS,
           description="Revoking twice changes nothing.")
@require_permission(MANAGE)
def revoke(login: str, role_id: int):
    user = revoke_role(get_db(), login=login_in_url(login), role_id=role_id)
    return ok(shapes.Grant(user=user.login, role_id=role_id, granted=False))


@bp.get("/users/<login>/roles")
@operation("rolesOfUser", "roles", "A user's roles and effective permissions", returns=shapes.UserRoles,
           errors=(Forbidden,), path_docs=PATH_DOCS,
           description="Allowed for the user themself, or with `roles:manage`.")
@token_required
def of_user(login: str):
    target = login_in_url(login)
    # Checked before the lookup, so a plain user cannot probe which logins exist.
    if target != caller().login and not has_permission(get_db(), user_id=caller().user_id, permission=MANAGE):
        raise Forbidden(f"reading another user's roles needs the permission {MANAGE!r}")
    user, roles = roles_of(get_db(), login=target)
    return ok(shapes.UserRoles(
        user=user.login, superuser=user.is_superuser, roles=[role_shape(role) for role in roles],
        permissions=effective_permissions(roles),
    ))
