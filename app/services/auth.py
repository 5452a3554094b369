"""Sign-up, sign-in, refresh-token rotation and logout. Each use case owns its transaction."""
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, false, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.models import DeviceSession, LoginEvent, RefreshToken, Role, User, UserRole
from app.errors import InvalidCredentials, InvalidRefreshToken, UserExists
from app.ratelimit.throttle import Throttle
from app.security import Passwords, TokenPolicy, new_refresh_token, new_session_id, token_hash
from app.services.sessions import revoke_sessions

log = logging.getLogger("app.accounts")

TIDY_EVERY = 3600  # seconds between one user's inline housekeeping runs, per process
TIDY_REMEMBERED = 10_000  # users whose last housekeeping time a process keeps


@dataclass(frozen=True)
class Client:
    ip: str
    user_agent: str


@dataclass(frozen=True)
class IssuedTokens:
    login: str
    session_id: str
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int


def role_names(db: Session, user_id: int) -> list[str]:
    """The user's role names, sorted, for the `roles` claim of access tokens."""
    return list(db.scalars(
        select(Role.name).join(UserRole, UserRole.role_id == Role.id)
        .where(UserRole.user_id == user_id).order_by(Role.name)
    ))


def sign_up(
    db: Session, *, passwords: Passwords, policy: TokenPolicy, throttle: Throttle, login: str, password: str,
    client: Client, now: datetime,
) -> IssuedTokens:
    throttle.count_sign_up(client.ip)
    if db.scalar(select(User.id).where(User.login == login)) is not None:
        raise UserExists()
    user = User(login=login, password_hash=passwords.hash(password), created_at=now)
    db.add(user)
    try:
        db.flush()
    except IntegrityError:  # a parallel sign-up with the same id won the race
        db.rollback()
        raise UserExists() from None
    db.add(LoginEvent(user_id=user.id, at=now, ip=client.ip, user_agent=client.user_agent, success=True))
    tokens = _start_session(db, policy, user, client, now)
    db.commit()
    return tokens


def sign_in(
    db: Session, *, passwords: Passwords, policy: TokenPolicy, throttle: Throttle, login: str, password: str,
    client: Client, now: datetime,
) -> IssuedTokens:
    throttle.sign_in(db, login=login, address=client.ip, now=now)
    user = db.scalar(select(User).where(User.login == login))
    # An unknown id is checked against a dummy hash, and its failure recorded by the same statement that
    # records a wrong password (it inserts no row): the same work, the same time, the same answer. The
    # attempt was already counted as a failure of the login (Throttle.sign_in); a right password gives it back.
    ok = passwords.verify(user.password_hash if user else None, password)
    if user is None or not ok:
        db.execute(insert(LoginEvent).from_select(
            ["user_id", "at", "ip", "user_agent", "success"],
            select(User.id, literal(now), literal(client.ip), literal(client.user_agent), false())
            .where(User.login == login),
        ))
        db.commit()
        raise InvalidCredentials()
    throttle.signed_in(login)
    db.add(LoginEvent(user_id=user.id, at=now, ip=client.ip, user_agent=client.user_agent, success=True))
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash(password)
    _tidy(db, policy, user.id, now)
    tokens = _start_session(db, policy, user, client, now)
    db.commit()
    return tokens


def refresh(
    db: Session, *, policy: TokenPolicy, throttle: Throttle, raw_token: str, client: Client, now: datetime,
) -> IssuedTokens:
    throttle.count_refresh(client.ip)
    digest = token_hash(raw_token)
    # One conditional UPDATE picks the winner: of two parallel refreshes, the second sees 0 rows.
    claimed = db.execute(
        update(RefreshToken)
        .where(
            RefreshToken.token_hash == digest,
            RefreshToken.rotated_at.is_(None),
            RefreshToken.expires_at > now,
        )
        .values(rotated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        db.rollback()
        _refuse_refresh(db, policy, digest, now)
    device = db.scalar(
        select(DeviceSession).join(RefreshToken)
        .where(RefreshToken.token_hash == digest, DeviceSession.live(now))
    )
    if device is None:
        db.rollback()
        raise InvalidRefreshToken()
    user = db.get(User, device.user_id)
    # This session's rotated tokens that have expired can never be accepted, nor mistaken for a theft.
    db.execute(
        delete(RefreshToken).where(RefreshToken.session_id == device.id, RefreshToken.expires_at <= now)
        .execution_options(synchronize_session=False)
    )
    refresh_token = _issue_refresh(db, policy, device, now)
    device.last_used_at = now
    device.ip, device.user_agent = client.ip, client.user_agent
    db.commit()
    return _token_pair(db, policy, user, device, refresh_token, now)


def _refuse_refresh(db: Session, policy: TokenPolicy, digest: str, now: datetime) -> None:
    old = db.get(RefreshToken, digest)
    if old is not None and old.rotated_at is not None:
        if now - old.rotated_at > timedelta(seconds=policy.reuse_grace):
            # A rotated token came back after the grace period: someone else may hold a copy.
            # Revoke the whole session (RFC 9700 §4.14.2); the device signs in again.
            revoked = revoke_sessions(db, session_id=old.session_id, now=now)
            db.commit()
            if revoked:
                log.warning("refresh token reuse detected; session %s revoked", old.session_id)
            raise InvalidRefreshToken("this refresh token was already used; the session has been signed out")
        raise InvalidRefreshToken("this refresh token was just rotated; use the new one")
    raise InvalidRefreshToken()


def log_out(db: Session, *, session_id: str, now: datetime) -> None:
    revoke_sessions(db, session_id=session_id, now=now)
    db.commit()


def _start_session(db: Session, policy: TokenPolicy, user: User, client: Client, now: datetime) -> IssuedTokens:
    device = DeviceSession(
        id=new_session_id(), user_id=user.id, created_at=now, last_used_at=now,
        expires_at=now + timedelta(seconds=policy.refresh_ttl),
        ip=client.ip, user_agent=client.user_agent,
    )
    db.add(device)
    refresh_token = _issue_refresh(db, policy, device, now)
    db.flush()
    _cap_sessions(db, policy, user.id, now)
    return _token_pair(db, policy, user, device, refresh_token, now)


def _cap_sessions(db: Session, policy: TokenPolicy, user_id: int, now: datetime) -> None:
    """Beyond MAX_SESSIONS_PER_USER live sessions, the least recently used are signed out.

    They are deleted, not kept as revoked rows: nothing reads a session signed out this way again (its
    tokens fail the same way), and a user signing in over and over must not grow the table.
    """
    surplus = list(db.scalars(
        select(DeviceSession.id).where(DeviceSession.user_id == user_id, DeviceSession.live(now))
        .order_by(DeviceSession.last_used_at.desc(), DeviceSession.created_at.desc(), DeviceSession.id)
        .offset(policy.max_sessions)
    ))
    if surplus:
        db.execute(delete(DeviceSession).where(DeviceSession.id.in_(surplus)).execution_options(synchronize_session=False))


def _tidy(db: Session, policy: TokenPolicy, user_id: int, now: datetime) -> None:
    """Inline housekeeping at a user's sign-in, at most every TIDY_EVERY per process: rows that can never
    matter again go.

    Expired sessions (their refresh tokens go with them), sessions signed out and sign-in events older
    than the retention period; so these tables stay bounded without a scheduled job, and a user signing
    in again and again pays for it once an hour, not every time.
    """
    tidied = policy.tidied_at.get(user_id)
    if tidied is not None and (now - tidied).total_seconds() < TIDY_EVERY:
        return
    if len(policy.tidied_at) >= TIDY_REMEMBERED:
        policy.tidied_at.clear()
    policy.tidied_at[user_id] = now
    cutoff = now - timedelta(seconds=policy.retention)
    db.execute(
        delete(DeviceSession)
        .where(DeviceSession.user_id == user_id, or_(DeviceSession.expires_at <= now, DeviceSession.revoked_at < cutoff))
        .execution_options(synchronize_session=False)
    )
    db.execute(
        delete(LoginEvent).where(LoginEvent.user_id == user_id, LoginEvent.at < cutoff)
        .execution_options(synchronize_session=False)
    )


def _issue_refresh(db: Session, policy: TokenPolicy, device: DeviceSession, now: datetime) -> str:
    """A new refresh token; the session's expiry slides with it, but never past SESSION_MAX_AGE from sign-in."""
    raw = new_refresh_token()
    expires_at = min(
        now + timedelta(seconds=policy.refresh_ttl), device.created_at + timedelta(seconds=policy.session_max_age),
    )
    device.expires_at = expires_at
    db.add(RefreshToken(token_hash=token_hash(raw), session_id=device.id, created_at=now, expires_at=expires_at))
    return raw


def _token_pair(
    db: Session, policy: TokenPolicy, user: User, device: DeviceSession, refresh_token: str, now: datetime,
) -> IssuedTokens:
    return IssuedTokens(
        login=user.login,
        session_id=device.id,
        access_token=policy.issue_access(user.id, device.id, role_names(db, user.id)),
        refresh_token=refresh_token,
        expires_in=policy.access_ttl,
        refresh_expires_in=max(0, int((device.expires_at - now).total_seconds())),
    )
