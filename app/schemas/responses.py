"""The JSON shapes of what the API returns, declared once.

Each success body is one of these models: the routes build them, `app.http.responses.ok` serialises them
inside the envelope, and the OpenAPI document takes their schemas from here.
"""
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from app.schemas.requests import LIST_SIZE_MAX, NAME_MAX, NAME_PATTERN


def iso(moment: datetime) -> str:
    """Naive UTC from the database → `2026-11-22T10:00:00Z`."""
    return moment.replace(microsecond=0).isoformat() + "Z"


UtcTime = Annotated[
    datetime,
    PlainSerializer(iso, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time", "description": "UTC, ISO 8601, e.g. 2026-11-22T10:00:00Z"}),
]


class Shape(BaseModel):
    """A closed object whose every property is always present."""

    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)


T = TypeVar("T")


class Page(Shape, Generic[T]):
    """Newest first. A page past the end has no items."""

    items: list[T]
    page: int = Field(ge=1)
    list_size: int = Field(ge=1, le=LIST_SIZE_MAX)
    total: int = Field(ge=0)
    pages: int = Field(ge=0)

    @classmethod
    def of(cls, items: list[T], page: int, list_size: int, total: int):
        return cls(items=items, page=page, list_size=list_size, total=total, pages=(total + list_size - 1) // list_size)


# -- auth and account --------------------------------------------------------------------------------


class TokenPair(Shape):
    id: str = Field(description="The login, normalised.")
    access_token: str = Field(description="JWT (HS256): sub, sid, jti, iat, exp, typ, roles.")
    refresh_token: str = Field(description="Opaque; every refresh rotates it.")
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(description="Seconds the access token is valid.")
    refresh_expires_in: int = Field(description="Seconds the refresh token is valid.")
    verified: bool = Field(description="Whether the login is proven: a message sent to it came back (§10).")


class Me(Shape):
    id: str = Field(description="The caller's login.")
    verified: bool = Field(description="Whether the login is proven: a message sent to it came back (§10).")


class MessageSent(Shape):
    sent: Literal[True] = Field(True, description="Always true: the answer says nothing of whether the login exists.")


class Verified(Shape):
    id: str = Field(description="The login just proven.")
    verified: Literal[True] = True


class AccountDeleted(Shape):
    id: str = Field(description="The login that was deleted; it is free again.")
    deleted: Literal[True] = True


class UserSummary(Shape):
    id: str = Field(description="The user's login.")
    created_at: UtcTime
    verified: bool
    disabled: bool
    files: int = Field(ge=0)
    bytes: int = Field(ge=0, description="Bytes of the user's files.")


class UserPage(Page[UserSummary]):
    """Oldest first."""


class UserDetail(UserSummary):
    mfa: bool = Field(description="Whether a second factor is enabled (§11).")
    roles: list[str]
    sessions: int = Field(ge=0, description="Live sessions (signed-in devices).")
    quota: int | None = Field(description="The user's own quota in bytes (0: unlimited); null: `QUOTA_BYTES`.")


class LoggedOut(Shape):
    logged_out: Literal[True] = True


class LoggedOutAll(Shape):
    logged_out: Literal[True] = True
    sessions: int = Field(ge=0, description="How many sessions were signed out, this one included.")


class Session(Shape):
    id: str = Field(description="The `sid` claim of this device's access tokens.")
    created_at: UtcTime
    last_used_at: UtcTime
    user_agent: str
    ip: str
    current: bool = Field(description="True for the session of the token used to ask.")


class SessionList(Shape):
    items: list[Session]


class SessionRevoked(Shape):
    id: str
    revoked: Literal[True] = True


class LoginEvent(Shape):
    at: UtcTime
    ip: str
    user_agent: str
    success: bool
    method: Literal["password", "totp", "recovery_code", "passkey", "mfa_reset"] = Field(
        description="How: the password alone, with a code of the authenticator app or a recovery code, a "
                    "passkey; `mfa_reset`: an operator removed the second factor.")


class LoginEventPage(Page[LoginEvent]):
    pass


# -- second factor and passkeys (SPEC §11) -------------------------------------------------------------


class TotpEnrolment(Shape):
    secret: str = Field(description="The secret (base32), for typing into an app that cannot scan.")
    otpauth_uri: str = Field(description="`otpauth://totp/…`: what the QR code holds.")
    qr_svg: str = Field(description="The QR code as an SVG document (show it as an image, e.g. a data: URL).")


class TotpEnabled(Shape):
    enabled: Literal[True] = True
    recovery_codes: list[str] = Field(description="10 single-use codes, shown this once: keep them somewhere safe.")


class TotpDisabled(Shape):
    enabled: Literal[False] = False


class MfaStatus(Shape):
    totp: bool = Field(description="An authenticator app is set up: sign-in asks for its code.")
    recovery_codes_left: int = Field(ge=0)
    passkeys: int = Field(ge=0)


class WebAuthnOptions(BaseModel):
    """The WebAuthn options in their JSON form, for `PublicKeyCredential.parseCreationOptionsFromJSON()` /
    `parseRequestOptionsFromJSON()` (binary fields base64url), and the challenge's id."""

    model_config = ConfigDict(extra="allow", json_schema_serialization_defaults_required=True)
    challenge: str = Field(description="base64url; single use, valid MFA_TOKEN_TTL seconds.")
    challenge_id: str = Field(description="Send it back with the credential.")


class Passkey(Shape):
    id: str
    name: str
    created_at: UtcTime
    last_used_at: UtcTime | None


class PasskeyList(Shape):
    items: list[Passkey]


class PasskeyDeleted(Shape):
    id: str
    deleted: Literal[True] = True


# -- roles -------------------------------------------------------------------------------------------


class Role(Shape):
    id: int
    name: str = Field(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN)
    description: str
    permissions: list[str]


class RoleList(Shape):
    items: list[Role]


class RoleDeleted(Shape):
    id: int
    deleted: Literal[True] = True


class Grant(Shape):
    user: str
    role_id: int
    granted: bool


class UserRoles(Shape):
    user: str
    superuser: bool = Field(description="A superuser passes every permission check.")
    roles: list[Role]
    permissions: list[str] = Field(description="Union of the roles'.")


# -- files -------------------------------------------------------------------------------------------


class File(Shape):
    id: int
    name: str = Field(description="The client's file name without any directory part.")
    extension: str = Field(description="Lower-case, without the dot; empty if none.")
    mime_type: str
    size: int = Field(ge=0)
    sha256: str = Field(description="Hex SHA-256 of the stored content.", pattern="^[0-9a-f]{64}$")
    uploaded_at: UtcTime
    updated_at: UtcTime

    @classmethod
    def of(cls, record: Any) -> "File":
        """From a File row object or a plain row with the same columns."""
        return cls(
            id=record.id, name=record.name, extension=record.extension, mime_type=record.mime_type,
            size=record.size, sha256=record.sha256, uploaded_at=record.uploaded_at, updated_at=record.updated_at,
        )


class UploadState(Shape):
    """A resumable upload: how much of it is stored, until when it is kept, and the file it became."""

    id: str
    offset: int = Field(ge=0, description="Bytes stored so far.")
    length: int = Field(ge=0, description="The whole upload's size (`Upload-Length`).")
    expires_at: UtcTime = Field(description="When it expires unless another chunk arrives.")
    file: File | None = Field(description="The file it became once complete; null before (or once deleted).")


class FilePage(Page[File]):
    pass


class FileDeleted(Shape):
    id: int
    deleted: Literal[True] = True


class Usage(Shape):
    files: int = Field(ge=0, description="How many files the caller has.")
    bytes: int = Field(ge=0, description="The sum of their sizes: what counts against the quota.")
    quota: int | None = Field(ge=1, description="The caller's quota in bytes; null: unlimited.")


class FileLink(Shape):
    """A short-lived link to the file: whoever holds it can fetch the file, without a token."""

    url: str = Field(description="Absolute, from the scheme and host the request came to; usable as it is.")
    path: str = Field(description="The same without scheme and host.")
    expires_at: UtcTime
    expires_in: int = Field(ge=1, description="Seconds, as asked for (or the default).")
    disposition: Literal["attachment", "inline"] = Field(
        description="How the link serves the file: `inline` only if asked for and the content is safe to show.")


# -- service -----------------------------------------------------------------------------------------


class Pong(Shape):
    pong: Literal[True] = True


class Health(Shape):
    status: Literal["ok"] = "ok"
    database: Literal["ok"] = "ok"
    storage: Literal["ok"] = "ok"


class Ready(Health):
    redis: Literal["ok", "not configured"] = Field(description="The rate-limit store, when RATELIMIT_STORAGE_URI is redis://.")
