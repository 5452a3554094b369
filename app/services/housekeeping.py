"""Removing what has expired (SPEC §12), one run at a time across every instance on the database.

One sweep: expired sessions (and, after the retention age, revoked ones, old refresh tokens and sign-in
events: what `flask purge-sessions` does), expired verification and reset codes, mfa_tokens and passkey
challenges, ended abuse-limit
windows, expired resumable uploads with their bytes and reservations and partial uploads no row owns
(what `flask storage-check --repair` does for uploads), and writes a crash cut short. Each part is the
same code those commands run.

Who runs is settled by two rows of the abuse-limit counters table, whose atomic upsert already works
the same on SQLite, MySQL and MariaDB, so no table of its own is needed:
- `housekeeping:due` opens a window of HOUSEKEEPING_INTERVAL seconds on its first hit: only the hit that
  opens it (count 1) runs, so all instances together run it at most once per interval;
- `housekeeping:running` is a lease: a run holds it (count 1) from start to end and gives it back; a
  second claimant sees 2, gives its hit back and does not run. A holder that dies leaves it until its
  window (LEASE_SECONDS) ends.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete
from sqlalchemy.orm import Session

from app.db.models import AccountCode, Challenge, RateCounter
from app.ratelimit.counters import DatabaseCounters
from app.services.account import purge
from app.services.files import leftover_writes
from app.services.uploads import check_uploads
from app.storage import Storage

DUE_KEY, RUNNING_KEY = "housekeeping:due", "housekeeping:running"
LEASE_SECONDS = 1800  # far longer than a run takes; only a crashed run's lease waits this long


@dataclass(frozen=True)
class Swept:
    sessions: int
    refresh_tokens: int
    login_events: int
    codes: int
    counters: int
    uploads: int  # unfinished and expired: bytes removed, reservation released
    partial_uploads: int  # bytes of uploads no row owns
    writes: int  # files a crash left half-written


def sweep(db: Session, storage: Storage, *, now: datetime, keep: timedelta, min_age: float) -> Swept:
    purged = purge(db, now=now, keep=keep)
    codes = db.execute(delete(AccountCode).where(AccountCode.expires_at <= now)
                       .execution_options(synchronize_session=False)).rowcount
    # mfa_tokens and passkey challenges past their MFA_TOKEN_TTL (SPEC §11)
    codes += db.execute(delete(Challenge).where(Challenge.expires_at <= now)
                        .execution_options(synchronize_session=False)).rowcount
    # A counter row is kept while its window lasts (the housekeeping lease is one of them).
    epoch = int(now.replace(tzinfo=timezone.utc).timestamp())
    counters = db.execute(delete(RateCounter).where(RateCounter.expires_at <= epoch)
                          .execution_options(synchronize_session=False)).rowcount
    db.commit()
    uploads = check_uploads(db, storage, now=now, min_age=min_age, repair=True)
    writes = leftover_writes(storage, min_age=min_age)
    for blob in writes:
        storage.delete_unfinished(blob.key)
    return Swept(purged.sessions, purged.refresh_tokens, purged.login_events, codes, counters,
                 len(uploads.expired), len(uploads.orphans), len(writes))


def is_due(counters: DatabaseCounters, *, interval: int) -> bool:
    """True for the first caller of each window of `interval` seconds, over every instance on the database."""
    return counters.hit(DUE_KEY, interval).hits == 1


def claim(counters: DatabaseCounters) -> bool:
    """Take the lease; False (and nothing held) while another run holds it."""
    if counters.hit(RUNNING_KEY, LEASE_SECONDS).hits == 1:
        return True
    counters.give_back(RUNNING_KEY)
    return False


def release(counters: DatabaseCounters) -> None:
    counters.give_back(RUNNING_KEY)
