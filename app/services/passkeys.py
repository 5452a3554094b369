"""Passkeys (WebAuthn, SPEC §11): register, list, rename, delete, and passwordless sign-in.

The ceremonies are checked by `webauthn` (py_webauthn, Duo Labs): attestation "none", ES256/EdDSA/RS256,
RP id hash, origin, challenge, user presence, signature and the signature counter. What it leaves to the
service is here: challenges are stored as hashes, single use and short-lived; an origin is allowed by
WEBAUTHN_ORIGINS (or, when that is empty, by the RP id, as browsers allow it); a counter that does not grow
is refused (a cloned authenticator), and the new counter is written only over the one that was read, so two
parallel assertions of one counter value cannot both pass.
"""
import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from webauthn import (
    generate_authentication_options, generate_registration_options, options_to_json, verify_authentication_response,
    verify_registration_response
)
from webauthn.helpers import parse_authentication_credential_json, parse_client_data_json, parse_registration_credential_json
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria, AuthenticatorTransport, PublicKeyCredentialDescriptor, ResidentKeyRequirement,
    UserVerificationRequirement
)

from app.db.models import Challenge, Passkey, User
from app.errors import Conflict, InvalidCode, InvalidCredentials, NotFound, ValidationError
from app.services.factors import PASSKEY_ADD, PASSKEY_SIGNIN, FactorKeys, close_step, digest, open_step, sweep_steps

log = logging.getLogger("app.accounts")

PASSKEYS_MAX = 20  # per user: the options list them all (excludeCredentials, allowCredentials)
TRANSPORTS = {t.value for t in AuthenticatorTransport}


@dataclass(frozen=True)
class RelyingParty:
    id: str  # WEBAUTHN_RP_ID: a domain, the web client's host or a parent of it
    name: str
    origins: tuple[str, ...]  # WEBAUTHN_ORIGINS; empty: any origin on the RP id or under it

    def allows(self, origin: str) -> bool:
        if self.origins:
            return origin in self.origins
        parts = urlsplit(origin)
        host = parts.hostname or ""
        on_rp = host == self.id or host.endswith("." + self.id)
        return on_rp and (parts.scheme == "https" or (parts.scheme == "http" and host in ("localhost", "127.0.0.1")
                                                       or host.endswith(".localhost")))


@dataclass(frozen=True)
class Options:
    options: dict[str, Any]  # the WebAuthn options in their JSON form (PublicKeyCredential.parse…OptionsFromJSON)
    challenge_id: str


def registration_options(
    db: Session, rp: RelyingParty, keys: FactorKeys, *, user_id: int, login: str, now: datetime,
) -> Options:
    mine = list(db.scalars(select(Passkey).where(Passkey.user_id == user_id)))
    if len(mine) >= PASSKEYS_MAX:
        raise Conflict(f"you have {PASSKEYS_MAX} passkeys, the most an account keeps: delete one first")
    challenge = secrets.token_bytes(32)
    options = generate_registration_options(
        rp_id=rp.id, rp_name=rp.name, user_name=login, user_display_name=login,
        user_id=_user_handle(keys, user_id), challenge=challenge, timeout=keys.ttl * 1000,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED, user_verification=UserVerificationRequirement.PREFERRED),
        exclude_credentials=[_descriptor(key) for key in mine],
    )
    return Options(json.loads(options_to_json(options)), _store_challenge(db, keys, PASSKEY_ADD, user_id, challenge, now))


def register(
    db: Session, rp: RelyingParty, *, user_id: int, credential: dict[str, Any], name: str | None, now: datetime,
) -> Passkey:
    try:
        parsed = parse_registration_credential_json(credential)
        client_data = parse_client_data_json(parsed.response.client_data_json)
    except (WebAuthnException, ValueError, TypeError, KeyError) as e:
        raise ValidationError.field("credential", f"not a WebAuthn registration: {e}") from None
    step = _step_for(db, PASSKEY_ADD, client_data.challenge, now)
    if step.user_id != user_id:
        raise InvalidCode("this challenge was not given to you: ask for new options")
    close_step(db, step)
    db.commit()  # the challenge is used up whatever the outcome
    _check_origin(rp, client_data.origin)
    try:
        verified = verify_registration_response(
            credential=parsed, expected_challenge=client_data.challenge, expected_rp_id=rp.id,
            expected_origin=client_data.origin)
    except WebAuthnException as e:
        raise ValidationError.field("credential", f"the passkey could not be verified: {e}") from None
    count = db.scalar(select(func.count()).select_from(Passkey).where(Passkey.user_id == user_id)) or 0
    transports = [t.value for t in (parsed.response.transports or []) if t.value in TRANSPORTS]
    key = Passkey(
        id=secrets.token_hex(16), user_id=user_id, credential_hash=digest(verified.credential_id),
        credential_id=verified.credential_id, public_key=verified.credential_public_key,
        sign_count=verified.sign_count, name=name or f"Passkey {count + 1}", transports=",".join(transports),
        created_at=now,
    )
    db.add(key)
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        raise Conflict("this passkey is already registered") from None
    log.info("user %s added passkey %s", user_id, key.id)
    return key


def sign_in_options(db: Session, rp: RelyingParty, keys: FactorKeys, *, login: str | None, now: datetime) -> Options:
    """Options for an assertion: of the login's passkeys when `login` is given (an unknown login gets a
    made-up one, so the answer tells nobody whether it exists), else of any discoverable passkey."""
    user_id, allowed = None, []
    if login is not None:
        user_id = db.scalar(select(User.id).where(User.login == login))
        if user_id is None:
            fake = hmac.new(keys.key.key, b"passkey-decoy:" + login.encode(), hashlib.sha256).digest()
            allowed = [PublicKeyCredentialDescriptor(id=fake)]
        else:
            allowed = [_descriptor(key) for key in db.scalars(select(Passkey).where(Passkey.user_id == user_id))]
    challenge = secrets.token_bytes(32)
    options = generate_authentication_options(
        rp_id=rp.id, challenge=challenge, timeout=keys.ttl * 1000, allow_credentials=allowed,
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    return Options(json.loads(options_to_json(options)),
                   _store_challenge(db, keys, PASSKEY_SIGNIN, user_id, challenge, now))


def verify_assertion(
    db: Session, rp: RelyingParty, *, challenge_id: str, credential: dict[str, Any], now: datetime,
) -> Passkey:
    """The passkey that signed this challenge, its counter moved on; the caller opens the session and commits.
    The challenge is used up whatever the outcome."""
    try:
        parsed = parse_authentication_credential_json(credential)
        client_data = parse_client_data_json(parsed.response.client_data_json)
    except (WebAuthnException, ValueError, TypeError, KeyError) as e:
        raise ValidationError.field("credential", f"not a WebAuthn assertion: {e}") from None
    step = open_step(db, key=challenge_id, purpose=PASSKEY_SIGNIN, now=now)
    if not hmac.compare_digest(step.challenge_hash, digest(client_data.challenge)):
        raise InvalidCode("the credential answers another challenge: ask for new options")
    close_step(db, step)
    db.commit()
    _check_origin(rp, client_data.origin)
    key = db.scalar(select(Passkey).where(Passkey.credential_hash == digest(parsed.raw_id)))
    if key is None or (step.user_id is not None and key.user_id != step.user_id):
        raise InvalidCredentials("this passkey is not registered here")
    try:
        verified = verify_authentication_response(
            credential=parsed, expected_challenge=client_data.challenge, expected_rp_id=rp.id,
            expected_origin=client_data.origin, credential_public_key=key.public_key,
            credential_current_sign_count=key.sign_count,
        )
    except WebAuthnException as e:
        if "sign count" in str(e):
            log.warning("passkey %s of user %s: signature counter did not grow (a cloned authenticator?)",
                        key.id, key.user_id)
        raise InvalidCredentials("the passkey's signature was not accepted") from None
    if db.execute(
        update(Passkey).where(Passkey.id == key.id, Passkey.sign_count == key.sign_count)
        .values(sign_count=verified.new_sign_count, last_used_at=now).execution_options(synchronize_session=False)
    ).rowcount != 1:
        raise InvalidCredentials("the passkey was used by another sign-in at the same moment")
    return key


def my_passkeys(db: Session, *, user_id: int) -> list[Passkey]:
    return list(db.scalars(select(Passkey).where(Passkey.user_id == user_id)
                           .order_by(Passkey.created_at.desc(), Passkey.id)))


def rename(db: Session, *, user_id: int, passkey_id: str, name: str) -> Passkey:
    key = _mine(db, user_id, passkey_id)
    key.name = name
    db.commit()
    return key


def delete(db: Session, *, user_id: int, passkey_id: str) -> None:
    db.delete(_mine(db, user_id, passkey_id))
    db.commit()


def _mine(db: Session, user_id: int, passkey_id: str) -> Passkey:
    key = db.get(Passkey, passkey_id)
    if key is None or key.user_id != user_id:
        raise NotFound("no such passkey")  # the same answer for another user's
    return key


def _store_challenge(db: Session, keys: FactorKeys, purpose: str, user_id: int | None, challenge: bytes,
                     now: datetime) -> str:
    sweep_steps(db, now)
    challenge_id = secrets.token_hex(16)
    db.add(Challenge(id=challenge_id, user_id=user_id, purpose=purpose, challenge_hash=digest(challenge),
                     expires_at=now + timedelta(seconds=keys.ttl)))
    db.commit()
    return challenge_id


def _step_for(db: Session, purpose: str, challenge: bytes, now: datetime) -> Challenge:
    row = db.scalar(select(Challenge).where(Challenge.challenge_hash == digest(challenge)))
    return open_step(db, key=row.id if row is not None else "", purpose=purpose, now=now)


def _check_origin(rp: RelyingParty, origin: str) -> None:
    if not rp.allows(origin):
        raise ValidationError.field("credential", f"the origin {origin!r} is not one of WEBAUTHN_ORIGINS")


def _descriptor(key: Passkey) -> PublicKeyCredentialDescriptor:
    transports = [AuthenticatorTransport(t) for t in key.transports.split(",") if t in TRANSPORTS]
    return PublicKeyCredentialDescriptor(id=key.credential_id, transports=transports or None)


def _user_handle(keys: FactorKeys, user_id: int) -> bytes:
    """The WebAuthn user id: stable for the user, and neither their login nor their row id."""
    return bytes.fromhex(keys.key.digest("webauthn-user", user_id, ""))[:16]
