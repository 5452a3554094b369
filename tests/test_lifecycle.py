"""SPEC §10 through HTTP, with the messages delivered to a real SMTP server (aiosmtpd) and an SMS webhook."""
import concurrent.futures
import hashlib
import io
import json
import time
import zipfile

import pytest
import sqlalchemy as sa

from tests.conftest import BACKEND_STORAGE, free_port, stored_files
from tests.support.api import PASSWORD, bearer, error_code, sha, sign_up, uploaded
from tests.support.logs import captured
from tests.support.mail import MailServer, SmsHook, body_of, proof, throwaway_certificate

NEW_PASSWORD = "another long passphrase"


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    return throwaway_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def mail(certificate):
    server = MailServer(*certificate, port=free_port())
    yield server
    server.stop()


@pytest.fixture
def sms():
    hook = SmsHook()
    yield hook
    hook.stop()


@pytest.fixture
def mail_app(make_app, mail, certificate, sms):
    def build(**overrides):
        return make_app(MAIL_URL=f"smtp://127.0.0.1:{mail.port}", MAIL_CA_FILE=str(certificate[0]),
                        SMS_URL=sms.url, PUBLIC_URL="https://files.example", **overrides)
    return build


@pytest.fixture
def client(mail_app):
    return mail_app().test_client()


def rows_of(app, table: str, user_id: int) -> int:
    column = "owner_id" if table in ("files", "uploads") else "user_id"
    with app.extensions["engine"].connect() as connection:
        return connection.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {column} = :id"), {"id": user_id}).scalar()


def user_id_of(app, login: str) -> int | None:
    with app.extensions["engine"].connect() as connection:
        return connection.execute(sa.text("SELECT id FROM users WHERE login = :login"), {"login": login}).scalar()


# -- verification ---------------------------------------------------------------------------------------------


def test_sign_up_sends_a_verification_mail_over_starttls_and_its_link_proves_the_login(client, mail):
    signed = sign_up(client, "ann@example.com")
    assert signed["verified"] is False
    message = mail.wait_for("ann@example.com")
    assert message["Subject"] == "Confirm your address" and mail.inbox.sessions_tls == [True]
    text = body_of(message)
    assert "https://files.example/?verify=" in text and PASSWORD not in text
    token, _ = proof(text)
    answer = client.post("/verify/confirm", json={"token": token})
    assert answer.status_code == 200 and answer.json["data"] == {"id": "ann@example.com", "verified": True}
    assert client.get("/info", headers=bearer(signed["access_token"])).json["data"]["verified"] is True
    again = client.post("/verify/confirm", json={"token": token})
    assert again.status_code == 401 and error_code(again) == "invalid_code"  # single use


def test_a_code_takes_five_wrong_tries_then_only_a_new_message_helps(client, mail):
    signed = sign_up(client, "ann@example.com")
    _, code = proof(body_of(mail.wait_for("ann@example.com")))
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        answer = client.post("/verify/confirm", json={"id": "ann@example.com", "code": wrong})
        assert answer.status_code == 401 and error_code(answer) == "invalid_code"
    spent = client.post("/verify/confirm", json={"id": "ann@example.com", "code": code})
    assert spent.status_code == 401  # the right code, too late
    asked = client.post("/verify/request", headers=bearer(signed["access_token"]))
    assert asked.status_code == 202 and asked.json["data"] == {"sent": True}
    _, fresh = proof(body_of(mail.wait_for("ann@example.com", count=2)))
    answer = client.post("/verify/confirm", json={"id": "ANN@example.com", "code": fresh})
    assert answer.status_code == 200 and answer.json["data"]["verified"] is True


def test_a_newer_message_voids_the_older_and_the_proof_is_checked(client, mail):
    signed = sign_up(client, "ann@example.com")
    old_token, _ = proof(body_of(mail.wait_for("ann@example.com")))
    client.post("/verify/request", headers=bearer(signed["access_token"]))
    new_token, _ = proof(body_of(mail.wait_for("ann@example.com", count=2)))
    assert error_code(client.post("/verify/confirm", json={"token": old_token})) == "invalid_code"
    for bad in ({}, {"id": "ann@example.com"}, {"code": "123456"}, {"id": "x@y.co", "code": "12"}):
        answer = client.post("/verify/confirm", json=bad)
        assert answer.status_code == 400 and error_code(answer) == "validation_error", (bad, answer.json)
    assert set(client.post("/verify/confirm", json={}).json["error"]["details"]["fields"]) == {"token", "id", "code"}
    # With both, the link's token is the proof (a page may send what it has).
    assert client.post("/verify/confirm", json={"token": new_token, "id": "ann@example.com", "code": "000000"}).status_code == 200


def test_a_new_email_login_is_unverified_until_its_own_message_comes_back(client, mail):
    signed = sign_up(client, "ann@example.com")
    client.post("/verify/confirm", json={"token": proof(body_of(mail.wait_for("ann@example.com")))[0]})
    changed = client.patch("/user", headers=bearer(signed["access_token"]),
                           json={"current_password": PASSWORD, "id": "ann@new.example"})
    assert changed.status_code == 200 and changed.json["data"] == {"id": "ann@new.example", "verified": False}
    token, _ = proof(body_of(mail.wait_for("ann@new.example")))
    assert client.post("/verify/confirm", json={"token": token}).json["data"]["id"] == "ann@new.example"


def test_require_verified_keeps_files_from_unverified_users(mail_app, mail):
    client = mail_app(REQUIRE_VERIFIED=True).test_client()
    headers = bearer(sign_up(client, "ann@example.com")["access_token"])
    refused = client.get("/file/list", headers=headers)
    assert refused.status_code == 403 and error_code(refused) == "forbidden"
    assert client.get("/info", headers=headers).status_code == 200  # the account itself is reachable
    client.post("/verify/confirm", json={"token": proof(body_of(mail.wait_for("ann@example.com")))[0]})
    assert client.get("/file/list", headers=headers).status_code == 200


def test_a_phone_login_gets_its_code_by_text_message(client, sms):
    signed = sign_up(client, "+79991234567")
    assert client.post("/verify/request", headers=bearer(signed["access_token"])).status_code == 202
    _, code = proof(sms.wait_for("+79991234567"))
    answer = client.post("/verify/confirm", json={"id": "+7 999 123-45-67", "code": code})
    assert answer.status_code == 200 and answer.json["data"] == {"id": "+79991234567", "verified": True}


# -- password reset -------------------------------------------------------------------------------------------


def test_forgot_answers_the_same_for_any_login_and_mails_only_a_user(client, mail):
    sign_up(client, "ann@example.com")
    mail.wait_for("ann@example.com")
    known = client.post("/password/forgot", json={"id": "ann@example.com"})
    unknown = client.post("/password/forgot", json={"id": "nobody@example.com"})
    assert (known.status_code, known.json) == (unknown.status_code, unknown.json) == (202, {"data": {"sent": True}, "error": None})
    message = mail.wait_for("ann@example.com", count=2)
    assert message["Subject"] == "Reset your password" and "https://files.example/?reset=" in body_of(message)
    time.sleep(0.5)
    assert mail.messages_to("nobody@example.com") == []


def test_a_reset_signs_out_every_session_and_kills_links_then_signs_in(mail_app, mail):
    app = mail_app()
    client, other = app.test_client(), mail_app().test_client()  # a second instance on the same database
    first = sign_up(client, "ann@example.com")
    headers = bearer(first["access_token"])
    made = uploaded(client, headers, b"secret")
    link = client.post(f"/file/{made['id']}/link", headers=headers).json["data"]["path"]
    client.post("/password/forgot", json={"id": "ann@example.com"})
    token, _ = proof(body_of(mail.wait_for("ann@example.com", count=2)))
    reset = client.post("/password/reset", json={"token": token, "password": NEW_PASSWORD})
    assert reset.status_code == 200 and reset.json["data"]["verified"] is True and "refresh_token=" in reset.headers["Set-Cookie"]
    for instance in (client, other):
        assert error_code(instance.get("/info", headers=headers)) == "invalid_token"
    assert client.get(link).status_code == 404
    assert other.get("/info", headers=bearer(reset.json["data"]["access_token"])).status_code == 200
    assert client.post("/signin", json={"id": "ann@example.com", "password": PASSWORD}).status_code == 401
    assert client.post("/signin", json={"id": "ann@example.com", "password": NEW_PASSWORD}).status_code == 200
    assert error_code(client.post("/password/reset", json={"token": token, "password": NEW_PASSWORD})) == "invalid_code"


def test_a_reset_by_code_checks_the_new_password(client, sms):
    sign_up(client, "+79991234567")
    client.post("/password/forgot", json={"id": "+79991234567"})
    _, code = proof(sms.wait_for("+79991234567"))
    weak = client.post("/password/reset", json={"id": "+79991234567", "code": code, "password": "password"})
    assert weak.status_code == 400 and "password" in weak.json["error"]["details"]["fields"]
    answer = client.post("/password/reset", json={"id": "+79991234567", "code": code, "password": NEW_PASSWORD})
    assert answer.status_code == 200 and answer.json["data"]["id"] == "+79991234567"


def test_the_mail_limit_holds_under_a_burst(mail_app):
    client = mail_app(RATELIMIT_ENABLED=True, RATELIMIT_MAIL="5 per hour").test_client()
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(lambda _: client.post("/password/forgot", json={"id": "ann@example.com"}).status_code,
                              range(20)))
    # Exactly the limit, whatever the interleaving: each hit reads back its own count.
    assert codes.count(202) == 5 and codes.count(429) == 15, codes


# -- delivery failures ----------------------------------------------------------------------------------------


def test_an_unreachable_mail_server_neither_fails_nor_slows_the_request_and_is_retried(make_app, certificate, caplog):
    port = free_port()
    client = make_app(MAIL_URL=f"smtp://127.0.0.1:{port}", MAIL_CA_FILE=str(certificate[0]), MAIL_TIMEOUT=2).test_client()
    with captured("app.messages", caplog):
        started = time.monotonic()
        assert client.post("/signup", json={"id": "ann@example.com", "password": PASSWORD}).status_code == 201
        assert time.monotonic() - started < 1.5
        # The first try runs in the background: once it has failed, the server comes back before the retry (2 s
        # later). Started earlier, a late first try could succeed, and prove nothing about retries.
        deadline = time.monotonic() + 20
        while not any("not delivered (attempt 1 of" in record.getMessage() for record in caplog.records):
            assert time.monotonic() < deadline, "the first try was not made (or not logged)"
            time.sleep(0.02)
        server = MailServer(*certificate, port=port)
        try:
            message = server.wait_for("ann@example.com", timeout=20)
            assert message["Subject"] == "Confirm your address"
        finally:
            server.stop()


def test_smtps_with_a_password(make_app, certificate):
    server = MailServer(*certificate, port=free_port(), smtps=True, credentials=("mailer", "p@ss word"))
    try:
        client = make_app(MAIL_URL=f"smtps://mailer:p%40ss%20word@127.0.0.1:{server.port}",
                          MAIL_CA_FILE=str(certificate[0]), MAIL_FROM="files@example.com").test_client()
        sign_up(client, "ann@example.com")
        message = server.wait_for("ann@example.com")
        assert message["From"] == "files@example.com"  # over TLS: the server speaks nothing else
    finally:
        server.stop()


def test_mail_url_log_keeps_a_message_to_the_longest_address(make_app, tmp_path):
    client = make_app().test_client()
    login = "a" * 64 + "@" + ".".join(["b" * 63, "c" * 63, "d" * 61])  # 254 characters, the most there is
    sign_up(client, login)
    deadline = time.monotonic() + 10
    while not list((tmp_path / "instance" / "mail").glob("*.eml")):
        assert time.monotonic() < deadline, "no message kept under instance/mail"
        time.sleep(0.05)
    assert "Confirm your address" in next((tmp_path / "instance" / "mail").glob("*.eml")).read_text()


def test_mail_url_log_keeps_the_message_in_the_instance_folder(make_app, tmp_path):
    client = make_app().test_client()  # MAIL_URL=log, the default
    sign_up(client, "ann@example.com")
    deadline = time.monotonic() + 10
    while not list((tmp_path / "instance" / "mail").glob("*ann@example.com.eml")):
        assert time.monotonic() < deadline, "no message kept under instance/mail"
        time.sleep(0.05)
    kept = next((tmp_path / "instance" / "mail").glob("*.eml")).read_text()
    assert "Confirm your address" in kept and "?verify=" in kept


# -- deletion and export --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("backend", "storage_kind"), BACKEND_STORAGE, indirect=True)
def test_deleting_my_account_removes_every_row_and_byte_even_mid_download(mail_app, mail):
    app = mail_app()
    client = app.test_client()
    signed = sign_up(client, "ann@example.com")
    headers = bearer(signed["access_token"])
    kept = sign_up(client, "bob@example.com")
    uploaded(client, bearer(kept["access_token"]), b"bob's")
    content = b"x" * (3 << 20)
    made = uploaded(client, headers, content)
    uploaded(client, headers, b"second")
    client.post("/file/uploads", headers={**headers, "Tus-Resumable": "1.0.0", "Upload-Length": "10"})
    user_id = user_id_of(app, "ann@example.com")
    in_flight = client.get(f"/file/download/{made['id']}", headers=headers, buffered=False)
    wrong = client.delete("/user", headers=headers, json={"current_password": "not my password"})
    assert wrong.status_code == 403 and user_id_of(app, "ann@example.com") == user_id
    answer = client.delete("/user", headers=headers, json={"current_password": PASSWORD})
    assert answer.status_code == 200 and answer.json["data"] == {"id": "ann@example.com", "deleted": True}
    assert b"".join(in_flight.response) == content  # the download that had started ends whole
    in_flight.close()
    for table in ("sessions", "login_events", "files", "uploads", "user_roles", "account_codes"):
        assert rows_of(app, table, user_id) == 0, table
    assert user_id_of(app, "ann@example.com") is None
    assert [path.read_bytes() for path in stored_files(app)] == [b"bob's"]
    assert error_code(client.get("/info", headers=headers)) == "invalid_token"
    assert sign_up(client, "ann@example.com")["id"] == "ann@example.com"  # the login is free again


@pytest.mark.parametrize(("backend", "storage_kind"), BACKEND_STORAGE, indirect=True)
def test_the_export_is_a_zip_of_my_account_and_every_file(client):
    signed = sign_up(client, "ann@example.com")
    headers = bearer(signed["access_token"])
    files = {"notes.txt": b"notes", "отчёт.pdf": b"%PDF" + bytes(range(256)) * 4000, "empty.bin": b""}
    made = {name: uploaded(client, headers, content, name) for name, content in files.items()}
    answer = client.get("/user/export", headers=headers)
    assert answer.status_code == 200 and answer.mimetype == "application/zip"
    assert answer.headers["Content-Length"] == str(len(answer.data))
    assert answer.headers["Content-Disposition"] == "attachment; filename=account-export.zip"
    archive = zipfile.ZipFile(io.BytesIO(answer.data))
    document = json.loads(archive.read("account.json"))
    assert document["account"]["id"] == "ann@example.com" and len(document["login_history"]) == 1
    assert [s["id"] for s in document["sessions"]] and {f["name"] for f in document["files"]} == set(files)
    for entry in document["files"]:
        data = archive.read(entry["path"])
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] == sha(files[entry["name"]])
        assert entry["id"] == made[entry["name"]]["id"] and entry["path"].startswith("files/")
    assert archive.testzip() is None
    other = bearer(sign_up(client, "bob@example.com")["access_token"])
    theirs = zipfile.ZipFile(io.BytesIO(client.get("/user/export", headers=other).data))
    assert theirs.namelist() == ["account.json"]


# -- administration -------------------------------------------------------------------------------------------


def test_an_operator_finds_inspects_and_sets_a_quota(client, admin):
    ann = bearer(sign_up(client, "ann@example.com")["access_token"])
    sign_up(client, "bob@example.com")
    uploaded(client, ann, b"12345")
    assert client.get("/admin/users", headers=ann).status_code == 403
    page = client.get("/admin/users?q=AN&list_size=1", headers=admin).json["data"]
    assert (page["total"], page["pages"], [u["id"] for u in page["items"]]) == (1, 1, ["ann@example.com"])
    assert page["items"][0] | {"created_at": None} == {"id": "ann@example.com", "created_at": None, "verified": False,
                                                      "disabled": False, "files": 1, "bytes": 5}
    assert client.get("/admin/users?q=%25", headers=admin).json["data"]["total"] == 0  # % is a character
    shown = client.get("/admin/users/ANN@example.com", headers=admin).json["data"]
    assert (shown["sessions"], shown["roles"], shown["mfa"], shown["quota"]) == (1, [], False, None)
    assert client.put("/admin/users/ann@example.com/quota", headers=admin, json={"bytes": 3}).json["data"]["quota"] == 3
    assert error_code(client.post("/file/upload", headers=ann, data={"file": (io.BytesIO(b"more"), "a")})) == "quota_exceeded"
    assert client.put("/admin/users/ann@example.com/quota", headers=admin, json={"bytes": None}).json["data"]["quota"] is None
    assert client.put("/admin/users/ann@example.com/quota", headers=admin, json={}).status_code == 400
    assert client.get("/admin/users/nobody@example.com", headers=admin).status_code == 404


def test_a_disabled_user_is_refused_everywhere_at_once_until_enabled(mail_app, admin, client):
    other = mail_app().test_client()  # another instance on the same database
    signed = sign_up(client, "ann@example.com")
    headers = bearer(signed["access_token"])
    made = uploaded(client, headers, b"shared")
    link = client.post(f"/file/{made['id']}/link", headers=headers).json["data"]["path"]
    disabled = client.post("/admin/users/ann@example.com/disable", headers=admin)
    assert disabled.status_code == 200 and disabled.json["data"]["disabled"] is True
    assert disabled.json["data"]["sessions"] == 0 and other.get(link).status_code == 404
    for instance in (client, other):  # its sessions are gone, and the next request says why
        refused = instance.get("/info", headers=headers)
        assert refused.status_code == 403 and error_code(refused) == "account_disabled"
    right = client.post("/signin", json={"id": "ann@example.com", "password": PASSWORD})
    assert right.status_code == 403 and error_code(right) == "account_disabled"
    wrong = client.post("/signin", json={"id": "ann@example.com", "password": "not the password"})
    assert error_code(wrong) == "invalid_credentials"  # a guesser learns nothing
    refreshed = client.post("/signin/new_token", json={"refresh_token": signed["refresh_token"]})
    assert refreshed.status_code == 403 and error_code(refreshed) == "account_disabled"
    assert client.post("/admin/users/ann@example.com/enable", headers=admin).json["data"]["disabled"] is False
    assert client.post("/signin", json={"id": "ann@example.com", "password": PASSWORD}).status_code == 200
    # enabling does not bring the revoked sessions back
    assert error_code(client.get("/info", headers=headers)) == "invalid_token"
    assert error_code(client.post("/signin/new_token", json={"refresh_token": signed["refresh_token"]})) == (
        "invalid_refresh_token")


def test_a_disabled_user_with_a_live_session_gets_account_disabled(app, client):
    signed = sign_up(client, "ann@example.com")
    with app.extensions["engine"].begin() as connection:  # disabled behind the service's back: sessions live on
        connection.execute(sa.text("UPDATE users SET disabled = :yes WHERE login = 'ann@example.com'"), {"yes": True})
    answer = client.get("/info", headers=bearer(signed["access_token"]))
    assert answer.status_code == 403 and error_code(answer) == "account_disabled"
    refreshed = client.post("/signin/new_token", json={"refresh_token": signed["refresh_token"]})
    assert refreshed.status_code == 403 and error_code(refreshed) == "account_disabled"


def test_an_operator_deletes_a_user_without_their_password(app, client, admin):
    ann = bearer(sign_up(client, "ann@example.com")["access_token"])
    uploaded(client, ann, b"gone soon")
    answer = client.delete("/admin/users/ann@example.com", headers=admin)
    assert answer.status_code == 200 and answer.json["data"] == {"id": "ann@example.com", "deleted": True}
    assert stored_files(app) == [] and user_id_of(app, "ann@example.com") is None
    assert client.delete("/admin/users/ann@example.com", headers=admin).status_code == 404


def test_the_console_lists_disables_enables_and_deletes_users(app, client):
    sign_up(client, "ann@example.com")
    headers = bearer(sign_up(client, "bob@example.com")["access_token"])
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["users", "list", "--q", "BOB"])
    assert listed.exit_code == 0 and "bob@example.com" in listed.output and "ann@" not in listed.output
    assert "1 user" in listed.output
    assert runner.invoke(args=["users", "disable", "bob@example.com"]).exit_code == 0
    assert error_code(client.get("/info", headers=headers)) == "account_disabled"  # signed out everywhere
    assert error_code(client.post("/signin", json={"id": "bob@example.com", "password": PASSWORD})) == "account_disabled"
    assert "disabled" in runner.invoke(args=["users", "list"]).output
    assert runner.invoke(args=["users", "enable", "bob@example.com"]).exit_code == 0
    assert error_code(client.get("/info", headers=headers)) == "invalid_token"  # the old sessions stay signed out
    assert client.post("/signin", json={"id": "bob@example.com", "password": PASSWORD}).status_code == 200
    unknown = runner.invoke(args=["users", "disable", "nobody@example.com"])
    assert unknown.exit_code != 0 and "no such user" in unknown.output
    assert runner.invoke(args=["users", "delete", "ann@example.com", "--yes"]).exit_code == 0
    assert user_id_of(app, "ann@example.com") is None


def test_tokens_and_codes_expire(mail_app, mail):
    client = mail_app(RESET_TOKEN_TTL=1, VERIFY_TOKEN_TTL=1).test_client()
    sign_up(client, "ann@example.com")
    verify_token, _ = proof(body_of(mail.wait_for("ann@example.com")))
    client.post("/password/forgot", json={"id": "ann@example.com"})
    reset_token, reset_code = proof(body_of(mail.wait_for("ann@example.com", count=2)))
    time.sleep(1.2)
    assert error_code(client.post("/verify/confirm", json={"token": verify_token})) == "invalid_code"
    for late in ({"token": reset_token}, {"id": "ann@example.com", "code": reset_code}):
        answer = client.post("/password/reset", json={**late, "password": NEW_PASSWORD})
        assert answer.status_code == 401 and error_code(answer) == "invalid_code"
