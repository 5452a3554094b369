"""The abuse limits of sign-in, sign-up, refresh and re-authentication (SPEC §9), over shared counters.

A request is counted only once its body has been read and found well-formed: one refused for its size
or form never touches a counter. A 429 reads the same whether the login exists or not.
"""
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from limits import parse
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.counters import Count, Counters, DatabaseCounters
from app.errors import RateLimited
from app.models import LoginEvent, User

KNOWN_ADDRESS_DAYS = 30  # an address that signed in to a login within this many days is not a stranger to it


@dataclass(frozen=True)
class Limit:
    amount: int
    seconds: int
    text: str

    @classmethod
    def parse(cls, text: str) -> "Limit":
        item = parse(text)
        return cls(item.amount, item.get_expiry(), text)


@dataclass(frozen=True)
class Throttle:
    """`counters` hold what is counted per address and per user (the configured store); a login's failed
    sign-ins are always rows of the service's database, written in the sign-in's own transaction, so a
    wrong password and an unknown login cost the same: one row changed, one commit."""

    counters: Counters
    login_failures: DatabaseCounters
    signin: Limit
    signup: Limit
    refresh: Limit
    reauth: Limit
    prefix: str = ""
    enabled: bool = True

    def key(self, kind: str, identity: str) -> str:
        # Logins can be long and hold any character: the counter's name is a digest of it.
        return f"{self.prefix}{kind}:{hashlib.sha256(identity.encode('utf-8', 'surrogatepass')).hexdigest()[:40]}"

    def _count_attempt(self, kind: str, identity: str, limit: Limit) -> None:
        if self.enabled:
            refuse_over(self.counters.hit(self.key(kind, identity), limit.seconds), limit)

    def sign_up(self, address: str) -> None:
        self._count_attempt("signup", address, self.signup)

    def refresh_token(self, address: str) -> None:
        self._count_attempt("refresh", address, self.refresh)

    def sign_in(self, db: Session, *, login: str, address: str, now: datetime) -> None:
        """Every attempt counts per address; a login over its failures is refused to strangers only."""
        if not self.enabled:
            return
        self._count_attempt("signin-address", address, self.signin)
        failures = self.login_failures.peek(self.key("signin-login", login), self.signin.seconds)
        if failures.hits >= self.signin.amount and not known_address(db, login=login, address=address, now=now):
            refuse(failures, self.signin)

    def failed_sign_in(self, db: Session, login: str) -> None:
        """Count a failure of `login` within `db`'s transaction: it counts when the caller commits."""
        if self.enabled:
            self.login_failures.hit(self.key("signin-login", login), self.signin.seconds, db.connection())

    def reauthenticate(self, user_id: int) -> None:
        """Before a `current_password` is checked: refused once the user's wrong guesses reach the limit."""
        if self.enabled:
            count = self.counters.peek(self.key("reauth", str(user_id)), self.reauth.seconds)
            if count.hits >= self.reauth.amount:
                refuse(count, self.reauth)

    def failed_reauthentication(self, db: Session, user_id: int, login: str) -> None:
        """A wrong `current_password` is a failed sign-in of that login too."""
        if self.enabled:
            self.counters.hit(self.key("reauth", str(user_id)), self.reauth.seconds)
            self.failed_sign_in(db, login)
            db.commit()


def refuse_over(count: Count, limit: Limit) -> None:
    if count.hits > limit.amount:
        refuse(count, limit)


def refuse(count: Count, limit: Limit) -> None:
    raise RateLimited.after(count.reset_at, f"too many attempts ({limit.text}); retry later")


def known_address(db: Session, *, login: str, address: str, now: datetime) -> bool:
    """Did `address` sign in to `login` successfully within the last KNOWN_ADDRESS_DAYS days?"""
    since = now - timedelta(days=KNOWN_ADDRESS_DAYS)
    return db.scalar(
        select(LoginEvent.id).join(User, User.id == LoginEvent.user_id)
        .where(User.login == login, LoginEvent.ip == address, LoginEvent.success.is_(True), LoginEvent.at > since)
        .limit(1)
    ) is not None
