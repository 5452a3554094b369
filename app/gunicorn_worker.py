"""gunicorn's gthread worker, with gunicorn's own refusals in the API's JSON envelope.

gunicorn answers some requests before the app sees them: a request line over `limit_request_line`
(414), a header over `limit_request_field_size` (431), a malformed request (400). It writes those as
an HTML page; the contract says every error is JSON and every response carries `X-Request-ID` and
`Access-Control-Allow-Origin`.
"""
import json
import uuid
from socket import socket

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from app.errors import HTTP_CODES, envelope_error


def write_json_error(sock: socket, status: int, reason: str, message: str) -> None:
    code = HTTP_CODES.get(status) or ("internal_error" if status == 500 else "http_error")
    details = {"fields": {"request": message}} if code == "validation_error" else None
    body = json.dumps(envelope_error(code, message or reason.lower(), details), separators=(",", ":")).encode()
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


class JsonErrorWorker(ThreadWorker):
    def init_process(self) -> None:
        # Worker.handle_error renders through util.write_error; this process serves only the API.
        util.write_error = write_json_error
        super().init_process()
