"""What every request goes through: proxy headers, CORS, the request id, the preflight answer, one log line."""
import logging
import re
import time
import uuid

from flask import Flask, Response, g, request
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"
REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
# C0 controls, DEL, C1 controls, and the two Unicode line breaks some log readers split on.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# A file link's token is a credential: whatever follows a `link/` segment never reaches a log (SPEC §7),
# however the path reaches it (/file/link/, /file/./link/, //file//link/, percent-encoded slashes).
LINK_TOKEN_IN_PATH = re.compile(r"(/link/+).+", re.IGNORECASE | re.DOTALL)
LINK_TOKEN_IN_TEXT = re.compile(r"((?:/|%2f)link(?:/|%2f)+)[^\s'\"]+", re.IGNORECASE)
REDACTED = "<redacted>"
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


def start_request() -> Response | None:
    g.request_id = request_id_for_request()
    g.started = time.perf_counter()
    # A CORS preflight is answered 2xx on any path, even one that will be 404 or 405, so the
    # browser lets the page read the real request's JSON error instead of a bare CORS failure.
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return Response(status=204)
    return None


def finish_request(response: Response) -> Response:
    request_id = g.get("request_id") or request_id_for_request()
    response.headers["X-Request-ID"] = request_id
    # No answer is to be sniffed into another type; the API's own pages and JSON are never framed (a file
    # shown inline through a link may be: its own headers say how, app/downloads.py).
    response.headers["X-Content-Type-Options"] = "nosniff"
    if response.mimetype in ("application/json", "text/html"):
        response.headers.setdefault("X-Frame-Options", "DENY")
    if log.isEnabledFor(logging.INFO):  # the escaping is not paid for a line nobody writes
        elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        log.info("%s %s %s %s %.1fms", request_id, escape_controls(request.method),
                 escape_controls(loggable_path(request.path)), response.status_code, elapsed_ms)
    return response


def loggable_path(path: str) -> str:
    """The path with a file link's token replaced: `/file/link/<redacted>`."""
    return LINK_TOKEN_IN_PATH.sub(r"\1" + REDACTED, path) if "link" in path.lower() else path


def redact_link_tokens(logger: logging.Logger) -> None:
    """Keep link tokens out of a logger that writes request lines or URIs itself (gunicorn's, werkzeug's)."""
    if not any(isinstance(f, RedactLinkTokens) for f in logger.filters):
        logger.addFilter(RedactLinkTokens())


class RedactLinkTokens(logging.Filter):
    """Rewrites a record whose message holds `/file/link/<token>`; it always lets the record through."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record fails when it is written, as it would without this filter
            return True
        redacted = LINK_TOKEN_IN_TEXT.sub(r"\1" + REDACTED, message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def escape_controls(text: str) -> str:
    """`\\x0a` for a newline and the like: a path such as `/x%0AFORGED` cannot start a log line of its own."""
    return CONTROL.sub(_escaped, text)


def _escaped(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def request_id_for_request() -> str:
    """The client's X-Request-ID when it is sane, else a new one."""
    incoming = request.headers.get("X-Request-ID", "")
    return incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
