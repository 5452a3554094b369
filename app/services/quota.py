"""Per-user storage quotas: the counters on the user's row, changed only in the writer's own transaction.

`bytes_used` is the sum of the user's files' sizes; `bytes_reserved` the announced lengths of their
unfinished resumable uploads. A change that grows them is one conditional UPDATE, so of two parallel
uploads that would pass the quota together, the second finds the row already changed and is refused.
"""
from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from app.errors import QuotaExceeded
from app.models import User


@dataclass(frozen=True)
class Usage:
    files: int
    bytes: int
    quota: int | None  # None: unlimited


def quota_of(default_quota: int) -> ColumnElement[int]:
    """The user's quota in SQL: their own if set, else the default; 0 is unlimited."""
    return func.coalesce(User.quota_bytes, default_quota)


def usage(db: Session, *, owner_id: int, default_quota: int) -> Usage:
    files, used, quota = db.execute(
        select(User.file_count, User.bytes_used, quota_of(default_quota)).where(User.id == owner_id)
    ).one()
    return Usage(files, used, quota or None)


def _grow(db: Session, *, owner_id: int, default_quota: int, **changes: int) -> None:
    """Apply `changes` (column → amount) to the user's row if the total stays within the quota, else raise."""
    growth = sum(changes.values())
    values = {name: getattr(User, name) + amount for name, amount in changes.items()}
    statement = update(User).where(User.id == owner_id).values(**values)
    if growth > 0:
        quota = quota_of(default_quota)
        statement = statement.where(
            (quota == 0) | (User.bytes_used + User.bytes_reserved + growth <= quota)
        )
    if db.execute(statement.execution_options(synchronize_session=False)).rowcount == 1:
        return
    row = db.execute(select(User.bytes_used, quota_of(default_quota)).where(User.id == owner_id)).one_or_none()
    if row is None:
        return  # the account is gone: the caller's own insert fails on its foreign key
    raise QuotaExceeded.of(row[1], row[0])


def charge(db: Session, *, owner_id: int, growth: int, default_quota: int) -> None:
    """Count `growth` more (or, if negative, fewer) stored bytes; QuotaExceeded if that passes the quota."""
    _grow(db, owner_id=owner_id, default_quota=default_quota, bytes_used=growth)


def reserve(db: Session, *, owner_id: int, amount: int, default_quota: int) -> None:
    """Hold `amount` bytes for an unfinished upload; QuotaExceeded if that passes the quota."""
    _grow(db, owner_id=owner_id, default_quota=default_quota, bytes_reserved=amount)


def release(db: Session, *, owner_id: int, amount: int) -> None:
    """Give back a reservation (the upload was terminated or expired)."""
    _grow(db, owner_id=owner_id, default_quota=0, bytes_reserved=-amount)


def settle(db: Session, *, owner_id: int, amount: int) -> None:
    """A reserved upload became a file of `amount` bytes: move them from reserved to used, no new check."""
    _grow(db, owner_id=owner_id, default_quota=0, bytes_reserved=-amount, bytes_used=amount)


def remaining(db: Session, *, owner_id: int, default_quota: int) -> int | None:
    """Bytes the user may still add, or None if unlimited: a cap for a body whose size is not announced."""
    used, reserved, quota = db.execute(
        select(User.bytes_used, User.bytes_reserved, quota_of(default_quota)).where(User.id == owner_id)
    ).one()
    return None if not quota else max(0, quota - used - reserved)


def set_quota(db: Session, *, owner_id: int, quota: int | None) -> None:
    """The user's own quota (0 = unlimited), or None to follow QUOTA_BYTES again."""
    db.execute(update(User).where(User.id == owner_id).values(quota_bytes=quota)
               .execution_options(synchronize_session=False))
