"""An operator's view of the users (SPEC §10): find, inspect, disable and enable, set a quota, delete."""
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.db.models import Challenge, DeviceSession, LoginEvent, Passkey, User
from app.errors import NotFound
from app.services.factors import disable_totp, totp_enabled
from app.services.sessions import revoke_sessions, role_names


@dataclass(frozen=True)
class UserDetail:
    user: User
    roles: list[str]
    sessions: int
    mfa: bool  # an authenticator app is on


def find_users(db: Session, *, q: str, page: int, list_size: int) -> tuple[list[User], int]:
    """Users whose login contains `q` (any case), oldest first, a page at a time; and how many match."""
    matching = User.login.ilike(f"%{_escaped(q)}%", escape="\\") if q else User.id.isnot(None)
    total = db.scalar(select(func.count()).select_from(User).where(matching)) or 0
    users = list(db.scalars(select(User).where(matching).order_by(User.id)
                            .limit(list_size).offset((page - 1) * list_size)))
    return users, total


def user_detail(db: Session, *, login: str, now: datetime) -> UserDetail:
    user = user_by_login(db, login)
    sessions = db.scalar(select(func.count()).select_from(DeviceSession)
                         .where(DeviceSession.user_id == user.id, DeviceSession.live(now))) or 0
    return UserDetail(user, role_names(db, user.id), sessions, totp_enabled(db, user.id))


def set_disabled(db: Session, *, login: str, disabled: bool, now: datetime) -> UserDetail:
    """Disable (every session signed out in the same commit, so every file link dies too) or enable."""
    user = user_by_login(db, login)
    user.disabled = disabled
    if disabled:
        revoke_sessions(db, user_id=user.id, now=now)
    db.commit()
    return user_detail(db, login=login, now=now)


def reset_factors(db: Session, *, login: str, now: datetime) -> tuple[User, int]:
    """A user who lost every factor: the authenticator app, recovery codes and passkeys removed, so the
    password alone signs in again; written in their sign-in history. Answers the user and the passkeys
    removed. Whoever runs it has checked who is asking: the service cannot."""
    user = user_by_login(db, login)
    disable_totp(db, user_id=user.id)
    removed = db.execute(delete(Passkey).where(Passkey.user_id == user.id)
                         .execution_options(synchronize_session=False)).rowcount
    db.execute(delete(Challenge).where(Challenge.user_id == user.id).execution_options(synchronize_session=False))
    db.add(LoginEvent(user_id=user.id, at=now, ip="", user_agent="second factor reset by an operator",
                      success=True, method="mfa_reset"))
    db.commit()
    return user, removed


def set_user_quota(db: Session, *, login: str, quota_bytes: int | None, now: datetime) -> UserDetail:
    """The user's own quota in bytes (0: unlimited), or None: QUOTA_BYTES again."""
    user = user_by_login(db, login)
    user.quota_bytes = quota_bytes
    db.commit()
    return user_detail(db, login=login, now=now)


def user_by_login(db: Session, login: str) -> User:
    user = db.scalar(select(User).where(User.login == login))
    if user is None:
        raise NotFound("no such user")
    return user


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
