"""Sign-up, sign-in, tokens, sessions and logout, through HTTP on SQLite and MySQL."""
import base64
import json
import threading
import time
import urllib.error
import urllib.request

import jwt
import pytest
import sqlalchemy as sa

from tests.conftest import JWT_TEST_SECRET
from tests.support.api import PASSWORD, bearer, sign_up
from tests.support.api import error_code


def test_sign_up_returns_token_pair_and_cookie(client):
    response = client.post("/signup", json={"id": "Ann@Example.com", "password": PASSWORD})
    assert response.status_code == 201
    assert set(response.json) == {"data", "error"} and response.json["error"] is None
    data = response.json["data"]
    assert data["id"] == "ann@example.com"
    assert data["token_type"] == "Bearer" and data["expires_in"] == 600
    assert data["refresh_expires_in"] == 30 * 24 * 3600
    assert len(data["refresh_token"]) >= 43  # 256 bits, base64url
    claims = jwt.decode(data["access_token"], JWT_TEST_SECRET, algorithms=["HS256"])
    assert claims["typ"] == "access" and {"sub", "sid", "jti", "iat", "exp"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 600
    cookie = response.headers["Set-Cookie"]
    assert f"refresh_token={data['refresh_token']}" in cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/signin" in cookie
    assert "Secure" not in cookie  # plain HTTP here


def test_sign_up_accepts_form_encoded_body(client):
    response = client.post("/signup", data={"id": "form@example.com", "password": PASSWORD})
    assert response.status_code == 201
    assert response.json["data"]["id"] == "form@example.com"


@pytest.mark.parametrize(
    "first, second",
    [
        ("ann@example.com", "ann@example.com"),
        ("ann@example.com", "ANN@Example.COM"),
        ("+7 (999) 123-45-67", "+79991234567"),
        ("+79991234567", "8 999 123 45 67"),  # national format, read in DEFAULT_PHONE_REGION=RU
    ],
)
def test_duplicate_sign_up_is_409(client, first, second):
    sign_up(client, first)
    response = client.post("/signup", json={"id": second, "password": PASSWORD})
    assert response.status_code == 409
    assert error_code(response) == "user_exists"


def test_phone_is_stored_in_e164(client):
    assert sign_up(client, "+7 (999) 123-45-67")["id"] == "+79991234567"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"id": "not-an-email", "password": PASSWORD}, "id"),
        ({"id": "ann@", "password": PASSWORD}, "id"),
        ({"id": "12", "password": PASSWORD}, "id"),
        ({"id": "+7 999", "password": PASSWORD}, "id"),
        ({"id": "", "password": PASSWORD}, "id"),
        ({"id": 79991234567, "password": PASSWORD}, "id"),
        ({"id": "a" * 250 + "@example.com", "password": PASSWORD}, "id"),
        ({"password": PASSWORD}, "id"),
        ({"id": "ann@example.com", "password": "short"}, "password"),
        ({"id": "ann@example.com", "password": "x" * 129}, "password"),
        ({"id": "ann@example.com"}, "password"),
        ({"id": "ann@example.com", "password": 12345678}, "password"),
        ({"id": "ann@example.com", "password": PASSWORD, "admin": True}, "admin"),
    ],
)
def test_sign_up_rejects_bad_input_naming_the_field(client, body, field):
    response = client.post("/signup", json=body)
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert field in response.json["error"]["details"]["fields"]


@pytest.mark.parametrize(
    "data, content_type",
    [
        ("{not json", "application/json"), ("[1, 2]", "application/json"), ("id=x", "text/plain"),
        ("", "application/json"),
        ("[" * 100_000, "application/json"),  # nested deeper than the JSON parser's recursion limit
    ],
)
def test_malformed_or_unsupported_bodies_are_400(client, data, content_type):
    response = client.post("/signup", data=data, content_type=content_type)
    assert response.status_code == 400
    assert error_code(response) == "validation_error"


def test_password_bounds_are_inclusive(client):
    assert client.post("/signup", json={"id": "a@example.com", "password": "x" * 8}).status_code == 201
    assert client.post("/signup", json={"id": "b@example.com", "password": "x" * 128}).status_code == 201


def test_sign_in_gives_a_new_pair_each_time(client):
    first = sign_up(client)
    second = client.post("/signin", json={"id": "ANN@example.com", "password": PASSWORD})
    third = client.post("/signin", data={"id": "ann@example.com", "password": PASSWORD})
    assert second.status_code == 200 and third.status_code == 200
    tokens = [first, second.json["data"], third.json["data"]]
    assert len({t["access_token"] for t in tokens}) == 3
    assert len({t["refresh_token"] for t in tokens}) == 3
    sids = {jwt.decode(t["access_token"], options={"verify_signature": False})["sid"] for t in tokens}
    assert len(sids) == 3  # one session per sign-in


def test_unknown_id_and_wrong_password_fail_identically(client):
    sign_up(client)
    wrong = client.post("/signin", json={"id": "ann@example.com", "password": "wrong password"})
    unknown = client.post("/signin", json={"id": "bob@example.com", "password": "wrong password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json == unknown.json
    assert error_code(wrong) == "invalid_credentials"


def test_sign_in_validates_input(client):
    missing = client.post("/signin", json={"id": "ann@example.com"})
    assert missing.status_code == 400
    assert set(missing.json["error"]["details"]["fields"]) == {"password"}
    not_a_login = client.post("/signin", json={"id": "nobody", "password": PASSWORD})
    assert not_a_login.status_code == 400
    assert set(not_a_login.json["error"]["details"]["fields"]) == {"id"}


def test_outdated_password_hash_is_upgraded_on_sign_in(make_app):
    old = make_app(ARGON2_TIME_COST=1)
    sign_up(old.test_client())
    new = make_app(ARGON2_TIME_COST=2)
    assert new.test_client().post("/signin", json={"id": "ann@example.com", "password": PASSWORD}).status_code == 200
    with new.extensions["engine"].connect() as connection:
        stored = connection.execute(sa.text("SELECT password_hash FROM users")).scalar_one()
    assert stored.startswith("$argon2id$") and ",t=2," in stored
    assert old.test_client().post("/signin", json={"id": "ann@example.com", "password": PASSWORD}).status_code == 200


def test_info_returns_the_login(client, signed_in):
    response = client.get("/info", headers=signed_in)
    assert response.status_code == 200
    assert response.json == {"data": {"id": "ann@example.com", "verified": False}, "error": None}


def forge(claims: dict, secret: str = JWT_TEST_SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def unsigned(claims: dict) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_bad_access_tokens_are_refused_with_the_spec_codes(client):
    tokens = sign_up(client)
    claims = jwt.decode(tokens["access_token"], JWT_TEST_SECRET, algorithms=["HS256"])
    header, payload, signature = tokens["access_token"].split(".")
    tampered_payload = base64.urlsafe_b64encode(
        json.dumps({**claims, "sub": "999"}).encode()
    ).rstrip(b"=").decode()
    cases = {
        "missing_token": [None, "Basic YW5uOnB3", "Bearer ", tokens["access_token"]],
        "invalid_token": [
            "Bearer garbage",
            f"Bearer {header}.{tampered_payload}.{signature}",
            f"Bearer {header}.{payload}.{signature[:-4]}AAAA",
            f"Bearer {unsigned(claims)}",
            f"Bearer {forge(claims, secret='another secret of at least thirty-two bytes')}",
            f"Bearer {forge(claims, algorithm='HS512')}",  # right key, algorithm not the pinned one
            f"Bearer {forge({**claims, 'typ': 'refresh'})}",
            f"Bearer {forge({k: v for k, v in claims.items() if k != 'sid'})}",
            f"Bearer {forge({**claims, 'sid': 'no-such-session'})}",
            f"Bearer {tokens['refresh_token']}",
        ],
    }
    for code, headers in cases.items():
        for value in headers:
            response = client.get("/info", headers={"Authorization": value} if value else {})
            assert response.status_code == 401, value
            assert error_code(response) == code, value
    assert client.get("/info", headers=bearer(tokens["access_token"])).status_code == 200


def test_expired_access_token_is_token_expired(make_app):
    client = make_app(ACCESS_TOKEN_TTL=3, JWT_LEEWAY=0).test_client()
    tokens = sign_up(client)
    assert client.get("/info", headers=bearer(tokens["access_token"])).status_code == 200  # verified, then kept
    time.sleep(3.2)
    response = client.get("/info", headers=bearer(tokens["access_token"]))
    assert response.status_code == 401
    assert error_code(response) == "token_expired"
    refreshed = client.post("/signin/new_token", json={"refresh_token": tokens["refresh_token"]})
    assert client.get("/info", headers=bearer(refreshed.json["data"]["access_token"])).status_code == 200


@pytest.mark.parametrize("carrier", ["json", "form", "bearer", "bearer with a JSON type but no body", "cookie"])
def test_refresh_accepts_every_carrier(app, carrier):
    client = app.test_client()
    tokens = sign_up(client)
    if carrier == "json":
        response = client.post("/signin/new_token", json={"refresh_token": tokens["refresh_token"]})
    elif carrier == "form":
        response = client.post("/signin/new_token", data={"refresh_token": tokens["refresh_token"]})
    elif carrier == "bearer":
        response = client.post("/signin/new_token", headers=bearer(tokens["refresh_token"]))
    elif carrier == "bearer with a JSON type but no body":
        headers = {**bearer(tokens["refresh_token"]), "Content-Type": "application/json"}
        response = client.post("/signin/new_token", headers=headers)
    else:
        assert client.get_cookie("refresh_token", path="/signin").value == tokens["refresh_token"]
        response = client.post("/signin/new_token")
    assert response.status_code == 200
    data = response.json["data"]
    assert data["id"] == "ann@example.com"
    assert data["refresh_token"] != tokens["refresh_token"]
    assert data["access_token"] != tokens["access_token"]
    assert f"refresh_token={data['refresh_token']}" in response.headers["Set-Cookie"]
    assert client.get("/info", headers=bearer(data["access_token"])).status_code == 200
    old_sid = jwt.decode(tokens["access_token"], options={"verify_signature": False})["sid"]
    new_sid = jwt.decode(data["access_token"], options={"verify_signature": False})["sid"]
    assert old_sid == new_sid  # a refresh keeps the device's session


def test_refresh_without_a_token_is_400(app):
    client = app.test_client(use_cookies=False)
    for kwargs in ({}, {"json": {}}, {"json": {"refresh_token": ""}}):
        response = client.post("/signin/new_token", **kwargs)
        assert response.status_code == 400
        assert error_code(response) == "validation_error"
        assert "refresh_token" in response.json["error"]["details"]["fields"]
    assert client.post("/signin/new_token", json={"refresh_token": 5}).status_code == 400


def test_access_token_is_not_a_refresh_token(client):
    tokens = sign_up(client)
    for kwargs in (
        {"json": {"refresh_token": tokens["access_token"]}},
        {"headers": bearer(tokens["access_token"])},
        {"json": {"refresh_token": "made-up"}},
    ):
        response = client.post("/signin/new_token", **kwargs)
        assert response.status_code == 401
        assert error_code(response) == "invalid_refresh_token"


def test_rotated_token_within_grace_is_refused_but_session_lives(client):
    tokens = sign_up(client)
    first = client.post("/signin/new_token", json={"refresh_token": tokens["refresh_token"]})
    again = client.post("/signin/new_token", json={"refresh_token": tokens["refresh_token"]})
    assert first.status_code == 200
    assert again.status_code == 401 and error_code(again) == "invalid_refresh_token"
    new = first.json["data"]
    assert client.get("/info", headers=bearer(new["access_token"])).status_code == 200
    assert client.post("/signin/new_token", json={"refresh_token": new["refresh_token"]}).status_code == 200


def test_reused_refresh_token_after_grace_revokes_the_session(make_app):
    client = make_app(REFRESH_REUSE_GRACE=0).test_client()
    tokens = sign_up(client)
    other_device = client.post("/signin", json={"id": "ann@example.com", "password": PASSWORD}).json["data"]
    new = client.post("/signin/new_token", json={"refresh_token": tokens["refresh_token"]}).json["data"]
    time.sleep(0.05)
    stolen = client.post("/signin/new_token", json={"refresh_token": tokens["refresh_token"]})
    assert stolen.status_code == 401 and error_code(stolen) == "invalid_refresh_token"
    # The whole session is gone: the legitimate holder's new tokens fail too ...
    assert error_code(client.get("/info", headers=bearer(new["access_token"]))) == "invalid_token"
    assert client.post("/signin/new_token", json={"refresh_token": new["refresh_token"]}).status_code == 401
    # ... and the user's other devices are untouched.
    assert client.get("/info", headers=bearer(other_device["access_token"])).status_code == 200


def test_an_older_generation_is_also_detected(make_app):
    client = make_app(REFRESH_REUSE_GRACE=0).test_client()
    first = sign_up(client)
    second = client.post("/signin/new_token", json={"refresh_token": first["refresh_token"]}).json["data"]
    third = client.post("/signin/new_token", json={"refresh_token": second["refresh_token"]}).json["data"]
    time.sleep(0.05)
    assert client.post("/signin/new_token", json={"refresh_token": first["refresh_token"]}).status_code == 401
    assert client.get("/info", headers=bearer(third["access_token"])).status_code == 401


def test_logout_on_one_device_keeps_the_other(client):
    phone = sign_up(client)
    laptop = client.post("/signin", json={"id": "ann@example.com", "password": PASSWORD}).json["data"]
    response = client.post("/logout", headers=bearer(phone["access_token"]))
    assert response.status_code == 200
    assert response.json == {"data": {"logged_out": True}, "error": None}
    assert "refresh_token=;" in response.headers["Set-Cookie"] and "Path=/signin" in response.headers["Set-Cookie"]
    # the very next request with the logged-out device's tokens fails
    dead = client.get("/info", headers=bearer(phone["access_token"]))
    assert dead.status_code == 401 and error_code(dead) == "invalid_token"
    dead_refresh = client.post("/signin/new_token", json={"refresh_token": phone["refresh_token"]})
    assert dead_refresh.status_code == 401 and error_code(dead_refresh) == "invalid_refresh_token"
    assert client.post("/logout", headers=bearer(phone["access_token"])).status_code == 401
    # the other device keeps working, access and refresh
    assert client.get("/info", headers=bearer(laptop["access_token"])).status_code == 200
    assert client.post("/signin/new_token", json={"refresh_token": laptop["refresh_token"]}).status_code == 200


def test_logout_by_get_and_sign_in_again(client):
    before = sign_up(client)
    assert client.get("/logout", headers=bearer(before["access_token"])).status_code == 200
    assert client.get("/info", headers=bearer(before["access_token"])).status_code == 401
    after = client.post("/signin", json={"id": "ann@example.com", "password": PASSWORD}).json["data"]
    assert after["access_token"] != before["access_token"] and after["refresh_token"] != before["refresh_token"]
    assert client.get("/info", headers=bearer(after["access_token"])).status_code == 200


def test_logout_needs_a_token(client):
    response = client.post("/logout")
    assert response.status_code == 401 and error_code(response) == "missing_token"


def test_login_events_are_recorded(app, client):
    sign_up(client)
    client.post("/signin", json={"id": "ann@example.com", "password": "wrong password"}, headers={"User-Agent": "probe/1"})
    with app.extensions["engine"].connect() as connection:
        rows = connection.execute(sa.text("SELECT success, user_agent FROM login_events ORDER BY id")).all()
    assert [(bool(r.success), r.user_agent) for r in rows][-1] == (False, "probe/1")
    assert bool(rows[0].success) is True


def test_cors_on_success_error_and_preflight(client, signed_in):
    origin = {"Origin": "https://app.example.net"}
    ok = client.get("/info", headers={**signed_in, **origin})
    failed = client.get("/info", headers=origin)
    missing = client.get("/no/such/route", headers=origin)
    for response in (ok, failed, missing):
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "Access-Control-Allow-Credentials" not in response.headers
        exposed = {h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
        assert {"content-disposition", "content-length", "etag", "retry-after", "x-request-id", "repr-digest",
                "location", "upload-offset", "upload-length", "upload-expires", "tus-resumable", "tus-version",
                "tus-extension", "tus-max-size", "x-file-id"} <= exposed
    tus = client.options("/file/upload", headers={
        **origin, "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "Tus-Resumable, Upload-Length, Upload-Offset, Upload-Metadata, Upload-Checksum",
    })
    allowed = {h.strip().lower() for h in tus.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"tus-resumable", "upload-length", "upload-offset", "upload-metadata", "upload-checksum"} <= allowed
    for path in ("/info", "/signin", "/signin/new_token", "/logout"):
        preflight = client.options(path, headers={
            **origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        })
        assert 200 <= preflight.status_code < 300
        assert preflight.headers["Access-Control-Allow-Origin"] == "*"
        allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]


def test_unknown_route_and_wrong_method_are_json(client):
    missing = client.get("/nope")
    assert missing.status_code == 404
    assert missing.json["data"] is None and error_code(missing) == "not_found"
    wrong = client.delete("/signup")
    assert wrong.status_code == 405 and error_code(wrong) == "method_not_allowed"
    assert "POST" in wrong.headers["Allow"]
    assert wrong.content_type == "application/json"


def test_request_id_is_echoed_or_made(client):
    assert client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    made = client.get("/nope").headers["X-Request-ID"]
    assert len(made) == 32
    assert client.get("/health", headers={"X-Request-ID": "bad id\x01"}).headers["X-Request-ID"] != "bad id\x01"


def test_oversize_json_body_is_413_in_the_envelope(client):
    response = client.post("/signup", data=b"{" + b" " * (2 << 20) + b"}", content_type="application/json")
    assert response.status_code == 413
    assert error_code(response) == "file_too_large"


def test_crash_is_a_json_500_without_details(make_app):
    app = make_app()
    app.add_url_rule("/boom", "boom", lambda: 1 / 0)
    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.json == {"data": None, "error": {"code": "internal_error", "message": "internal server error"}}
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    debug_app = make_app(DEBUG=True)
    debug_app.debug = True
    debug_app.add_url_rule("/boom", "boom", lambda: 1 / 0)
    assert "ZeroDivisionError" in debug_app.test_client().get("/boom").json["error"]["stack"]


def test_sign_in_is_rate_limited_per_login(make_app):
    client = make_app(RATELIMIT_ENABLED=True, RATELIMIT_SIGNIN="3 per minute").test_client()
    sign_up(client)
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):  # a spread-out attack on one login
        response = client.post("/signin", json={"id": "ann@example.com", "password": "wrong password"},
                               environ_base={"REMOTE_ADDR": address})
        assert response.status_code == 401
    limited = client.post("/signin", json={"id": "ANN@example.com", "password": PASSWORD},
                          environ_base={"REMOTE_ADDR": "10.0.0.4"})
    assert limited.status_code == 429
    assert error_code(limited) == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["Access-Control-Allow-Origin"] == "*"
    other = client.post("/signin", json={"id": "bob@example.com", "password": PASSWORD},
                        environ_base={"REMOTE_ADDR": "10.0.0.5"})
    assert other.status_code == 401  # other logins are not affected


def test_sign_in_is_rate_limited_per_address(make_app):
    client = make_app(RATELIMIT_ENABLED=True, RATELIMIT_SIGNIN="3 per minute").test_client()
    statuses = [
        client.post("/signin", json={"id": f"user{i}@example.com", "password": PASSWORD}).status_code
        for i in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    elsewhere = client.post("/signin", json={"id": "user9@example.com", "password": PASSWORD},
                            environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert elsewhere.status_code == 401


def test_successful_sign_ins_do_not_lock_the_login(make_app):
    client = make_app(RATELIMIT_ENABLED=True, RATELIMIT_SIGNIN="3 per minute").test_client()
    sign_up(client)
    for i in range(5):
        response = client.post("/signin", json={"id": "ann@example.com", "password": PASSWORD},
                               environ_base={"REMOTE_ADDR": f"10.1.0.{i}"})
        assert response.status_code == 200


def test_sign_up_is_rate_limited_per_address(make_app):
    client = make_app(RATELIMIT_ENABLED=True, RATELIMIT_SIGNUP="2 per hour").test_client()
    sign_up(client, "a@example.com")
    sign_up(client, "b@example.com")
    response = client.post("/signup", json={"id": "c@example.com", "password": PASSWORD})
    assert response.status_code == 429 and error_code(response) == "rate_limited"
    assert int(response.headers["Retry-After"]) > 60


def test_health_ok(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json["data"]["database"] == "ok"


def test_ready_names_each_part_that_does_not_answer(make_app, tmp_path):
    ready = make_app().test_client().get("/health/ready")
    assert ready.status_code == 200
    assert ready.json["data"] == {"status": "ok", "database": "ok", "storage": "ok", "redis": "not configured"}
    uploads = tmp_path / "frozen-uploads"
    app = make_app(UPLOAD_DIR=str(uploads), RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0", RATELIMIT_STORAGE_TIMEOUT=0.5)
    storage = app.extensions["storage"]
    storage.tmp.rmdir()  # the volume went away under the service
    try:
        answer = app.test_client().get("/health/ready")
    finally:
        storage.tmp.mkdir()
    assert answer.status_code == 503 and error_code(answer) == "service_unavailable"
    assert answer.json["error"]["details"] == {"failed": ["storage", "redis"]}
    assert app.test_client().get("/health").status_code == 200  # liveness and the database: fine


def test_health_and_protected_routes_503_when_database_unreachable(make_app, signed_in):
    down = make_app(DATABASE_URL="mysql+pymysql://root@127.0.0.1:1/nothing", DB_CONNECT_TIMEOUT=2).test_client()
    health = down.get("/health")
    assert health.status_code == 503 and error_code(health) == "service_unavailable"
    info = down.get("/info", headers=signed_in)
    assert info.status_code == 503 and error_code(info) == "service_unavailable"
    assert down.post("/signin", json={"id": "ann@example.com", "password": PASSWORD}).status_code == 503


def test_production_refuses_a_missing_or_weak_secret(tmp_path):
    from app import create_app

    for secret in ("", "short"):
        with pytest.raises(RuntimeError, match="JWT_SECRET"):
            create_app({"APP_ENV": "production", "JWT_SECRET": secret, "DATABASE_URL": "sqlite://"})


def test_development_secret_is_made_once_and_kept(tmp_path):
    from app import create_app

    settings = {"JWT_SECRET": "", "INSTANCE_DIR": str(tmp_path), "DATABASE_URL": "sqlite://"}
    first, second = create_app(settings), create_app(settings)
    secret_file = tmp_path / "jwt_secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert first.config["JWT_SECRET"] == second.config["JWT_SECRET"] == secret_file.read_text()
    assert len(first.config["JWT_SECRET"]) >= 43


def test_parallel_refreshes_have_exactly_one_winner(live_server, app):
    tokens = sign_up(app.test_client())
    results: list[int] = []

    def refresh() -> None:
        request = urllib.request.Request(
            f"{live_server.url}/signin/new_token",
            data=json.dumps({"refresh_token": tokens["refresh_token"]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                results.append(response.status)
        except urllib.error.HTTPError as e:
            results.append(e.code)

    threads = [threading.Thread(target=refresh) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200] + [401] * 7, live_server.log()


def test_preflight_is_2xx_even_where_the_request_would_fail(client):
    for path in ("/no/such/route", "/file/download/abc", "/signup"):
        response = client.options(path, headers={
            "Origin": "https://app.example.net",
            "Access-Control-Request-Method": "DELETE",
            "Access-Control-Request-Headers": "authorization",
        })
        assert response.status_code == 204, path
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "DELETE" in response.headers["Access-Control-Allow-Methods"]
    # a plain OPTIONS (no preflight) still gets Flask's automatic answer with Allow
    assert "POST" in client.options("/signup").headers["Allow"]


def test_a_request_marks_its_session_as_used(make_app):
    client = make_app(SESSION_TOUCH_SECONDS=0).test_client()
    headers = bearer(sign_up(client)["access_token"])
    before = client.get("/sessions", headers=headers).json["data"]["items"][0]["last_used_at"]
    time.sleep(1.1)
    assert client.get("/info", headers=headers).status_code == 200
    after = client.get("/sessions", headers=headers).json["data"]["items"][0]["last_used_at"]
    assert after > before


def test_refresh_cookie_is_secure_over_https(client):
    response = client.post("/signup", json={"id": "ann@example.com", "password": PASSWORD},
                           base_url="https://api.example.net")
    assert response.status_code == 201
    assert "Secure" in response.headers["Set-Cookie"]
