from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON, BigInteger, Boolean, ColumnElement, ForeignKey, Index, Integer, LargeBinary, String, and_, false
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, LoginColumn, utcnow

ID_MAX = 2**31 - 1  # the range of an INTEGER id column on MySQL and SQLite alike


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    login: Mapped[str] = mapped_column(LoginColumn, unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    is_superuser: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Kept in the same transaction as every insert and delete of the user's files: the list's `total`
    # without a count(*) over the user's rows.
    file_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The sum of the user's files' sizes, kept the same way; `bytes_reserved` holds the announced lengths of
    # unfinished resumable uploads. Both count against the quota, so parallel uploads cannot pass it together.
    bytes_used: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    bytes_reserved: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The user's own quota in bytes (0 = unlimited); NULL: QUOTA_BYTES applies.
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # The login was proven: a message sent to it came back (a verification, or a password reset).
    verified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # An administrator stopped the account: no sign-in, refresh or request is served.
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class DeviceSession(Base):
    """One signed-in device. Its id is the `sid` claim of every access token issued to it."""

    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(index=True)
    user_agent: Mapped[str] = mapped_column(String(255), default="")
    ip: Mapped[str] = mapped_column(String(45), default="")

    @classmethod
    def live(cls, now: Any) -> ColumnElement[bool]:
        """The one definition of a live session: not signed out, not expired (`now` may be a bind parameter)."""
        return and_(cls.revoked_at.is_(None), cls.expires_at > now)


class RefreshToken(Base):
    """Every refresh token ever issued, by hash, so a rotated one is recognised when it comes back."""

    __tablename__ = "refresh_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    rotated_at: Mapped[datetime | None]


class LoginEvent(Base):
    __tablename__ = "login_events"
    __table_args__ = (Index("ix_login_events_user_id_at", "user_id", "at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    ip: Mapped[str] = mapped_column(String(45), default="")
    user_agent: Mapped[str] = mapped_column(String(255), default="")
    success: Mapped[bool] = mapped_column(Boolean)
    # How: "password", "totp", "recovery_code", "passkey"; "mfa_reset" when an operator removed the factors.
    method: Mapped[str] = mapped_column(String(16), default="password", server_default="password")


class File(Base):
    """A user's private file; its bytes are in storage under `storage_key`, never under the client's name."""

    __tablename__ = "files"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    extension: Mapped[str] = mapped_column(String(32))
    mime_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    storage_key: Mapped[str] = mapped_column(String(64), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# "My files, newest first" read forwards from the index alone (no filesort, no row reads for skipped
# entries); it also serves the foreign key on owner_id.
Index("ix_files_owner_id_newest", File.owner_id, File.uploaded_at.desc(), File.id.desc())
# The list sorted by name or by size (either way; ties by id, so pages never shift): the same ordered,
# limited read as the default order, instead of sorting every file of the owner for each page.
Index("ix_files_owner_id_name", File.owner_id, File.name, File.id)
Index("ix_files_owner_id_size", File.owner_id, File.size, File.id)


class Role(Base):
    __tablename__ = "roles"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(String(255), default="")
    # A short list read whole on every permission check; JSON keeps it one row (MariaDB stores it as checked LONGTEXT).
    permissions: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UserRole(Base):
    __tablename__ = "user_roles"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True, index=True)


class AccountCode(Base):
    """A message's proof of receipt: a link token and a 6-digit code, stored only as hashes, single use.

    `purpose` is "verify" (the login, or the new login `address`) or "reset" (the password). A newer code
    of the same user and purpose voids the older ones; a code takes at most 5 wrong tries.
    """

    __tablename__ = "account_codes"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(LoginColumn)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    tries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]


class RateCounter(Base):
    """One abuse-limit counter: `hits` in the fixed window that started at `window_start` (epoch seconds)."""

    __tablename__ = "rate_counters"
    key: Mapped[str] = mapped_column(String(191), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    hits: Mapped[int] = mapped_column(Integer)


class Upload(Base):
    """A resumable (tus) upload: its bytes so far are in storage under `storage_ref`, `received` of `length`.

    It becomes a file in the transaction that sets `received` to `length` (and `file_id`). A request
    writing to it holds `claim` (refreshed as it goes), so two writers never interleave bytes.
    """

    __tablename__ = "uploads"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    length: Mapped[int] = mapped_column(BigInteger)
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    name: Mapped[str] = mapped_column(String(255))
    storage_ref: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    claim: Mapped[str | None] = mapped_column(String(32))
    claimed_at: Mapped[datetime | None]
    file_id: Mapped[int | None] = mapped_column(ForeignKey("files.id", ondelete="SET NULL"), index=True)

    @property
    def complete(self) -> bool:
        return self.received == self.length


class TotpFactor(Base):
    """A user's authenticator-app secret (RFC 6238), sealed at rest (app.security.SecretBox).

    Active once `confirmed_at` is set; `last_step` is the time step of the last code accepted, so a code
    works once: only a later step is taken.
    """

    __tablename__ = "totp_factors"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    secret: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]
    last_step: Mapped[int | None] = mapped_column(BigInteger)


class RecoveryCode(Base):
    """One of the 10 codes shown once at TOTP enrolment: stored as an HMAC, used at most once."""

    __tablename__ = "recovery_codes"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None]


class Passkey(Base):
    """A WebAuthn credential: its id (found by its SHA-256), public key (COSE) and signature counter."""

    __tablename__ = "passkeys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    credential_hash: Mapped[str] = mapped_column(String(64), unique=True)
    credential_id: Mapped[bytes] = mapped_column(LargeBinary)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    name: Mapped[str] = mapped_column(String(64))
    transports: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]


class Challenge(Base):
    """A single-use step of a sign-in or ceremony: an `mfa_token` (purpose "mfa") or a WebAuthn challenge
    ("passkey-add", "passkey-signin"). `id` is the token's SHA-256 or the challenge id; `challenge_hash` the
    WebAuthn challenge's SHA-256. Deleted when used; `tries` counts wrong codes on an mfa_token."""

    __tablename__ = "challenges"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    challenge_hash: Mapped[str] = mapped_column(String(64), default="", index=True)
    tries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    expires_at: Mapped[datetime] = mapped_column(index=True)
