"""Resumable uploads (tus 1.0.0, SPEC §8) through HTTP: SQLite and MySQL on local disk, MySQL on S3;
tuspy, a dropped connection and two instances against real gunicorns."""
import hashlib
import io
import json
import os
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from tests.conftest import BACKEND_STORAGE, stored_files
from tests.support.api import bearer, sign_up
from tests.support.api import CHUNK, PNG, TUS, b64, create, created, offset_of, patch, sha
from tests.support.live import call, live_download, live_user

pytestmark = pytest.mark.parametrize(("backend", "storage_kind"), BACKEND_STORAGE, indirect=["backend"])

EMPTY_SHA = hashlib.sha256(b"").hexdigest()


@pytest.fixture
def tus(signed_in) -> dict[str, str]:
    return {**signed_in, **TUS}


def user_row(app, login: str = "ann@example.com"):
    with app.extensions["engine"].connect() as connection:
        return connection.execute(sa.text(
            "SELECT file_count, bytes_used, bytes_reserved FROM users WHERE login = :login"), {"login": login}).one()


def upload_rows(app) -> int:
    with app.extensions["engine"].connect() as connection:
        return connection.execute(sa.text("SELECT count(*) FROM uploads")).scalar_one()


def download(client, headers, file_id) -> bytes:
    response = client.get(f"/file/download/{file_id}", headers=headers)
    assert response.status_code == 200
    return response.data


def partial_bytes(app) -> int:
    return sum(partial.size for partial in app.extensions["storage"].partials())


# -- discovery and the version -------------------------------------------------------------------------------


def test_options_lists_what_is_supported_without_auth(client, app):
    for extra in ({}, {"Origin": "http://web.example", "Access-Control-Request-Method": "POST"}):
        response = client.options("/file/uploads", headers=extra)
        assert response.status_code == 204
        assert response.headers["Tus-Resumable"] == "1.0.0"
        assert response.headers["Tus-Version"] == "1.0.0"
        assert response.headers["Tus-Extension"] == "creation,creation-with-upload,termination,expiration,checksum"
        assert response.headers["Tus-Max-Size"] == str(app.config["MAX_UPLOAD_BYTES"])
        assert response.headers["Tus-Checksum-Algorithm"] == "sha1,sha256"
        assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_a_request_without_the_tus_version_is_412_in_the_envelope(client, signed_in, tus):
    path = created(client, tus, 10)
    for method, target in (("POST", "/file/uploads"), ("HEAD", path), ("GET", path), ("PATCH", path), ("DELETE", path)):
        for version in ({}, {"Tus-Resumable": "0.2.2"}):
            response = client.open(target, method=method, headers={**signed_in, **version, "Upload-Length": "5"})
            assert response.status_code == 412, (method, version)
            assert response.headers["Tus-Resumable"] == "1.0.0"
            assert response.headers["Tus-Version"] == "1.0.0"
            if method != "HEAD":
                assert response.json["error"]["code"] == "precondition_failed"
    assert offset_of(client, tus, path) == 0  # nothing happened to it


def test_every_tus_answer_carries_the_version_errors_too(client, tus):
    for response in (client.head("/file/uploads/" + "0" * 32, headers=tus), client.post("/file/uploads", headers=tus),
                     client.put("/file/uploads", headers=tus)):
        assert response.status_code in (400, 404, 405)
        assert response.headers["Tus-Resumable"] == "1.0.0"


# -- the whole way, chunk by chunk ---------------------------------------------------------------------------


def test_create_patch_head_and_complete_make_a_file_like_any_other(app, client, tus, signed_in):
    content = PNG + os.urandom(300_000)
    response = create(client, tus, len(content), "dir/../holiday")
    assert response.status_code == 201
    location = response.headers["Location"]
    assert location.startswith("http://localhost/file/uploads/")
    upload_id = location.rsplit("/", 1)[1]
    assert len(upload_id) == 32 and "Upload-Offset" not in response.headers
    assert response.headers["Upload-Expires"].endswith(" GMT")
    path = urlsplit(location).path
    assert user_row(app).bytes_reserved == len(content)

    head = client.head(path, headers=tus)
    assert (head.status_code, head.headers["Upload-Offset"], head.headers["Upload-Length"]) == (200, "0", str(len(content)))
    assert head.headers["Cache-Control"] == "no-store" and head.headers["Upload-Expires"]

    first = patch(client, tus, path, 0, content[:100_000])
    assert first.status_code == 204 and first.headers["Upload-Offset"] == "100000"
    assert first.headers["Upload-Expires"] and "X-File-Id" not in first.headers
    assert offset_of(client, tus, path) == 100_000
    state = client.get(path, headers=tus).json["data"]
    assert state["id"] == upload_id and (state["offset"], state["length"], state["file"]) == (100_000, len(content), None)
    assert client.get("/file/list", headers=signed_in).json["data"]["total"] == 0

    last = patch(client, tus, path, 100_000, content[100_000:])
    assert last.status_code == 204 and last.headers["Upload-Offset"] == str(len(content))
    file_id = int(last.headers["X-File-Id"])
    meta = client.get(f"/file/{file_id}", headers=signed_in).json["data"]
    assert (meta["name"], meta["extension"], meta["mime_type"]) == ("holiday", "", "image/png")
    assert (meta["size"], meta["sha256"]) == (len(content), sha(content))
    assert download(client, signed_in, file_id) == content
    listing = client.get("/file/list", headers=signed_in).json["data"]
    assert listing["total"] == 1 and listing["items"][0]["id"] == file_id
    assert tuple(user_row(app)) == (1, len(content), 0)  # counted, the reservation settled
    state = client.get(path, headers=tus).json["data"]
    assert state["offset"] == len(content) and state["file"] == meta
    assert partial_bytes(app) == 0  # the partial upload became the file


def test_the_location_follows_trusted_proxies(make_app):
    client = make_app(TRUSTED_PROXIES=1).test_client()
    headers = {**bearer(sign_up(client)["access_token"]), **TUS}
    response = create(client, headers, 5, "a.txt", **{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "files.example"})
    assert response.headers["Location"].startswith("https://files.example/file/uploads/")


def test_a_file_name_is_optional_and_other_metadata_ignored(client, tus, signed_in):
    path = created(client, tus, 3, name=None)
    file_id = patch(client, tus, path, 0, b"abc").headers["X-File-Id"]
    assert client.get(f"/file/{file_id}", headers=signed_in).json["data"]["name"] == "file"
    response = client.post("/file/uploads", headers={**tus, "Upload-Length": "3",
                                                     "Upload-Metadata": f"filename {b64('отчёт.txt')},is_private"})
    assert response.status_code == 201


@pytest.mark.parametrize("metadata", ["filename ###", "filename " + b64(b"\xff\xfe"), "filename a b", "a,a",
                                      f"filename {b64('x')},filename {b64('y')}"])
def test_bad_metadata_is_400(client, tus, metadata):
    response = client.post("/file/uploads", headers={**tus, "Upload-Length": "3", "Upload-Metadata": metadata})
    assert response.status_code == 400 and response.json["error"]["code"] == "validation_error"
    assert response.json["error"]["details"]["fields"].keys() == {"Upload-Metadata"}


@pytest.mark.parametrize("length", [None, "", "-1", "1.5", "ten", "0x10"])
def test_upload_length_is_required_and_a_non_negative_integer(app, client, tus, length):
    headers = {**tus, **({} if length is None else {"Upload-Length": length})}
    response = client.post("/file/uploads", headers=headers)
    assert response.status_code == 400 and response.json["error"]["details"]["fields"].keys() == {"Upload-Length"}
    assert upload_rows(app) == 0


def test_an_upload_over_the_size_limit_is_413_before_anything_is_stored(make_app):
    app = make_app(MAX_UPLOAD_BYTES=1000)
    client = app.test_client()
    headers = {**bearer(sign_up(client)["access_token"]), **TUS}
    response = create(client, headers, 1001)
    assert response.status_code == 413 and response.json["error"]["code"] == "file_too_large"
    assert response.json["error"]["details"] == {"limit": 1000}
    assert create(client, headers, 1000).status_code == 201
    assert upload_rows(app) == 1 and client.options("/file/uploads").headers["Tus-Max-Size"] == "1000"


def test_zero_bytes_is_a_file_at_once(app, client, tus, signed_in):
    response = create(client, tus, 0, "empty.txt")
    assert response.status_code == 201 and response.headers["Upload-Offset"] == "0"
    file_id = response.headers["X-File-Id"]
    meta = client.get(f"/file/{file_id}", headers=signed_in).json["data"]
    assert (meta["size"], meta["sha256"], meta["name"]) == (0, EMPTY_SHA, "empty.txt")
    assert download(client, signed_in, file_id) == b""
    path = urlsplit(response.headers["Location"]).path
    head = client.head(path, headers=tus)
    assert (head.headers["Upload-Offset"], head.headers["Upload-Length"]) == ("0", "0")
    assert patch(client, tus, path, 0, b"").status_code == 409  # complete already


# -- creation-with-upload --------------------------------------------------------------------------------------


def test_a_body_on_creation_is_the_first_chunk(client, tus, signed_in):
    content = os.urandom(5000)
    response = create(client, tus, len(content), "a.bin", **CHUNK)
    response = client.post("/file/uploads", data=content[:2000],
                           headers={**tus, **CHUNK, "Upload-Length": str(len(content))})
    assert response.status_code == 201 and response.headers["Upload-Offset"] == "2000"
    path = urlsplit(response.headers["Location"]).path
    assert offset_of(client, tus, path) == 2000
    done = patch(client, tus, path, 2000, content[2000:])
    assert download(client, signed_in, done.headers["X-File-Id"]) == content


def test_a_whole_file_in_the_creation_request(client, tus, signed_in):
    response = client.post("/file/uploads", data=b"all at once",
                           headers={**tus, **CHUNK, "Upload-Length": "11", "Upload-Checksum": "sha1 " + b64(hashlib.sha1(b"all at once").digest())})
    assert response.status_code == 201 and response.headers["Upload-Offset"] == "11"
    assert download(client, signed_in, response.headers["X-File-Id"]) == b"all at once"


def test_a_refused_first_chunk_leaves_no_upload(app, client, tus):
    wrong = client.post("/file/uploads", data=b"abc", headers={**tus, **CHUNK, "Upload-Length": "3",
                                                               "Upload-Checksum": "sha256 " + b64(b"x" * 32)})
    assert wrong.status_code == 460 and wrong.json["error"]["code"] == "checksum_mismatch"
    too_long = client.post("/file/uploads", data=b"abcd", headers={**tus, **CHUNK, "Upload-Length": "3"})
    assert too_long.status_code == 400
    other_type = client.post("/file/uploads", data=b"abc", headers={**tus, "Upload-Length": "3",
                                                                    "Content-Type": "text/plain"})
    assert other_type.status_code == 415
    assert upload_rows(app) == 0 and user_row(app).bytes_reserved == 0 and partial_bytes(app) == 0


# -- refusals of a chunk -------------------------------------------------------------------------------------


def test_a_chunk_at_another_offset_is_409_and_changes_nothing(client, tus):
    path = created(client, tus, 10)
    assert patch(client, tus, path, 0, b"12345").status_code == 204
    for offset in (0, 4, 6):
        response = patch(client, tus, path, offset, b"xx")
        assert response.status_code == 409 and response.json["error"]["code"] == "conflict"
    assert patch(client, tus, path, 5, b"67890").headers["X-File-Id"]


def test_a_chunk_of_another_type_is_415(client, tus):
    path = created(client, tus, 10)
    for content_type in ("application/octet-stream", "text/plain", None):
        headers = {**tus, "Upload-Offset": "0", **({"Content-Type": content_type} if content_type else {})}
        response = client.patch(path, headers=headers, data=b"12345")
        assert response.status_code == 415 and response.json["error"]["code"] == "unsupported_media_type"
    assert offset_of(client, tus, path) == 0


@pytest.mark.parametrize("offset", [None, "", "-3", "abc"])
def test_upload_offset_is_required_and_a_non_negative_integer(client, tus, offset):
    path = created(client, tus, 10)
    headers = {**tus, **CHUNK, **({} if offset is None else {"Upload-Offset": offset})}
    response = client.patch(path, headers=headers, data=b"12345")
    assert response.status_code == 400 and response.json["error"]["details"]["fields"].keys() == {"Upload-Offset"}


def test_bytes_past_the_length_are_400_and_nothing_of_the_request_is_kept(app, client, tus, signed_in):
    path = created(client, tus, 10)
    assert patch(client, tus, path, 0, b"1234").status_code == 204
    response = patch(client, tus, path, 4, b"567890X")
    assert response.status_code == 400 and response.json["error"]["code"] == "validation_error"
    assert offset_of(client, tus, path) == 4
    done = patch(client, tus, path, 4, b"abcdef")
    assert download(client, signed_in, done.headers["X-File-Id"]) == b"1234abcdef"


def test_a_body_longer_than_announced_cannot_pass_the_length(app, client, tus, signed_in):
    """Content-Length says 6 (fits) but the stream carries more: only the announced bytes count."""
    path = created(client, tus, 10)
    environ = {"wsgi.input": io.BytesIO(b"123456789012"), "CONTENT_LENGTH": "6"}
    response = client.patch(path, headers={**tus, **CHUNK, "Upload-Offset": "0"}, environ_overrides=environ)
    assert response.status_code == 204 and response.headers["Upload-Offset"] == "6"


@pytest.mark.parametrize("algorithm, digest", [("sha1", hashlib.sha1), ("sha256", hashlib.sha256)])
def test_a_matching_checksum_is_accepted(client, tus, signed_in, algorithm, digest):
    path = created(client, tus, 6)
    response = patch(client, tus, path, 0, b"abc", **{"Upload-Checksum": f"{algorithm} {b64(digest(b'abc').digest())}"})
    assert response.status_code == 204 and response.headers["Upload-Offset"] == "3"


def test_a_checksum_mismatch_is_460_and_the_chunk_discarded(client, tus, signed_in):
    path = created(client, tus, 6)
    response = patch(client, tus, path, 0, b"abc", **{"Upload-Checksum": f"sha256 {b64(hashlib.sha256(b'abd').digest())}"})
    assert response.status_code == 460 and response.json["error"]["code"] == "checksum_mismatch"
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert offset_of(client, tus, path) == 0
    done = patch(client, tus, path, 0, b"abcdef", **{"Upload-Checksum": f"sha1 {b64(hashlib.sha1(b'abcdef').digest())}"})
    assert download(client, signed_in, done.headers["X-File-Id"]) == b"abcdef"


@pytest.mark.parametrize("checksum", ["md5 " + b64(hashlib.md5(b"abc").digest()), "sha1 not*base64", "sha1", "crc32 AAAA"])
def test_an_unsupported_or_malformed_checksum_is_400(client, tus, checksum):
    path = created(client, tus, 6)
    response = patch(client, tus, path, 0, b"abc", **{"Upload-Checksum": checksum})
    assert response.status_code == 400 and response.json["error"]["details"]["fields"].keys() == {"Upload-Checksum"}
    assert offset_of(client, tus, path) == 0


class SlowBody(io.RawIOBase):
    """A request body that sends its first bytes, then waits for `go` before the rest."""

    def __init__(self, first: bytes, rest: bytes):
        super().__init__()
        self.parts, self.go, self.started = [first, rest], threading.Event(), threading.Event()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self.parts:
            return 0
        if len(self.parts) == 1:
            self.started.set()
            self.go.wait(10)
        data = self.parts.pop(0)
        buffer[: len(data)] = data
        return len(data)


def test_two_chunks_at_once_never_interleave(app, client, tus, signed_in):
    path = created(client, tus, 8)
    body = SlowBody(b"AAAA", b"BBBB")
    answers = {}

    def slow():
        answers["slow"] = app.test_client().patch(
            path, headers={**tus, **CHUNK, "Upload-Offset": "0"},
            environ_overrides={"wsgi.input": body, "CONTENT_LENGTH": "8"})

    writer = threading.Thread(target=slow)
    writer.start()
    assert body.started.wait(10)
    other = patch(client, tus, path, 0, b"CCCCCCCC")
    assert other.status_code == 409 and other.json["error"]["code"] == "conflict"
    assert client.delete(path, headers=tus).status_code == 409  # not while a chunk is being written either
    body.go.set()
    writer.join(10)
    assert answers["slow"].status_code == 204
    assert download(client, signed_in, answers["slow"].headers["X-File-Id"]) == b"AAAABBBB"


# -- whose, termination, expiry ------------------------------------------------------------------------------


def test_another_users_upload_is_404(client, tus):
    path = created(client, tus, 10)
    bob = {**bearer(sign_up(client, "bob@example.com")["access_token"]), **TUS}
    assert client.head(path, headers=bob).status_code == 404
    assert client.get(path, headers=bob).json["error"]["code"] == "not_found"
    assert patch(client, bob, path, 0, b"12345").status_code == 404
    assert client.delete(path, headers=bob).status_code == 404
    assert client.head("/file/uploads/" + "f" * 32, headers=tus).status_code == 404
    assert offset_of(client, tus, path) == 0


def test_the_auth_is_required(client, tus):
    path = created(client, tus, 10)
    for method in ("HEAD", "GET", "PATCH", "DELETE"):
        assert client.open(path, method=method, headers=TUS).status_code == 401
    assert client.post("/file/uploads", headers={**TUS, "Upload-Length": "3"}).status_code == 401


def test_termination_removes_the_bytes_and_releases_the_reservation(app, client, tus):
    path = created(client, tus, 10)
    assert patch(client, tus, path, 0, b"12345").status_code == 204
    assert partial_bytes(app) > 0 or app.config.get("STORAGE_URL")
    assert user_row(app).bytes_reserved == 10
    response = client.delete(path, headers=tus)
    assert response.status_code == 204 and response.headers["Tus-Resumable"] == "1.0.0"
    assert client.head(path, headers=tus).status_code == 404
    assert user_row(app).bytes_reserved == 0 and upload_rows(app) == 0
    assert list(app.extensions["storage"].partials()) == [] and stored_files(app) == []


def test_terminating_a_completed_upload_keeps_its_file(client, tus, signed_in):
    path = created(client, tus, 3)
    file_id = patch(client, tus, path, 0, b"abc").headers["X-File-Id"]
    assert client.delete(path, headers=tus).status_code == 204
    assert client.head(path, headers=tus).status_code == 404
    assert download(client, signed_in, file_id) == b"abc"


def test_the_quota_is_reserved_at_creation(make_app):
    app = make_app(QUOTA_BYTES=1000)
    client = app.test_client()
    headers = {**bearer(sign_up(client)["access_token"]), **TUS}
    first = created(client, headers, 600)
    response = create(client, headers, 401)  # 600 reserved + 401 > 1000, though nothing is stored yet
    assert response.status_code == 413 and response.json["error"]["code"] == "quota_exceeded"
    assert response.json["error"]["details"] == {"quota": 1000, "bytes": 0, "reserved": 600}
    assert created(client, headers, 400)
    assert client.delete(first, headers=headers).status_code == 204
    assert create(client, headers, 600).status_code == 201
    assert upload_rows(app) == 2


def test_an_expired_upload_is_404_and_storage_check_removes_it(make_app):
    app = make_app(UPLOAD_EXPIRY=1)
    client = app.test_client()
    headers = {**bearer(sign_up(client)["access_token"]), **TUS}
    path = created(client, headers, 10)
    assert patch(client, headers, path, 0, b"12345").status_code == 204
    done = created(client, headers, 2)
    file_id = patch(client, headers, done, 0, b"ok").headers["X-File-Id"]
    time.sleep(1.2)
    assert client.head(path, headers=headers).status_code == 404
    assert patch(client, headers, path, 5, b"67890").status_code == 404
    assert client.get(path, headers=headers).status_code == 404
    assert user_row(app).bytes_reserved == 10

    runner = app.test_cli_runner()
    report = runner.invoke(args=["storage-check", "--min-age", "0"])
    assert report.exit_code == 1 and f"expired: upload {path.rsplit('/', 1)[1]}" in report.output
    assert user_row(app).bytes_reserved == 10
    repaired = runner.invoke(args=["storage-check", "--repair", "--min-age", "0"])
    assert repaired.exit_code == 0, repaired.output
    assert user_row(app).bytes_reserved == 0 and upload_rows(app) == 0
    assert list(app.extensions["storage"].partials()) == []
    assert download(client, bearer(headers["Authorization"].split()[1]), file_id) == b"ok"
    assert runner.invoke(args=["storage-check", "--min-age", "0"]).exit_code == 0


def test_storage_check_leaves_live_uploads_alone_and_removes_orphan_partials(app, client, tus, signed_in):
    path = created(client, tus, 10)
    assert patch(client, tus, path, 0, b"12345").status_code == 204
    orphan = app.extensions["storage"].start_partial()
    runner = app.test_cli_runner()
    report = runner.invoke(args=["storage-check", "--min-age", "0"])
    assert report.exit_code == 1 and "orphan: partial upload" in report.output
    assert runner.invoke(args=["storage-check", "--repair", "--min-age", "0"]).exit_code == 0
    assert orphan.partition(":")[0] not in {p.ref for p in app.extensions["storage"].partials()}
    # the live upload still resumes and completes
    done = patch(client, tus, path, 5, b"67890")
    assert done.status_code == 204
    assert download(client, signed_in, done.headers["X-File-Id"]) == b"1234567890"
    assert runner.invoke(args=["storage-check", "--min-age", "0"]).exit_code == 0


def test_an_upload_whose_bytes_were_lost_is_404_and_gone(app, client, tus):
    path = created(client, tus, 10)
    assert patch(client, tus, path, 0, b"12345").status_code == 204
    with app.extensions["engine"].connect() as connection:
        ref = connection.execute(sa.text("SELECT storage_ref FROM uploads")).scalar_one()
    app.extensions["storage"].drop_partial(ref)  # a lost volume, an emptied bucket
    response = patch(client, tus, path, 5, b"67890")
    assert response.status_code == 404 and response.json["error"]["code"] == "not_found"
    assert client.head(path, headers=tus).status_code == 404
    assert user_row(app).bytes_reserved == 0 and upload_rows(app) == 0


def test_the_openapi_document_declares_the_tus_routes(client):
    paths = client.get("/openapi.json").json["paths"]
    assert set(paths["/file/uploads"]) == {"options", "post"}
    assert set(paths["/file/uploads/{upload_id}"]) == {"head", "get", "patch", "delete"}
    patch_op = paths["/file/uploads/{upload_id}"]["patch"]
    assert {"204", "409", "412", "415", "460"} <= set(patch_op["responses"])
    assert {p["name"] for p in patch_op["parameters"]} >= {"Tus-Resumable", "Upload-Offset", "Upload-Checksum"}
    assert "Location" in paths["/file/uploads"]["post"]["responses"]["201"]["headers"]


# -- S3's parts: chunks that do not line up with them ---------------------------------------------------------


def test_chunks_across_part_boundaries_and_a_refused_one_between(make_app):
    """With 5 MiB parts, 3 MiB chunks leave tails that become parts later; a refused chunk is undone."""
    app = make_app(S3_PART_SIZE=5 << 20)
    client = app.test_client()
    user = bearer(sign_up(client)["access_token"])
    headers = {**user, **TUS}
    content = os.urandom((11 << 20) + 12345)
    path = created(client, headers, len(content), "big.bin")
    step = 3 << 20
    for start in range(0, len(content), step):
        if start == 2 * step:  # crosses a part boundary, then is refused: nothing of it may stay
            bad = patch(client, headers, path, start, content[start:start + step],
                        **{"Upload-Checksum": f"sha1 {b64(hashlib.sha1(b'other').digest())}"})
            assert bad.status_code == 460 and offset_of(client, headers, path) == start
        response = patch(client, headers, path, start, content[start:start + step])
        assert response.status_code == 204, response.json
    file_id = response.headers["X-File-Id"]
    assert sha(download(client, user, file_id)) == sha(content)
    assert client.get(f"/file/{file_id}", headers=user).json["data"]["sha256"] == sha(content)
    assert list(app.extensions["storage"].partials()) == []
    assert app.test_cli_runner().invoke(args=["storage-check", "--min-age", "0"]).exit_code == 0


# -- against a real gunicorn ------------------------------------------------------------------------------------


def test_tuspy_uploads_a_file_in_chunks(make_live_server):
    from tusclient import client as tus_client

    server = make_live_server(S3_PART_SIZE=str(5 << 20))
    user = live_user(server)
    content = os.urandom((6 << 20) + 777)
    uploader = tus_client.TusClient(f"{server.url}/file/uploads", headers=user).uploader(
        file_stream=io.BytesIO(content), chunk_size=(2 << 20) + 1, metadata={"filename": "tuspy.bin"},
        upload_checksum=True,
    )
    uploader.upload()
    assert uploader.offset == len(content)
    status, _, body = call(server, "GET", urlsplit(uploader.url).path, {**user, **TUS})
    state = json.loads(body)["data"]
    assert status == 200 and state["offset"] == len(content) and state["file"]["name"] == "tuspy.bin"
    assert state["file"]["sha256"] == sha(content)
    assert sha(live_download(server, user, state["file"]["id"])) == sha(content)


def test_a_chunked_body_past_the_length_is_400_and_rolled_back(make_live_server):
    server = make_live_server()
    user = {**live_user(server), **TUS}
    status, headers, _ = call(server, "POST", "/file/uploads", {**user, "Upload-Length": "10"})
    path = urlsplit(headers["Location"]).path
    chunked = {**user, **CHUNK, "Transfer-Encoding": "chunked"}
    status, _, body = call(server, "PATCH", path, {**chunked, "Upload-Offset": "0"}, iter([b"1234", b"5678", b"9AB"]))
    assert status == 400 and json.loads(body)["error"]["code"] == "validation_error"
    assert call(server, "HEAD", path, user)[1]["Upload-Offset"] == "0"
    status, headers, _ = call(server, "PATCH", path, {**chunked, "Upload-Offset": "0"}, iter([b"12345", b"67890"]))
    assert status == 204 and headers["Upload-Offset"] == "10"
    assert live_download(server, user, headers["X-File-Id"]) == b"1234567890"


def test_a_dropped_connection_keeps_what_arrived_and_the_upload_resumes(make_live_server):
    server = make_live_server()
    user = {**live_user(server), **TUS}
    content = os.urandom(3 << 20)
    status, headers, _ = call(server, "POST", "/file/uploads", {**user, "Upload-Length": str(len(content))})
    path = urlsplit(headers["Location"]).path
    arrived = (1 << 20) + 4321
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port)) as raw:
        head = "".join(f"{name}: {value}\r\n" for name, value in {
            **user, **CHUNK, "Upload-Offset": "0", "Content-Length": str(len(content)), "Host": parts.netloc,
        }.items())
        raw.sendall(f"PATCH {path} HTTP/1.1\r\n{head}\r\n".encode() + content[:arrived])
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while int(call(server, "HEAD", path, user)[1]["Upload-Offset"]) != arrived and time.monotonic() < deadline:
        time.sleep(0.1)
    assert call(server, "HEAD", path, user)[1]["Upload-Offset"] == str(arrived)
    status, headers, _ = call(server, "PATCH", path, {**user, **CHUNK, "Upload-Offset": str(arrived)}, content[arrived:])
    assert status == 204, headers
    assert sha(live_download(server, user, headers["X-File-Id"])) == sha(content)


def test_an_upload_moves_between_instances(make_live_server, tmp_path):
    a = make_live_server(INSTANCE_DIR=str(tmp_path / "a"))
    b = make_live_server(INSTANCE_DIR=str(tmp_path / "b"))
    user = {**live_user(a), **TUS}
    content = os.urandom(300_000)
    status, headers, _ = call(a, "POST", "/file/uploads", {**user, "Upload-Length": str(len(content)),
                                                           "Upload-Metadata": f"filename {b64('moved.bin')}"})
    path = urlsplit(headers["Location"]).path
    assert call(a, "PATCH", path, {**user, **CHUNK, "Upload-Offset": "0"}, content[:100_000])[0] == 204
    assert call(b, "HEAD", path, user)[1]["Upload-Offset"] == "100000"
    assert call(b, "PATCH", path, {**user, **CHUNK, "Upload-Offset": "100000"}, content[100_000:200_000])[0] == 204
    assert call(a, "HEAD", path, user)[1]["Upload-Offset"] == "200000"
    status, headers, _ = call(a, "PATCH", path, {**user, **CHUNK, "Upload-Offset": "200000"}, content[200_000:])
    assert status == 204
    assert call(b, "HEAD", path, user)[1]["Upload-Offset"] == str(len(content))
    assert sha(live_download(b, user, headers["X-File-Id"])) == sha(content)
