"""Proving a login and getting back in (SPEC §10): verification messages and password resets.

Each message carries a link (PUBLIC_URL with the token) and the same proof as a 6-digit code, for a person
reading it on another device. Nothing here says whether a login exists: a reset asked for an unknown login
answers like any other, and its work (finding the user, making the code, sending) runs after the answer.
"""
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Callable
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import threads
from app.db.models import AccountCode, User
from app.errors import AccountDisabled, InvalidCode
from app.messages import Message, Outbox
from app.ratelimit.throttle import Throttle
from app.security import Passwords, TokenPolicy
from app.services import codes
from app.services.codes import RESET, VERIFY, CodeKey
from app.services.sessions import Client, IssuedTokens, revoke_sessions, start_session

log = logging.getLogger("app.recovery")


@dataclass(frozen=True)
class Mailing:
    """What a message needs besides its addressee: where links point, how long proofs live, how to send."""

    outbox: Outbox
    key: CodeKey
    public_url: str
    verify_ttl: int
    reset_ttl: int


# -- verification ---------------------------------------------------------------------------------------


def request_verification(
    db: Session, mailing: Mailing, throttle: Throttle, *, user_id: int, login: str, address: str, now: datetime,
) -> None:
    """POST /verify/request: a new message to the caller's login (RATELIMIT_MAIL per login and address)."""
    throttle.count_mail(login, address)
    send_verification(db, mailing, user_id=user_id, address=login, now=now)


def send_verification(db: Session, mailing: Mailing, *, user_id: int, address: str, now: datetime) -> None:
    """A verification message to `address` (the user's login, or the new one); commits the code first."""
    issued = codes.issue(db, mailing.key, user_id=user_id, purpose=VERIFY, address=address,
                         ttl=mailing.verify_ttl, now=now)
    db.commit()
    link = f"{mailing.public_url}/?verify={quote(issued.token)}"
    mailing.outbox.send(Message(address, "Confirm your address", (
        f"Someone (hopefully you) signed up or changed their login to {address}.\n\n"
        f"To confirm it is yours, open this link:\n{link}\n\n"
        f"or enter this code: {issued.code}\n\n"
        f"Both work once, until {issued.expires_at:%Y-%m-%d %H:%M} UTC. If this was not you, ignore this message."
    ) if "@" in address else f"Your confirmation code: {issued.code}. It works once, until "
                                  f"{issued.expires_at:%H:%M} UTC. Or open {link}"))


def confirm_verification(
    db: Session, key: CodeKey, *, token: str | None, login: str | None, code: str | None, now: datetime,
) -> str:
    """The login proven; its user marked verified. The proof must be for the user's current login."""
    row = _redeem(db, key, VERIFY, token=token, login=login, code=code, now=now)
    user = db.get(User, row.user_id)
    if user is None or user.login != row.address:  # the login changed since the message was sent
        db.rollback()
        raise InvalidCode()
    user.verified = True
    db.commit()
    return user.login


# -- password reset -------------------------------------------------------------------------------------


def forgot_password(
    sessions: Callable[[], Session], mailing: Mailing, throttle: Throttle, *, login: str, address: str, now: datetime,
) -> None:
    """POST /password/forgot: counted, then answered at once; whether the login exists is looked up after the
    answer, on a session of its own, so a known and an unknown login take the same time and say the same."""
    throttle.count_mail(login, address)
    threads.detach(_send_reset_alone, sessions, mailing, login, now)


def _send_reset_alone(sessions: Callable[[], Session], mailing: Mailing, login: str, now: datetime) -> None:
    try:
        with sessions() as db:
            send_reset(db, mailing, login=login, now=now)
    except Exception:  # after the answer: nobody to tell but the log
        log.exception("a password reset message could not be prepared")


def send_reset(db: Session, mailing: Mailing, *, login: str, now: datetime) -> None:
    """After the answer: a reset message if the login is a user's (and not disabled); nothing otherwise."""
    user = db.scalar(select(User).where(User.login == login))
    if user is None or user.disabled:
        db.rollback()
        return
    issued = codes.issue(db, mailing.key, user_id=user.id, purpose=RESET, address=user.login,
                         ttl=mailing.reset_ttl, now=now)
    db.commit()
    link = f"{mailing.public_url}/?reset={quote(issued.token)}"
    minutes = max(1, mailing.reset_ttl // 60)
    mailing.outbox.send(Message(user.login, "Reset your password", (
        f"Someone (hopefully you) asked to reset the password of {user.login}.\n\n"
        f"To choose a new password, open this link:\n{link}\n\n"
        f"or enter this code: {issued.code}\n\n"
        f"Both work once, for {minutes} minutes. Every device signed in to the account will be signed out.\n"
        f"If this was not you, ignore this message: your password stays as it is."
    ) if "@" in user.login else f"Your password reset code: {issued.code}. It works once, for {minutes} minutes. "
                                f"Or open {link}"))


def reset_password(
    db: Session, key: CodeKey, *, passwords: Passwords, policy: TokenPolicy, token: str | None, login: str | None,
    code: str | None, password: str, client: Client, now: datetime,
) -> IssuedTokens:
    """The new password set, every session of the user signed out (their file links die with them), the
    login marked verified (the message reached it), and a new session started: all in one commit."""
    row = _redeem(db, key, RESET, token=token, login=login, code=code, now=now)
    user = db.get(User, row.user_id)
    if user is None or user.login != row.address:
        db.rollback()
        raise InvalidCode()
    if user.disabled:
        db.rollback()
        raise AccountDisabled()
    user.password_hash = passwords.hash(password)
    user.verified = True
    revoke_sessions(db, user_id=user.id, now=now)
    issued = start_session(db, policy, user, client, now)
    db.commit()
    log.info("password of user %s reset; every session signed out", user.id)
    return issued


def _redeem(db: Session, key: CodeKey, purpose: str, *, token: str | None, login: str | None, code: str | None,
            now: datetime) -> AccountCode:
    if token is not None:
        return codes.redeem_token(db, purpose=purpose, token=token, now=now)
    assert login is not None and code is not None  # the request's model asks for a token or both
    return codes.redeem_code(db, key, purpose=purpose, login=login, code=code, now=now)
