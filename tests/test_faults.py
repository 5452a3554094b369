"""Outages and crashes through a real gunicorn: a database or object store that disappears or hangs gives
503 within the configured timeouts and the same workers recover by themselves; a worker killed or a client
gone mid-upload leaves no row, and after `storage-check --repair` no bytes.

The database and the object store are reached through a TCP proxy in this process, so an outage is made
by cutting the proxy, never by stopping the MariaDB server other test runs share.
"""
import json
import os
import signal
import socket
import subprocess
import time
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.conftest import BACKEND_STORAGE, S3_KINDS, stored_files
from tests.support.faults import TcpProxy, wait_for, worker_pids
from tests.support.api import sha
from tests.support.live import get, live_token, multipart, send

MIB = 1 << 20
DB_TIMEOUT = 2  # DB_CONNECT_TIMEOUT and DB_READ_TIMEOUT of the servers below
STORE_TIMEOUT = 1  # STORAGE_CONNECT_TIMEOUT and STORAGE_READ_TIMEOUT


def timed_get(server, path: str, token: str) -> tuple[int, dict, float]:
    started = time.monotonic()
    status, _, body = get(server, path, token)
    return status, json.loads(body) if body else {}, time.monotonic() - started


def upload(server, token: str, content: bytes, name: str = "f.bin", method: str = "POST", path: str = "/file/upload"):
    head, tail, content_type = multipart(content, name)
    status, _, body = send(server, method, path, token, [head, tail], content_type)
    return status, json.loads(body)


def first_success(attempt, tries: int = 10) -> list[int]:
    """Statuses of `attempt()` up to and including its first 200."""
    statuses = []
    for _ in range(tries):
        statuses.append(attempt())
        if statuses[-1] == 200:
            break
        time.sleep(0.2)
    return statuses


def assert_recovers(server, token: str) -> None:
    """At most one 503 per worker (a pooled connection to the lost server, which empties its pools), then 200s."""
    statuses = [get(server, path, token)[0] for path in ("/info", "/file/list", "/health") * 6]
    assert set(statuses) <= {200, 503} and statuses.count(503) <= 2, statuses
    assert statuses[-3:] == [200] * 3, statuses


@pytest.fixture
def db_proxy(database_urls, backend):
    url = make_url(database_urls[backend])
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 3306)
    yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    proxy.close()


@pytest.fixture
def store_proxy(s3_endpoint):
    parts = urlsplit(s3_endpoint.url)
    proxy = TcpProxy(parts.hostname, parts.port)
    yield proxy, f"http://127.0.0.1:{proxy.port}"
    proxy.close()


# -- the database ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["mysql"], indirect=True)
def test_database_gone_is_503_and_the_same_workers_recover(app, make_live_server, db_proxy):
    proxy, url = db_proxy
    server = make_live_server(DATABASE_URL=url, DB_CONNECT_TIMEOUT=str(DB_TIMEOUT), DB_READ_TIMEOUT=str(DB_TIMEOUT))
    token = live_token(server)
    workers = worker_pids(server.process.pid)
    for path in ("/health", "/info", "/file/list"):
        assert get(server, path, token)[0] == 200

    proxy.cut()
    for _ in range(3):  # enough requests to reach both workers and both of their pools
        for path in ("/health", "/info", "/file/list"):
            status, body, seconds = timed_get(server, path, token)
            assert status == 503, (path, body)
            assert body["error"]["code"] == "service_unavailable" and body["data"] is None
            assert seconds < DB_TIMEOUT + 1, (path, seconds)

    proxy.restore()
    assert_recovers(server, token)

    # A restart between requests: the first use of a pooled connection fails and empties the pools.
    proxy.cut()
    proxy.restore()
    assert_recovers(server, token)
    assert worker_pids(server.process.pid) == workers  # recovered in place, not by restarting workers
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("backend", ["mysql"], indirect=True)
def test_database_that_stops_answering_is_503_after_the_read_timeout(app, make_live_server, db_proxy):
    proxy, url = db_proxy
    server = make_live_server(DATABASE_URL=url, DB_CONNECT_TIMEOUT=str(DB_TIMEOUT), DB_READ_TIMEOUT=str(DB_TIMEOUT))
    token = live_token(server)
    workers = worker_pids(server.process.pid)

    proxy.blackhole()
    for path in ("/health", "/info", "/health", "/info"):  # pooled connections first, then new ones
        status, body, seconds = timed_get(server, path, token)
        assert status == 503 and body["error"]["code"] == "service_unavailable", (path, body)
        # One wait for a pooled connection, at most one more for a fresh one (its handshake read).
        assert seconds < 2 * DB_TIMEOUT + 1, (path, seconds)

    proxy.restore()
    assert_recovers(server, token)
    assert worker_pids(server.process.pid) == workers


# -- the object store --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["mysql"], indirect=True)
@pytest.mark.parametrize("storage_kind", S3_KINDS)
def test_object_store_outage_is_503_and_recovers(app, make_app, make_live_server, store_proxy):
    proxy, endpoint = store_proxy
    server = make_live_server(
        AWS_ENDPOINT_URL_S3=endpoint, STORAGE_CONNECT_TIMEOUT=str(STORE_TIMEOUT), STORAGE_READ_TIMEOUT=str(STORE_TIMEOUT),
    )
    token = live_token(server)
    workers = worker_pids(server.process.pid)
    status, kept = upload(server, token, b"kept through the outage", "kept.txt")
    assert status == 201
    status, doomed = upload(server, token, b"deleted during the outage", "doomed.txt")
    assert status == 201
    kept_id = kept["data"]["id"]

    attempts = {
        "upload": lambda: upload(server, token, os.urandom(1000)),
        "multipart upload": lambda: upload(server, token, os.urandom(9 * MIB)),
        "update": lambda: upload(server, token, b"new", method="PUT", path=f"/file/update/{kept_id}"),
        "download": lambda: (lambda r: (r[0], json.loads(r[2])))(get(server, f"/file/download/{kept_id}", token)),
        "health": lambda: (lambda r: (r[0], r[1]))(timed_get(server, "/health", token)),
    }
    # Refused connections fail at once. A silent store: three attempts (retries after up to 1 s and 2 s),
    # each waiting up to the read timeout, and for a PUT first up to 1 s for `100 Continue`.
    limit = 3 * (STORE_TIMEOUT + 1) + 3
    for fault, names in ((proxy.cut, list(attempts)), (proxy.blackhole, ["upload", "download", "health"])):
        fault()
        for attempt in (attempts[name] for name in names):
            started = time.monotonic()
            status, body = attempt()
            assert status == 503 and body["error"]["code"] == "service_unavailable", body
            assert time.monotonic() - started < limit
        # What needs only the database keeps working.
        assert get(server, "/info", token)[0] == 200
        listed = json.loads(get(server, "/file/list", token)[2])["data"]
        assert kept_id in [item["id"] for item in listed["items"]]
        proxy.restore()

    # Deleting only needs the row gone; its bytes wait for storage-check when the store is away.
    proxy.cut()
    status, _, _ = send(server, "DELETE", f"/file/delete/{doomed['data']['id']}", token, [], "text/plain")
    assert status == 200
    result = make_app(AWS_ENDPOINT_URL_S3=endpoint).test_cli_runner().invoke(args=["storage-check"])
    assert result.exit_code == 1 and "the file storage is unreachable" in result.output, result.output
    proxy.restore()

    statuses = first_success(lambda: get(server, f"/file/download/{kept_id}", token)[0])
    assert statuses[-1] == 200 and len(statuses) <= 3, statuses
    status, _, data = get(server, f"/file/download/{kept_id}", token)
    assert data == b"kept through the outage"  # the failed update left it intact
    status, fresh = upload(server, token, b"after the outage")
    assert status == 201
    assert worker_pids(server.process.pid) == workers

    runner = app.test_cli_runner()
    result = runner.invoke(args=["storage-check", "--repair", "--min-age", "0"])
    assert result.exit_code == 0, result.output
    assert "removed: blob" in result.output  # the deleted file's bytes
    assert len([blob for blob in stored_files(app)]) == 2  # kept.txt and the upload after the outage


@pytest.mark.parametrize("backend", ["mysql"], indirect=True)
@pytest.mark.parametrize("storage_kind", S3_KINDS)
def test_a_range_is_a_ranged_get_from_the_object_store(app, make_live_server, store_proxy):
    proxy, endpoint = store_proxy
    server = make_live_server(AWS_ENDPOINT_URL_S3=endpoint)
    token = live_token(server)
    content = os.urandom(20 * MIB)  # three parts of 8 MiB
    status, created = upload(server, token, content, "big.bin")
    assert status == 201
    url = f"/file/download/{created['data']['id']}"

    before = proxy.bytes_from_target
    status, headers, data = get(server, url, token, {"Range": "bytes=10000000-10000000"})
    assert status == 206 and data == content[10_000_000:10_000_001]
    assert proxy.bytes_from_target - before < 64 * 1024  # not the 20 MiB object

    before = proxy.bytes_from_target
    status, headers, data = get(server, url, token, {"Range": f"bytes={8 * MIB - 10}-{8 * MIB + 9}"})
    assert status == 206 and data == content[8 * MIB - 10:8 * MIB + 10]  # across a part boundary
    assert headers["Content-Range"] == f"bytes {8 * MIB - 10}-{8 * MIB + 9}/{len(content)}"
    assert proxy.bytes_from_target - before < 64 * 1024

    status, _, data = get(server, url, token)
    assert status == 200 and sha(data) == sha(content)


# -- crashes -----------------------------------------------------------------------------------


def start_slow_upload(server, token: str, total: int, first: int) -> socket.socket:
    """An upload that declares `total` bytes of file and sends only the first `first` of them."""
    head, tail, content_type = multipart(b"", "interrupted.bin")
    body_length = len(head) + total + len(tail)
    sock = socket.create_connection((urlsplit(server.url).hostname, urlsplit(server.url).port), timeout=30)
    sock.sendall(
        f"POST /file/upload HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {body_length}\r\n\r\n".encode() + head
    )
    for _ in range(first // MIB):
        sock.sendall(os.urandom(MIB))
    return sock


def file_rows(app) -> int:
    with app.extensions["engine"].connect() as connection:
        return connection.execute(sa.text("SELECT count(*) FROM files")).scalar_one()


@pytest.mark.parametrize(("backend", "storage_kind"), BACKEND_STORAGE, indirect=["backend"])
def test_a_worker_killed_mid_upload_leaves_no_row_and_repair_leaves_no_bytes(app, make_live_server):
    server = make_live_server()
    token = live_token(server)
    storage = app.extensions["storage"]
    # Past one 8 MiB part, so on S3 a multipart upload is under way.
    sock = start_slow_upload(server, token, total=64 * MIB, first=12 * MIB)
    wait_for(lambda: list(storage.unfinished()), what="the upload to reach storage")
    workers = worker_pids(server.process.pid)
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    sock.close()
    wait_for(lambda: len(worker_pids(server.process.pid) - workers) == 2, what="gunicorn to replace its workers")

    assert file_rows(app) == 0
    assert json.loads(get(server, "/file/list", token)[2])["data"]["total"] == 0
    assert stored_files(app) != []  # the killed write is left behind…
    runner = app.test_cli_runner()
    result = runner.invoke(args=["storage-check", "--min-age", "0"])
    assert result.exit_code == 1 and "orphan: unfinished upload" in result.output, result.output
    result = runner.invoke(args=["storage-check", "--repair", "--min-age", "0"])
    assert result.exit_code == 0, result.output
    assert stored_files(app) == []  # …until storage-check --repair removes it
    assert runner.invoke(args=["storage-check"]).exit_code == 0


@pytest.mark.parametrize(("backend", "storage_kind"), BACKEND_STORAGE, indirect=["backend"])
def test_a_client_gone_mid_upload_leaves_no_row_and_no_bytes(app, make_live_server):
    server = make_live_server()
    token = live_token(server)
    storage = app.extensions["storage"]
    sock = start_slow_upload(server, token, total=64 * MIB, first=12 * MIB)
    wait_for(lambda: list(storage.unfinished()), what="the upload to reach storage")
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()

    wait_for(lambda: stored_files(app) == [], what="the interrupted upload to be cleaned up")
    assert file_rows(app) == 0
    assert app.test_cli_runner().invoke(args=["storage-check", "--min-age", "0"]).exit_code == 0
    assert get(server, "/info", token)[0] == 200


# -- a COMMIT whose answer is lost ------------------------------------------------------------------


def storage_check(app) -> str:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["storage-check", "--min-age", "0"])
    return result.output


def assert_file_whole(server, token: str, file_id: int, content: bytes) -> None:
    status, _, body = get(server, f"/file/download/{file_id}", token)
    assert status == 200 and sha(body) == sha(content)


def listed(server, token: str) -> list[dict]:
    status, _, body = get(server, "/file/list?list_size=100", token)
    assert status == 200
    return json.loads(body)["data"]["items"]


@pytest.mark.parametrize("backend", ["mysql"], indirect=True)
def test_an_upload_whose_commit_answer_is_lost_keeps_its_bytes(app, make_live_server, db_proxy):
    proxy, url = db_proxy
    server = make_live_server(DATABASE_URL=url)
    token = live_token(server)
    content = os.urandom(300_000)
    proxy.lose_commit_answer(after=b"INSERT INTO files")
    status, body = upload(server, token, content)
    assert proxy.commits_lost == 1
    # The commit took effect, and the service asked again: the upload succeeded, its bytes are there.
    assert status == 201, body
    [item] = listed(server, token)
    assert item["id"] == body["data"]["id"]
    assert_file_whole(server, token, item["id"], content)
    assert "0 rows missing bytes" in storage_check(app)


@pytest.mark.parametrize("backend", ["mysql"], indirect=True)
def test_a_replace_whose_commit_answer_is_lost_keeps_the_new_content(app, make_live_server, db_proxy):
    proxy, url = db_proxy
    server = make_live_server(DATABASE_URL=url)
    token = live_token(server)
    status, body = upload(server, token, b"old content")
    file_id = body["data"]["id"]
    new = os.urandom(200_000)
    proxy.lose_commit_answer(after=b"UPDATE files SET")
    status, body = upload(server, token, new, method="PUT", path=f"/file/update/{file_id}")
    assert proxy.commits_lost == 1
    assert status == 200, body
    assert_file_whole(server, token, file_id, new)
    report = storage_check(app)
    assert "0 rows missing bytes" in report
    runner = app.test_cli_runner()
    runner.invoke(args=["storage-check", "--repair", "--min-age", "0"])  # removes the old bytes, not the new
    assert_file_whole(server, token, file_id, new)


@pytest.mark.parametrize("backend", ["mysql"], indirect=True)
def test_a_resumable_upload_whose_completing_commit_answer_is_lost_becomes_its_file(app, make_live_server, db_proxy):
    proxy, url = db_proxy
    server = make_live_server(DATABASE_URL=url)
    token = live_token(server)
    content = os.urandom(100_000)
    created = send(server, "POST", "/file/uploads", token, [], "application/offset+octet-stream", headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": str(len(content)), "Upload-Metadata": "filename dC5iaW4=",
    })
    location = urlsplit(dict(created[1])["Location"]).path
    proxy.lose_commit_answer(after=b"INSERT INTO files")
    status, _, _ = send(server, "PATCH", location, token, [content], "application/offset+octet-stream", headers={
        "Tus-Resumable": "1.0.0", "Upload-Offset": "0",
    })
    assert proxy.commits_lost == 1
    assert status == 204
    [item] = listed(server, token)
    assert_file_whole(server, token, item["id"], content)
    assert "0 rows missing bytes" in storage_check(app)


# -- a full disk ------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs: a real file system that fills up (ENOSPC), as a full volume does."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {made.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_507_stores_nothing_and_keeps_the_old_content(app, make_live_server, small_disk):
    server = make_live_server(UPLOAD_DIR=str(small_disk / "uploads"))
    token = live_token(server)
    small = os.urandom(500_000)
    status, body = upload(server, token, small)
    assert status == 201
    file_id = body["data"]["id"]
    big = os.urandom(5 * MIB)
    for method, path in (("POST", "/file/upload"), ("PUT", f"/file/update/{file_id}")):
        status, body = upload(server, token, big, method=method, path=path)
        assert status == 507, body
        assert body["error"]["code"] == "insufficient_storage" and body["data"] is None
    location = send(server, "POST", "/file/uploads", token, [], "application/offset+octet-stream", headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": str(len(big)), "Upload-Metadata": "filename Yi5iaW4=",
    })[1]["Location"]
    status, _, body = send(server, "PATCH", urlsplit(location).path, token, [big], "application/offset+octet-stream",
                           headers={"Tus-Resumable": "1.0.0", "Upload-Offset": "0"})
    assert status == 507, body
    # Nothing half-written is left, the old content is intact, reads and deletes are served.
    assert [item["id"] for item in listed(server, token)] == [file_id]
    assert_file_whole(server, token, file_id, small)
    leftovers = [p for p in (small_disk / "uploads" / ".tmp").iterdir()]
    assert leftovers == []
    status, _, _ = send(server, "DELETE", f"/file/delete/{file_id}", token, [], "application/json")
    assert status == 200
    status, body = upload(server, token, small)  # room again
    assert status == 201


def test_storage_check_reports_a_crashed_writes_leftover_at_once_and_never_a_live_one(app, make_live_server):
    """Without --min-age: a write whose worker was killed is reported (exit 1) and removed by --repair, while
    a write still under way is left alone however long it takes."""
    server = make_live_server()
    token = live_token(server)
    storage = app.extensions["storage"]
    alive = start_slow_upload(server, token, total=64 * MIB, first=4 * MIB)
    wait_for(lambda: list(storage.unfinished()), what="the upload to reach storage")
    runner = app.test_cli_runner()
    time.sleep(2.5)
    result = runner.invoke(args=["storage-check"])
    assert result.exit_code == 0 and "unfinished upload" not in result.output, result.output  # a live writer
    workers = worker_pids(server.process.pid)
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    alive.close()
    wait_for(lambda: len(worker_pids(server.process.pid) - workers) == 2, what="gunicorn to replace its workers")
    time.sleep(2.5)
    result = runner.invoke(args=["storage-check"])
    assert result.exit_code == 1 and "orphan: unfinished upload" in result.output, result.output
    result = runner.invoke(args=["storage-check", "--repair"])
    assert result.exit_code == 0 and "removed: unfinished upload" in result.output, result.output
    assert stored_files(app) == []
