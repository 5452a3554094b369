"""One-time proofs sent in messages: a link token (256 random bits) and a 6-digit code, for one purpose.

Only hashes are stored: the token's SHA-256, and the code's HMAC under a key derived from the service's
secret (a million codes are no work to try against a plain hash). Single use, a newer one voids the older,
valid for the purpose's TTL, and a code takes at most MAX_TRIES wrong guesses.
"""
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db.models import AccountCode, User
from app.errors import InvalidCode

VERIFY, RESET = "verify", "reset"
MAX_TRIES = 5
CODE_DIGITS = 6


@dataclass(frozen=True)
class Issued:
    token: str
    code: str
    expires_at: datetime


@dataclass(frozen=True)
class CodeKey:
    """The HMAC key of codes, derived from the service's secret (a rotation of the secret voids open codes)."""

    key: bytes

    @classmethod
    def from_secret(cls, secret: str) -> "CodeKey":
        return cls(hashlib.sha256(b"account-codes\x00" + secret.encode()).digest())

    def digest(self, purpose: str, user_id: int, code: str) -> str:
        return hmac.new(self.key, f"{purpose}:{user_id}:{code}".encode(), hashlib.sha256).hexdigest()


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(db: Session, key: CodeKey, *, user_id: int, purpose: str, address: str, ttl: int, now: datetime) -> Issued:
    """A new token and code for `purpose`, the older ones of the user voided; the caller commits."""
    db.execute(
        update(AccountCode)
        .where(AccountCode.user_id == user_id, AccountCode.purpose == purpose, AccountCode.used_at.is_(None))
        .values(used_at=now).execution_options(synchronize_session=False)
    )
    token = secrets.token_urlsafe(32)
    code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
    expires_at = now + timedelta(seconds=ttl)
    db.add(AccountCode(user_id=user_id, purpose=purpose, address=address, token_hash=token_digest(token),
                       code_hash=key.digest(purpose, user_id, code), created_at=now, expires_at=expires_at))
    return Issued(token, code, expires_at)


def redeem_token(db: Session, *, purpose: str, token: str, now: datetime) -> AccountCode:
    """The code row the token names, now used; InvalidCode if it is unknown, expired or used."""
    row = db.scalar(select(AccountCode).where(AccountCode.token_hash == token_digest(token),
                                              AccountCode.purpose == purpose))
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise InvalidCode()
    _use(db, row, now)
    return row


def redeem_code(db: Session, key: CodeKey, *, purpose: str, login: str, code: str, now: datetime) -> AccountCode:
    """The user's open code for `purpose`, now used, if `code` is it; a wrong one counts a try (committed)."""
    user_id = db.scalar(select(User.id).where(User.login == login))
    row = None if user_id is None else db.scalar(
        select(AccountCode)
        .where(AccountCode.user_id == user_id, AccountCode.purpose == purpose, AccountCode.used_at.is_(None),
               AccountCode.expires_at > now)
        .order_by(AccountCode.id.desc()).limit(1)
    )
    if row is None or row.tries >= MAX_TRIES:
        raise InvalidCode()
    if not hmac.compare_digest(row.code_hash, key.digest(purpose, row.user_id, code)):
        # Counted in one conditional UPDATE: parallel guesses cannot get past MAX_TRIES together.
        db.execute(update(AccountCode).where(AccountCode.id == row.id, AccountCode.tries < MAX_TRIES)
                   .values(tries=AccountCode.tries + 1).execution_options(synchronize_session=False))
        db.commit()
        raise InvalidCode()
    _use(db, row, now)
    return row


def _use(db: Session, row: AccountCode, now: datetime) -> None:
    """Mark the row used; of two requests redeeming it at once, exactly one gets past here."""
    claimed = db.execute(
        update(AccountCode).where(AccountCode.id == row.id, AccountCode.used_at.is_(None),
                                  AccountCode.tries < MAX_TRIES)
        .values(used_at=now).execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        db.rollback()
        raise InvalidCode()
