"""Roles, their permissions, and grants of roles to users."""
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.models import ID_MAX, Role, User, UserRole
from app.errors import NotFound, RoleExists


def list_roles(db: Session) -> list[Role]:
    return list(db.scalars(select(Role).order_by(Role.name)))


def get_role(db: Session, *, role_id: int) -> Role:
    # Ids past INTEGER's range exist nowhere (and SQLite would overflow on them): the same 404 as any unknown id.
    role = db.get(Role, role_id) if 0 < role_id <= ID_MAX else None
    if role is None:
        raise NotFound("no such role")
    return role


def create_role(db: Session, *, name: str, description: str, permissions: list[str], now: datetime) -> Role:
    if _name_taken(db, name):
        raise RoleExists()
    role = Role(name=name, description=description, permissions=sorted(set(permissions)), created_at=now)
    db.add(role)
    _commit_name(db)
    return role


def update_role(db: Session, *, role_id: int, changes: dict[str, Any]) -> Role:
    """Apply `name`, `description` and/or `permissions`; fields not in `changes` stay."""
    role = get_role(db, role_id=role_id)
    if "name" in changes and changes["name"] != role.name:
        if _name_taken(db, changes["name"]):
            raise RoleExists()
        role.name = changes["name"]
    if "description" in changes:
        role.description = changes["description"]
    if "permissions" in changes:
        role.permissions = sorted(set(changes["permissions"]))  # a new list, so the JSON column is marked dirty
    _commit_name(db)
    return role


def delete_role(db: Session, *, role_id: int) -> None:
    get_role(db, role_id=role_id)
    db.execute(delete(UserRole).where(UserRole.role_id == role_id))
    db.execute(delete(Role).where(Role.id == role_id))
    db.commit()


def grant_role(db: Session, *, login: str | None, role_id: int) -> User:
    """Idempotent: granting a role the user already holds changes nothing."""
    user = find_user(db, login=login)
    get_role(db, role_id=role_id)
    if db.get(UserRole, (user.id, role_id)) is None:
        db.add(UserRole(user_id=user.id, role_id=role_id))
        try:
            db.commit()
        except IntegrityError:  # granted in parallel, or the role was deleted meanwhile
            db.rollback()
            get_role(db, role_id=role_id)
    return user


def revoke_role(db: Session, *, login: str | None, role_id: int) -> User:
    """Idempotent: revoking a role the user does not hold changes nothing."""
    user = find_user(db, login=login)
    get_role(db, role_id=role_id)
    db.execute(delete(UserRole).where(UserRole.user_id == user.id, UserRole.role_id == role_id))
    db.commit()
    return user


def roles_of(db: Session, *, login: str | None) -> tuple[User, list[Role]]:
    user = find_user(db, login=login)
    roles = db.scalars(
        select(Role).join(UserRole, UserRole.role_id == Role.id)
        .where(UserRole.user_id == user.id).order_by(Role.name)
    )
    return user, list(roles)


def effective_permissions(roles: list[Role]) -> list[str]:
    return sorted({permission for role in roles for permission in role.permissions})


def find_user(db: Session, *, login: str | None) -> User:
    user = db.scalar(select(User).where(User.login == login)) if login else None
    if user is None:
        raise NotFound("no such user")
    return user


def _name_taken(db: Session, name: str) -> bool:
    return db.scalar(select(Role.id).where(Role.name == name)) is not None


def _commit_name(db: Session) -> None:
    try:
        db.commit()
    except IntegrityError:  # another request took the name between the check and the commit
        db.rollback()
        raise RoleExists() from None
