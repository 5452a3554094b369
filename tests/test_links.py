"""File links (SPEC §7) through HTTP: making them, what they serve, when they stop working, and the log."""
import base64
import json
import math
import os
import socket
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from urllib.parse import urlsplit

import pytest

from app.security import LINK_FIELDS as TOKEN_FIELDS, LinkClaims, LinkSigner
from tests.conftest import BACKEND_STORAGE, JWT_TEST_SECRET, S3_KINDS, stored_files
from tests.support.api import PASSWORD, bearer, sign_up
from tests.support.api import NOISE, PNG, sha, update, uploaded
from tests.support.live import multipart, send
from tests.support.api import error_code

# Every test runs on each database with local disk, and on MySQL with S3, unless it says otherwise.
EVERY_STORAGE = pytest.mark.parametrize(("backend", "storage_kind"), BACKEND_STORAGE, indirect=["backend"])
PDF = b"%PDF-1.4\n%\xe2\xe3\n1 0 obj\n"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>\n'
HTML = b"<!DOCTYPE html><html><body><script>alert(document.domain)</script></body></html>\n"
LINK_FIELDS = {"url", "path", "expires_at", "expires_in", "disposition"}
TOKEN_LENGTH = 76


def make_link(client, headers, file_id: int, **body) -> dict:
    response = client.post(f"/file/{file_id}/link", headers=headers, json=body)
    assert response.status_code == 201, response.json
    return response.json["data"]


def token_of(link: dict) -> str:
    return link["path"].rsplit("/", 1)[1]


def assert_protected(response) -> None:
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Content-Security-Policy"] == "sandbox"


def assert_dead(client, link: dict) -> None:
    response = client.get(link["path"])
    assert response.status_code == 404 and error_code(response) == "not_found", response.json
    assert_protected(response)


def sign_in(client, login: str = "ann@example.com", password: str = PASSWORD) -> dict:
    response = client.post("/signin", json={"id": login, "password": password})
    assert response.status_code == 200, response.json
    return bearer(response.json["data"]["access_token"])


# -- making a link -------------------------------------------------------------------------------------


@EVERY_STORAGE
def test_a_link_with_the_defaults_works_as_it_is_without_a_token(client, signed_in):
    content = b"hello, links\n"
    data = uploaded(client, signed_in, content, "hello.txt")
    before = time.time()
    response = client.post(f"/file/{data['id']}/link", headers=signed_in)  # no body at all
    assert response.status_code == 201
    link = response.json["data"]
    assert set(link) == LINK_FIELDS and response.json["error"] is None
    assert link["expires_in"] == 300 and link["disposition"] == "attachment"
    assert link["path"].startswith("/file/link/") and len(token_of(link)) == TOKEN_LENGTH
    assert link["url"] == "http://localhost" + link["path"]
    expires_at = datetime.strptime(link["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    assert math.ceil(before) + 300 <= expires_at <= math.ceil(time.time()) + 300  # a whole second, rounded up

    fetched = client.get(link["url"])  # absolute, as a page on another origin would use it; no Authorization
    assert fetched.status_code == 200 and fetched.data == content
    assert fetched.headers["Content-Disposition"].startswith("attachment;")
    assert fetched.headers["Access-Control-Allow-Origin"] == "*"

    for body in ({"json": {}}, {"data": {}}, {"data": {"expires_in": "60", "disposition": "attachment"}}):
        again = client.post(f"/file/{data['id']}/link", headers=signed_in, **body)
        assert again.status_code == 201, (body, again.json)
    assert again.json["data"]["expires_in"] == 60  # a form's digits are the integer
    assert token_of(again.json["data"]) != token_of(link)


@EVERY_STORAGE
@pytest.mark.parametrize("value", [0, -1, 86401, 10**30, 1.5, "60", True, None, [60], "abc"])
def test_expires_in_outside_1_to_link_max_ttl_or_not_an_integer_is_400(client, signed_in, value):
    data = uploaded(client, signed_in, b"x")
    response = client.post(f"/file/{data['id']}/link", headers=signed_in, json={"expires_in": value})
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert list(response.json["error"]["details"]["fields"]) == ["expires_in"]


@EVERY_STORAGE
@pytest.mark.parametrize("form", [{"expires_in": "0"}, {"expires_in": "1.5"}, {"expires_in": ""},
                                  {"expires_in": "86401"}, {"expires_in": "ten"}])
def test_a_form_expires_in_that_is_not_1_to_link_max_ttl_is_400(client, signed_in, form):
    data = uploaded(client, signed_in, b"x")
    response = client.post(f"/file/{data['id']}/link", headers=signed_in, data=form)
    assert response.status_code == 400 and list(response.json["error"]["details"]["fields"]) == ["expires_in"]


@EVERY_STORAGE
def test_the_bounds_themselves_are_allowed_and_bad_fields_are_named_together(client, signed_in):
    data = uploaded(client, signed_in, b"x")
    assert make_link(client, signed_in, data["id"], expires_in=1)["expires_in"] == 1
    assert make_link(client, signed_in, data["id"], expires_in=86400)["expires_in"] == 86400
    assert make_link(client, signed_in, data["id"], expires_in=60.0)["expires_in"] == 60  # JSON Schema's integer
    response = client.post(f"/file/{data['id']}/link", headers=signed_in,
                           json={"expires_in": 0, "disposition": "Inline", "expires": 5})
    assert response.status_code == 400
    assert set(response.json["error"]["details"]["fields"]) == {"expires_in", "disposition", "expires"}
    response = client.post(f"/file/{data['id']}/link", headers=signed_in, data="[1]", content_type="application/json")
    assert response.status_code == 400 and error_code(response) == "validation_error"


@EVERY_STORAGE
def test_link_max_ttl_is_the_limit_and_caps_the_default(make_app):
    client = make_app(LINK_MAX_TTL=120).test_client()
    headers = bearer(sign_up(client)["access_token"])
    data = uploaded(client, headers, b"x")
    assert make_link(client, headers, data["id"])["expires_in"] == 120
    assert make_link(client, headers, data["id"], expires_in=120)["expires_in"] == 120
    response = client.post(f"/file/{data['id']}/link", headers=headers, json={"expires_in": 121})
    assert response.status_code == 400 and "120" in response.json["error"]["details"]["fields"]["expires_in"]


@pytest.mark.parametrize(("backend", "storage_kind"), [BACKEND_STORAGE[0]], indirect=["backend"])
@pytest.mark.parametrize("seconds", [0, -5, 10 * 365 * 24 * 3600 + 1])
def test_a_link_max_ttl_outside_one_second_to_ten_years_refuses_to_start(make_app, seconds):
    with pytest.raises(RuntimeError, match="LINK_MAX_TTL"):
        make_app(LINK_MAX_TTL=seconds)


@EVERY_STORAGE
def test_another_users_file_or_a_missing_one_is_404_and_a_token_is_needed(client, signed_in):
    data = uploaded(client, signed_in, b"ann's")
    bob = bearer(sign_up(client, "bob@example.com")["access_token"])
    for headers, file_id in ((bob, data["id"]), (signed_in, data["id"] + 1000)):
        response = client.post(f"/file/{file_id}/link", headers=headers)
        assert response.status_code == 404 and error_code(response) == "not_found"
    response = client.post(f"/file/{data['id']}/link")
    assert response.status_code == 401 and error_code(response) == "missing_token"


# -- what a link serves ------------------------------------------------------------------------------------


@EVERY_STORAGE
def test_a_link_answers_as_the_download_does_plus_its_own_headers(client, signed_in):
    content = os.urandom(10_000)
    data = uploaded(client, signed_in, content, "Über 50% (draft).bin")
    link = make_link(client, signed_in, data["id"])
    download = client.get(f"/file/download/{data['id']}", headers=signed_in)
    response = client.get(link["path"])
    assert response.status_code == 200 and response.data == content
    for name in ("Content-Type", "Content-Length", "ETag", "Last-Modified", "Content-Disposition", "Accept-Ranges",
                 "X-Content-Type-Options", "Cache-Control"):
        assert response.headers[name] == download.headers[name], name
    assert response.headers["Content-Disposition"] == (
        "attachment; filename=\"Uber 50_ (draft).bin\"; filename*=UTF-8''%C3%9Cber%2050%25%20%28draft%29.bin")
    assert response.headers["X-Content-Type-Options"] == "nosniff" and response.headers["ETag"] == f'"{sha(content)}"'
    assert response.headers["Cache-Control"].startswith("private")
    assert_protected(response)

    head = client.head(link["path"])
    assert head.status_code == 200 and head.data == b""
    assert head.headers["Content-Length"] == str(len(content)) and head.headers["ETag"] == response.headers["ETag"]
    assert_protected(head)

    part = client.get(link["path"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == content[100:200]
    assert part.headers["Content-Range"] == "bytes 100-199/10000" and part.headers["Content-Length"] == "100"
    assert_protected(part)
    outside = client.get(link["path"], headers={"Range": "bytes=10000-"})
    assert outside.status_code == 416 and error_code(outside) == "range_not_satisfiable"
    assert outside.headers["Content-Range"] == "bytes */10000"
    assert_protected(outside)

    not_modified = client.get(link["path"], headers={"If-None-Match": response.headers["ETag"]})
    assert not_modified.status_code == 304 and not_modified.data == b""
    assert not_modified.headers["ETag"] == response.headers["ETag"]
    assert_protected(not_modified)
    failed = client.get(link["path"], headers={"If-Match": '"other"'})
    assert failed.status_code == 412 and error_code(failed) == "precondition_failed"


@EVERY_STORAGE
@pytest.mark.parametrize("content, name, mime_type, served", [
    (PNG, "photo.png", "image/png", "inline"),
    (SVG, "drawing.svg", "image/svg+xml", "attachment"),
    (PDF, "отчёт.pdf", "application/pdf", "inline"),
    (HTML, "page.html", "text/html", "attachment"),
    (b"just words\n", "notes.txt", "text/plain", "inline"),
    (NOISE, "song.mp3", "audio/mpeg", "inline"),
    (NOISE, "clip.mp4", "video/mp4", "inline"),
    (b'{"a": 1}\n', "data.json", "application/json", "attachment"),
    (NOISE, "blob.bin", "application/octet-stream", "attachment"),
])
def test_inline_only_for_content_a_browser_shows_without_running_it(
        client, signed_in, content, name, mime_type, served):
    data = uploaded(client, signed_in, content, name)
    assert data["mime_type"] == mime_type
    link = make_link(client, signed_in, data["id"], disposition="inline")
    assert link["disposition"] == served
    response = client.get(link["path"])
    assert response.status_code == 200 and response.data == content
    assert response.headers["Content-Type"] == mime_type
    assert response.headers["Content-Disposition"].split(";")[0] == served
    download = client.get(f"/file/download/{data['id']}", headers=signed_in)
    assert response.headers["Content-Disposition"] == download.headers["Content-Disposition"].replace(
        "attachment", served, 1)  # the same name parameters
    assert response.headers["Referrer-Policy"] == "no-referrer"
    if mime_type == "application/pdf":
        # Browsers' PDF viewers refuse to render in a sandbox: the exact type and nosniff keep it a PDF.
        assert "Content-Security-Policy" not in response.headers
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "Content-Security-Policy" not in client.head(link["path"]).headers
    else:
        assert response.headers["Content-Security-Policy"] == "sandbox"

    attachment = make_link(client, signed_in, data["id"])  # the default, whatever the type
    assert attachment["disposition"] == "attachment"
    response = client.get(attachment["path"])
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert_protected(response)  # an attached PDF keeps the sandbox too


@EVERY_STORAGE
def test_a_link_to_bytes_lost_from_storage_is_503_like_the_download(app, client, signed_in):
    data = uploaded(client, signed_in, b"lost")
    link = make_link(client, signed_in, data["id"])
    [blob] = stored_files(app)
    app.extensions["storage"].delete(blob.name)  # a lost volume, a hand-deleted object
    response = client.get(link["path"])
    assert response.status_code == 503 and error_code(response) == "service_unavailable"
    assert client.get(f"/file/download/{data['id']}", headers=signed_in).status_code == 503
    assert_protected(response)


# -- when a link stops working -------------------------------------------------------------------------------


@EVERY_STORAGE
def test_deleting_the_file_kills_its_links(client, signed_in):
    data = uploaded(client, signed_in, b"doomed")
    link = make_link(client, signed_in, data["id"])
    assert client.get(link["path"]).status_code == 200
    assert client.delete(f"/file/delete/{data['id']}", headers=signed_in).status_code == 200
    assert_dead(client, link)


@EVERY_STORAGE
def test_replacing_the_content_kills_its_links_and_a_new_link_serves_the_new_content(client, signed_in):
    data = uploaded(client, signed_in, b"version one")
    old = make_link(client, signed_in, data["id"])
    assert update(client, signed_in, data["id"], b"version two").status_code == 200
    assert_dead(client, old)
    new = make_link(client, signed_in, data["id"])
    assert client.get(new["path"]).data == b"version two"


def revoke_by_logout(client, asker, other):
    assert client.post("/logout", headers=asker).status_code == 200


def revoke_by_logout_all(client, asker, other):
    assert client.post("/logout/all", headers=other).json["data"]["sessions"] == 2


def revoke_by_deleting_the_session(client, asker, other):
    [sid] = [s["id"] for s in client.get("/sessions", headers=asker).json["data"]["items"] if s["current"]]
    assert client.delete(f"/sessions/{sid}", headers=other).status_code == 200


def revoke_by_changing_the_password(client, asker, other):
    response = client.patch("/user", headers=other, json={"current_password": PASSWORD, "password": "a new password"})
    assert response.status_code == 200  # signs out every other device: the asker's


@EVERY_STORAGE
@pytest.mark.parametrize("revoke", [revoke_by_logout, revoke_by_logout_all, revoke_by_deleting_the_session,
                                    revoke_by_changing_the_password])
def test_signing_out_the_session_that_asked_kills_the_link(client, signed_in, revoke):
    other = sign_in(client)  # a second device of the same user
    data = uploaded(client, signed_in, b"shared")
    link = make_link(client, signed_in, data["id"])
    kept = make_link(client, other, data["id"])
    assert client.get(link["path"]).status_code == 200
    revoke(client, signed_in, other)
    assert_dead(client, link)
    if revoke is revoke_by_changing_the_password:  # the device that changed it stays signed in, its link too
        assert client.get(kept["path"]).data == b"shared"


@EVERY_STORAGE
def test_signing_out_another_device_leaves_the_link_working(client, signed_in):
    other = sign_in(client)
    data = uploaded(client, signed_in, b"mine")
    link = make_link(client, signed_in, data["id"])
    assert client.post("/logout", headers=other).status_code == 200
    assert client.get(link["path"]).data == b"mine"


@EVERY_STORAGE
def test_past_its_expiry_a_link_is_410_even_for_a_deleted_file(client, signed_in):
    data = uploaded(client, signed_in, b"brief")
    link = make_link(client, signed_in, data["id"], expires_in=1)
    doomed = uploaded(client, signed_in, b"gone")
    gone = make_link(client, signed_in, doomed["id"], expires_in=1)
    assert client.get(link["path"]).data == b"brief"
    expires_at = datetime.strptime(link["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    assert expires_at - time.time() <= 2
    time.sleep(max(0.0, expires_at - time.time()) + 0.05)
    response = client.get(link["path"])
    assert response.status_code == 410 and error_code(response) == "link_expired"
    assert_protected(response)
    assert client.head(link["path"]).status_code == 410
    assert client.delete(f"/file/delete/{doomed['id']}", headers=signed_in).status_code == 200
    assert client.get(gone["path"]).status_code == 410  # the expiry is read before anything else


def flipped(token: str, index: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return token[:index] + alphabet[(alphabet.index(token[index]) + 1) % 64] + token[index + 1:]


@EVERY_STORAGE
def test_forged_tampered_or_truncated_tokens_are_404(client, signed_in):
    data = uploaded(client, signed_in, b"secret")
    other = uploaded(client, signed_in, b"other")
    link = make_link(client, signed_in, data["id"])
    token = token_of(link)
    signer = LinkSigner(JWT_TEST_SECRET)
    claims = signer.read(token)
    far = int(time.time()) + 3600
    forged = [
        token[:-1], token + "A", token[:40], "", "A" * TOKEN_LENGTH, flipped(token, 0), flipped(token, 3),
        flipped(token, 12), flipped(token, TOKEN_LENGTH - 1), token[:-2] + "~~", token.replace(token[5], "%", 1),
        token[:-1] + "=", token + "%00", "ü" * TOKEN_LENGTH,
        # signed with another secret
        LinkSigner("another-secret-" + "y" * 40).sign(claims),
        # the right key, fields no link of ours has: another file, a version never stored, a session never made,
        # the largest numbers the fields hold
        signer.sign(LinkClaims(other["id"], claims.storage_key, claims.session_id, far, False)),
        signer.sign(LinkClaims(data["id"], "0" * 32, claims.session_id, far, False)),
        signer.sign(LinkClaims(data["id"], claims.storage_key, "f" * 32, far, False)),
        signer.sign(LinkClaims(2**32 - 1, claims.storage_key, claims.session_id, 2**32 - 1, True)),
    ]
    for candidate in forged:
        response = client.get(f"/file/link/{candidate}")
        assert response.status_code == 404, candidate
        assert response.content_type == "application/json" and error_code(response) == "not_found"
        assert response.data.count(b"secret") == 0
    # A token with an unknown kind is refused even when sealed with the right key.
    fields = TOKEN_FIELDS.pack(7, data["id"], far, bytes.fromhex(claims.storage_key), bytes.fromhex(claims.session_id))
    sealed = base64.urlsafe_b64encode(signer._siv.encrypt(fields, None)).decode()
    assert client.get(f"/file/link/{sealed}").status_code == 404
    expired = signer.sign(LinkClaims(data["id"], claims.storage_key, claims.session_id, 0, False))
    assert client.get(f"/file/link/{expired}").status_code == 410
    assert client.get(link["path"]).data == b"secret"  # the real one still works


# -- where the link is used ------------------------------------------------------------------------------------


@EVERY_STORAGE
def test_the_url_follows_the_proxy_only_when_trusted(make_app):
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "files.example.com"}
    for trusted, url_root in ((1, "https://files.example.com/file/link/"), (0, "http://localhost/file/link/")):
        client = make_app(TRUSTED_PROXIES=trusted).test_client()
        headers = bearer(sign_up(client, f"ann{trusted}@example.com")["access_token"])
        data = uploaded(client, headers, b"proxied")
        direct = make_link(client, headers, data["id"])
        assert direct["url"] == "http://localhost" + direct["path"]
        link = client.post(f"/file/{data['id']}/link", headers={**headers, **forwarded}).json["data"]
        assert link["url"] == url_root + token_of(link) and link["path"] == "/file/link/" + token_of(link)
        fetched = client.get(link["url"], headers=forwarded)  # as the proxy would pass it on
        assert fetched.status_code == 200 and fetched.data == b"proxied"


def http(url: str, method: str = "GET", token: str | None = None, body: dict | None = None,
         headers: dict | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(
        url, method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {}),
                 **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def raw_request(server, line: bytes) -> bytes:
    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    with socket.create_connection((host, port), timeout=10) as connection:
        connection.sendall(line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize(("backend", "storage_kind"), [BACKEND_STORAGE[0]], indirect=["backend"])
def test_over_gunicorn_the_url_works_as_it_is_and_the_token_never_reaches_the_log(make_live_server):
    # Every log at its most talkative: gunicorn's debug lines and its access log (off by default) name the URI.
    server = make_live_server(LOG_LEVEL="DEBUG", GUNICORN_CMD_ARGS="--access-logfile -")
    status, _, body = http(server.url + "/signup", "POST", body={"id": "ann@example.com", "password": PASSWORD})
    token = json.loads(body)["data"]["access_token"]
    head, tail, content_type = multipart(PNG, "pixel.png")
    status, _, body = send(server, "POST", "/file/upload", token, [head, tail], content_type)
    file_id = json.loads(body)["data"]["id"]
    status, _, body = http(f"{server.url}/file/{file_id}/link", "POST", token, {"disposition": "inline"})
    assert status == 201
    link = json.loads(body)["data"]
    secret = token_of(link)
    assert link["url"] == server.url + link["path"]

    status, headers, data = http(link["url"])
    assert status == 200 and data == PNG and headers["Content-Disposition"].startswith("inline;")
    assert headers["Content-Security-Policy"] == "sandbox" and headers["Referrer-Policy"] == "no-referrer"
    status, headers, data = http(link["url"], "HEAD")
    assert status == 200 and data == b"" and headers["Content-Length"] == str(len(PNG))
    assert http(link["url"] + "/more")[0] == 404
    assert http(server.url + "/file/link/" + flipped(secret, 10))[0] == 404
    # A request line gunicorn refuses itself is logged by gunicorn, with the line in it.
    assert b" 400 " in raw_request(server, b"GET " + link["path"].encode())
    assert http(f"{server.url}/file/delete/{file_id}", "DELETE", token)[0] == 200
    assert http(link["url"])[0] == 404

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and server.log().count("/file/link/<redacted>") < 6:
        time.sleep(0.1)
    log = server.log()
    assert log.count("GET /file/link/<redacted> 200") == 1 and "HEAD /file/link/<redacted> 200" in log
    assert "GET /file/link/<redacted> 404" in log and "Invalid request" in log
    assert '"GET /file/link/<redacted> HTTP/1.1" 200' in log  # the access log's line
    assert secret not in log and secret[:20] not in log and flipped(secret, 10)[:20] not in log, log


@pytest.mark.parametrize("backend", ["mysql"], indirect=True)
@pytest.mark.parametrize("storage_kind", S3_KINDS)
def test_two_instances_a_link_made_on_one_dies_on_both_when_its_session_signs_out_on_the_other(
        make_live_server, tmp_path):
    a = make_live_server(INSTANCE_DIR=str(tmp_path / "a"), UPLOAD_DIR=str(tmp_path / "a-disk"))
    b = make_live_server(INSTANCE_DIR=str(tmp_path / "b"), UPLOAD_DIR=str(tmp_path / "b-disk"))
    status, _, body = http(a.url + "/signup", "POST", body={"id": "ann@example.com", "password": PASSWORD})
    token = json.loads(body)["data"]["access_token"]
    head, tail, content_type = multipart(PDF, "report.pdf")
    file_id = json.loads(send(a, "POST", "/file/upload", token, [head, tail], content_type)[2])["data"]["id"]
    status, _, body = http(f"{a.url}/file/{file_id}/link", "POST", token, {"disposition": "inline"})
    path = json.loads(body)["data"]["path"]
    for server in (a, b):
        status, headers, data = http(server.url + path)
        assert status == 200 and data == PDF and headers["Content-Disposition"].startswith("inline;")
        assert "Content-Security-Policy" not in headers and headers["Referrer-Policy"] == "no-referrer"

    assert http(b.url + "/logout", "POST", token)[0] == 200
    for server in (a, b):
        status, headers, body = http(server.url + path)
        assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
        assert headers["Content-Security-Policy"] == "sandbox"


# -- the document --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("backend", "storage_kind"), [BACKEND_STORAGE[0]], indirect=["backend"])
def test_both_operations_are_documented_with_their_answers(client):
    document = client.get("/openapi.json").json
    create = document["paths"]["/file/{file_id}/link"]["post"]
    assert create["security"] == [{"bearerAuth": []}] and set(create["responses"]) >= {"201", "400", "401", "404"}
    assert create["requestBody"]["required"] is False
    schema = document["components"]["schemas"]["LinkRequest"]["properties"]["expires_in"]
    assert (schema["minimum"], schema["maximum"], schema["default"]) == (1, 86400, 300)
    fetch = document["paths"]["/file/link/{token}"]["get"]
    assert fetch["security"] == [] and set(fetch["responses"]) >= {"200", "206", "304", "404", "410", "416"}
    headers = fetch["responses"]["200"]["headers"]
    assert headers["Referrer-Policy"]["schema"]["const"] == "no-referrer"
    assert headers["Content-Security-Policy"]["required"] is False
    assert fetch["responses"]["410"]["content"]["application/json"]["schema"]["properties"]["error"][
        "properties"]["code"]["enum"] == ["link_expired"]
