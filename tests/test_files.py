"""Private files through HTTP, on SQLite and MySQL: upload, list, metadata, download, update, delete."""
import hashlib
import http.client
import io
import json
import os
import re
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from tests.conftest import BACKEND_STORAGE, stored_files
from tests.support.api import bearer, sign_up
from tests.support.api import NOISE, PNG, error_code, sha, update, upload, uploaded
from tests.support.live import get, live_token, multipart, send, send_refused

KEY = re.compile(r"^[0-9a-f]{32}$")


# Every test here runs on each database with local disk, and on MySQL with S3.
pytestmark = pytest.mark.parametrize(("backend", "storage_kind"), BACKEND_STORAGE, indirect=["backend"])


# -- upload and metadata -----------------------------------------------------------------------


def test_upload_returns_the_file_object_and_keeps_a_unicode_name(client, signed_in):
    content = b"%PDF-1.4\n%\xe2\xe3\n1 0 obj\n"
    response = upload(client, signed_in, content, "отчёт 2026.PDF")
    assert response.status_code == 201
    data = response.json["data"]
    assert set(data) == {"id", "name", "extension", "mime_type", "size", "sha256", "uploaded_at", "updated_at"}
    assert data["sha256"] == hashlib.sha256(content).hexdigest()
    assert data["name"] == "отчёт 2026.PDF"
    assert data["extension"] == "pdf"
    assert data["mime_type"] == "application/pdf"
    assert data["size"] == len(content)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["uploaded_at"])
    assert data["updated_at"] == data["uploaded_at"]
    again = client.get(f"/file/{data['id']}", headers=signed_in)
    assert again.status_code == 200 and again.json == {"data": data, "error": None}


def raw_upload(client, headers, content: bytes, quoted_name: str):
    """An upload with the part header exactly as given (curl escapes `"` and `\\` in it with a backslash)."""
    body = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="' + quoted_name.encode()
            + b'"\r\n\r\n' + content + b"\r\n--b--\r\n")
    return client.post("/file/upload", headers=headers, data=body, content_type="multipart/form-data; boundary=b")


@pytest.mark.parametrize(
    "quoted_name, name, extension",
    [
        ("../../x.txt", "x.txt", "txt"),
        (r"..\\..\\windows\\evil.BAT", "evil.BAT", "bat"),
        (r"C:\\Users\\ann\\report.final.Docx", "report.final.Docx", "docx"),
        ("/etc/passwd", "passwd", ""),
        ("archive.tar.gz", "archive.tar.gz", "gz"),
        ('say \\"hi\\".txt', 'say "hi".txt', "txt"),
        ("..", "file", ""),
        ("", "file", ""),
        (".bashrc", ".bashrc", ""),
    ],
)
def test_only_the_base_name_is_kept_and_bytes_stay_under_generated_keys(
    app, client, signed_in, storage_kind, quoted_name, name, extension,
):
    response = raw_upload(client, signed_in, b"hello\n", quoted_name)
    assert response.status_code == 201
    assert (response.json["data"]["name"], response.json["data"]["extension"]) == (name, extension)
    [blob] = stored_files(app)
    assert KEY.match(blob.name)
    if storage_kind == "local":
        assert blob.parent.parent == Path(app.config["UPLOAD_DIR"]).resolve()
    assert blob.read_bytes() == b"hello\n"


def test_a_very_long_name_is_cut_keeping_the_extension(client, signed_in):
    data = uploaded(client, signed_in, b"x", "я" * 300 + ".txt")
    assert len(data["name"]) == 255 and data["name"].endswith("я.txt") and data["extension"] == "txt"


def test_empty_file(client, signed_in):
    data = uploaded(client, signed_in, b"", "empty.txt")
    assert data["size"] == 0 and data["mime_type"] == "text/plain"
    response = client.get(f"/file/download/{data['id']}", headers=signed_in)
    assert response.status_code == 200 and response.data == b""
    assert response.headers["Content-Type"] == "text/plain"  # the stored type, no charset guessed
    assert response.headers["Content-Length"] == "0"
    assert response.headers["ETag"] == f'"{sha(b"")}"'
    ranged = client.get(f"/file/download/{data['id']}", headers={**signed_in, "Range": "bytes=0-0"})
    assert ranged.status_code == 200 and ranged.data == b""  # nothing to cut a range from: the whole (empty) file


@pytest.mark.parametrize(
    "content, name, mime_type",
    [
        (PNG, "photo.txt", "image/png"),  # the content wins over the name
        (b"<?php system($_GET['c']); ?>\n", "avatar.jpg", "text/x-php"),
        (b"a,b\n1,2\n", "table.csv", "text/csv"),  # text: the name says which kind
        (b'{"a": 1}\n', "data", "application/json"),
        (b"just words\n", "README", "text/plain"),
        (NOISE, "scan.pdf", "application/pdf"),  # unrecognisable bytes: the name decides
        (NOISE, "blob", "application/octet-stream"),
        (NOISE, "blob.unknownext", "application/octet-stream"),
    ],
)
def test_mime_type_from_content_then_extension(client, signed_in, content, name, mime_type):
    assert uploaded(client, signed_in, content, name)["mime_type"] == mime_type


def test_no_file_part_is_400_on_field_file(client, signed_in):
    existing = uploaded(client, signed_in, b"x")
    bodies = [
        lambda: {"json": {"file": "x"}},
        lambda: {"data": {"file": "not multipart"}},
        lambda: {"data": {"other": (io.BytesIO(b"x"), "x.txt")}},
        lambda: {"data": b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\nunterminated",
                 "content_type": "multipart/form-data; boundary=b"},
        lambda: {"data": b"garbage", "content_type": "multipart/form-data; boundary=b"},
        lambda: {"data": b"", "content_type": "multipart/form-data"},
    ]
    for body in bodies:
        for method, url in [("post", "/file/upload"), ("put", f"/file/update/{existing['id']}")]:
            kwargs = body()
            response = getattr(client, method)(url, headers=signed_in, **kwargs)
            assert response.status_code == 400, (url, kwargs)
            assert error_code(response) == "validation_error"
            assert "file" in response.json["error"]["details"]["fields"]
    assert client.get("/file/list", headers=signed_in).json["data"]["total"] == 1
    assert client.get(f"/file/download/{existing['id']}", headers=signed_in).data == b"x"


def test_a_part_without_a_filename_is_stored_as_file(client, signed_in):
    body = b"--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nplain field\r\n--b--\r\n"
    response = client.post("/file/upload", headers=signed_in, data=body, content_type="multipart/form-data; boundary=b")
    assert response.status_code == 201 and response.json["data"]["name"] == "file"


def test_other_parts_around_the_file_are_ignored(client, signed_in):
    response = client.post("/file/upload", headers=signed_in, data={
        "comment": "hi", "file": (io.BytesIO(b"content"), "a.txt"), "later": "ignored"})
    assert response.status_code == 201 and response.json["data"]["size"] == 7


# -- size limit --------------------------------------------------------------------------------


def test_upload_over_the_limit_is_413_and_leaves_nothing(make_app):
    app = make_app(MAX_UPLOAD_BYTES=1000)
    client = app.test_client()
    headers = bearer(sign_up(client)["access_token"])
    assert upload(client, headers, b"x" * 1000).status_code == 201  # the limit itself is allowed
    for size in (1001, 60_000, 2_000_000):  # over the file limit; over the body limit too
        response = upload(client, headers, b"y" * size)
        assert response.status_code == 413, size
        assert error_code(response) == "file_too_large"
        assert response.json["error"]["details"] == {"limit": 1000}, size  # a client words it in its own units
        assert response.json["data"] is None
    assert client.get("/file/list", headers=headers).json["data"]["total"] == 1
    [blob] = stored_files(app)
    assert blob.read_bytes() == b"x" * 1000


def test_update_over_the_limit_is_413_and_keeps_the_old_file(make_app):
    app = make_app(MAX_UPLOAD_BYTES=1000)
    client = app.test_client()
    headers = bearer(sign_up(client)["access_token"])
    before = uploaded(client, headers, b"old content", "old.txt")
    response = update(client, headers, before["id"], b"z" * 1001, "new.bin")
    assert response.status_code == 413 and error_code(response) == "file_too_large"
    assert response.json["error"]["details"] == {"limit": 1000}
    assert client.get(f"/file/{before['id']}", headers=headers).json["data"] == before
    assert client.get(f"/file/download/{before['id']}", headers=headers).data == b"old content"
    assert [p.read_bytes() for p in stored_files(app)] == [b"old content"]


# -- download ----------------------------------------------------------------------------------


def test_five_mib_random_file_round_trips_byte_for_byte(client, signed_in):
    content = os.urandom(5 << 20)
    data = uploaded(client, signed_in, content, "random.bin")
    assert data["size"] == len(content)
    response = client.get(f"/file/download/{data['id']}", headers=signed_in)
    assert response.status_code == 200
    assert sha(response.data) == sha(content)
    assert response.headers["ETag"] == f'"{sha(content)}"'
    for header, start, end in [
        ("bytes=0-999", 0, 999),
        ("bytes=1048576-3145727", 1 << 20, (3 << 20) - 1),
        ("bytes=-100", len(content) - 100, len(content) - 1),
        ("bytes=5242000-", 5242000, len(content) - 1),
        ("bytes=5242000-99999999", 5242000, len(content) - 1),
    ]:
        part = client.get(f"/file/download/{data['id']}", headers={**signed_in, "Range": header})
        assert part.status_code == 206, header
        assert part.headers["Content-Range"] == f"bytes {start}-{end}/{len(content)}"
        assert int(part.headers["Content-Length"]) == end - start + 1
        assert sha(part.data) == sha(content[start:end + 1])


def test_download_headers(client, signed_in):
    content = b"%PDF-1.4\n%\xe2\xe3\n"
    data = uploaded(client, signed_in, content, "Über 50% (draft).pdf")
    response = client.get(f"/file/download/{data['id']}", headers=signed_in)
    assert response.status_code == 200 and response.data == content
    assert response.headers["Content-Type"] == "application/pdf"
    assert response.headers["Content-Disposition"] == (
        "attachment; filename=\"Uber 50_ (draft).pdf\"; filename*=UTF-8''%C3%9Cber%2050%25%20%28draft%29.pdf"
    )
    assert response.headers["Content-Length"] == str(len(content))
    assert response.headers["ETag"] == f'"{sha(content)}"'
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "private" in response.headers["Cache-Control"]
    assert "ETag" in response.headers["Access-Control-Expose-Headers"]


@pytest.mark.parametrize(
    "name, disposition",
    [
        ("report.txt", "attachment; filename=report.txt; filename*=UTF-8''report.txt"),
        ("my report.txt", "attachment; filename=\"my report.txt\"; filename*=UTF-8''my%20report.txt"),
        ("файл.txt", "attachment; filename=file.txt; filename*=UTF-8''%D1%84%D0%B0%D0%B9%D0%BB.txt"),
        ("café.txt", "attachment; filename=cafe.txt; filename*=UTF-8''caf%C3%A9.txt"),
        ("отчёт 2026.PDF", "attachment; filename=2026.PDF; filename*=UTF-8''%D0%BE%D1%82%D1%87%D1%91%D1%82%202026.PDF"),
    ],
)
def test_content_disposition_has_an_ascii_fallback_and_the_utf8_name(client, signed_in, name, disposition):
    data = uploaded(client, signed_in, b"x", name)
    response = client.get(f"/file/download/{data['id']}", headers=signed_in)
    assert response.headers["Content-Disposition"] == disposition


def test_conditional_get_and_ranges(client, signed_in):
    content = os.urandom(10_000)
    data = uploaded(client, signed_in, content, "r.bin")
    url = f"/file/download/{data['id']}"
    etag = f'"{sha(content)}"'
    not_modified = client.get(url, headers={**signed_in, "If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.data == b""
    assert not_modified.headers["ETag"] == etag
    assert client.get(url, headers={**signed_in, "If-None-Match": '"other"'}).status_code == 200
    bad = client.get(url, headers={**signed_in, "Range": "bytes=10000-"})
    assert bad.status_code == 416
    assert error_code(bad) == "range_not_satisfiable"
    assert bad.headers["Content-Range"] == "bytes */10000"
    several = client.get(url, headers={**signed_in, "Range": "bytes=0-9,100-109"})
    assert several.status_code == 200 and several.data == content  # several ranges: the whole file
    stale = client.get(url, headers={**signed_in, "Range": "bytes=0-9", "If-Range": '"stale"'})
    assert stale.status_code == 200 and stale.data == content
    fresh = client.get(url, headers={**signed_in, "Range": "bytes=0-9", "If-Range": etag})
    assert fresh.status_code == 206 and fresh.data == content[:10]
    for if_match in (etag, "*", f'"other", {etag}'):
        assert client.get(url, headers={**signed_in, "If-Match": if_match}).status_code == 200
    for headers in ({"If-Match": '"other"'}, {"If-Match": '""', "If-None-Match": "*"},
                    {"If-Unmodified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}):
        failed = client.get(url, headers={**signed_in, **headers})
        assert failed.status_code == 412, headers
        assert failed.content_type == "application/json" and error_code(failed) == "precondition_failed"
    update(client, signed_in, data["id"], b"new")
    changed = client.get(url, headers={**signed_in, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.data == b"new"
    assert client.get(url, headers={**signed_in, "If-Match": etag}).status_code == 412


def test_range_forms_the_server_does_not_serve_get_the_whole_file(client, signed_in):
    """RFC 9110 §14.2: a Range in another unit, or one that cannot be parsed, is ignored."""
    content = os.urandom(1000)
    url = f"/file/download/{uploaded(client, signed_in, content, 'r.bin')['id']}"
    for header in ("items=0-1", "bytes=", "bytes=5-2", "bytes=abc", "0-10"):
        whole = client.get(url, headers={**signed_in, "Range": header})
        assert whole.status_code == 200 and whole.data == content, header
    suffix = client.get(url, headers={**signed_in, "Range": "bytes=-100"})
    assert suffix.status_code == 206 and suffix.data == content[-100:]
    assert suffix.headers["Content-Range"] == "bytes 900-999/1000"
    past_end = client.get(url, headers={**signed_in, "Range": "bytes=990-5000"})
    assert past_end.status_code == 206 and past_end.data == content[990:]
    dated = client.get(url, headers={**signed_in, "Range": "bytes=0-9", "If-Range": "Sat, 01 Jan 2000 00:00:00 GMT"})
    assert dated.status_code == 200 and dated.data == content  # replaced since that date: the whole file
    later = client.get(url, headers={**signed_in, "Range": "bytes=0-9", "If-Range": "Fri, 01 Jan 2100 00:00:00 GMT"})
    assert later.status_code == 206 and later.data == content[:10]
    weak = client.get(url, headers={**signed_in, "Range": "bytes=0-9", "If-Range": f'W/"{sha(content)}"'})
    assert weak.status_code == 200 and weak.data == content  # a weak validator never holds for If-Range
    current = client.get(url, headers={**signed_in, "Range": "bytes=5000-", "If-None-Match": f'"{sha(content)}"'})
    assert current.status_code == 304  # If-None-Match is answered before the range is looked at


def test_an_empty_if_match_is_taken_as_not_sent(client, signed_in):
    content = b"abc"
    url = f"/file/download/{uploaded(client, signed_in, content, 'a.txt')['id']}"
    for value in ("", "  "):
        response = client.get(url, headers={**signed_in, "If-Match": value})
        assert response.status_code == 200 and response.data == content


def test_failed_if_match_is_a_json_412_without_the_content(client, signed_in):
    content = b"the file's own bytes"
    url = f"/file/download/{uploaded(client, signed_in, content, 'm.txt')['id']}"
    failed = client.get(url, headers={**signed_in, "If-Match": '"other"'})
    assert failed.status_code == 412 and failed.mimetype == "application/json"
    assert error_code(failed) == "precondition_failed"
    assert content not in failed.data
    matched = client.get(url, headers={**signed_in, "If-Match": f'"{sha(content)}"'})
    assert matched.status_code == 200 and matched.data == content


# -- list --------------------------------------------------------------------------------------


def test_pagination_over_seven_files_newest_first(client, signed_in):
    ids = [uploaded(client, signed_in, b"%d" % i, f"f{i}.txt")["id"] for i in range(7)]
    pages = []
    for page in (1, 2, 3, 4):
        response = client.get(f"/file/list?page={page}&list_size=3", headers=signed_in)
        assert response.status_code == 200
        body = response.json["data"]
        assert (body["page"], body["list_size"], body["total"], body["pages"]) == (page, 3, 7, 3)
        pages.append([item["id"] for item in body["items"]])
    assert pages == [ids[::-1][0:3], ids[::-1][3:6], ids[::-1][6:], []]
    assert set(client.get("/file/list", headers=signed_in).json["data"]["items"][0]) == {
        "id", "name", "extension", "mime_type", "size", "sha256", "uploaded_at", "updated_at"}


def test_every_page_size_walks_the_same_order_and_total_follows_deletes(client, signed_in):
    ids = [uploaded(client, signed_in, b"%d" % i, f"f{i}.txt")["id"] for i in range(9)]
    client.delete(f"/file/delete/{ids.pop(4)}", headers=signed_in)
    newest_first = ids[::-1]
    for size in (1, 2, 3, 4, 5):
        walked, page = [], 1
        while True:
            body = client.get(f"/file/list?page={page}&list_size={size}", headers=signed_in).json["data"]
            assert body["total"] == 8
            if not body["items"]:
                break
            walked += [item["id"] for item in body["items"]]
            page += 1
        assert walked == newest_first, size
        assert page - 1 == body["pages"]


def test_near_and_far_pages_from_either_end_walk_the_same_order(client, signed_in):
    """Pages that skip few entries and pages that skip many (read with another statement) agree, from both ends."""
    ids = [uploaded(client, signed_in, b"%d" % i, f"f{i}.txt")["id"] for i in range(230)]
    for size in (1, 7, 100):
        walked, page = [], 1
        while items := client.get(f"/file/list?page={page}&list_size={size}", headers=signed_in).json["data"]["items"]:
            walked += [item["id"] for item in items]
            page += 1
        assert walked == ids[::-1], size


@pytest.mark.parametrize("query", ["", "?page=&list_size=", "?page=1", "?list_size=10"])
def test_list_defaults_when_absent_or_empty(client, signed_in, query):
    body = client.get(f"/file/list{query}", headers=signed_in).json["data"]
    assert (body["page"], body["list_size"], body["total"], body["pages"], body["items"]) == (1, 10, 0, 0, [])


@pytest.mark.parametrize(
    "query, field",
    [("page=0", "page"), ("page=-1", "page"), ("page=abc", "page"), ("page=1.5", "page"),
     ("list_size=101", "list_size"), ("list_size=0", "list_size"), ("list_size=x", "list_size")],
)
def test_bad_list_parameters_are_400(client, signed_in, query, field):
    response = client.get(f"/file/list?{query}", headers=signed_in)
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert field in response.json["error"]["details"]["fields"]


def test_list_size_100_is_allowed(client, signed_in):
    assert client.get("/file/list?list_size=100", headers=signed_in).status_code == 200


# -- privacy -----------------------------------------------------------------------------------


def test_another_users_file_is_404_like_a_missing_one_on_every_route(client, signed_in):
    ann_file = uploaded(client, signed_in, b"ann's secret", "secret.txt")
    bob = bearer(sign_up(client, "bob@example.com")["access_token"])
    missing_id = ann_file["id"] + 1000
    for method, url in [
        ("get", "/file/{}"), ("get", "/file/download/{}"), ("delete", "/file/delete/{}"), ("put", "/file/update/{}"),
    ]:
        body = (lambda: {"data": {"file": (io.BytesIO(b"bob's"), "x.txt")}}) if method == "put" else dict
        theirs = getattr(client, method)(url.format(ann_file["id"]), headers=bob, **body())
        missing = getattr(client, method)(url.format(missing_id), headers=bob, **body())
        assert theirs.status_code == missing.status_code == 404, (method, url)
        assert theirs.json == missing.json
        assert error_code(theirs) == "not_found"
    assert client.get("/file/list", headers=bob).json["data"]["total"] == 0
    assert client.get(f"/file/{ann_file['id']}", headers=signed_in).json["data"] == ann_file
    assert client.get(f"/file/download/{ann_file['id']}", headers=signed_in).data == b"ann's secret"


def test_every_file_route_needs_a_token(client):
    for method, url in [
        ("post", "/file/upload"), ("get", "/file/list"), ("get", "/file/1"), ("get", "/file/download/1"),
        ("delete", "/file/delete/1"), ("put", "/file/update/1"),
    ]:
        response = getattr(client, method)(url)
        assert response.status_code == 401 and error_code(response) == "missing_token", url


def test_ids_that_are_not_integers_are_404(client, signed_in):
    for url in ["/file/abc", "/file/download/-1", "/file/99999999999999999999"]:
        response = client.get(url, headers=signed_in)
        assert response.status_code == 404 and error_code(response) == "not_found"


# -- update and delete -------------------------------------------------------------------------


def test_update_replaces_the_content_keeps_the_id_and_removes_the_old_bytes(app, client, signed_in):
    before = uploaded(client, signed_in, b"version one", "v1.txt")
    time.sleep(1.1)  # the API shows whole seconds
    response = update(client, signed_in, before["id"], PNG, "picture.png")
    assert response.status_code == 200
    after = response.json["data"]
    assert after["id"] == before["id"]
    assert (after["name"], after["extension"], after["mime_type"], after["size"]) == (
        "picture.png", "png", "image/png", len(PNG))
    assert after["uploaded_at"] == before["uploaded_at"] and after["updated_at"] > before["updated_at"]
    assert client.get(f"/file/download/{before['id']}", headers=signed_in).data == PNG
    assert [p.read_bytes() for p in stored_files(app)] == [PNG]
    listed = client.get("/file/list", headers=signed_in).json["data"]
    assert listed["total"] == 1 and listed["items"][0] == after


def test_update_without_a_file_name_keeps_the_name(client, signed_in):
    before = uploaded(client, signed_in, b"one", "keep.txt")
    after = update(client, signed_in, before["id"], b"two", "").json["data"]
    assert after["name"] == "keep.txt" and after["size"] == 3


def test_delete_removes_row_and_bytes(app, client, signed_in):
    keep = uploaded(client, signed_in, b"keep", "keep.txt")
    gone = uploaded(client, signed_in, b"gone", "gone.txt")
    response = client.delete(f"/file/delete/{gone['id']}", headers=signed_in)
    assert response.status_code == 200
    assert response.json == {"data": {"id": gone["id"], "deleted": True}, "error": None}
    assert client.get(f"/file/{gone['id']}", headers=signed_in).status_code == 404
    assert client.get(f"/file/download/{gone['id']}", headers=signed_in).status_code == 404
    assert client.delete(f"/file/delete/{gone['id']}", headers=signed_in).status_code == 404
    assert [p.read_bytes() for p in stored_files(app)] == [b"keep"]
    assert client.get(f"/file/download/{keep['id']}", headers=signed_in).data == b"keep"


# -- through a real server ---------------------------------------------------------------------


def test_streaming_chunked_upload_and_download_over_gunicorn(app, live_server):
    token = live_token(live_server)
    content = os.urandom(8 << 20)
    head, tail, content_type = multipart(content, "big.bin")
    pieces = [head[i:i + (1 << 20)] for i in range(0, len(head), 1 << 20)] + [tail]
    status, _, body = send(live_server, "POST", "/file/upload", token, pieces, content_type, chunked=True)
    assert status == 201, body
    file_id = json.loads(body)["data"]["id"]
    status, headers, data = get(live_server, f"/file/download/{file_id}", token)
    assert status == 200 and sha(data) == sha(content)
    assert headers["Content-Length"] == str(len(content)) and headers["ETag"] == f'"{sha(content)}"'
    status, headers, data = get(live_server, f"/file/download/{file_id}", token, {"Range": "bytes=4194304-"})
    assert status == 206 and data == content[4 << 20:]
    assert headers["Content-Range"] == f"bytes {4 << 20}-{len(content) - 1}/{len(content)}"


def test_oversize_chunked_upload_is_413_over_gunicorn(app, make_live_server):
    server = make_live_server(MAX_UPLOAD_BYTES=str(256 * 1024))
    token = live_token(server)
    head, tail, content_type = multipart(os.urandom(300 * 1024), "too-big.bin")
    status, _, body = send_refused(server, "POST", "/file/upload", token, [head[:1000], head[1000:], tail], content_type,
                           chunked=True)
    assert status == 413 and json.loads(body)["error"]["code"] == "file_too_large"
    status, _, body = send_refused(server, "POST", "/file/upload", token, [head[:1000], head[1000:], tail], content_type)
    assert status == 413
    # A small file behind a large other part: the body as a whole is capped too, while it streams in.
    head, tail, content_type = multipart(b"small", "small.bin")
    boundary = content_type.rsplit("=", 1)[1].encode()
    padding = b"--" + boundary + b'\r\nContent-Disposition: form-data; name="padding"\r\n\r\n' + b"p" * (1 << 20) + b"\r\n"
    pieces = [padding[i:i + 65536] for i in range(0, len(padding), 65536)] + [head, tail]
    status, _, body = send_refused(server, "POST", "/file/upload", token, pieces, content_type, chunked=True)
    assert status == 413 and json.loads(body)["error"]["code"] == "file_too_large"
    assert json.loads(get(server, "/file/list", token)[2])["data"]["total"] == 0
    assert stored_files(app) == []


def test_parallel_updates_have_exactly_one_winner_and_leave_no_orphan(app, live_server):
    token = live_token(live_server)
    head, tail, content_type = multipart(b"v0", "v0.txt")
    status, _, body = send(live_server, "POST", "/file/upload", token, [head, tail], content_type)
    file_id = json.loads(body)["data"]["id"]
    both_started = threading.Barrier(2)
    results: dict[str, tuple[int, bytes]] = {}

    def replace(label: str) -> None:
        content = label.encode() * (3 << 20)
        head, tail, content_type = multipart(content, f"{label}.txt")
        # The server reads the body in 1 MiB steps: after 1.5 MiB it has read the row and is storing bytes.
        # Both requests get that far before either sends the rest.
        first = (1 << 20) + (512 << 10)
        status, _, body = send(
            live_server, "PUT", f"/file/update/{file_id}", token, [head[:first], head[first:], tail], content_type,
            between=lambda: (time.sleep(0.3), both_started.wait(timeout=10)),
        )
        results[label] = (status, content)

    threads = [threading.Thread(target=replace, args=(label,)) for label in ("A", "B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    statuses = sorted(status for status, _ in results.values())
    assert statuses == [200, 409]
    winner = next(content for status, content in results.values() if status == 200)
    status, headers, data = get(live_server, f"/file/download/{file_id}", token)
    assert data == winner and headers["ETag"] == f'"{sha(winner)}"'
    assert [p.read_bytes() == winner for p in stored_files(app)] == [True]


def test_downloads_during_updates_never_mix_versions(app, live_server):
    token = live_token(live_server)
    versions = {}
    head, tail, content_type = multipart(b"0" * (4 << 20), "v.bin")
    status, _, body = send(live_server, "POST", "/file/upload", token, [head, tail], content_type)
    file_id = json.loads(body)["data"]["id"]
    versions[sha(b"0" * (4 << 20))] = 0
    done = threading.Event()
    seen: list[tuple[int, str, str]] = []

    def keep_updating() -> None:
        for n in range(1, 9):
            content = str(n).encode() * (4 << 20)
            versions[sha(content)] = n
            head, tail, content_type = multipart(content, "v.bin")
            send(live_server, "PUT", f"/file/update/{file_id}", token, [head, tail], content_type)
        done.set()

    def keep_downloading() -> None:
        while not done.is_set():
            connection = http.client.HTTPConnection(urlsplit(live_server.url).netloc, timeout=30)
            connection.request("GET", f"/file/download/{file_id}", headers={"Authorization": f"Bearer {token}"})
            response = connection.getresponse()
            digest = hashlib.sha256()
            while chunk := response.read(256 * 1024):
                digest.update(chunk)
                time.sleep(0.002)  # a slow reader: updates commit while this download is still running
            seen.append((response.status, response.getheader("ETag"), digest.hexdigest()))
            connection.close()

    threads = [threading.Thread(target=keep_updating)] + [threading.Thread(target=keep_downloading) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(seen) >= 3 and len({digest for _, _, digest in seen}) >= 2  # downloads ran across updates
    for status, etag, digest in seen:
        assert status == 200
        assert etag == f'"{digest}"' and digest in versions  # one whole version, described by its own ETag
    assert len(stored_files(app)) == 1


def test_a_failed_commit_removes_the_uploaded_bytes(app, live_server):
    token = live_token(live_server)
    head, tail, content_type = multipart(os.urandom(1 << 20), "doomed.bin")

    def delete_the_account() -> None:  # mid-upload, so the file row cannot be inserted
        time.sleep(0.3)
        with app.extensions["engine"].begin() as connection:
            connection.execute(sa.text("DELETE FROM users WHERE login = 'live@example.com'"))

    status, _, body = send(live_server, "POST", "/file/upload", token, [head[:1024], head[1024:], tail],
                           content_type, between=delete_the_account)
    assert status == 401 and json.loads(body)["error"]["code"] == "invalid_token"
    assert stored_files(app) == []
