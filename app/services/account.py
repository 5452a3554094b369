"""A user's own account: devices, sign-in history, change of login or password; superusers; purge of old rows."""
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import commit_checked
from app.db.models import DeviceSession, File, LoginEvent, RefreshToken, Upload, User
from app.errors import Conflict, Forbidden, NotFound, UserExists, ValidationError
from app.ratelimit.throttle import Throttle
from app.security import Passwords
from app.services.factors import FactorKeys, disable_totp, require_second_factor, totp_enabled
from app.services.recovery import Mailing, send_verification
from app.services.sessions import revoke_sessions
from app.storage import Storage

log = logging.getLogger("app.accounts")


@dataclass(frozen=True)
class Purged:
    sessions: int
    refresh_tokens: int
    login_events: int


@dataclass(frozen=True)
class Proof:
    """What a change of the account is asked with: the password, and the second factor when there is one."""

    current_password: str
    code: str | None = None
    recovery_code: str | None = None


def live_sessions(db: Session, *, user_id: int, now: datetime) -> list[DeviceSession]:
    return list(db.scalars(
        select(DeviceSession)
        .where(DeviceSession.user_id == user_id, DeviceSession.live(now))
        .order_by(DeviceSession.created_at.desc(), DeviceSession.id)
    ))


def revoke_session(db: Session, *, user_id: int, session_id: str, now: datetime) -> None:
    revoked = revoke_sessions(db, session_id=session_id, user_id=user_id, now=now)
    db.commit()
    if revoked != 1:
        raise NotFound("no such session")  # the same answer for another user's session


def log_out_all(db: Session, *, user_id: int, now: datetime) -> int:
    count = revoke_sessions(db, user_id=user_id, now=now)
    db.commit()
    return count


def login_history(db: Session, *, user_id: int, page: int, list_size: int) -> tuple[list[LoginEvent], int]:
    mine = LoginEvent.user_id == user_id
    total = db.scalar(select(func.count()).select_from(LoginEvent).where(mine)) or 0
    events = db.scalars(
        select(LoginEvent).where(mine)
        .order_by(LoginEvent.at.desc(), LoginEvent.id.desc())
        .limit(list_size).offset((page - 1) * list_size)
    )
    return list(events), total


def change_account(
    db: Session, *, passwords: Passwords, throttle: Throttle, mailing: Mailing, user_id: int, login: str,
    session_id: str, keys: FactorKeys, proof: Proof, new_login: str | None, new_password: str | None,
    now: datetime,
) -> User:
    """Change the login and/or password; a new password signs out every other device in the same commit.
    A new login is unproven until a message to it comes back (an email one is sent it at once).
    The attempt counts as a wrong guess (Throttle.reauthenticate) until the password proves right."""
    throttle.count_account_change(user_id)
    user = _reauthenticated(db, passwords, throttle, keys, user_id=user_id, login=login, proof=proof, now=now)
    renamed = new_login is not None and new_login != user.login
    if renamed:
        if db.scalar(select(User.id).where(User.login == new_login)) is not None:
            raise UserExists()
        user.login, user.verified = new_login, False
    if new_password is not None:
        user.password_hash = passwords.hash(new_password)
        revoke_sessions(db, user_id=user_id, keep=session_id, now=now)
    try:
        db.commit()
    except IntegrityError:  # a parallel sign-up or rename took the login first
        db.rollback()
        raise UserExists() from None
    if renamed and "@" in user.login:
        send_verification(db, mailing, user_id=user.id, address=user.login, now=now)
    return user


def delete_account(
    db: Session, storage: Storage, *, passwords: Passwords, throttle: Throttle, keys: FactorKeys, user_id: int,
    login: str, proof: Proof, now: datetime,
) -> str:
    """The caller's own account gone, after their password and second factor (a wrong one counts as a wrong
    guess)."""
    _reauthenticated(db, passwords, throttle, keys, user_id=user_id, login=login, proof=proof, now=now)
    db.commit()  # the counts given back (and a code used) even if the erasure fails
    return erase_user(db, storage, user_id=user_id)


def erase_user(db: Session, storage: Storage, *, user_id: int) -> str:
    """Every row of the user (sessions, tokens, roles, files, uploads, codes: by cascade) in one commit, then
    every byte; the login is free again at once. Bytes that cannot be removed now (storage down) are left to
    `flask storage-check --repair`, which removes what no row points at. Answers the login that went."""
    user = db.get(User, user_id)
    if user is None:
        raise NotFound("no such user")
    login = user.login
    keys = list(db.scalars(select(File.storage_key).where(File.owner_id == user_id)))
    partials = [ref for ref in db.scalars(select(Upload.storage_ref).where(Upload.owner_id == user_id)) if ref]
    db.execute(delete(User).where(User.id == user_id).execution_options(synchronize_session=False))
    # Bytes go only once the rows are surely gone (and with OutcomeUnknown, none go: storage-check will).
    commit_checked(db, lambda: db.scalar(select(User.id).where(User.id == user_id)) is None)
    for key in keys:
        _drop(lambda: storage.delete(key), key)
        _drop(lambda: storage.delete_derived(key), key)  # its thumbnails
    for ref in partials:
        _drop(lambda: storage.drop_partial(ref), ref)
    log.info("user %s deleted with %d files", user_id, len(keys))
    return login


def _drop(remove: Callable[[], None], name: str) -> None:
    try:
        remove()
    except FileNotFoundError:
        pass
    except Exception as e:  # storage down: the bytes stay until storage-check --repair
        log.warning("bytes %s of a deleted user not removed (%s); storage-check --repair removes them", name, e)


def _reauthenticated(
    db: Session, passwords: Passwords, throttle: Throttle, keys: FactorKeys, *, user_id: int, login: str,
    proof: Proof, now: datetime,
) -> User:
    """The password, then the second factor if the user has one (its code used up in the caller's
    transaction); each counts as a wrong guess until it proves right."""
    throttle.reauthenticate(user_id, login)
    user = db.get(User, user_id)
    if user is None:
        raise NotFound("no such user")
    if not passwords.verify(user.password_hash, proof.current_password):
        raise Forbidden("current_password is wrong", {"fields": {"current_password": "wrong password"}})
    if require_second_factor(db, keys, user_id=user_id, code=proof.code, recovery_code=proof.recovery_code,
                             now=now) is not None:
        db.commit()  # the code is used up; and the counts below are written on connections of their own
    throttle.reauthenticated(user_id, login)
    return user


def turn_off_totp(
    db: Session, *, passwords: Passwords, throttle: Throttle, keys: FactorKeys, user_id: int, login: str,
    proof: Proof, now: datetime,
) -> None:
    """The authenticator app and recovery codes removed, after the password and a code (SPEC §11)."""
    if not totp_enabled(db, user_id):
        raise Conflict("there is no authenticator app to remove")
    if proof.code is None and proof.recovery_code is None:
        raise ValidationError.fields({"code": "required: a code of your authenticator app, or a recovery code"})
    _reauthenticated(db, passwords, throttle, keys, user_id=user_id, login=login, proof=proof, now=now)
    disable_totp(db, user_id=user_id)
    db.commit()
    log.info("user %s turned the authenticator app off", user_id)


def make_superuser(db: Session, *, passwords: Passwords, login: str, password: str | None, now: datetime) -> bool:
    """Create the user as a superuser, or promote an existing one; True when created.

    A password given for an existing user replaces theirs and signs out all their devices.
    """
    user = db.scalar(select(User).where(User.login == login))
    if user is None:
        if password is None:
            raise ValidationError.field("password", "required to create a new user")
        db.add(User(login=login, password_hash=passwords.hash(password), created_at=now, is_superuser=True))
        try:
            db.commit()
            return True
        except IntegrityError:  # created in parallel: promote that one instead
            db.rollback()
            user = db.scalars(select(User).where(User.login == login)).one()
    user.is_superuser = True
    if password is not None:
        user.password_hash = passwords.hash(password)
        revoke_sessions(db, user_id=user.id, now=now)
    db.commit()
    return False


def user_exists(db: Session, *, login: str) -> bool:
    return db.scalar(select(User.id).where(User.login == login)) is not None


def user_id_of(db: Session, *, login: str) -> int | None:
    return db.scalar(select(User.id).where(User.login == login))


def purge(db: Session, *, now: datetime, keep: timedelta) -> Purged:
    """Expired sessions always go; revoked sessions, expired refresh tokens and sign-in events after `keep`."""
    cutoff = now - keep
    # A session's refresh tokens go with it (ON DELETE CASCADE).
    sessions = db.execute(
        delete(DeviceSession).where(or_(DeviceSession.expires_at <= now, DeviceSession.revoked_at < cutoff))
        .execution_options(synchronize_session=False)
    ).rowcount
    # Rotated tokens of live sessions pile up with every refresh; expired ones can never be accepted again.
    tokens = db.execute(
        delete(RefreshToken).where(RefreshToken.expires_at <= cutoff).execution_options(synchronize_session=False)
    ).rowcount
    events = db.execute(
        delete(LoginEvent).where(LoginEvent.at < cutoff).execution_options(synchronize_session=False)
    ).rowcount
    db.commit()
    return Purged(sessions=sessions, refresh_tokens=tokens, login_events=events)
