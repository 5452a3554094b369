"""The one place that turns any failure into the JSON envelope."""
import errno
import logging
import traceback

from flask import Flask, Response, current_app, g, jsonify, request
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from app.errors import ApiError, InsufficientStorage, InternalError, ServiceUnavailable, ValidationError, for_status

log = logging.getLogger("app")
FULL = (errno.ENOSPC, errno.EDQUOT)


def _with_stack(body: dict, exc: BaseException) -> dict:
    if current_app.debug:
        body["error"]["stack"] = "".join(traceback.format_exception(exc))
    return body


def _http_message(e: HTTPException, response: Response) -> str:
    status = e.code or 500
    if status == 404:
        return f"no such route: {request.method} {request.path}"
    if status == 405:
        return f"{request.method} is not allowed on {request.path}; allowed: {response.headers.get('Allow', '')}"
    if status == 416:
        return "the requested range is outside the file"
    if status == 413:
        limit = request.max_content_length
        return f"the request body is larger than the limit of {limit} bytes" if limit else "the request body is too large"
    return e.description or "error"


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(e: ApiError):
        g.error = e  # what the request's metrics read (which limit refused a 429)
        return jsonify(e.envelope()), e.status, e.response_headers()

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        # Start from werkzeug's response so 405 keeps `Allow` and 416 keeps `Content-Range`.
        response = e.get_response()
        status = e.code or 500
        kind, message = for_status(status), _http_message(e, response)
        error = ValidationError.field("request", message) if kind is ValidationError else kind(message)
        response.set_data(jsonify(error.envelope()).get_data())
        response.content_type = "application/json"
        return response

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeout)
    def database_unavailable(e: Exception):
        log.error("database unavailable: %s", e)
        return jsonify(_with_stack(ServiceUnavailable().envelope(), e)), ServiceUnavailable.status

    @app.errorhandler(Exception)
    def unexpected(e: Exception):
        if isinstance(e, DBAPIError) and e.connection_invalidated:
            return database_unavailable(e)
        if isinstance(e, OSError) and e.errno in FULL:  # the disk (uploads, or a spooled chunk) is full
            log.error("storage full: %s", e)
            return jsonify(InsufficientStorage().envelope()), InsufficientStorage.status
        log.exception("unhandled error")
        return jsonify(_with_stack(InternalError().envelope(), e)), InternalError.status
