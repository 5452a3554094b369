"""Abuse limits that hold (SPEC §9) and the session rules of SPEC §3, through HTTP on SQLite and MySQL.

The counter tests run against a real gunicorn with several workers and `Connection: close` on every
request, so the attempts spread over the worker processes.
"""
import http.client
import json
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from app.db import utcnow
from tests.support.api import PASSWORD, bearer, sign_up
from tests.support.api import error_code

ANN = {"id": "ann@example.com", "password": PASSWORD}
WRONG = {"id": "ann@example.com", "password": "not the password"}


def post(server, path: str, body: dict | None = None, headers: dict | None = None,
         raw: bytes | None = None, content_type: str = "application/json") -> tuple[int, dict, dict]:
    """One request on its own connection (`Connection: close`), so the next may reach another worker."""
    address = urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        data = raw if raw is not None else json.dumps(body or {}).encode()
        connection.request("POST", path, body=data, headers={
            "Content-Type": content_type, "Connection": "close", **(headers or {})})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read() or b"null")
    finally:
        connection.close()


@pytest.mark.parametrize("workers", ["2", "4"])
def test_the_sign_in_limit_holds_across_worker_processes(make_live_server, workers):
    """With the embedded defaults (no Redis), N failed sign-ins pass and attempt N+1 is refused, on any worker."""
    server = make_live_server(RATELIMIT_ENABLED="true", RATELIMIT_SIGNIN="5 per minute", WEB_CONCURRENCY=workers)
    assert post(server, "/signup", ANN)[0] == 201
    statuses = [post(server, "/signin", WRONG, {"X-Attempt": str(i)})[0] for i in range(5)]
    assert statuses == [401] * 5
    status, headers, body = post(server, "/signin", WRONG)
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert 1 <= int(headers["Retry-After"]) <= 60


def test_the_address_limit_holds_across_worker_processes(make_live_server):
    server = make_live_server(RATELIMIT_ENABLED="true", RATELIMIT_SIGNIN="4 per minute", WEB_CONCURRENCY="3")
    logins = [{"id": f"user{i}@example.com", "password": PASSWORD} for i in range(6)]
    assert [post(server, "/signin", login)[0] for login in logins] == [401] * 4 + [429] * 2


def test_refresh_is_limited_per_address(make_live_server):
    server = make_live_server(RATELIMIT_ENABLED="true", RATELIMIT_REFRESH="3 per minute")
    assert post(server, "/signup", ANN)[0] == 201
    statuses = [post(server, "/signin/new_token", {"refresh_token": f"unknown-{i}"})[0] for i in range(4)]
    assert statuses == [401, 401, 401, 429]


def test_a_request_refused_for_its_form_or_size_never_counts(make_app):
    client = make_app(RATELIMIT_ENABLED=True, RATELIMIT_SIGNIN="2 per minute").test_client()
    sign_up(client)
    too_large = b'{"id": "ann@example.com", "password": "' + b"x" * (2 << 20) + b'"}'
    for _ in range(3):
        assert client.post("/signin", data=b"{not json", content_type="application/json").status_code == 400
        assert client.post("/signin", json={"id": "ann@example.com"}).status_code == 400  # no password
        assert client.post("/signin", data=too_large, content_type="application/json").status_code == 413
        boundary = "multipart/form-data; boundary*=UTF-8''%E2%82%AC"
        assert client.post("/signin", data=b"--x--", content_type=boundary).status_code == 400
    assert [client.post("/signin", json=WRONG).status_code for _ in range(3)] == [401, 401, 429]


def test_the_owner_is_not_locked_out_of_a_known_address(make_app):
    client = make_app(RATELIMIT_ENABLED=True, RATELIMIT_SIGNIN="3 per minute").test_client()
    home, attacker, cafe = {"REMOTE_ADDR": "10.0.0.1"}, {"REMOTE_ADDR": "10.6.6.6"}, {"REMOTE_ADDR": "10.0.0.9"}
    assert client.post("/signup", json=ANN, environ_base=home).status_code == 201
    for _ in range(3):
        assert client.post("/signin", json=WRONG, environ_base=attacker).status_code == 401
    assert client.post("/signin", json=ANN, environ_base=attacker).status_code == 429  # even the right password
    assert client.post("/signin", json=ANN, environ_base=cafe).status_code == 429  # a stranger to this login
    assert client.post("/signin", json=ANN, environ_base=home).status_code == 200  # signed in from here before


def test_a_429_reads_the_same_whether_the_login_exists(make_app):
    client = make_app(RATELIMIT_ENABLED=True, RATELIMIT_SIGNIN="2 per minute").test_client()
    sign_up(client)
    answers = []
    for login in ("ann@example.com", "nobody@example.com"):
        for i in range(2):
            client.post("/signin", json={"id": login, "password": "wrong!!!"}, environ_base={"REMOTE_ADDR": f"10.1.{i}.1"})
        refused = client.post("/signin", json={"id": login, "password": "wrong!!!"}, environ_base={"REMOTE_ADDR": "10.2.0.1"})
        assert refused.status_code == 429
        answers.append((refused.json, sorted(refused.headers.keys())))
    assert answers[0][0]["error"] == answers[1][0]["error"]
    assert answers[0][1] == answers[1][1]


def test_wrong_current_passwords_are_limited_and_count_as_failed_sign_ins(make_app):
    client = make_app(RATELIMIT_ENABLED=True, RATELIMIT_REAUTH="2 per 15 minutes",
                      RATELIMIT_SIGNIN="3 per minute").test_client()
    token = bearer(sign_up(client)["access_token"])
    change = {"current_password": "a wrong guess", "password": "a brand new password"}
    statuses = [client.patch("/user", json=change, headers=token).status_code for _ in range(3)]
    assert statuses == [403, 403, 429]
    refused = client.patch("/user", json={**change, "current_password": PASSWORD}, headers=token)
    assert refused.status_code == 429 and error_code(refused) == "rate_limited"  # no more guesses, right or not
    assert 1 <= int(refused.headers["Retry-After"]) <= 900  # the rest of the 15-minute window
    # The two wrong guesses count against the login: one more failed sign-in from a stranger locks it.
    stranger = {"REMOTE_ADDR": "10.7.7.7"}
    assert client.post("/signin", json=WRONG, environ_base=stranger).status_code == 401
    assert client.post("/signin", json=ANN, environ_base=stranger).status_code == 429


def test_token_answers_are_never_cached(client):
    issued = client.post("/signup", json=ANN)
    signed_in = client.post("/signin", json=ANN)
    refreshed = client.post("/signin/new_token", json={"refresh_token": signed_in.json["data"]["refresh_token"]})
    for response in (issued, signed_in, refreshed):
        assert response.status_code in (200, 201)
        assert response.headers["Cache-Control"] == "no-store"


def test_a_session_ends_at_its_maximum_age_however_often_refreshed(make_app):
    app = make_app(SESSION_MAX_AGE=3600, REFRESH_TOKEN_TTL=1800)
    client = app.test_client()
    data = client.post("/signup", json=ANN).json["data"]
    assert data["refresh_expires_in"] == 1800
    # Move the sign-in 50 minutes back: the session has 10 minutes left, and refreshing cannot extend that.
    with app.extensions["engine"].begin() as connection:
        connection.execute(sa.text("UPDATE sessions SET created_at = :t"), {"t": utcnow() - timedelta(minutes=50)})
    refreshed = client.post("/signin/new_token", json={"refresh_token": data["refresh_token"]}).json["data"]
    assert 595 <= refreshed["refresh_expires_in"] <= 600
    with app.extensions["engine"].begin() as connection:
        connection.execute(sa.text("UPDATE sessions SET created_at = :t"), {"t": utcnow() - timedelta(minutes=61)})
        connection.execute(sa.text("UPDATE sessions SET expires_at = :t"), {"t": utcnow() - timedelta(seconds=1)})
    expired = client.post("/signin/new_token", json={"refresh_token": refreshed["refresh_token"]})
    assert expired.status_code == 401 and error_code(expired) == "invalid_refresh_token"
    assert client.get("/info", headers=bearer(refreshed["access_token"])).status_code == 401


def test_a_sign_in_beyond_the_session_cap_signs_out_the_least_recently_used(make_app):
    client = make_app(MAX_SESSIONS_PER_USER=3, SESSION_TOUCH_SECONDS=0).test_client()
    tokens = [sign_up(client)["access_token"]] + [
        client.post("/signin", json=ANN).json["data"]["access_token"] for _ in range(2)]
    assert client.get("/info", headers=bearer(tokens[0])).status_code == 200  # the first is now the most recent
    tokens.append(client.post("/signin", json=ANN).json["data"]["access_token"])
    alive = [client.get("/info", headers=bearer(token)).status_code for token in tokens]
    assert alive.count(200) == 3 and alive[1] == 401  # the second sat unused longest
    listed = client.get("/sessions", headers=bearer(tokens[-1])).json["data"]["items"]
    assert len(listed) == 3


def test_sign_in_tidies_rows_that_can_never_matter_again(make_app):
    app = make_app(SESSION_RETENTION_DAYS=30)
    client = app.test_client()
    token = sign_up(client)["access_token"]
    client.post("/logout", headers=bearer(token))
    old = utcnow() - timedelta(days=31)
    with app.extensions["engine"].begin() as connection:
        connection.execute(sa.text("UPDATE sessions SET revoked_at = :t"), {"t": old})
        connection.execute(sa.text("UPDATE login_events SET at = :t"), {"t": old})
    assert client.post("/signin", json=ANN).status_code == 200
    with app.extensions["engine"].connect() as connection:
        sessions = connection.execute(sa.text("SELECT COUNT(*) FROM sessions")).scalar()
        tokens = connection.execute(sa.text("SELECT COUNT(*) FROM refresh_tokens")).scalar()
        events = connection.execute(sa.text("SELECT COUNT(*) FROM login_events")).scalar()
    assert (sessions, tokens, events) == (1, 1, 1)  # only the new sign-in's rows
