"""Device sessions: starting one (a token pair), and signing out (the one UPDATE every sign-out path uses)."""
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.db.models import DeviceSession, RefreshToken, Role, User, UserRole
from app.security import TokenPolicy, new_refresh_token, new_session_id, token_hash


def revoke_sessions(
    db: Session, *, now: datetime, session_id: str | None = None, user_id: int | None = None,
    keep: str | None = None,
) -> int:
    """Sign out the live sessions that match (one session, a user's, or a user's but `keep`); how many went.

    The caller commits, so a sign-out can share a transaction with what caused it (a new password).
    """
    if session_id is None and user_id is None:
        raise ValueError("revoke_sessions needs a session_id or a user_id")
    query = update(DeviceSession).where(DeviceSession.live(now)).values(revoked_at=now)
    if session_id is not None:
        query = query.where(DeviceSession.id == session_id)
    if user_id is not None:
        query = query.where(DeviceSession.user_id == user_id)
    if keep is not None:
        query = query.where(DeviceSession.id != keep)
    return db.execute(query.execution_options(synchronize_session=False)).rowcount


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
    verified: bool = False


def role_names(db: Session, user_id: int) -> list[str]:
    """The user's role names, sorted, for the `roles` claim of access tokens."""
    return list(db.scalars(
        select(Role.name).join(UserRole, UserRole.role_id == Role.id)
        .where(UserRole.user_id == user_id).order_by(Role.name)
    ))


def start_session(db: Session, policy: TokenPolicy, user: User, client: Client, now: datetime) -> IssuedTokens:
    device = DeviceSession(
        id=new_session_id(), user_id=user.id, created_at=now, last_used_at=now,
        expires_at=now + timedelta(seconds=policy.refresh_ttl),
        ip=client.ip, user_agent=client.user_agent,
    )
    db.add(device)
    refresh_token = issue_refresh(db, policy, device, now)
    db.flush()
    cap_sessions(db, policy, user.id, now)
    return token_pair(db, policy, user, device, refresh_token, now)


def cap_sessions(db: Session, policy: TokenPolicy, user_id: int, now: datetime) -> None:
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


def issue_refresh(db: Session, policy: TokenPolicy, device: DeviceSession, now: datetime) -> str:
    """A new refresh token; the session's expiry slides with it, but never past SESSION_MAX_AGE from sign-in."""
    raw = new_refresh_token()
    expires_at = min(
        now + timedelta(seconds=policy.refresh_ttl), device.created_at + timedelta(seconds=policy.session_max_age),
    )
    device.expires_at = expires_at
    db.add(RefreshToken(token_hash=token_hash(raw), session_id=device.id, created_at=now, expires_at=expires_at))
    return raw


def token_pair(
    db: Session, policy: TokenPolicy, user: User, device: DeviceSession, refresh_token: str, now: datetime,
) -> IssuedTokens:
    return IssuedTokens(
        login=user.login,
        session_id=device.id,
        access_token=policy.issue_access(user.id, device.id, role_names(db, user.id)),
        refresh_token=refresh_token,
        expires_in=policy.access_ttl,
        refresh_expires_in=max(0, int((device.expires_at - now).total_seconds())),
        verified=user.verified,
    )
