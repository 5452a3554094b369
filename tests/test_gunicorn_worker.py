"""Requests gunicorn refuses before the app runs still get the JSON envelope, X-Request-ID and CORS."""
import http.client
import json
import os
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT
from tests.support.faults import socket_inodes, tcp_inodes, worker_pids


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

    from app.server.worker import check_patch_target

    check_patch_target()  # the pinned gunicorn: what is patched is what the worker expects
    monkeypatch.setattr(util, "write_error", lambda sock, status, reason: None)
    with pytest.raises(RuntimeError, match="write_error"):
        check_patch_target()
    monkeypatch.delattr(util, "write_error")
    with pytest.raises(RuntimeError, match="write_error"):
        check_patch_target()


# -- one listening socket per worker (SO_REUSEPORT) ------------------------------------------------------------


def test_a_burst_of_connections_is_spread_over_the_workers(live_server):
    """32 clients connecting at once are served by both workers, not piled onto one of them."""
    port = urlsplit(live_server.url).port
    clients = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(32)]
    try:
        for client in clients:
            client.connect()
        for client in clients:  # one request on each, and every connection stays open (keep-alive)
            client.request("GET", "/ping")
            assert client.getresponse().read() == b'{"data":{"pong":true},"error":null}'
        served = tcp_inodes(local_port=port, established=True)
        held = sorted(len(socket_inodes(pid) & served) for pid in worker_pids(live_server.process.pid))
        assert sum(held) == 32 and len(held) == 2
        assert held[0] >= 6, held  # an even split is 16 each; below 6 happens by chance about once in 10,000
    finally:
        for client in clients:
            client.close()


def test_a_second_server_on_a_port_in_use_refuses_to_start(live_server):
    port = urlsplit(live_server.url).port
    second = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "wsgi:app"],
        cwd=ROOT, env={**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "1"},
        capture_output=True, text=True, timeout=30,
    )
    assert second.returncode != 0
    assert f"127.0.0.1:{port} is already in use by another server" in second.stderr + second.stdout
    assert raw_get(live_server, "/ping")[0] == 200  # the first one keeps the port, and all of its traffic
