"""Signing sessions out: the one UPDATE every sign-out path uses."""
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.db.models import DeviceSession


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
