"""Per-user storage quotas: the counters on the user's row, changed only in the writer's own transaction.

`bytes_used` is the sum of the user's files' sizes; `bytes_reserved` the announced lengths of their
unfinished resumable uploads. A change that grows them is one conditional UPDATE, so of two parallel
uploads that would pass the quota together, the second finds the row already changed and is refused.
"""
import functools
from dataclasses import dataclass

from sqlalchemy import BigInteger, ColumnElement, Integer, Update, bindparam, func, select, update
from sqlalchemy.orm import Session

from app.db.models import File, User
from app.errors import QuotaExceeded


@dataclass(frozen=True)
class Usage:
    files: int
    bytes: int
    quota: int | None  # None: unlimited


@dataclass(frozen=True)
class Room:
    """A user's standing against their quota, read before a body streams in: the cap while it is read.

    The commit's conditional UPDATE has the final word; this only refuses early what cannot fit.
    """

    quota: int | None  # None: unlimited
    used: int
    reserved: int
    default_quota: int  # the QUOTA_BYTES it was read with, for that UPDATE
    freed: int = 0  # bytes the write gives back: the old content of a file being replaced
    max_files: int = 0  # MAX_FILES_PER_USER, for that UPDATE (0: no cap)

    def fits(self, size: int) -> bool:
        """Whether content of `size` bytes fits; a write that does not grow the total always does."""
        growth = size - self.freed
        return self.quota is None or growth <= 0 or self.used + self.reserved + growth <= self.quota

    def refusal(self) -> QuotaExceeded:
        return QuotaExceeded.of(self.quota or 0, self.used, self.reserved)

    @classmethod
    def of(cls, *, used: int, reserved: int, own_quota: int | None, default_quota: int, max_files: int = 0) -> "Room":
        """From the user's row as read (own_quota NULL: the default applies; 0: unlimited)."""
        quota = default_quota if own_quota is None else own_quota
        return cls(quota or None, used, reserved, default_quota, max_files=max_files)


def quota_of(default_quota: int | ColumnElement[int]) -> ColumnElement[int]:
    """The user's quota in SQL: their own if set, else the default; 0 is unlimited."""
    return func.coalesce(User.quota_bytes, default_quota)


# Statements are built once (composing one costs more than running it); values are bound per call.
QUOTA = quota_of(bindparam("default_quota", type_=BigInteger))
OWNER = User.id == bindparam("owner_id")
USAGE = select(User.file_count, User.bytes_used, QUOTA).where(OWNER)
STANDING = select(User.bytes_used, User.bytes_reserved, QUOTA).where(OWNER)
USAGE_AND_STANDING = select(User.file_count, User.bytes_used, User.bytes_reserved, QUOTA).where(OWNER)


@functools.cache
def _growth(columns: tuple[str, ...], files: bool, checked: bool, counted: bool = False) -> Update:
    """UPDATE adding `add_<column>` to each column (and `files` to file_count); if `checked`, only while the
    total plus `growth` stays within the quota; if `counted`, only while file_count stays within max_files."""
    values = {name: getattr(User, name) + bindparam(f"add_{name}", type_=BigInteger) for name in columns}
    if files:
        values["file_count"] = User.file_count + bindparam("files", type_=Integer)
    statement = update(User).where(OWNER).values(**values)
    if checked:
        growth = bindparam("growth", type_=BigInteger)
        statement = statement.where((QUOTA == 0) | (User.bytes_used + User.bytes_reserved + growth <= QUOTA))
    if counted:
        statement = statement.where(User.file_count + bindparam("files", type_=Integer) <= bindparam("max_files"))
    return statement.execution_options(synchronize_session=False)


def usage(db: Session, *, owner_id: int, default_quota: int) -> Usage:
    files, used, quota = db.execute(USAGE, {"owner_id": owner_id, "default_quota": default_quota}).one()
    return Usage(files, used, quota or None)


def room(db: Session, *, owner_id: int, default_quota: int) -> Room:
    row = db.execute(STANDING, {"owner_id": owner_id, "default_quota": default_quota}).one_or_none()
    if row is None:  # the account is gone: the write fails later, on its foreign key
        return Room(None, 0, 0, default_quota)
    used, reserved, quota = row
    return Room(quota or None, used, reserved, default_quota)


def _grow(db: Session, *, owner_id: int, default_quota: int, files: int = 0, max_files: int = 0,
          **changes: int) -> None:
    """Apply `changes` (column → amount) to the user's row if the total stays within the quota (and, with
    `max_files`, the file count within it), else raise.

    `files` changes file_count in the same statement: one row lock, one round trip.
    """
    changes = {name: amount for name, amount in changes.items() if amount}
    if not changes and not files:
        return
    growth = sum(changes.values())
    counted = files > 0 and max_files > 0
    statement = _growth(tuple(sorted(changes)), files != 0, growth > 0, counted)
    parameters = {"owner_id": owner_id, "default_quota": default_quota, "growth": growth, "files": files,
                  **{f"add_{name}": amount for name, amount in changes.items()}}
    if counted:
        parameters["max_files"] = max_files
    if db.execute(statement, parameters).rowcount == 1:
        return
    row = db.execute(USAGE_AND_STANDING, {"owner_id": owner_id, "default_quota": default_quota}).one_or_none()
    if row is None:
        return  # the account is gone: the caller's own insert fails on its foreign key
    count, used, reserved, quota = row
    if counted and count + files > max_files:
        raise QuotaExceeded.files(max_files)
    raise QuotaExceeded.of(quota, used, reserved)


def charge(db: Session, *, owner_id: int, growth: int, default_quota: int, files: int = 0,
           max_files: int = 0) -> None:
    """Count `growth` more (or, if negative, fewer) stored bytes and `files` more files; QuotaExceeded if
    that passes the quota (a negative growth never does), or more files than `max_files` (0: no cap)."""
    _grow(db, owner_id=owner_id, default_quota=default_quota, files=files, max_files=max_files, bytes_used=growth)


def reserve(db: Session, *, owner_id: int, amount: int, default_quota: int) -> None:
    """Hold `amount` bytes for an unfinished upload; QuotaExceeded if that passes the quota."""
    _grow(db, owner_id=owner_id, default_quota=default_quota, bytes_reserved=amount)


def release(db: Session, *, owner_id: int, amount: int) -> None:
    """Give back a reservation (the upload was terminated or expired)."""
    _grow(db, owner_id=owner_id, default_quota=0, bytes_reserved=-amount)


def settle(db: Session, *, owner_id: int, amount: int) -> None:
    """A reserved upload became a file of `amount` bytes: move them from reserved to used and count the file,
    no new check."""
    _grow(db, owner_id=owner_id, default_quota=0, files=1, bytes_reserved=-amount, bytes_used=amount)


@dataclass(frozen=True)
class Miscount:
    """A user whose counters disagree with their files."""

    owner_id: int
    login: str
    files_counted: int
    bytes_counted: int
    files: int  # what their rows say
    bytes: int


def miscounted(db: Session) -> list[Miscount]:
    """Users whose file_count or bytes_used disagree with their files; one statement, so one snapshot in which
    every writer's counter change and row change are both seen or both not."""
    stored = (
        select(File.owner_id, func.count().label("files"), func.sum(File.size).label("bytes"))
        .group_by(File.owner_id).subquery()
    )
    files, size = func.coalesce(stored.c.files, 0), func.coalesce(stored.c.bytes, 0)
    rows = db.execute(
        select(User.id, User.login, User.file_count, User.bytes_used, files, size)
        .outerjoin(stored, stored.c.owner_id == User.id)
        .where((User.file_count != files) | (User.bytes_used != size))
        .order_by(User.id)
    )
    return [Miscount(owner_id, login, counted_files, counted_bytes, int(real_files), int(real_bytes))
            for owner_id, login, counted_files, counted_bytes, real_files, real_bytes in rows]


def recount(db: Session, *, owner_ids: list[int]) -> None:
    """Set the users' counters from their files, safe beside uploads in flight.

    Every writer changes the user's row before its file rows, in the same transaction; so once these rows
    are locked no writer of theirs is half done, and none can start until the counts are written.
    """
    if not owner_ids:
        return
    db.execute(select(User.id).where(User.id.in_(owner_ids)).order_by(User.id).with_for_update())
    db.execute(
        update(User).where(User.id.in_(owner_ids)).values(
            file_count=select(func.count()).where(File.owner_id == User.id).scalar_subquery(),
            bytes_used=select(func.coalesce(func.sum(File.size), 0)).where(File.owner_id == User.id)
            .scalar_subquery(),
        ).execution_options(synchronize_session=False)
    )
    db.commit()


def set_quota(db: Session, *, owner_id: int, quota: int | None) -> None:
    """The user's own quota (0 = unlimited), or None to follow QUOTA_BYTES again."""
    db.execute(update(User).where(User.id == owner_id).values(quota_bytes=quota)
               .execution_options(synchronize_session=False))
