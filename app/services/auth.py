"""Sign-up, sign-in, refresh-token rotation and logout. Each use case owns its transaction."""
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, false, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.models import DeviceSession, LoginEvent, RefreshToken, User
from app.errors import AccountDisabled, InvalidCode, InvalidCredentials, InvalidRefreshToken, MfaRequired, UserExists
from app.ratelimit.throttle import Throttle
from app.security import Passwords, TokenPolicy, token_hash
from app.services.factors import (
    MFA, MFA_TOKEN_TRIES, FactorKeys, close_step, methods, open_step, start_mfa, totp_enabled, use_code
)
from app.services.passkeys import RelyingParty, verify_assertion
from app.services.recovery import Mailing, send_verification
from app.services.sessions import Client, IssuedTokens, issue_refresh, revoke_sessions, start_session, token_pair

log = logging.getLogger("app.accounts")

TIDY_EVERY = 3600  # seconds between one user's inline housekeeping runs, per process
TIDY_REMEMBERED = 10_000  # users whose last housekeeping time a process keeps


def sign_up(
    db: Session, *, passwords: Passwords, policy: TokenPolicy, throttle: Throttle, mailing: Mailing, login: str,
    password: str, client: Client, now: datetime,
) -> IssuedTokens:
    """A new user and their first session; an email login is sent a verification message (SPEC §10)."""
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
    tokens = start_session(db, policy, user, client, now)
    db.commit()
    if "@" in login:
        send_verification(db, mailing, user_id=user.id, address=login, now=now)
    return tokens


def sign_in(
    db: Session, *, passwords: Passwords, policy: TokenPolicy, throttle: Throttle, keys: FactorKeys, login: str,
    password: str, client: Client, now: datetime,
) -> IssuedTokens:
    """A new session for the right password; a user with a second factor gets MfaRequired with an
    mfa_token instead, and the session comes from `sign_in_mfa`."""
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
    if user.disabled:  # told only to whoever knows the password
        db.rollback()
        raise AccountDisabled()
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash(password)
    if totp_enabled(db, user.id):
        token = start_mfa(db, keys, user_id=user.id, now=now)
        db.commit()
        raise MfaRequired(details={"mfa_token": token, "methods": methods(db, user.id)})
    return _signed_in(db, policy, user, client, now, "password")


def sign_in_mfa(
    db: Session, *, policy: TokenPolicy, throttle: Throttle, keys: FactorKeys, mfa_token: str, code: str | None,
    recovery_code: str | None, client: Client, now: datetime,
) -> IssuedTokens:
    """The second step: the mfa_token of a right password, and a TOTP code or a recovery code. Each try
    counts as a sign-in of the login (SPEC §9) until the code proves right; an mfa_token takes
    MFA_TOKEN_TRIES wrong codes, and one right code."""
    step = open_step(db, key=token_hash(mfa_token), purpose=MFA, now=now)
    user = db.get(User, step.user_id)
    if user is None:
        raise InvalidCode()
    throttle.sign_in(db, login=user.login, address=client.ip, now=now)
    method = "totp" if code is not None else "recovery_code"
    try:
        use_code(db, keys, user_id=user.id, code=code, recovery_code=recovery_code, now=now)
    except InvalidCode:  # nothing was changed but the counts, which stay (committed below)
        step.tries += 1
        if step.tries >= MFA_TOKEN_TRIES:
            db.delete(step)
        db.add(LoginEvent(user_id=user.id, at=now, ip=client.ip, user_agent=client.user_agent, success=False,
                          method=method))
        db.commit()
        raise
    if user.disabled:
        db.rollback()
        raise AccountDisabled()
    login = user.login
    close_step(db, step)
    tokens = _signed_in(db, policy, user, client, now, method)
    # Given back only now: the counter is written on a connection of its own, and SQLite has one writer.
    throttle.signed_in(login)
    return tokens


def sign_in_passkey(
    db: Session, *, policy: TokenPolicy, throttle: Throttle, rp: RelyingParty, challenge_id: str,
    credential: dict[str, Any], client: Client, now: datetime,
) -> IssuedTokens:
    """Passwordless: a passkey's assertion is both factors, so it also stands in for `mfa_required`."""
    throttle.count_signin_address(client.ip)
    key = verify_assertion(db, rp, challenge_id=challenge_id, credential=credential, now=now)
    user = db.get(User, key.user_id)
    if user is None:
        raise InvalidCredentials()
    if user.disabled:
        db.rollback()
        raise AccountDisabled()
    return _signed_in(db, policy, user, client, now, "passkey")


def _signed_in(db: Session, policy: TokenPolicy, user: User, client: Client, now: datetime,
               method: str) -> IssuedTokens:
    db.add(LoginEvent(user_id=user.id, at=now, ip=client.ip, user_agent=client.user_agent, success=True,
                      method=method))
    _tidy(db, policy, user.id, now)
    tokens = start_session(db, policy, user, client, now)
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
    user = db.get(User, device.user_id) if device is not None else None
    if device is None or user is None or user.disabled:
        # A signed-out session's token is refused; one a disabling revoked says why (SPEC §10).
        disabled = user.disabled if user is not None else db.scalar(
            select(User.disabled).join(DeviceSession).join(RefreshToken).where(RefreshToken.token_hash == digest))
        db.rollback()
        if disabled:
            raise AccountDisabled()
        raise InvalidRefreshToken()
    # This session's rotated tokens that have expired can never be accepted, nor mistaken for a theft.
    db.execute(
        delete(RefreshToken).where(RefreshToken.session_id == device.id, RefreshToken.expires_at <= now)
        .execution_options(synchronize_session=False)
    )
    refresh_token = issue_refresh(db, policy, device, now)
    device.last_used_at = now
    device.ip, device.user_agent = client.ip, client.user_agent
    db.commit()
    return token_pair(db, policy, user, device, refresh_token, now)


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


