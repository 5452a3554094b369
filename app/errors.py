"""Every error the API answers with: one class per `error.code`, carrying its status and what it means.

Plain exceptions, importable by services, storage and validation without Flask. `app.http.handlers` turns
them (and werkzeug's and gunicorn's own refusals, through the classes of the second group) into the
JSON envelope; the OpenAPI document lists them from here.
"""
import math
import time
from typing import Any


class ApiError(Exception):
    headers: dict[str, tuple[str, dict[str, Any]]] = {}  # headers its answer always carries: name → (why, schema)
    status = 500
    code = "internal_error"
    message = "internal server error"
    description = "unexpected failure; a generic message, details only in the server log"

    def __init__(self, message: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details

    def envelope(self) -> dict[str, Any]:
        return envelope_error(self.code, self.message, self.details)

    def response_headers(self) -> dict[str, str]:
        """Headers this answer carries besides the envelope's."""
        return {}


def envelope_error(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"data": None, "error": error}


# -- raised by the app ---------------------------------------------------------------------------------


class ValidationError(ApiError):
    status, code, message = 400, "validation_error", "invalid input"
    description = ("missing or invalid field, malformed JSON or multipart, an unsupported body type, bad "
                   "`page`/`list_size`, no `file` part; `details.fields` names each bad field and why")

    @classmethod
    def field(cls, name: str, why: str) -> "ValidationError":
        return cls.fields({name: why})

    @classmethod
    def fields(cls, reasons: dict[str, str]) -> "ValidationError":
        """One error naming every bad field; the message names the first."""
        name, why = next(iter(reasons.items()))
        return cls(f"{name}: {why}", {"fields": reasons})


class MissingToken(ApiError):
    status, code, message = 401, "missing_token", "Authorization: Bearer <access token> is required"
    description = "no `Authorization: Bearer …` on a protected route"


class InvalidToken(ApiError):
    status, code, message = 401, "invalid_token", "the access token is invalid"
    description = "bad signature, malformed, wrong token type, unknown or revoked session"


class TokenExpired(ApiError):
    status, code, message = 401, "token_expired", "the access token has expired; refresh it"
    description = "a well-formed access token past its `exp`: refresh it"


class InvalidCredentials(ApiError):
    status, code, message = 401, "invalid_credentials", "wrong id or password"
    description = "sign-in with an unknown id or a wrong password (one message for both)"


class InvalidRefreshToken(ApiError):
    status, code, message = 401, "invalid_refresh_token", "the refresh token is invalid or expired"
    description = "refresh token unknown, expired, revoked or already rotated"


class Forbidden(ApiError):
    status, code, message = 403, "forbidden", "you do not have permission for this"
    description = "authenticated, but lacking the permission (or a wrong `current_password`)"


class InvalidCode(ApiError):
    status, code, message = 401, "invalid_code", "the code or token is wrong, expired or already used"
    description = ("a wrong, expired or already-used one-time code, reset token or verification token; after 5 "
                   "wrong tries a code stays refused until a new one is asked for")


class MfaRequired(ApiError):
    status, code, message = 401, "mfa_required", "the password was right; now the second factor"
    description = ("the password was right but the account has a second factor: at sign-in `details.mfa_token` "
                   "continues at `POST /signin/mfa`; `details.methods` lists the ways (`totp`, `recovery_code`, "
                   "`passkey`); elsewhere, send `code` or `recovery_code` with the password")


class AccountDisabled(ApiError):
    status, code, message = 403, "account_disabled", "this account has been disabled by an administrator"
    description = "sign-in, refresh or any request of a user an administrator disabled"


class NotFound(ApiError):
    status, code, message = 404, "not_found", "not found"
    description = ("unknown route; a file, session, role or user that does not exist or is not the caller's; "
                   "a file link that is malformed, forged or no longer valid")


class UserExists(ApiError):
    status, code, message = 409, "user_exists", "a user with this id already exists"
    description = "sign-up, or change of login, to an id already taken"


class Conflict(ApiError):
    status, code, message = 409, "conflict", "conflict"
    description = "the resource was changed by another request meanwhile; retry"


class RoleExists(Conflict):
    code, message = "role_exists", "a role with this name already exists"
    description = "a role with this name already exists"


class LinkExpired(ApiError):
    status, code, message = 410, "link_expired", "this file link has expired; ask for a new one"
    description = "a file link past its expiry: ask for a new one"


class FileTooLarge(ApiError):
    status, code, message = 413, "file_too_large", "the upload is larger than the limit"
    description = ("body over the limit (`MAX_UPLOAD_BYTES` for uploads, a small fixed limit for other bodies); a file "
                   "upload's answer has the limit in `details.limit` (bytes); nothing is stored")

    @classmethod
    def over(cls, limit: int) -> "FileTooLarge":
        """A file upload over MAX_UPLOAD_BYTES: the limit in details too, so a client can say it in its own units."""
        return cls(f"the file is larger than the limit of {limit} bytes", {"limit": limit})


class QuotaExceeded(ApiError):
    status, code, message = 413, "quota_exceeded", "the upload would take you past your storage quota"
    description = ("the upload would take the user's stored bytes past their quota; `details` has `quota`, "
                   "`bytes` (in use now) and, when unfinished resumable uploads hold some, `reserved`; or the user "
                   "keeps MAX_FILES_PER_USER files (`details.max_files`); nothing is stored")

    @classmethod
    def of(cls, quota: int, used: int, reserved: int = 0) -> "QuotaExceeded":
        held = f", {reserved} held by unfinished resumable uploads" if reserved else ""
        details = {"quota": quota, "bytes": used, **({"reserved": reserved} if reserved else {})}
        return cls(f"the upload would take you past your storage quota of {quota} bytes ({used} in use{held})", details)

    @classmethod
    def files(cls, limit: int) -> "QuotaExceeded":
        return cls(f"you have {limit} files, the most one account may keep; delete some first",
                   {"max_files": limit})


class ServiceUnavailable(ApiError):
    status, code, message = 503, "service_unavailable", "a backing service is unavailable; retry later"
    description = "the database or the storage is unreachable; retry later"


class StorageUnavailable(ServiceUnavailable):
    message = "the file storage is unavailable; retry later"


class InsufficientStorage(ApiError):
    status, code, message = 507, "insufficient_storage", "the file storage is full; nothing was stored"
    description = "the disk or object store is full; nothing was stored, and a replaced file keeps its old content"


class InternalError(ApiError):
    """Anything unexpected: the class defaults already say it."""


# -- refusals of the HTTP layer (werkzeug, gunicorn) and the abuse limits, in the same envelope ---------


class MethodNotAllowed(ApiError):
    status, code, message = 405, "method_not_allowed", "method not allowed"
    description = "known route, wrong method (the `Allow` header lists the right ones)"


class PreconditionFailed(ApiError):
    status, code, message = 412, "precondition_failed", "a precondition of the request does not hold"
    description = "`If-Match` names another version of the file, or it changed after `If-Unmodified-Since`"


class UnsupportedMediaType(ApiError):
    status, code, message = 415, "unsupported_media_type", "the body's Content-Type is not accepted here"
    description = ("a resumable upload's chunk without `Content-Type: application/offset+octet-stream`; a "
                   "thumbnail of a file that is not a JPEG, PNG, GIF or WebP image, or of one with more pixels than "
                   "`THUMBNAIL_MAX_PIXELS` (a decompression bomb)")


class UriTooLong(ApiError):
    status, code, message = 414, "uri_too_long", "the request line is too long"
    description = "the request line is longer than the HTTP server's limit"


class RangeNotSatisfiable(ApiError):
    status, code, message = 416, "range_not_satisfiable", "the requested range is outside the file"
    description = "a `Range` outside the file"
    headers = {"Content-Range": ("`bytes */<size>`.", {"type": "string"})}


class RateLimited(ApiError):
    status, code, message = 429, "rate_limited", "too many attempts; retry later"
    description = "too many attempts; see `Retry-After`"
    headers = {"Retry-After": ("Seconds until another attempt may succeed.", {"type": "integer"})}
    retry_after = 60
    limit = ""  # which limit refused (e.g. "signin-address"): a metric's label, never in the answer

    @classmethod
    def after(cls, reset_at: float, message: str, limit: str = "") -> "RateLimited":
        """Refused until `reset_at` (epoch seconds)."""
        error = cls(message)
        error.retry_after = max(1, math.ceil(reset_at - time.time()))
        error.limit = limit
        return error

    def response_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ChecksumMismatch(ApiError):
    status, code, message = 460, "checksum_mismatch", "the chunk does not match its Upload-Checksum"
    description = "a resumable upload's chunk does not match its `Upload-Checksum`; the chunk is discarded"


class HeadersTooLarge(ApiError):
    status, code, message = 431, "headers_too_large", "a request header is too large"
    description = "a request header is longer than the HTTP server's limit"


class HttpError(ApiError):
    status, code, message = 400, "http_error", "the request was refused"
    description = "any other HTTP-level refusal"


def all_errors() -> list[type[ApiError]]:
    """Every error class, each code once, in the order declared here."""
    found: dict[str, type[ApiError]] = {}
    stack: list[type[ApiError]] = [ApiError]
    while stack:
        cls = stack.pop(0)
        found.setdefault(cls.code, cls)
        stack.extend(cls.__subclasses__())
    return sorted(found.values(), key=lambda cls: (cls.status, cls.code))


# The class that stands for an HTTP status the app did not raise itself (werkzeug's, gunicorn's).
BY_STATUS: dict[int, type[ApiError]] = {
    400: ValidationError, 401: InvalidToken, 403: Forbidden, 404: NotFound, 405: MethodNotAllowed,
    412: PreconditionFailed, 413: FileTooLarge, 414: UriTooLong, 415: ValidationError,
    416: RangeNotSatisfiable, 429: RateLimited, 431: HeadersTooLarge, 500: InternalError,
}


def for_status(status: int) -> type[ApiError]:
    return BY_STATUS.get(status, HttpError)
