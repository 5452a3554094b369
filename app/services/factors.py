"""The second factor (SPEC §11): an authenticator app's TOTP secret, recovery codes, and the `mfa_token`
that carries a sign-in from its password to its code.

TOTP is RFC 6238 as authenticator apps speak it (SHA-1, 6 digits, 30 s), computed by `pyotp`; a code of
the step before or after the current one is taken too (clock skew), and each step's code only once: the
last step taken is kept, and only a later one is accepted, by a conditional UPDATE, so two parallel uses of
one code cannot both win. Recovery codes are kept as HMACs (app.services.codes.CodeKey), the secret sealed
(app.security.SecretBox).
"""
import hashlib
import io
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
import segno
from cryptography.fernet import InvalidToken
from sqlalchemy import delete, exists, func, or_, select, update
from sqlalchemy.orm import Session

from app.db.models import Challenge, Passkey, RecoveryCode, TotpFactor
from app.errors import Conflict, InvalidCode, MfaRequired, ServiceUnavailable
from app.security import SecretBox
from app.services.codes import CodeKey

log = logging.getLogger("app.accounts")

TOTP_PERIOD = 30
SKEW_STEPS = 1  # steps of clock difference allowed either way
RECOVERY_CODES = 10
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read off paper and typed again
MFA, PASSKEY_ADD, PASSKEY_SIGNIN = "mfa", "passkey-add", "passkey-signin"
MFA_TOKEN_TRIES = 5  # wrong codes on one mfa_token before it is void (the sign-in limit counts them too)


@dataclass(frozen=True)
class FactorKeys:
    box: SecretBox  # seals TOTP secrets
    key: CodeKey  # HMACs recovery codes
    issuer: str  # the name authenticator apps show beside the login
    ttl: int  # seconds an mfa_token or a WebAuthn challenge is valid


@dataclass(frozen=True)
class Enrolment:
    secret: str
    uri: str
    qr_svg: str


def totp_enabled(db: Session, user_id: int) -> bool:
    return db.scalar(select(exists().where(TotpFactor.user_id == user_id, TotpFactor.confirmed_at.is_not(None))))


def methods(db: Session, user_id: int) -> list[str]:
    """The ways this user can give a second factor (a passkey only when they have one)."""
    has_passkey = db.scalar(select(exists().where(Passkey.user_id == user_id)))
    return ["totp", "recovery_code"] + (["passkey"] if has_passkey else [])


def begin_totp(db: Session, keys: FactorKeys, *, user_id: int, login: str, now: datetime) -> Enrolment:
    """A new secret, not active until a code of it is confirmed; a pending one is replaced."""
    row = db.get(TotpFactor, user_id)
    if row is not None and row.confirmed_at is not None:
        raise Conflict("an authenticator app is already set up; remove it first (DELETE /mfa/totp)")
    secret = pyotp.random_base32()  # 160 bits, as RFC 4226 recommends
    if row is None:
        db.add(TotpFactor(user_id=user_id, secret=keys.box.seal(secret), created_at=now))
    else:
        row.secret, row.created_at, row.last_step = keys.box.seal(secret), now, None
    db.commit()
    uri = pyotp.TOTP(secret).provisioning_uri(name=login, issuer_name=keys.issuer)
    svg = io.BytesIO()
    segno.make(uri, error="m").save(svg, kind="svg", scale=4, border=2, xmldecl=False, title="Scan with your authenticator app")
    return Enrolment(secret, uri, svg.getvalue().decode())


def confirm_totp(db: Session, keys: FactorKeys, *, user_id: int, code: str, now: datetime) -> list[str]:
    """The pending secret turned on by a code of it; answers the new recovery codes (shown this once)."""
    row = db.get(TotpFactor, user_id)
    if row is None or row.confirmed_at is not None:
        raise Conflict("there is no authenticator app to confirm: start with POST /mfa/totp")
    step = _step_of(_secret_of(keys, row), code, now, after=None)
    if step is None:
        raise InvalidCode("the code is wrong or too old: enter the one your authenticator app shows now")
    row.confirmed_at, row.last_step = now, step
    codes = _new_recovery_codes(db, keys, user_id)
    db.commit()
    return codes


def disable_totp(db: Session, *, user_id: int) -> None:
    """The secret and the recovery codes gone; the caller checked the password and a code, and commits."""
    db.execute(delete(TotpFactor).where(TotpFactor.user_id == user_id).execution_options(synchronize_session=False))
    db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id)
               .execution_options(synchronize_session=False))


def require_second_factor(
    db: Session, keys: FactorKeys, *, user_id: int, code: str | None, recovery_code: str | None, now: datetime,
) -> str | None:
    """For a user with TOTP on: a code or a recovery code, used up (MfaRequired when neither was given,
    InvalidCode when it is wrong). Answers the method used, or None for a user without a second factor."""
    if not totp_enabled(db, user_id):
        return None
    if code is None and recovery_code is None:
        raise MfaRequired("this account has a second factor: send `code` (or `recovery_code`) too",
                          {"methods": methods(db, user_id)})
    return use_code(db, keys, user_id=user_id, code=code, recovery_code=recovery_code, now=now)


def use_code(
    db: Session, keys: FactorKeys, *, user_id: int, code: str | None, recovery_code: str | None, now: datetime,
) -> str:
    """A TOTP code (of a step later than the last one taken) or an unused recovery code, now used up in the
    caller's transaction; answers "totp" or "recovery_code", else InvalidCode."""
    if code is not None:
        row = db.get(TotpFactor, user_id)
        step = None if row is None or row.confirmed_at is None else _step_of(
            _secret_of(keys, row), code, now, after=row.last_step)
        if step is not None and db.execute(
            update(TotpFactor)
            .where(TotpFactor.user_id == user_id, or_(TotpFactor.last_step.is_(None), TotpFactor.last_step < step))
            .values(last_step=step).execution_options(synchronize_session=False)
        ).rowcount == 1:
            if not keys.box.is_current(row.secret):  # sealed under a former JWT_SECRET: seal it anew
                row.secret = keys.box.reseal(row.secret)
            return "totp"
        raise InvalidCode("the code is wrong or was already used: wait for the next one")
    if recovery_code is not None and db.execute(
        update(RecoveryCode)
        .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None),
               RecoveryCode.code_hash == _recovery_hash(keys, user_id, recovery_code))
        .values(used_at=now).execution_options(synchronize_session=False)
    ).rowcount == 1:
        return "recovery_code"
    raise InvalidCode("the recovery code is wrong or was already used")


def reseal_all(db: Session, keys: FactorKeys) -> tuple[int, int]:
    """Every TOTP secret sealed under a former JWT_SECRET sealed anew under the current one, so
    JWT_SECRET_PREVIOUS can go. Answers how many were resealed and how many no known secret opens."""
    resealed = unopened = 0
    for row in db.scalars(select(TotpFactor)):
        if keys.box.is_current(row.secret):
            continue
        try:
            row.secret = keys.box.reseal(row.secret)
            resealed += 1
        except InvalidToken:
            unopened += 1
    db.commit()
    return resealed, unopened


def recovery_codes_left(db: Session, user_id: int) -> int:
    return db.scalar(select(func.count()).select_from(RecoveryCode)
                     .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))) or 0


def _secret_of(keys: FactorKeys, row: TotpFactor) -> str:
    try:
        return keys.box.open(row.secret)
    except InvalidToken:
        # JWT_SECRET changed and the former one is not in JWT_SECRET_PREVIOUS: no code can be checked.
        log.error("the TOTP secret of user %s was sealed under a secret this server does not know; "
                  "put the former JWT_SECRET in JWT_SECRET_PREVIOUS", row.user_id)
        raise ServiceUnavailable("the second factor cannot be checked now (the server's JWT_SECRET changed "
                                 "without JWT_SECRET_PREVIOUS); retry later") from None


def _step_of(secret: str, code: str, now: datetime, *, after: int | None) -> int | None:
    """The time step, within the allowed skew and later than `after`, whose code `code` is."""
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // TOTP_PERIOD
    for step in range(current - SKEW_STEPS, current + SKEW_STEPS + 1):
        if (after is None or step > after) and secrets.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _new_recovery_codes(db: Session, keys: FactorKeys, user_id: int) -> list[str]:
    db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id)
               .execution_options(synchronize_session=False))
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(10))  # ~49 bits each
        codes.append(f"{raw[:5]}-{raw[5:]}")
        db.add(RecoveryCode(user_id=user_id, code_hash=_recovery_hash(keys, user_id, raw)))
    return codes


def _recovery_hash(keys: FactorKeys, user_id: int, code: str) -> str:
    # Typed back from paper: case, spaces and dashes do not matter.
    plain = "".join(c for c in code.lower() if c.isalnum())
    return keys.key.digest("recovery", user_id, plain)


# -- single-use steps: the mfa_token, WebAuthn challenges ---------------------------------------------------


def digest(value: str | bytes) -> str:
    return hashlib.sha256(value.encode() if isinstance(value, str) else value).hexdigest()


SWEEP_EVERY = 60.0  # seconds between a process's removals of expired steps
_swept = [0.0]


def sweep_steps(db: Session, now: datetime) -> None:
    """Expired steps go, at most once a minute per process, in the caller's transaction: anyone may ask for
    passkey options, so the table must not grow with them."""
    if time.monotonic() - _swept[0] >= SWEEP_EVERY:
        _swept[0] = time.monotonic()
        db.execute(delete(Challenge).where(Challenge.expires_at <= now).execution_options(synchronize_session=False))


def start_mfa(db: Session, keys: FactorKeys, *, user_id: int, now: datetime) -> str:
    """An mfa_token for the second step of this user's sign-in; the caller commits."""
    sweep_steps(db, now)
    token = secrets.token_urlsafe(32)
    db.add(Challenge(id=digest(token), user_id=user_id, purpose=MFA, expires_at=now + timedelta(seconds=keys.ttl)))
    return token


def open_step(db: Session, *, key: str, purpose: str, now: datetime) -> Challenge:
    """The live step stored under `key` (an mfa_token's digest, a challenge id); InvalidCode if there is none."""
    row = db.get(Challenge, key)
    if row is None or row.purpose != purpose or row.expires_at <= now:
        raise InvalidCode("this step has expired or was already used: start again")
    return row


def close_step(db: Session, row: Challenge) -> None:
    """Used up: of two parallel uses, the second deletes nothing and is refused."""
    if db.execute(delete(Challenge).where(Challenge.id == row.id)
                  .execution_options(synchronize_session=False)).rowcount != 1:
        raise InvalidCode("this step was already used: start again")
