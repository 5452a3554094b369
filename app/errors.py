"""The ApiError family and the one place that turns any failure into the JSON envelope."""
import logging
import time
import traceback
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from sqlalchemy.exc import DBAPIError, OperationalError, TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from app.extensions import limiter

log = logging.getLogger("app")


class ApiError(Exception):
    status = 400
    code = "bad_request"
    message = "bad request"

    def __init__(self, message: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details


class ValidationError(ApiError):
    status, code, message = 400, "validation_error", "invalid input"

    @classmethod
    def field(cls, name: str, why: str) -> "ValidationError":
        return cls(f"{name}: {why}", {"fields": {name: why}})


class MissingToken(ApiError):
    status, code, message = 401, "missing_token", "Authorization: Bearer <access token> is required"


class InvalidToken(ApiError):
    status, code, message = 401, "invalid_token", "the access token is invalid"


class TokenExpired(ApiError):
    status, code, message = 401, "token_expired", "the access token has expired; refresh it"


class InvalidCredentials(ApiError):
    status, code, message = 401, "invalid_credentials", "wrong id or password"


class InvalidRefreshToken(ApiError):
    status, code, message = 401, "invalid_refresh_token", "the refresh token is invalid or expired"


class Forbidden(ApiError):
    status, code, message = 403, "forbidden", "you do not have permission for this"


class NotFound(ApiError):
    status, code, message = 404, "not_found", "not found"


class UserExists(ApiError):
    status, code, message = 409, "user_exists", "a user with this id already exists"


class Conflict(ApiError):
    status, code, message = 409, "conflict", "conflict"


class RoleExists(Conflict):
    code, message = "role_exists", "a role with this name already exists"


class FileTooLarge(ApiError):
    status, code, message = 413, "file_too_large", "the upload is larger than the limit"


class ServiceUnavailable(ApiError):
    status, code, message = 503, "service_unavailable", "a backing service is unavailable; retry later"


class StorageUnavailable(ServiceUnavailable):
    message = "the file storage is unavailable; retry later"


HTTP_CODES = {
    400: "validation_error",
    401: "invalid_token",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    412: "precondition_failed",
    413: "file_too_large",
    414: "uri_too_long",
    415: "validation_error",
    416: "range_not_satisfiable",
    429: "rate_limited",
    431: "headers_too_large",
}


def envelope_error(code: str, message: str, details: dict[str, Any] | None = None) -> dict:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"data": None, "error": error}


def _with_stack(body: dict, exc: BaseException) -> dict:
    if current_app.debug:
        body["error"]["stack"] = "".join(traceback.format_exception(exc))
    return body


def _retry_after() -> int:
    current = limiter.current_limit
    return max(1, int(current.reset_at - time.time())) if current else 60


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(e: ApiError):
        return jsonify(envelope_error(e.code, e.message, e.details)), e.status

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        # Start from werkzeug's response so 405 keeps `Allow` and 429 keeps `Retry-After`.
        response = e.get_response()
        status = e.code or 500
        message = e.description or "error"
        if status == 404:
            message = f"no such route: {request.method} {request.path}"
        elif status == 405:
            message = f"{request.method} is not allowed on {request.path}; allowed: {response.headers.get('Allow', '')}"
        elif status == 429:
            message = f"too many attempts ({e.description}); retry later"
            response.headers["Retry-After"] = str(_retry_after())
        elif status == 416:
            message = "the requested range is outside the file"
        elif status == 413:
            limit = request.max_content_length
            message = f"the request body is larger than the limit of {limit} bytes" if limit else "the request body is too large"
        body = envelope_error(HTTP_CODES.get(status, "http_error"), message)
        response.set_data(jsonify(body).get_data())
        response.content_type = "application/json"
        return response

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeout)
    def database_unavailable(e: Exception):
        log.error("database unavailable: %s", e)
        body = envelope_error(ServiceUnavailable.code, ServiceUnavailable.message)
        return jsonify(_with_stack(body, e)), 503

    @app.errorhandler(Exception)
    def unexpected(e: Exception):
        if isinstance(e, DBAPIError) and e.connection_invalidated:
            return database_unavailable(e)
        log.exception("unhandled error")
        body = envelope_error("internal_error", "internal server error")
        return jsonify(_with_stack(body, e)), 500
