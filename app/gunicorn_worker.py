"""gunicorn's gthread worker, with gunicorn's own refusals in the API's JSON envelope.

gunicorn answers some requests before the app sees them: a request line over `limit_request_line`
(414), a header over `limit_request_field_size` (431), a malformed request (400). It writes those as
an HTML page; the contract says every error is JSON and every response carries `X-Request-ID` and
`Access-Control-Allow-Origin`.
"""
import inspect
import json
import uuid
from socket import socket

from gunicorn import util
from gunicorn.workers import base
from gunicorn.workers.gthread import ThreadWorker

from app.errors import ValidationError, for_status
from app.middleware import redact_link_tokens

# What is replaced, as this module knows it: a change in gunicorn must stop the server, not pass unseen.
PATCHED_SIGNATURE = ["sock", "status_int", "reason", "mesg"]


def write_json_error(sock: socket, status: int, reason: str, message: str) -> None:
    kind, message = for_status(status), message or reason.lower()
    error = ValidationError.field("request", message) if kind is ValidationError else kind(message)
    body = json.dumps(error.envelope(), separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Access-Control-Allow-Origin: *\r\n"
        f"X-Request-ID: {uuid.uuid4().hex}\r\n"
        "\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


def check_patch_target() -> None:
    """Fail loudly if gunicorn no longer renders its refusals through `util.write_error(sock, status, reason, mesg)`."""
    original = getattr(util, "write_error", None)
    if original is None or list(inspect.signature(original).parameters) != PATCHED_SIGNATURE:
        raise RuntimeError("gunicorn.util.write_error is not what app.gunicorn_worker expects; check the upgrade")
    if "util.write_error(" not in inspect.getsource(base.Worker.handle_error):
        raise RuntimeError("gunicorn's Worker.handle_error no longer calls util.write_error; check the upgrade")


class JsonErrorWorker(ThreadWorker):
    def init_process(self) -> None:
        # Worker.handle_error renders through util.write_error; this process serves only the API.
        if util.write_error is not write_json_error:
            check_patch_target()
            util.write_error = write_json_error
        # A malformed request line, a failure while a response streams, the access log if turned on: each
        # writes the URI, and a file link's URI holds its token.
        redact_link_tokens(self.log.error_log)
        redact_link_tokens(self.log.access_log)
        super().init_process()
