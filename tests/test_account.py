"""A user's own account: devices, sign-in history, change of login or password, purge of old rows."""
from datetime import datetime, timedelta

import jwt
import pytest
import sqlalchemy as sa

from app.db import utcnow
from tests.support.api import PASSWORD, bearer, sign_up
from tests.support.api import error_code

NEW_PASSWORD = "a new staple battery"


def sid_of(tokens: dict) -> str:
    return jwt.decode(tokens["access_token"], options={"verify_signature": False})["sid"]


def sign_in(client, login: str = "ann@example.com", password: str = PASSWORD, agent: str = "phone/2",
            address: str = "10.0.0.2"):
    return client.post("/signin", json={"id": login, "password": password},
                       headers={"User-Agent": agent}, environ_base={"REMOTE_ADDR": address})


def second_device(client, login: str = "ann@example.com", password: str = PASSWORD) -> dict:
    response = sign_in(client, login, password)
    assert response.status_code == 200, response.json
    return response.json["data"]


def run_sql(app, statement: str, **params) -> None:
    with app.extensions["engine"].begin() as connection:
        connection.execute(sa.text(statement), params)


def scalar_sql(app, statement: str, **params):
    with app.extensions["engine"].connect() as connection:
        return connection.execute(sa.text(statement), params).scalar_one()


# --- sessions -------------------------------------------------------------------------------------


def test_sessions_lists_my_devices_newest_first(client):
    laptop = sign_up(client, headers={"User-Agent": "laptop/1"}, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    phone = second_device(client)
    sign_up(client, "bob@example.com")  # someone else's device is never listed

    response = client.get("/sessions", headers=bearer(laptop["access_token"]))
    assert response.status_code == 200
    items = response.json["data"]["items"]
    assert [item["id"] for item in items] == [sid_of(phone), sid_of(laptop)]
    assert [item["current"] for item in items] == [False, True]
    assert [(item["user_agent"], item["ip"]) for item in items] == [("phone/2", "10.0.0.2"), ("laptop/1", "10.0.0.1")]
    for item in items:
        assert set(item) == {"id", "created_at", "last_used_at", "user_agent", "ip", "current"}
        assert item["created_at"].endswith("Z") and item["last_used_at"].endswith("Z")

    from_phone = client.get("/sessions", headers=bearer(phone["access_token"])).json["data"]["items"]
    assert [item["current"] for item in from_phone] == [True, False]


def test_sessions_hides_signed_out_and_expired_devices(app, client):
    laptop = sign_up(client)
    phone = second_device(client)
    tablet = second_device(client)
    assert client.post("/logout", headers=bearer(phone["access_token"])).status_code == 200
    run_sql(app, "UPDATE sessions SET expires_at = :past WHERE id = :sid",
            past=datetime(2000, 1, 1), sid=sid_of(tablet))
    items = client.get("/sessions", headers=bearer(laptop["access_token"])).json["data"]["items"]
    assert [item["id"] for item in items] == [sid_of(laptop)]


def test_sessions_needs_a_token(client):
    response = client.get("/sessions")
    assert response.status_code == 401 and error_code(response) == "missing_token"


def test_second_device_signed_out_remotely_dies_at_once(client):
    laptop = sign_up(client)
    phone = second_device(client)
    assert client.get("/info", headers=bearer(phone["access_token"])).status_code == 200

    response = client.delete(f"/sessions/{sid_of(phone)}", headers=bearer(laptop["access_token"]))
    assert response.status_code == 200
    assert response.json == {"data": {"id": sid_of(phone), "revoked": True}, "error": None}
    assert "Set-Cookie" not in response.headers  # the laptop's own cookie stays

    refused = client.get("/info", headers=bearer(phone["access_token"]))
    assert refused.status_code == 401 and error_code(refused) == "invalid_token"
    refresh = client.post("/signin/new_token", json={"refresh_token": phone["refresh_token"]})
    assert refresh.status_code == 401 and error_code(refresh) == "invalid_refresh_token"
    assert client.get("/info", headers=bearer(laptop["access_token"])).status_code == 200
    listed = client.get("/sessions", headers=bearer(laptop["access_token"])).json["data"]["items"]
    assert [item["id"] for item in listed] == [sid_of(laptop)]


def test_someone_elses_or_unknown_or_dead_session_is_404(client):
    ann = sign_up(client)
    bob = sign_up(client, "bob@example.com")
    phone = second_device(client)
    client.delete(f"/sessions/{sid_of(phone)}", headers=bearer(ann["access_token"]))

    for sid in (sid_of(bob), "0" * 32, "no-such-session", sid_of(phone)):
        response = client.delete(f"/sessions/{sid}", headers=bearer(ann["access_token"]))
        assert response.status_code == 404, sid
        assert error_code(response) == "not_found"
    assert client.get("/info", headers=bearer(bob["access_token"])).status_code == 200


def test_deleting_my_current_session_is_a_logout(client):
    tokens = sign_up(client)
    response = client.delete(f"/sessions/{sid_of(tokens)}", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert "refresh_token=;" in response.headers["Set-Cookie"]
    assert client.get("/info", headers=bearer(tokens["access_token"])).status_code == 401


def test_delete_session_needs_a_token(client):
    response = client.delete("/sessions/abc")
    assert response.status_code == 401 and error_code(response) == "missing_token"


def test_logout_all_signs_out_every_device_of_mine_only(client):
    devices = [sign_up(client), second_device(client), second_device(client)]
    bob = sign_up(client, "bob@example.com")

    response = client.post("/logout/all", headers=bearer(devices[1]["access_token"]))
    assert response.status_code == 200
    assert response.json["data"] == {"logged_out": True, "sessions": 3}
    cookie = response.headers["Set-Cookie"]
    assert "refresh_token=;" in cookie and "Path=/signin" in cookie

    for tokens in devices:
        assert client.get("/info", headers=bearer(tokens["access_token"])).status_code == 401
        assert client.post("/signin/new_token", json={"refresh_token": tokens["refresh_token"]}).status_code == 401
    assert client.get("/info", headers=bearer(bob["access_token"])).status_code == 200
    again = second_device(client)
    assert client.get("/info", headers=bearer(again["access_token"])).status_code == 200


def test_logout_all_needs_a_live_token(client):
    assert client.post("/logout/all").status_code == 401
    tokens = sign_up(client)
    client.post("/logout/all", headers=bearer(tokens["access_token"]))
    response = client.post("/logout/all", headers=bearer(tokens["access_token"]))
    assert response.status_code == 401 and error_code(response) == "invalid_token"


# --- login history --------------------------------------------------------------------------------


def test_history_records_attacks_on_my_id_without_other_users_attempts(client):
    ann = sign_up(client, headers={"User-Agent": "laptop/1"}, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    bob = sign_up(client, "bob@example.com")
    for _ in range(2):
        assert sign_in(client, "ANN@example.com", "guess guess", agent="attacker/1", address="203.0.113.9").status_code == 401
    assert sign_in(client, "bob@example.com", "wrong wrong").status_code == 401
    assert sign_in(client, "nobody@example.com", "wrong wrong").status_code == 401
    assert sign_in(client, agent="phone/2", address="10.0.0.2").status_code == 200

    response = client.get("/login/history", headers=bearer(ann["access_token"]))
    assert response.status_code == 200
    page = response.json["data"]
    assert {k: page[k] for k in ("page", "list_size", "total", "pages")} == {
        "page": 1, "list_size": 10, "total": 4, "pages": 1,
    }
    assert [(i["success"], i["user_agent"], i["ip"]) for i in page["items"]] == [
        (True, "phone/2", "10.0.0.2"),
        (False, "attacker/1", "203.0.113.9"),
        (False, "attacker/1", "203.0.113.9"),
        (True, "laptop/1", "10.0.0.1"),  # the sign-up
    ]
    assert set(page["items"][0]) == {"at", "ip", "user_agent", "success", "method"}
    assert page["items"][0]["at"].endswith("Z")

    bobs = client.get("/login/history", headers=bearer(bob["access_token"])).json["data"]
    assert [i["success"] for i in bobs["items"]] == [False, True] and bobs["total"] == 2


def test_history_is_paged_like_the_file_list(client):
    tokens = sign_up(client)
    for i in range(11):
        sign_in(client, "ann@example.com", "wrong wrong", agent=f"try/{i}")
    headers = bearer(tokens["access_token"])

    first = client.get("/login/history?page=1&list_size=5", headers=headers).json["data"]
    assert (first["page"], first["list_size"], first["total"], first["pages"]) == (1, 5, 12, 3)
    assert [i["user_agent"] for i in first["items"]] == [f"try/{i}" for i in (10, 9, 8, 7, 6)]
    last = client.get("/login/history?page=3&list_size=5", headers=headers).json["data"]
    assert len(last["items"]) == 2 and last["items"][-1]["success"] is True
    past_end = client.get("/login/history?page=9&list_size=5", headers=headers)
    assert past_end.status_code == 200 and past_end.json["data"]["items"] == []
    defaults = client.get("/login/history?page=&list_size=", headers=headers).json["data"]
    assert (defaults["page"], defaults["list_size"], len(defaults["items"])) == (1, 10, 10)
    assert client.get("/login/history?list_size=100", headers=headers).status_code == 200


@pytest.mark.parametrize("query", ["page=0", "page=-1", "page=x", "list_size=0", "list_size=101", "list_size=2.5"])
def test_history_rejects_bad_paging(client, signed_in, query):
    response = client.get(f"/login/history?{query}", headers=signed_in)
    assert response.status_code == 400 and error_code(response) == "validation_error"


def test_history_needs_a_token(client):
    assert client.get("/login/history").status_code == 401


# --- change of login or password -----------------------------------------------------------------


def test_change_login_keeps_history_and_sessions(client):
    tokens = sign_up(client)
    phone = second_device(client)
    sign_in(client, password="wrong wrong")

    response = client.patch("/user", json={"current_password": PASSWORD, "id": "Ann.New@Example.com"},
                            headers=bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert response.json == {"data": {"id": "ann.new@example.com", "verified": False}, "error": None}
    assert client.get("/info", headers=bearer(tokens["access_token"])).json["data"]["id"] == "ann.new@example.com"
    assert client.get("/info", headers=bearer(phone["access_token"])).status_code == 200
    assert sign_in(client, "ann@example.com").status_code == 401
    assert sign_in(client, "ann.new@example.com").status_code == 200
    history = client.get("/login/history", headers=bearer(tokens["access_token"])).json["data"]
    assert history["total"] == 4  # sign-up, phone, the failure, the sign-in under the new id


def test_change_login_to_a_phone_is_normalised(client, signed_in):
    response = client.patch("/user", data={"current_password": PASSWORD, "id": "+7 (999) 123-45-67"}, headers=signed_in)
    assert response.status_code == 200 and response.json["data"]["id"] == "+79991234567"
    assert sign_in(client, "89991234567").status_code == 200


def test_change_login_to_a_taken_id_is_409(client):
    tokens = sign_up(client)
    sign_up(client, "bob@example.com")
    response = client.patch("/user", json={"current_password": PASSWORD, "id": "BOB@example.com"},
                            headers=bearer(tokens["access_token"]))
    assert response.status_code == 409 and error_code(response) == "user_exists"
    assert client.get("/info", headers=bearer(tokens["access_token"])).json["data"]["id"] == "ann@example.com"


def test_keeping_the_same_login_is_fine(client, signed_in):
    response = client.patch("/user", json={"current_password": PASSWORD, "id": "ANN@example.com"}, headers=signed_in)
    assert response.status_code == 200 and response.json["data"]["id"] == "ann@example.com"


def test_password_change_signs_out_other_devices_not_this_one(client):
    laptop = sign_up(client)
    phone = second_device(client)
    bob = sign_up(client, "bob@example.com")

    response = client.patch("/user", json={"current_password": PASSWORD, "password": NEW_PASSWORD},
                            headers=bearer(laptop["access_token"]))
    assert response.status_code == 200 and response.json["data"] == {"id": "ann@example.com", "verified": False}

    assert client.get("/info", headers=bearer(phone["access_token"])).status_code == 401
    assert client.post("/signin/new_token", json={"refresh_token": phone["refresh_token"]}).status_code == 401
    assert client.get("/info", headers=bearer(laptop["access_token"])).status_code == 200
    renewed = client.post("/signin/new_token", json={"refresh_token": laptop["refresh_token"]})
    assert renewed.status_code == 200
    assert client.get("/info", headers=bearer(bob["access_token"])).status_code == 200

    old = sign_in(client, password=PASSWORD)
    assert old.status_code == 401 and error_code(old) == "invalid_credentials"
    assert sign_in(client, password=NEW_PASSWORD).status_code == 200
    listed = client.get("/sessions", headers=bearer(renewed.json["data"]["access_token"])).json["data"]["items"]
    assert len(listed) == 2  # this device and the new sign-in


def test_login_and_password_change_together(client, signed_in):
    response = client.patch("/user", json={"current_password": PASSWORD, "id": "ann2@example.com",
                                           "password": NEW_PASSWORD}, headers=signed_in)
    assert response.status_code == 200
    assert sign_in(client, "ann2@example.com", NEW_PASSWORD).status_code == 200


def test_wrong_current_password_is_403_and_changes_nothing(client):
    tokens = sign_up(client)
    phone = second_device(client)
    response = client.patch("/user", json={"current_password": "not my password", "id": "eve@example.com",
                                           "password": NEW_PASSWORD}, headers=bearer(tokens["access_token"]))
    assert response.status_code == 403 and error_code(response) == "forbidden"
    assert client.get("/info", headers=bearer(phone["access_token"])).json["data"]["id"] == "ann@example.com"
    assert sign_in(client, password=PASSWORD).status_code == 200


@pytest.mark.parametrize(
    "body, field",
    [
        ({"id": "ann2@example.com"}, "current_password"),
        ({"current_password": PASSWORD}, "id"),
        ({"current_password": PASSWORD, "id": "not a login"}, "id"),
        ({"current_password": PASSWORD, "password": "short"}, "password"),
        ({"current_password": PASSWORD, "password": "x" * 129}, "password"),
        ({"current_password": PASSWORD, "password": 12345678}, "password"),
        ({"current_password": PASSWORD, "password": NEW_PASSWORD, "admin": True}, "admin"),
    ],
)
def test_change_validates_input(client, signed_in, body, field):
    response = client.patch("/user", json=body, headers=signed_in)
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert field in response.json["error"]["details"]["fields"]
    assert sign_in(client, password=PASSWORD).status_code == 200


def test_change_needs_a_token(client):
    response = client.patch("/user", json={"current_password": PASSWORD, "password": NEW_PASSWORD})
    assert response.status_code == 401 and error_code(response) == "missing_token"


# --- purge-sessions -------------------------------------------------------------------------------


def test_purge_sessions_removes_expired_old_revoked_and_old_events(app, client):
    live = sign_up(client)
    expired, old_revoked, new_revoked = (second_device(client) for _ in range(3))
    now = utcnow()
    run_sql(app, "UPDATE sessions SET expires_at = :t WHERE id = :sid", t=now - timedelta(minutes=1), sid=sid_of(expired))
    run_sql(app, "UPDATE sessions SET revoked_at = :t WHERE id = :sid", t=now - timedelta(days=40), sid=sid_of(old_revoked))
    run_sql(app, "UPDATE sessions SET revoked_at = :t WHERE id = :sid", t=now - timedelta(days=2), sid=sid_of(new_revoked))
    run_sql(app, "UPDATE login_events SET at = :t WHERE id = (SELECT m FROM (SELECT MIN(id) AS m FROM login_events) AS x)",
            t=now - timedelta(days=40))

    result = app.test_cli_runner().invoke(args=["purge-sessions"])
    assert result.exit_code == 0, result.output
    assert "removed 2 sessions" in result.output and "1 sign-in events" in result.output
    assert scalar_sql(app, "SELECT COUNT(*) FROM sessions") == 2
    assert scalar_sql(app, "SELECT COUNT(*) FROM refresh_tokens") == 2
    assert scalar_sql(app, "SELECT COUNT(*) FROM login_events") == 3
    assert client.get("/info", headers=bearer(live["access_token"])).status_code == 200

    shorter = app.test_cli_runner().invoke(args=["purge-sessions", "--older-than-days", "1"])
    assert shorter.exit_code == 0 and "removed 1 sessions" in shorter.output
    assert [i["id"] for i in client.get("/sessions", headers=bearer(live["access_token"])).json["data"]["items"]] == [
        sid_of(live)
    ]
    assert app.test_cli_runner().invoke(args=["purge-sessions", "--older-than-days", "-1"]).exit_code != 0


def test_browsers_may_call_the_account_routes_from_any_origin(client):
    for method, path in [("PATCH", "/user"), ("DELETE", "/sessions/abc"), ("POST", "/logout/all")]:
        preflight = client.options(path, headers={
            "Origin": "https://app.example.net",
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        })
        assert 200 <= preflight.status_code < 300
        assert preflight.headers["Access-Control-Allow-Origin"] == "*"
        assert method in preflight.headers["Access-Control-Allow-Methods"]
