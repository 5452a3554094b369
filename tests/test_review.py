"""The security review's findings (SPEC §2, §9), each reproduced: limits that hold under bursts, per-user caps,
expired reservations, link tokens that reveal nothing, stored bytes readable by the service only, redacted
link paths, protective headers, common passwords, and the tus version check before any lookup."""
import base64
import concurrent.futures
import json
import stat
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.api import PASSWORD, bearer, sign_up

BURST = 30


def call(url: str, method: str = "GET", body: dict | None = None, token: str | None = None,
         headers: dict | None = None) -> tuple[int, dict, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, dict(response.headers), json.loads(raw) if raw else {}
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, dict(e.headers), json.loads(raw) if raw else {}


def burst(count: int, attempt) -> list[int]:
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return sorted(pool.map(lambda _: attempt(), range(count)))


def signed_up(server, login: str) -> str:
    status, _, body = call(server.url + "/signup", "POST", {"id": login, "password": PASSWORD})
    assert status == 201, body
    return body["data"]["access_token"]


# -- a limit of N lets at most N through, however many arrive at once ---------------------------------------


@pytest.mark.parametrize("store", ["database", "redis"])
def test_wrong_current_passwords_in_a_burst_are_checked_at_most_the_limit(make_live_server, store, request):
    settings = {"RATELIMIT_ENABLED": "true", "RATELIMIT_REAUTH": "5 per 15 minutes",
                "RATELIMIT_ACCOUNT": "1000 per hour", "RATELIMIT_SIGNIN": "1000 per minute"}
    if store == "redis":
        settings.update(RATELIMIT_STORAGE_URI=request.getfixturevalue("redis_url"),
                        RATELIMIT_KEY_PREFIX=request.getfixturevalue("redis_prefix"))
    server = make_live_server(**settings)
    token = signed_up(server, "burst@example.com")
    statuses = burst(BURST, lambda: call(server.url + "/user", "PATCH",
                                         {"current_password": "not the password at all", "password": "a fine new phrase"},
                                         token)[0])
    assert statuses.count(403) <= 5 and statuses.count(403) + statuses.count(429) == BURST, statuses
    # the right password, once the window is spent, is refused too: the guesses were counted
    assert call(server.url + "/user", "PATCH", {"current_password": PASSWORD, "password": "another good phrase"},
                token)[0] == 429


def test_failed_sign_ins_of_one_login_in_a_burst_are_checked_at_most_the_limit(make_live_server):
    server = make_live_server(RATELIMIT_ENABLED="true", RATELIMIT_SIGNIN="10 per minute")
    signed_up(server, "target@example.com")
    statuses = burst(40, lambda: call(server.url + "/signin", "POST",
                                      {"id": "target@example.com", "password": "wrong guess here"})[0])
    assert statuses.count(401) <= 10 and statuses.count(401) + statuses.count(429) == 40, statuses


def test_a_right_password_gives_its_count_back(client, app):
    app.extensions["throttle"] = app.extensions["throttle"].__class__(
        **{**app.extensions["throttle"].__dict__, "enabled": True})
    sign_up(client, "owner@example.com")
    for _ in range(15):  # more sign-ins than the limit, every one right: none is a failure
        response = client.post("/signin", json={"id": "owner@example.com", "password": PASSWORD},
                               environ_base={"REMOTE_ADDR": f"10.0.0.{_}"})
        assert response.status_code == 200, response.json


# -- caps on what one user creates --------------------------------------------------------------------------


def test_files_past_max_files_per_user_are_413_empty_ones_too(make_app):
    client = make_app(MAX_FILES_PER_USER=3).test_client()
    headers = bearer(sign_up(client)["access_token"])
    for content in (b"one", b"", b"three"):
        response = client.post("/file/upload", headers=headers, data={"file": (io_bytes(content), "f.txt")})
        assert response.status_code == 201, response.json
    for content in (b"four", b""):
        response = client.post("/file/upload", headers=headers, data={"file": (io_bytes(content), "f.txt")})
        assert response.status_code == 413 and response.json["error"]["code"] == "quota_exceeded"
    response = client.post("/file/uploads", headers={**headers, **TUS, "Upload-Length": "0"})
    assert response.status_code == 413, response.json
    assert client.get("/file/list", headers=headers).json["data"]["total"] == 3


def io_bytes(content: bytes):
    import io

    return io.BytesIO(content)


TUS = {"Tus-Resumable": "1.0.0"}


def test_unfinished_uploads_past_max_open_uploads_are_429_with_retry_after(make_app):
    client = make_app(MAX_OPEN_UPLOADS=2).test_client()
    headers = bearer(sign_up(client)["access_token"])
    made = [client.post("/file/uploads", headers={**headers, **TUS, "Upload-Length": "10"}) for _ in range(2)]
    assert [r.status_code for r in made] == [201, 201]
    refused = client.post("/file/uploads", headers={**headers, **TUS, "Upload-Length": "10"})
    assert refused.status_code == 429 and refused.json["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) > 0
    client.delete(made[0].headers["Location"], headers={**headers, **TUS})
    assert client.post("/file/uploads", headers={**headers, **TUS, "Upload-Length": "10"}).status_code == 201


def test_patch_user_as_a_whole_is_limited_per_user(make_app):
    client = make_app(RATELIMIT_ENABLED=True, RATELIMIT_ACCOUNT="3 per hour").test_client()
    headers = bearer(sign_up(client)["access_token"])
    sign_up(client, "taken@example.com")
    answers = [client.patch("/user", headers=headers, json={"current_password": PASSWORD, "id": "taken@example.com"})
               for _ in range(5)]
    assert [a.status_code for a in answers] == [409, 409, 409, 429, 429]
    assert answers[-1].headers["Retry-After"]


def test_an_expired_unfinished_upload_frees_its_reservation_by_itself(make_app):
    client = make_app(QUOTA_BYTES=1000, UPLOAD_EXPIRY=1).test_client()
    headers = bearer(sign_up(client)["access_token"])
    assert client.post("/file/uploads", headers={**headers, **TUS, "Upload-Length": "900"}).status_code == 201
    refused = client.post("/file/upload", headers=headers, data={"file": (io_bytes(b"x" * 500), "f.bin")})
    assert refused.status_code == 413
    assert "900 held by unfinished resumable uploads" in refused.json["error"]["message"]
    time.sleep(1.2)
    stored = client.post("/file/upload", headers=headers, data={"file": (io_bytes(b"x" * 500), "f.bin")})
    assert stored.status_code == 201, stored.json
    assert client.post("/file/uploads", headers={**headers, **TUS, "Upload-Length": "400"}).status_code == 201


# -- what a token and a stored file give away ---------------------------------------------------------------


def test_a_file_link_token_reveals_neither_the_session_nor_the_storage_key(app, client, signed_in):
    file_id = client.post("/file/upload", headers=signed_in, data={"file": (io_bytes(b"secret"), "s.txt")}).json["data"]["id"]
    token = client.post(f"/file/{file_id}/link", headers=signed_in, json={}).json["data"]["path"].rsplit("/", 1)[1]
    raw = base64.urlsafe_b64decode(token)
    with app.app_context():
        from app.db.models import DeviceSession, File
        from app.http.context import get_db

        key = get_db().get(File, file_id).storage_key
        sids = [s.id for s in get_db().query(DeviceSession).all()]
    for secret in [key, *sids]:
        assert bytes.fromhex(secret) not in raw and secret.encode() not in raw
    assert client.get(f"/file/link/{token}").data == b"secret"
    forged = bytearray(raw)
    forged[3] ^= 1
    assert client.get("/file/link/" + base64.urlsafe_b64encode(bytes(forged)).decode()).status_code == 404


def test_every_stored_byte_is_readable_by_the_service_only(app, client, signed_in):
    client.post("/file/upload", headers=signed_in, data={"file": (io_bytes(b"plain"), "p.txt")})
    created = client.post("/file/uploads", headers={**signed_in, **TUS, "Upload-Length": "6"})
    partial_mode = {stat.S_IMODE(p.stat().st_mode) for p in Path(app.config["UPLOAD_DIR"], ".uploads").iterdir()}
    assert partial_mode == {0o600}
    finished = client.patch(created.headers["Location"], data=b"resume", headers={
        **signed_in, **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert finished.status_code == 204
    blobs = [p for p in Path(app.config["UPLOAD_DIR"]).rglob("*") if p.is_file()]
    assert len(blobs) >= 2 and {stat.S_IMODE(p.stat().st_mode) for p in blobs} == {0o600}


def test_a_link_token_is_redacted_from_the_log_however_the_path_is_spelled(make_live_server):
    server = make_live_server(LOG_LEVEL="INFO")
    token = signed_up(server, "logs@example.com")
    secret = "A" * 76
    for path in (f"/file/link/{secret}", f"/file/./link/{secret}", f"//file//link//{secret}",
                 f"/file/%2e/link/{secret}", f"/FILE/LINK/{secret}"):
        call(server.url + path, token=token)
    time.sleep(0.3)
    log = server.log()
    assert secret not in log and log.count("<redacted>") >= 5, log[-2000:]


# -- headers --------------------------------------------------------------------------------------------------


def test_answers_carry_nosniff_and_no_framing_and_name_no_server_software(live_server):
    for path in ("/ping", "/info", "/docs", "/nowhere"):
        _, headers, _ = call(live_server.url + path) if path != "/docs" else docs(live_server)
        assert headers.get("X-Content-Type-Options") == "nosniff", path
        assert headers.get("X-Frame-Options") == "DENY", path
        assert "Server" not in headers, (path, headers.get("Server"))
    _, headers, _ = docs(live_server)
    policy = headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-eval" not in policy


def docs(server) -> tuple[int, dict, str]:
    with urllib.request.urlopen(server.url + "/docs", timeout=10) as response:
        return response.status, dict(response.headers), response.read().decode()


# -- passwords ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["password", "12345678", "Password1", "qwertyuiop", "iloveyou1",
                                      "superman123", "1q2w3e4r5t6y"])
def test_a_common_password_is_refused_with_a_clear_400(client, password):
    response = client.post("/signup", json={"id": "common@example.com", "password": password})
    assert response.status_code == 400
    assert "most commonly used" in response.json["error"]["details"]["fields"]["password"]


def test_a_common_new_password_is_refused_on_change_too(client, signed_in):
    response = client.patch("/user", headers=signed_in, json={"current_password": PASSWORD, "password": "letmein123"})
    assert response.status_code == 400 and "password" in response.json["error"]["details"]["fields"]


# -- tus: the version before the lookup --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/file/uploads/0123456789abcdef0123456789abcdef", "/file/uploads/a/b", "/file/uploads/x"])
def test_a_tus_request_without_tus_resumable_is_412_before_the_upload_is_looked_up(client, signed_in, path):
    for method in ("HEAD", "PATCH", "DELETE", "GET"):
        response = client.open(path, method=method, headers=signed_in)
        assert response.status_code == 412, (method, path, response.status_code)
    assert client.open(path, method="HEAD", headers={**signed_in, **TUS}).status_code == 404
    assert client.open(path, method="HEAD").status_code == 401
