"""The abuse limits of sign-in, sign-up, refresh, re-authentication and account changes (SPEC §9), over
shared counters.

A request is counted only once its body has been read and found well-formed: one refused for its size
or form never touches a counter. A 429 reads the same whether the login exists or not.

Count first, then decide: every attempt is counted (one atomic increment) before anything is checked,
and the count it got decides. So a limit of N lets at most N of a burst through, however many arrive at
once. A count of failures is given back by an attempt that turns out to be none: refused before its
password was checked, or with the right password.
"""
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from limits import parse
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import LoginEvent, User
from app.errors import RateLimited
from app.ratelimit.counters import Count, Counters, DatabaseCounters

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
    account: Limit | None = None
    mail: Limit | None = None
    prefix: str = ""
    enabled: bool = True

    def key(self, kind: str, identity: str) -> str:
        # Logins can be long and hold any character: the counter's name is a digest of it.
        return f"{self.prefix}{kind}:{hashlib.sha256(identity.encode('utf-8', 'surrogatepass')).hexdigest()[:40]}"

    def _count_attempt(self, kind: str, identity: str, limit: Limit) -> None:
        if self.enabled:
            refuse_over(self.counters.hit(self.key(kind, identity), limit.seconds), limit, kind)

    def count_sign_up(self, address: str) -> None:
        self._count_attempt("signup", address, self.signup)

    def count_refresh(self, address: str) -> None:
        self._count_attempt("refresh", address, self.refresh)

    def sign_in(self, db: Session, *, login: str, address: str, now: datetime) -> None:
        """Every attempt counts per address, and as a failure of the login until its password proves right
        (`signed_in`); a login over its failures is refused to strangers only."""
        if not self.enabled:
            return
        self._count_attempt("signin-address", address, self.signin)
        key = self.key("signin-login", login)
        failures = self.login_failures.hit(key, self.signin.seconds)
        if failures.hits > self.signin.amount and not known_address(db, login=login, address=address, now=now):
            self.login_failures.give_back(key)
            refuse(failures, self.signin, "signin-login")

    def count_signin_address(self, address: str) -> None:
        """A sign-in without a login to count against (a passkey): per address only."""
        self._count_attempt("signin-address", address, self.signin)

    def count_passkey_options(self, address: str) -> None:
        """Options to sign in with a passkey (each stores a challenge): per address, as many as sign-ins."""
        self._count_attempt("passkey-options", address, self.signin)

    def signed_in(self, login: str) -> None:
        """The password was right: the attempt `sign_in` counted was no failure."""
        if self.enabled:
            self.login_failures.give_back(self.key("signin-login", login))

    def reauthenticate(self, user_id: int, login: str) -> None:
        """Before a `current_password` is checked: counted as a wrong guess of the user's, and as a failed
        sign-in of the login, until it proves right (`reauthenticated`); refused over either limit."""
        if not self.enabled:
            return
        guess_key, failure_key = self.key("reauth", str(user_id)), self.key("signin-login", login)
        guesses = self.counters.hit(guess_key, self.reauth.seconds)
        if guesses.hits > self.reauth.amount:
            self.counters.give_back(guess_key)
            refuse(guesses, self.reauth, "reauth")
        failures = self.login_failures.hit(failure_key, self.signin.seconds)
        if failures.hits > self.signin.amount:
            self.counters.give_back(guess_key)
            self.login_failures.give_back(failure_key)
            refuse(failures, self.signin, "signin-login")

    def reauthenticated(self, user_id: int, login: str) -> None:
        if self.enabled:
            self.counters.give_back(self.key("reauth", str(user_id)))
            self.login_failures.give_back(self.key("signin-login", login))

    def count_mail(self, login: str, address: str) -> None:
        """A message asked for (a verification, a password reset): per login and per address (RATELIMIT_MAIL);
        counted whether or not the login exists, so the limit says nothing of that either."""
        if self.mail is not None:
            self._count_attempt("mail-login", login, self.mail)
            self._count_attempt("mail-address", address, self.mail)

    def count_account_change(self, user_id: int) -> None:
        """`PATCH /user` as a whole, per user: its answers (a login taken) and its hashing cannot be driven at will."""
        if self.account is not None:
            self._count_attempt("account", str(user_id), self.account)


def refuse_over(count: Count, limit: Limit, kind: str) -> None:
    if count.hits > limit.amount:
        refuse(count, limit, kind)


def refuse(count: Count, limit: Limit, kind: str) -> None:
    raise RateLimited.after(count.reset_at, f"too many attempts ({limit.text}); retry later", limit=kind)


def known_address(db: Session, *, login: str, address: str, now: datetime) -> bool:
    """Did `address` sign in to `login` successfully within the last KNOWN_ADDRESS_DAYS days?"""
    since = now - timedelta(days=KNOWN_ADDRESS_DAYS)
    return db.scalar(
        select(LoginEvent.id).join(User, User.id == LoginEvent.user_id)
        .where(User.login == login, LoginEvent.ip == address, LoginEvent.success.is_(True), LoginEvent.at > since)
        .limit(1)
    ) is not None
