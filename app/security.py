"""Password hashing (argon2id), access JWTs with a pinned algorithm, opaque refresh tokens, file-link tokens,
and the sealing of second-factor secrets at rest."""
import base64
import hashlib
import hmac
import re
import secrets
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from app import threads
from app.errors import InvalidToken, NotFound, TokenExpired

ACCESS_CLAIMS = ["sub", "sid", "jti", "iat", "exp", "typ"]
VERIFIED_TOKENS = 4096  # access tokens whose signature was checked, kept per process


class Passwords:
    """argon2id with the configured cost; a dummy hash keeps unknown ids as slow as wrong passwords."""

    def __init__(self, time_cost: int, memory_kib: int, parallelism: int):
        self.hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism
        )
        self.dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))

    # argon2 holds a core for tens of milliseconds in C, with the GIL released: on a real thread, the
    # other requests of the process are served meanwhile (app.threads).
    def hash(self, password: str) -> str:
        return threads.blocking(self.hasher.hash, password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        return threads.blocking(self._verify, stored_hash, password)

    def _verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(stored_hash or self.dummy_hash, password) and bool(stored_hash)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self.hasher.check_needs_rehash(stored_hash)


@dataclass(frozen=True)
class TokenPolicy:
    secret: str
    algorithm: str
    access_ttl: int
    refresh_ttl: int
    reuse_grace: int
    session_max_age: int = 90 * 24 * 3600
    max_sessions: int = 100
    retention: int = 30 * 24 * 3600  # seconds signed-out sessions and sign-in events are kept
    leeway: int = 0  # seconds of clock difference allowed on iat, nbf and exp
    verified: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, repr=False)
    tidied_at: dict[int, Any] = field(default_factory=dict, compare=False, repr=False)  # user id → last housekeeping

    def issue_access(self, user_id: int, session_id: str, roles: list[str] | None = None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": str(user_id),
            "sid": session_id,
            "jti": secrets.token_urlsafe(16),
            "iat": now,
            "exp": now + self.access_ttl,
            "typ": "access",
            "roles": roles or [],
        }
        return jwt.encode(claims, self.secret, algorithm=self.algorithm)

    def decode_access(self, token: str) -> dict[str, Any]:
        """The claims of a valid access token; every check runs, the signature's only once per token.

        A token's signature and claims never change, so a token verified before is looked up in a small
        cache, and only its expiry is checked again. The session behind it is still looked up on every
        request by the caller, so a signed-out session fails at once either way.
        """
        claims = self.verified.get(token)
        if claims is None:
            claims = self._verify(token)
            if len(self.verified) >= VERIFIED_TOKENS:
                self.verified.clear()  # crude, bounded, and cheap: the working set refills it at once
            self.verified[token] = claims
        elif claims["exp"] + self.leeway <= time.time():
            raise TokenExpired()
        return claims

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[self.algorithm],  # pinned: "none" and algorithm confusion fail here
                options={"require": ACCESS_CLAIMS},
                # A token minted by an instance whose clock runs a little ahead has an iat in "our" future:
                # PyJWT refuses that as not yet valid unless the leeway covers it.
                leeway=self.leeway,
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired() from None
        except jwt.PyJWTError:
            raise InvalidToken() from None
        if claims.get("typ") != "access" or not isinstance(claims.get("sid"), str):
            raise InvalidToken("this is not an access token")
        if not isinstance(claims["exp"], (int, float)):
            raise InvalidToken()
        return claims


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)  # 256 random bits


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_session_id() -> str:
    return secrets.token_hex(16)


# -- file links --------------------------------------------------------------------------------------

# kind (1 attachment, 2 inline), file id, expiry (epoch seconds), storage key, session id; then the MAC.
# 41 + 16 = 57 bytes: 76 base64url characters, no padding, and only one spelling of each token.
LINK_FIELDS = struct.Struct(">BII16s16s")
LINK_MAC_BYTES = 16  # AES-SIV's authentication tag
LINK_TOKEN = re.compile(r"[A-Za-z0-9_-]{%d}" % ((LINK_FIELDS.size + LINK_MAC_BYTES) * 4 // 3))
LINK_KINDS = {1: False, 2: True}  # kind → inline
LINK_KEY_LABEL = b"filesvc file-link v2"
LINK_EXPIRY_MAX = 2**32 - 1  # the expiry field's range (the year 2106)


@dataclass(frozen=True)
class LinkClaims:
    """What a file link grants: one version of one file, while the session that asked for it lives."""

    file_id: int
    storage_key: str  # the content's version: a replacement gets a new key, and the link dies with the old one
    session_id: str
    expires: int  # epoch seconds; the link answers 410 from this second on
    inline: bool


class LinkSigner:
    """Seals and reads file-link tokens with a key derived from JWT_SECRET, never the JWT key itself.

    A token is its claims encrypted and authenticated with AES-SIV (RFC 5297, `cryptography`): nobody
    without the key can read the session or storage key it names, or forge or alter one. SIV is
    deterministic, so a token is as short as before: the claims and a 16-byte tag.
    """

    def __init__(self, secret: str):
        self._siv = AESSIV(hmac.new(secret.encode(), LINK_KEY_LABEL, hashlib.sha512).digest())  # AES-256-SIV

    def sign(self, claims: LinkClaims) -> str:
        key, sid = bytes.fromhex(claims.storage_key), bytes.fromhex(claims.session_id)
        if len(key) != 16 or len(sid) != 16:
            raise ValueError("storage keys and session ids are 32 hex digits")
        kind = 2 if claims.inline else 1
        fields = LINK_FIELDS.pack(kind, claims.file_id, claims.expires, key, sid)
        return base64.urlsafe_b64encode(self._siv.encrypt(fields, None)).decode("ascii")

    def read(self, token: str) -> LinkClaims:
        """The claims of a token this service sealed (expired or not); anything else is 404."""
        if not LINK_TOKEN.fullmatch(token):
            raise NotFound("this file link is not valid")
        try:
            fields = self._siv.decrypt(base64.urlsafe_b64decode(token), None)
        except InvalidTag:
            raise NotFound("this file link is not valid") from None
        kind, file_id, expires, key, sid = LINK_FIELDS.unpack(fields)
        if kind not in LINK_KINDS:  # signed by a later format this code does not know
            raise NotFound("this file link is not valid")
        return LinkClaims(file_id, key.hex(), sid.hex(), expires, LINK_KINDS[kind])


# -- secrets at rest ---------------------------------------------------------------------------------

SEAL_KEY_LABEL = b"filesvc second-factor seal v1"


class SecretBox:
    """Seals secrets the service must read back (TOTP secrets) under a key derived from JWT_SECRET.

    Fernet (AES-128-CBC and HMAC-SHA256, `cryptography`): a copy of the database alone gives no secret,
    and a sealed value cannot be altered unnoticed. Rotation: the former secrets (JWT_SECRET_PREVIOUS)
    still open what they sealed; `reseal` seals it again under the current one.
    """

    def __init__(self, secret: str, previous: tuple[str, ...] = ()):
        keys = [base64.urlsafe_b64encode(hmac.new(s.encode(), SEAL_KEY_LABEL, hashlib.sha256).digest())
                for s in (secret, *previous)]
        self._current = Fernet(keys[0])
        self._all = MultiFernet([Fernet(key) for key in keys])

    def seal(self, plain: str) -> str:
        return self._current.encrypt(plain.encode()).decode("ascii")

    def open(self, sealed: str) -> str:
        """The plain value; cryptography.fernet.InvalidToken if no known key sealed it."""
        return self._all.decrypt(sealed.encode("ascii")).decode()

    def is_current(self, sealed: str) -> bool:
        try:
            self._current.decrypt(sealed.encode("ascii"))
        except Exception:  # sealed under a former secret (or not at all)
            return False
        return True

    def reseal(self, sealed: str) -> str:
        return self._all.rotate(sealed.encode("ascii")).decode("ascii")
