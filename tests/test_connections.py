"""SPEC §13 against a real gunicorn: slow clients hold only their own transfer; timeouts by phase; early answers
never leave a kept connection unusable; a sign-in burst does not stall other requests; a graceful reload
drops nothing."""
import asyncio
import http.client
import json
import os
import signal
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest

from bench.slow_clients import Target, run
from tests.conftest import stored_files
from tests.support.faults import worker_pids

SLOW_CLIENTS = 200


def port_of(server) -> int:
    return urlsplit(server.url).port


def sign_in(server) -> str:
    target = Target(server.url)
    target.set_up("idle", 0)
    return target.token


@pytest.mark.parametrize("kind", ["download", "link", "upload", "tus", "headers"])
def test_a_probe_is_answered_while_hundreds_of_slow_clients_hold_transfers(make_live_server, kind):
    live_server = make_live_server(MAX_OPEN_UPLOADS=str(SLOW_CLIENTS))  # one resumable upload per slow client
    target = Target(live_server.url)
    target.set_up(kind, SLOW_CLIENTS)
    result = asyncio.run(run(target, kind, SLOW_CLIENTS, rate=16 << 10, seconds=2.0, server_pid=None))
    assert result["connected"] == SLOW_CLIENTS, result
    assert result["answered"] == result["probes"] >= 15, result  # every probe within 2 s
    if kind != "headers":
        assert result["closed_by_server"] == 0, result  # a slow transfer is a transfer, not an attack


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection; and after how many seconds it did."""
    started, data = time.monotonic(), b""
    sock.settimeout(limit)
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data, time.monotonic() - started
        data += chunk


def test_request_headers_that_trickle_in_are_cut_after_the_header_timeout(make_live_server):
    server = make_live_server(HEADER_TIMEOUT="1")
    with socket.create_connection(("127.0.0.1", port_of(server))) as sock:
        started = time.monotonic()
        closed = None
        for byte in b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 50:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = time.monotonic() - started
                break
            sock.settimeout(0.2)
            try:
                if sock.recv(1) == b"":
                    closed = time.monotonic() - started
                    break
            except socket.timeout:
                pass
        assert closed is not None and 0.9 < closed < 3, closed  # cut, although a byte arrived every 0.2 s


def test_an_idle_connection_is_closed_after_the_keepalive_timeout_and_a_busy_one_is_kept(make_live_server):
    server = make_live_server(KEEPALIVE_TIMEOUT="1")
    connection = http.client.HTTPConnection("127.0.0.1", port_of(server), timeout=5)
    for _ in range(4):  # a request every half second: the connection stays
        connection.request("GET", "/ping")
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("Connection") != "close"
        response.read()
        time.sleep(0.5)
    peer = connection.sock
    _, after = read_until_closed(peer, 5)
    assert after < 1.5  # idle for a second: closed by the server (0.5 s of it had already passed)
    connection.close()


def test_a_new_connection_may_take_the_header_timeout_to_send_its_first_request(make_live_server):
    server = make_live_server(HEADER_TIMEOUT="3", KEEPALIVE_TIMEOUT="1")
    with socket.create_connection(("127.0.0.1", port_of(server))) as sock:
        time.sleep(1.5)  # longer than the keep-alive timeout, shorter than the header timeout
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")


def start_body(server, path: str, headers: dict[str, str], sent: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port_of(server)))
    head = f"{path} HTTP/1.1\r\nHost: x\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock.sendall(head.encode() + sent)
    return sock


def test_an_upload_whose_body_stalls_is_dropped_and_stores_nothing(make_live_server, app):
    server = make_live_server(BODY_TIMEOUT="1")
    token = sign_in(server)
    boundary = "stalled"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"s.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    sock = start_body(server, "POST /file/upload", {
        "Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(head) + 1_000_000),
    }, head + b"x" * 300_000)
    with sock:
        answer, after = read_until_closed(sock, 10)
    assert after < 4  # a second without a byte: dropped
    assert not answer.startswith(b"HTTP/1.1 2")
    status, body = get_json(server, "/file/list", token)
    assert status == 200 and body["data"]["total"] == 0
    assert stored_files(app) == []


def test_a_resumable_upload_whose_chunk_stalls_keeps_what_arrived(make_live_server):
    server = make_live_server(BODY_TIMEOUT="1")
    token = sign_in(server)
    location = create_upload(server, token, 1_000_000)
    sock = start_body(server, f"PATCH {location}", {
        "Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0", "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream", "Content-Length": "1000000",
    }, b"y" * 300_000)
    with sock:
        _, after = read_until_closed(sock, 10)
    assert after < 4
    connection = http.client.HTTPConnection("127.0.0.1", port_of(server), timeout=10)
    connection.request("HEAD", location, headers={"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"})
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Upload-Offset") == "300000"


def create_upload(server, token: str, length: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port_of(server), timeout=10)
    connection.request("POST", "/file/uploads", headers={
        "Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0", "Upload-Length": str(length),
        "Upload-Metadata": "filename cy5iaW4=",
    })
    response = connection.getresponse()
    assert response.status == 201, response.read()
    return urlsplit(response.getheader("Location")).path


def get_json(server, path: str, token: str) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port_of(server), timeout=10)
    connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


# -- an answer before the body: the next request on the connection never meets a closed socket ---------------


@pytest.mark.parametrize("body_bytes", [10_000, 3_000_000])
def test_after_an_early_refusal_the_next_request_on_the_connection_is_answered(live_server, body_bytes):
    """A refused upload (no token, so 401 before its body is read), then a request on the same connection if
    the answer kept it, a new one if it said `Connection: close`: 100 times, never a failure."""
    body = b"z" * body_bytes
    connection = http.client.HTTPConnection("127.0.0.1", port_of(live_server), timeout=10)
    kept = 0
    for _ in range(100):
        connection.request("POST", "/file/upload", body=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
        response = connection.getresponse()
        assert response.status == 401
        response.read()
        if response.getheader("Connection") == "close":
            connection.close()
        else:
            kept += 1
        connection.request("GET", "/ping")
        follow = connection.getresponse()
        assert follow.status == 200 and json.loads(follow.read())["data"] == {"pong": True}
    # A small rest is read and dropped, the connection kept; a large one closes it.
    assert kept == (100 if body_bytes <= 64 << 10 else 0)
    connection.close()


def test_a_refusal_before_a_large_body_reaches_the_client_whole(live_server):
    """The server closes after refusing a large body: the client still reads the answer, not a reset."""
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", port_of(live_server))) as sock:
            sock.sendall(b"POST /file/upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                         b"Content-Length: 50000000\r\n\r\n" + b"q" * 1_000_000)
            sock.settimeout(10)
            answer = b""
            try:
                while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
            except ConnectionResetError:
                pytest.fail(f"reset before the answer was read: {answer!r}")
            assert answer.startswith(b"HTTP/1.1 401") and b"Connection: close" in answer


# -- work that holds a core runs beside the loop ---------------------------------------------------------------


def test_a_burst_of_sign_ins_does_not_stall_other_requests(make_live_server):
    """20 sign-ins at once, at a cost of about 100 ms of argon2 each: /info keeps being answered meanwhile."""
    server = make_live_server(ARGON2_TIME_COST="6", ARGON2_MEMORY_KIB="19456", WEB_CONCURRENCY="1")
    target = Target(server.url)
    target.set_up("idle", 0)
    from bench.slow_clients import PASSWORD, call

    login = f"burst-{os.getpid()}@example.com"
    call(server.url + "/signup", {"id": login, "password": PASSWORD})
    done = threading.Event()
    answered_during: list[float] = []

    def probe() -> None:
        while not done.is_set():
            started = time.monotonic()
            status, _ = get_json(server, "/info", target.token)
            if not done.is_set() and status == 200:
                answered_during.append(time.monotonic() - started)
            time.sleep(0.01)

    prober = threading.Thread(target=probe)
    prober.start()
    sign_ins = [threading.Thread(target=call, args=(server.url + "/signin", {"id": login, "password": PASSWORD}))
                for _ in range(20)]
    started = time.monotonic()
    for thread in sign_ins:
        thread.start()
    for thread in sign_ins:
        thread.join()
    burst = time.monotonic() - started
    done.set()
    prober.join()
    # One worker: were argon2 run on its loop, a probe would wait for the sign-ins queued before it, and
    # only a few would get through while the burst lasts.
    assert len(answered_during) >= 20, (len(answered_during), burst)
    assert sorted(answered_during)[len(answered_during) // 2] < burst / 4


# -- a graceful reload -------------------------------------------------------------------------------------------


def test_a_graceful_reload_drops_no_request(live_server):
    port = port_of(live_server)
    failures: list[str] = []
    served = 0
    stop = threading.Event()

    def client(keep_alive: bool) -> None:
        nonlocal served
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not stop.is_set():
            try:
                connection.request("GET", "/ping")
                response = connection.getresponse()
                body = response.read()
                if response.status != 200:
                    failures.append(f"{response.status} {body[:100]!r}")
                served += 1
                if not keep_alive or response.getheader("Connection") == "close":
                    connection.close()
            except (OSError, http.client.HTTPException) as e:
                failures.append(repr(e))
                connection.close()

    clients = [threading.Thread(target=client, args=(index % 2 == 0,)) for index in range(4)]
    for thread in clients:
        thread.start()
    before = set(worker_pids(live_server.process.pid))
    for _ in range(2):
        time.sleep(1.0)
        live_server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and set(worker_pids(live_server.process.pid)) & before:
            time.sleep(0.1)
        before = set(worker_pids(live_server.process.pid))
    time.sleep(1.0)
    stop.set()
    for thread in clients:
        thread.join()
    assert served > 200 and failures == [], (served, failures[:5])
