"""Storage quotas: what uploads, updates and deletes count, refusals that store nothing (early when the body's
size is announced), parallel uploads, GET /user/usage, `flask set-quota`, and storage-check's recount."""
import http.client
import json
import os
import socket
import threading
import time

import pytest
import sqlalchemy as sa

from tests.conftest import BACKEND_STORAGE, S3_ONCE, stored_files
from tests.support.api import bearer, sign_up
from tests.support.api import error_code, update, upload, uploaded
from tests.support.live import get, live_token, multipart, send, send_refused

KIB, MIB = 1 << 10, 1 << 20
EVERY_STORAGE = pytest.mark.parametrize(("backend", "storage_kind"), BACKEND_STORAGE, indirect=["backend"])


def usage(client, headers) -> dict:
    response = client.get("/user/usage", headers=headers)
    assert response.status_code == 200, response.json
    return response.json["data"]


def signed_in_to(app, login: str = "ann@example.com") -> tuple:
    client = app.test_client()
    return client, bearer(sign_up(client, login)["access_token"])


def assert_over_quota(response, quota: int, used: int) -> None:
    assert response.status_code == 413, response.json
    assert response.json["data"] is None
    assert response.json["error"]["code"] == "quota_exceeded"
    details = response.json["error"]["details"]
    assert {key: details[key] for key in ("quota", "bytes")} == {"quota": quota, "bytes": used}


def blob_contents(app) -> list[bytes]:
    return sorted(blob.read_bytes() for blob in stored_files(app))


def run_cli(app, *args: str):
    return app.test_cli_runner().invoke(args=list(args))


# -- what counts -------------------------------------------------------------------------------


@EVERY_STORAGE
def test_a_file_exactly_at_the_quota_passes_and_one_byte_more_is_413_storing_nothing(make_app):
    app = make_app(QUOTA_BYTES=1000)
    client, headers = signed_in_to(app)
    assert usage(client, headers) == {"files": 0, "bytes": 0, "quota": 1000}
    first = uploaded(client, headers, b"a" * 600, "a.bin")
    second = uploaded(client, headers, b"b" * 400, "b.bin")  # 1000 of 1000
    assert usage(client, headers) == {"files": 2, "bytes": 1000, "quota": 1000}

    assert_over_quota(upload(client, headers, b"c", "c.bin"), 1000, 1000)
    assert usage(client, headers) == {"files": 2, "bytes": 1000, "quota": 1000}
    assert blob_contents(app) == [b"a" * 600, b"b" * 400]
    listed = client.get("/file/list", headers=headers).json["data"]
    assert {item["id"] for item in listed["items"]} == {first["id"], second["id"]}
    # An empty file adds nothing, so it passes even at the quota.
    assert upload(client, headers, b"", "empty.txt").status_code == 201


@EVERY_STORAGE
def test_a_single_file_over_the_quota_is_413_while_it_streams(make_app):
    app = make_app(QUOTA_BYTES=100 * KIB)
    client, headers = signed_in_to(app)
    exact = uploaded(client, headers, os.urandom(100 * KIB), "exact.bin")
    assert client.delete(f"/file/delete/{exact['id']}", headers=headers).status_code == 200
    assert_over_quota(upload(client, headers, os.urandom(100 * KIB + 1), "over.bin"), 100 * KIB, 0)
    assert stored_files(app) == []
    assert usage(client, headers) == {"files": 0, "bytes": 0, "quota": 100 * KIB}


@pytest.mark.parametrize(("backend", "storage_kind"), S3_ONCE, indirect=["backend"])
def test_a_refusal_after_some_parts_reached_the_bucket_leaves_no_unfinished_upload(make_app):
    app = make_app(QUOTA_BYTES=7 * MIB, S3_PART_SIZE=5 * MIB)
    client, headers = signed_in_to(app)
    assert_over_quota(upload(client, headers, os.urandom(12 * MIB), "big.bin"), 7 * MIB, 0)
    assert stored_files(app) == []  # no object, no unfinished multipart upload


@EVERY_STORAGE
def test_an_update_counts_only_its_growth(make_app):
    app = make_app(QUOTA_BYTES=1000)
    client, headers = signed_in_to(app)
    a = uploaded(client, headers, b"a" * 600, "a.bin")
    b = uploaded(client, headers, b"b" * 300, "b.bin")
    # 900 used: 100 more fit, whatever the new content's own size.
    assert update(client, headers, a["id"], b"A" * 700, "a.bin").status_code == 200
    assert usage(client, headers)["bytes"] == 1000
    refused = update(client, headers, a["id"], b"X" * 701, "x.bin")
    assert_over_quota(refused, 1000, 1000)
    assert client.get(f"/file/{a['id']}", headers=headers).json["data"]["name"] == "a.bin"
    assert client.get(f"/file/download/{a['id']}", headers=headers).data == b"A" * 700
    assert blob_contents(app) == [b"A" * 700, b"b" * 300]
    # Shrinking always passes, and gives the difference back.
    assert update(client, headers, b["id"], b"", "b.bin").status_code == 200
    assert usage(client, headers) == {"files": 2, "bytes": 700, "quota": 1000}
    assert update(client, headers, b["id"], b"B" * 300, "b.bin").status_code == 200
    assert usage(client, headers)["bytes"] == 1000


def test_a_user_over_a_lowered_quota_may_shrink_and_keep_sizes_but_not_grow(make_app):
    app = make_app(QUOTA_BYTES=1000)
    client, headers = signed_in_to(app)
    a = uploaded(client, headers, b"a" * 800, "a.bin")
    assert run_cli(app, "set-quota", "--id", "ann@example.com", "--bytes", "500").exit_code == 0
    assert usage(client, headers) == {"files": 1, "bytes": 800, "quota": 500}
    assert_over_quota(upload(client, headers, b"x", "x.bin"), 500, 800)
    assert_over_quota(update(client, headers, a["id"], b"a" * 801), 500, 800)
    assert update(client, headers, a["id"], b"s" * 800).status_code == 200  # the same size: no growth
    assert update(client, headers, a["id"], b"s" * 700).status_code == 200
    assert usage(client, headers)["bytes"] == 700


@EVERY_STORAGE
def test_delete_gives_the_bytes_back(make_app):
    app = make_app(QUOTA_BYTES=1000)
    client, headers = signed_in_to(app)
    kept = uploaded(client, headers, b"k" * 400, "kept.bin")
    gone = uploaded(client, headers, b"g" * 600, "gone.bin")
    assert_over_quota(upload(client, headers, b"n" * 500, "new.bin"), 1000, 1000)
    assert client.delete(f"/file/delete/{gone['id']}", headers=headers).status_code == 200
    assert usage(client, headers) == {"files": 1, "bytes": 400, "quota": 1000}
    assert upload(client, headers, b"n" * 500, "new.bin").status_code == 201
    assert usage(client, headers) == {"files": 2, "bytes": 900, "quota": 1000}
    assert client.get(f"/file/download/{kept['id']}", headers=headers).data == b"k" * 400


def test_quotas_are_per_user(make_app):
    app = make_app(QUOTA_BYTES=1000)
    ann_client, ann = signed_in_to(app)
    bob_client, bob = signed_in_to(app, "bob@example.com")
    assert upload(ann_client, ann, b"a" * 1000).status_code == 201
    assert upload(bob_client, bob, b"b" * 1000).status_code == 201
    assert usage(ann_client, ann)["bytes"] == usage(bob_client, bob)["bytes"] == 1000


def test_file_too_large_wins_over_the_quota(make_app):
    app = make_app(QUOTA_BYTES=MIB, MAX_UPLOAD_BYTES=2 * MIB)
    client, headers = signed_in_to(app)
    # Announced far over the file limit (refused before reading), just over it (the body is read in 1 MiB
    # steps, so the stream passes the quota first and the file limit after).
    for size in (3 * MIB, 2 * MIB + 10):
        over_both = upload(client, headers, b"x" * size)
        assert over_both.status_code == 413 and error_code(over_both) == "file_too_large", size
    assert_over_quota(upload(client, headers, b"x" * (MIB + MIB // 2)), MIB, 0)
    existing = uploaded(client, headers, b"e" * 100)
    over_both = update(client, headers, existing["id"], b"x" * (2 * MIB + 10))
    assert over_both.status_code == 413 and error_code(over_both) == "file_too_large"
    assert blob_contents(app) == [b"e" * 100]


def test_quota_bytes_zero_is_unlimited(make_app):
    app = make_app(QUOTA_BYTES=0, MAX_UPLOAD_BYTES=10 * MIB)
    client, headers = signed_in_to(app)
    assert usage(client, headers) == {"files": 0, "bytes": 0, "quota": None}
    assert upload(client, headers, os.urandom(3 * MIB)).status_code == 201
    assert usage(client, headers) == {"files": 1, "bytes": 3 * MIB, "quota": None}


def test_unfinished_resumable_uploads_hold_their_length_and_a_finished_one_is_counted_like_any_file(make_app):
    app = make_app(QUOTA_BYTES=1000)
    client, headers = signed_in_to(app)
    tus = {**headers, "Tus-Resumable": "1.0.0"}
    started = client.post("/file/uploads", headers={**tus, "Upload-Length": "600"})
    assert started.status_code == 201
    assert_over_quota(upload(client, headers, b"x" * 401), 1000, 0)  # 600 held, none stored yet
    assert upload(client, headers, b"x" * 400).status_code == 201
    path = started.headers["Location"].removeprefix("http://localhost")
    finished = client.patch(path, data=b"t" * 600, headers={
        **tus, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"})
    assert finished.status_code == 204
    assert usage(client, headers) == {"files": 2, "bytes": 1000, "quota": 1000}
    assert run_cli(app, "storage-check").exit_code == 0
    assert client.delete(f"/file/delete/{finished.headers['X-File-Id']}", headers=headers).status_code == 200
    assert usage(client, headers) == {"files": 1, "bytes": 400, "quota": 1000}


# -- GET /user/usage ---------------------------------------------------------------------------


def test_usage_needs_a_token_and_shows_only_the_callers_files(make_app):
    app = make_app(QUOTA_BYTES=5000)
    client, ann = signed_in_to(app)
    _, bob = signed_in_to(app, "bob@example.com")
    response = client.get("/user/usage")
    assert response.status_code == 401 and error_code(response) == "missing_token"
    uploaded(client, ann, b"1234", "a.txt")
    uploaded(client, ann, b"567", "b.txt")
    response = client.get("/user/usage", headers=ann)
    assert response.json == {"data": {"files": 2, "bytes": 7, "quota": 5000}, "error": None}
    assert usage(client, bob) == {"files": 0, "bytes": 0, "quota": 5000}


# -- refused before the body is read, through a real server ------------------------------------


def headers_only(server, method: str, path: str, token: str, content_length: int) -> tuple[int, dict]:
    """Send only a request's head announcing `content_length` bytes of multipart body, none of which follow."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: multipart/form-data; boundary=quota-test\r\nContent-Length: {content_length}\r\n\r\n"
            .encode())
        response = http.client.HTTPResponse(connection)
        response.begin()  # times out (the test fails) if the server waits for the body instead of answering
        return response.status, json.loads(response.read())


@EVERY_STORAGE
def test_an_announced_body_over_the_quota_is_refused_before_any_of_it_is_sent(app, make_live_server):
    server = make_live_server(QUOTA_BYTES=str(MIB), MAX_UPLOAD_BYTES=str(64 * MIB))
    token = live_token(server)
    head, tail, content_type = multipart(b"o" * (200 * KIB), "old.bin")
    status, _, body = send(server, "POST", "/file/upload", token, [head, tail], content_type)
    old = json.loads(body)["data"]

    for method, path in (("POST", "/file/upload"), ("PUT", f"/file/update/{old['id']}")):
        status, body = headers_only(server, method, path, token, 10 * MIB)
        assert status == 413, body
        assert body["error"] == {"code": "quota_exceeded", "message": body["error"]["message"],
                                 "details": {"quota": MIB, "bytes": 200 * KIB}}
    # Over the file limit as well: file_too_large comes first.
    status, body = headers_only(server, "POST", "/file/upload", token, 100 * MIB)
    assert status == 413 and body["error"]["code"] == "file_too_large"
    # An update's early check counts its growth: content larger than the room left, but it replaces 200 KiB.
    content = os.urandom(MIB - 1)
    head, tail, content_type = multipart(content, "new.bin")
    status, _, body = send(server, "PUT", f"/file/update/{old['id']}", token, [head, tail], content_type)
    assert status == 200 and json.loads(body)["data"]["size"] == MIB - 1
    assert [blob.read_bytes() == content for blob in stored_files(app)] == [True]


@EVERY_STORAGE
def test_a_chunked_upload_past_the_quota_is_413_and_stores_nothing(app, make_live_server):
    server = make_live_server(QUOTA_BYTES=str(MIB))
    token = live_token(server)
    head, tail, content_type = multipart(os.urandom(MIB + 1), "chunked.bin")
    pieces = [head[i:i + 64 * KIB] for i in range(0, len(head), 64 * KIB)] + [tail]
    status, _, body = send_refused(server, "POST", "/file/upload", token, pieces, content_type, chunked=True)
    assert status == 413 and json.loads(body)["error"] == {
        "code": "quota_exceeded", "message": json.loads(body)["error"]["message"],
        "details": {"quota": MIB, "bytes": 0}}
    assert stored_files(app) == []
    assert json.loads(get(server, "/user/usage", token)[2])["data"] == {"files": 0, "bytes": 0, "quota": MIB}
    head, tail, content_type = multipart(os.urandom(MIB), "fits.bin")
    pieces = [head[i:i + 64 * KIB] for i in range(0, len(head), 64 * KIB)] + [tail]
    status, _, body = send(server, "POST", "/file/upload", token, pieces, content_type, chunked=True)
    assert status == 201, body


@EVERY_STORAGE
def test_parallel_uploads_never_pass_the_quota_together(app, make_live_server):
    server = make_live_server(QUOTA_BYTES=str(MIB))
    token = live_token(server)
    size, count = 300 * KIB, 6  # three fit in 1 MiB, four do not
    all_started = threading.Barrier(count)
    results: list[tuple[int, dict]] = []

    def upload_one(n: int) -> None:
        head, tail, content_type = multipart(bytes([n]) * size, f"{n}.bin")
        # Every request has been admitted (the room read, nothing stored yet) before any sends its file.
        status, _, body = send(server, "POST", "/file/upload", token, [head[:500], head[500:], tail], content_type,
                               between=lambda: (time.sleep(0.2), all_started.wait(timeout=20)))
        results.append((status, json.loads(body)))

    threads = [threading.Thread(target=upload_one, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] * 3 + [413] * 3, results
    assert all(body["error"]["code"] == "quota_exceeded" for status, body in results if status == 413)
    stored = stored_files(app)
    assert len(stored) == 3 and sum(len(blob.read_bytes()) for blob in stored) == 3 * size
    assert json.loads(get(server, "/user/usage", token)[2])["data"] == {"files": 3, "bytes": 3 * size, "quota": MIB}
    assert run_cli(app, "storage-check").exit_code == 0


# -- flask set-quota ---------------------------------------------------------------------------


def test_set_quota_bytes_unlimited_and_default(make_app):
    app = make_app(QUOTA_BYTES=1000)
    client, headers = signed_in_to(app)
    uploaded(client, headers, b"x" * 10)

    result = run_cli(app, "set-quota", "--id", "ANN@example.com", "--bytes", "2000")
    assert result.exit_code == 0, result.output
    assert result.output == "ann@example.com: quota 2000 bytes; 10 bytes in 1 file\n"
    assert usage(client, headers)["quota"] == 2000
    assert upload(client, headers, b"y" * 1500).status_code == 201

    result = run_cli(app, "set-quota", "--id", "ann@example.com", "--bytes", "2KiB")
    assert result.exit_code == 0 and usage(client, headers)["quota"] == 2048

    result = run_cli(app, "set-quota", "--id", "ann@example.com", "--unlimited")
    assert result.exit_code == 0 and "quota unlimited" in result.output
    assert usage(client, headers)["quota"] is None
    assert upload(client, headers, b"z" * 5000).status_code == 201

    result = run_cli(app, "set-quota", "--id", "ann@example.com", "--default")
    assert result.exit_code == 0 and "quota 1000 bytes (QUOTA_BYTES)" in result.output
    assert usage(client, headers) == {"files": 3, "bytes": 6510, "quota": 1000}
    assert_over_quota(upload(client, headers, b"w"), 1000, 6510)


def test_set_quota_refuses_unknown_logins_and_bad_sizes_without_a_traceback(make_app):
    app = make_app(QUOTA_BYTES=1000)
    client, headers = signed_in_to(app)
    cases = [
        (["--id", "nobody@example.com", "--bytes", "10"], "no user has the login nobody@example.com"),
        (["--id", "not a login", "--bytes", "10"], "--id"),
        (["--id", "ann@example.com", "--bytes", "lots"], "is not a number of bytes"),
        (["--id", "ann@example.com", "--bytes", "-5"], "is not a number of bytes"),
        (["--id", "ann@example.com", "--bytes", "1.5GB"], "is not a number of bytes"),
        (["--id", "ann@example.com", "--bytes", "10XB"], "is not a number of bytes"),
        (["--id", "ann@example.com", "--bytes", "0"], "--unlimited lifts the quota"),
        (["--id", "ann@example.com", "--bytes", str(2**63)], "must be at most"),
        (["--id", "ann@example.com"], "exactly one of"),
        (["--id", "ann@example.com", "--bytes", "10", "--unlimited"], "exactly one of"),
        (["--id", "ann@example.com", "--unlimited", "--default"], "exactly one of"),
    ]
    for args, message in cases:
        result = run_cli(app, "set-quota", *args)
        assert result.exit_code != 0, args
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    assert usage(client, headers)["quota"] == 1000


# -- storage-check and its recount -------------------------------------------------------------


def set_counters(app, login: str, **values: int) -> None:
    assignments = ", ".join(f"{name} = {value}" for name, value in values.items())
    with app.extensions["engine"].begin() as connection:
        connection.execute(sa.text(f"UPDATE users SET {assignments} WHERE login = :login"), {"login": login})


@EVERY_STORAGE
def test_storage_check_reports_miscounted_users_and_repair_recounts_them(make_app):
    app = make_app(QUOTA_BYTES=1000)
    client, ann = signed_in_to(app)
    bob_client, bob = signed_in_to(app, "bob@example.com")
    _, carol = signed_in_to(app, "carol@example.com")
    uploaded(client, ann, b"a" * 300, "a.bin")
    uploaded(client, ann, b"b" * 200, "b.bin")
    uploaded(bob_client, bob, b"c" * 50, "c.bin")
    set_counters(app, "ann@example.com", bytes_used=990)  # the count is right, the bytes are not
    set_counters(app, "carol@example.com", file_count=2, bytes_used=70)  # has no files at all
    assert_over_quota(upload(client, ann, b"x" * 20), 1000, 990)

    result = run_cli(app, "storage-check")
    assert result.exit_code == 1, result.output
    assert "miscounted: user ann@example.com (id " in result.output
    assert "was counted 2 files, 990 bytes; has 2 files, 500 bytes" in result.output
    assert "miscounted: user carol@example.com" in result.output
    assert "was counted 2 files, 70 bytes; has 0 files, 0 bytes" in result.output
    assert "bob@example.com" not in result.output
    assert "2 users miscounted" in result.output
    assert usage(client, ann)["bytes"] == 990  # reporting changes nothing

    result = run_cli(app, "storage-check", "--repair")
    assert result.exit_code == 0, result.output
    assert "recounted: user ann@example.com" in result.output and "2 users miscounted recounted" in result.output
    assert usage(client, ann) == {"files": 2, "bytes": 500, "quota": 1000}
    assert usage(client, carol) == {"files": 0, "bytes": 0, "quota": 1000}
    assert usage(bob_client, bob) == {"files": 1, "bytes": 50, "quota": 1000}
    assert client.get("/file/list", headers=carol).json["data"]["total"] == 0
    result = run_cli(app, "storage-check")
    assert result.exit_code == 0 and "0 users miscounted" in result.output
    assert upload(client, ann, b"x" * 500).status_code == 201


def running(engine) -> list[str]:
    """The statements this test's database is executing now (other databases on the server may be busy)."""
    with engine.connect() as connection:
        return list(connection.scalars(sa.text(
            "SELECT info FROM information_schema.processlist WHERE db = DATABASE() AND info IS NOT NULL")))


def wait_until_running(engine, beginning: str) -> None:
    """Until a statement beginning so is executing; one that cannot finish while a lock is held, it waits for it."""
    deadline = time.monotonic() + 20
    while not any(statement.startswith(beginning) for statement in running(engine)):
        assert time.monotonic() < deadline, f"no {beginning!r} ever ran: {running(engine)}"
        time.sleep(0.05)


@pytest.mark.parametrize(("backend", "storage_kind"), [("mysql", "local")], indirect=["backend"])
def test_a_recount_during_an_upload_keeps_the_uploads_charge(app, live_server):
    """The upload has charged the user's row but not yet written its file row when the recount starts: the
    recount must wait for it, and count its file."""
    token = live_token(live_server)
    head, tail, content_type = multipart(b"first", "first.txt")
    assert send(live_server, "POST", "/file/upload", token, [head, tail], content_type)[0] == 201
    set_counters(app, "live@example.com", bytes_used=12345)  # so that storage-check recounts this user
    engine = app.extensions["engine"]
    with engine.connect() as connection:
        owner_id = connection.scalar(sa.text("SELECT id FROM users WHERE login = 'live@example.com'"))

    blocker = engine.connect()
    transaction = blocker.begin()
    # Locks the user's range of the files index, so the upload's INSERT waits after its counter UPDATE.
    blocker.execute(sa.text("SELECT id FROM files WHERE owner_id = :owner FOR UPDATE"), {"owner": owner_id})
    outcome: dict = {}

    def second_upload() -> None:
        head, tail, content_type = multipart(b"second file", "second.txt")
        outcome["upload"] = send(live_server, "POST", "/file/upload", token, [head, tail], content_type)[0]

    def repair() -> None:
        outcome["check"] = run_cli(app, "storage-check", "--repair")

    uploader, checker = threading.Thread(target=second_upload), threading.Thread(target=repair)
    try:
        uploader.start()
        wait_until_running(engine, "INSERT INTO files")  # the upload holds the user's row, waits to insert its file
        checker.start()
        wait_until_running(engine, "SELECT users.id")  # the recount waits for the user's row
    finally:
        transaction.rollback()
        blocker.close()
    uploader.join(timeout=30)
    checker.join(timeout=30)
    assert outcome["upload"] == 201
    assert "recounted: user live@example.com" in outcome["check"].output, outcome["check"].output
    assert json.loads(get(live_server, "/user/usage", token)[2])["data"]["bytes"] == len(b"first") + len(
        b"second file")
    assert run_cli(app, "storage-check").exit_code == 0
