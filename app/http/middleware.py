"""What every request goes through: proxy headers, CORS, the request id, the preflight answer, one log line
(text or JSON), and the request's metrics when they are served."""
import logging
import re
import time
import uuid

from flask import Flask, Response, current_app, g, request
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from app import metrics
from app.errors import NotFound
from app.server.multiprocess import METRICS_LISTENER
from app.server.redaction import escape_controls, loggable_path, redact_link_tokens

REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"
REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
log = logging.getLogger("app.request")

# SPEC §5: what a page on any origin may send, and read back; the resumable-upload (tus) and digest
# headers of §7 and §8 included.
ALLOW_HEADERS = [
    "Authorization", "Content-Type", "X-Request-ID", "Range", "If-None-Match", "If-Range", "If-Match",
    "If-Unmodified-Since", "Tus-Resumable", "Upload-Length", "Upload-Offset", "Upload-Metadata", "Upload-Checksum",
]
EXPOSE_HEADERS = [
    "Content-Disposition", "Content-Length", "Content-Range", "ETag", "Retry-After", "X-Request-ID", "Accept-Ranges",
    "Repr-Digest", "Location", "Upload-Offset", "Upload-Length", "Upload-Expires", "Tus-Resumable", "Tus-Version",
    "Tus-Extension", "Tus-Max-Size", "X-File-Id",
]


def install(app: Flask) -> None:
    if app.config["TRUSTED_PROXIES"] > 0:
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    CORS(
        app,
        origins="*",
        send_wildcard=True,
        vary_header=False,
        supports_credentials=False,
        allow_headers=ALLOW_HEADERS,
        expose_headers=EXPOSE_HEADERS,
        methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        max_age=600,
    )
    redact_link_tokens(logging.getLogger("werkzeug"))  # `flask run` logs every request line
    app.before_request(start_request)
    app.after_request(finish_request)
    app.teardown_request(end_transfer)


def start_request() -> Response | None:
    g.request_id = request_id_for_request()
    g.started = time.perf_counter()
    # A CORS preflight is answered 2xx on any path, even one that will be 404 or 405, so the
    # browser lets the page read the real request's JSON error instead of a bare CORS failure.
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return Response(status=204)
    if request.environ.get(METRICS_LISTENER) and request.path != "/metrics":
        raise NotFound("the metrics port serves GET /metrics only")  # the API is on the service's own port
    if current_app.extensions["metrics_on"]:
        g.transfer = metrics.transfer_started(request.endpoint)
    return None


def finish_request(response: Response) -> Response:
    request_id = g.get("request_id") or request_id_for_request()
    response.headers["X-Request-ID"] = request_id
    # No answer is to be sniffed into another type; the API's own pages and JSON are never framed (a file
    # shown inline through a link may be: its own headers say how, app/downloads.py).
    response.headers["X-Content-Type-Options"] = "nosniff"
    if response.mimetype in ("application/json", "text/html"):
        response.headers.setdefault("X-Frame-Options", "DENY")
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    if current_app.extensions["metrics_on"]:
        count(response, elapsed)
    if log.isEnabledFor(logging.INFO):  # the escaping is not paid for a line nobody writes
        if current_app.config["LOG_FORMAT"] == "json":
            caller = g.get("caller")
            # JSON escapes what the text line escapes by hand; the path is redacted the same way.
            log.info("request", extra={"fields": {
                "request_id": request_id, "method": request.method, "path": loggable_path(request.path),
                "status": response.status_code, "duration_ms": round(elapsed * 1000, 1),
                "user_id": caller.user_id if caller is not None else None,
            }})
        else:
            log.info("%s %s %s %s %.1fms", request_id, escape_controls(request.method),
                     escape_controls(loggable_path(request.path)), response.status_code, elapsed * 1000)
    return response


def count(response: Response, elapsed: float) -> None:
    rule = request.url_rule
    metrics.request_done(rule.rule if rule is not None else None, request.method, response.status_code, elapsed)
    if response.status_code == 429:
        metrics.refused(getattr(g.get("error"), "limit", None) or "other")
    direction = g.pop("transfer", None)
    if direction is not None:  # a download's bytes go out after this: the transfer ends when they have
        when_sent(response, lambda: metrics.transfer_ended(direction))


def when_sent(response: Response, callback) -> None:
    """Call `callback` once the server is done with the answer's body.

    A file answer (direct_passthrough) reaches the server as the file wrapper itself, whose close() the
    server calls; werkzeug's call_on_close is not called then. Any other body goes through it."""
    body, status = response.response, response.status_code
    if (response.direct_passthrough and request.method != "HEAD" and not 100 <= status < 200
            and status not in (204, 304) and callable(getattr(body, "close", None))):
        close = body.close

        def close_then_call() -> None:
            try:
                close()
            finally:
                callback()

        try:
            body.close = close_then_call
            return
        except AttributeError:  # a body whose close cannot be replaced
            pass
    response.call_on_close(callback)


def end_transfer(_error: BaseException | None = None) -> None:
    """A transfer whose answer never reached finish_request (it failed on the way out) ends here."""
    direction = g.pop("transfer", None)
    if direction is not None:
        metrics.transfer_ended(direction)


def request_id_for_request() -> str:
    """The client's X-Request-ID when it is sane, else a new one."""
    incoming = request.headers.get("X-Request-ID", "")
    return incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
