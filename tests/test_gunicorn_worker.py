"""Requests gunicorn refuses before the app runs still get the JSON envelope, X-Request-ID and CORS."""
import http.client
import json
from urllib.parse import urlsplit

import pytest


def raw_get(server, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    address = urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    "path, headers, status, code",
    [
        ("/ping?q=" + "a" * 6000, {}, 414, "uri_too_long"),
        ("/ping", {"X-Padding": "a" * 9000}, 431, "headers_too_large"),
    ],
)
def test_server_level_refusals_are_json(live_server, path, headers, status, code):
    got, response_headers, body = raw_get(live_server, path, headers)
    assert got == status
    assert response_headers["Content-Type"] == "application/json"
    assert response_headers["Access-Control-Allow-Origin"] == "*" and response_headers["X-Request-ID"]
    envelope = json.loads(body)
    assert envelope["data"] is None and envelope["error"]["code"] == code and envelope["error"]["message"]


def test_ordinary_requests_are_untouched(live_server):
    status, headers, body = raw_get(live_server, "/ping")
    assert status == 200 and json.loads(body) == {"data": {"pong": True}, "error": None}


def test_the_worker_refuses_to_start_on_a_gunicorn_it_does_not_know(monkeypatch):
    """The JSON refusals replace gunicorn.util.write_error; a gunicorn where that changed must stop the worker."""
    from gunicorn import util

    from app.gunicorn_worker import check_patch_target

    check_patch_target()  # the pinned gunicorn: what is patched is what the worker expects
    monkeypatch.setattr(util, "write_error", lambda sock, status, reason: None)
    with pytest.raises(RuntimeError, match="write_error"):
        check_patch_target()
    monkeypatch.delattr(util, "write_error")
    with pytest.raises(RuntimeError, match="write_error"):
        check_patch_target()
