"""SPEC §11: an authenticator app (TOTP) with recovery codes, sign-in in two steps, and passkeys (WebAuthn).

Codes are computed by pyotp from the secret the service hands out, as an authenticator app would; passkeys
are a software authenticator with a real P-256 key (tests/support/authenticator.py) driving the real
ceremonies through HTTP.
"""
import concurrent.futures
import time

import pyotp
import pytest
import sqlalchemy as sa

from tests.support.api import PASSWORD, bearer, error_code, sign_up
from tests.support.authenticator import SoftPasskey, b64url

ORIGIN = "https://app.example.com"
# The limits' counters run (and are given back) as in production, high enough not to refuse these tests.
RP = {"WEBAUTHN_RP_ID": "app.example.com", "WEBAUTHN_ORIGINS": ORIGIN, "RATELIMIT_ENABLED": True,
      "RATELIMIT_SIGNIN": "1000 per minute", "RATELIMIT_REAUTH": "1000 per minute"}


@pytest.fixture
def app(make_app):
    return make_app(**RP)


def enrol(client, headers) -> tuple[pyotp.TOTP, list[str]]:
    """TOTP turned on as a person would: scan, then type the first code."""
    begun = client.post("/mfa/totp", headers=headers)
    assert begun.status_code == 201, begun.json
    totp = pyotp.parse_uri(begun.json["data"]["otpauth_uri"])
    assert totp.secret == begun.json["data"]["secret"]
    confirmed = client.post("/mfa/totp/confirm", headers=headers, json={"code": totp.now()})
    assert confirmed.status_code == 200, confirmed.json
    return totp, confirmed.json["data"]["recovery_codes"]


def next_code(totp: pyotp.TOTP) -> str:
    """A code the service has not seen: the next step's (one step of skew is allowed)."""
    return totp.at(time.time() + 30)


def mfa_token_of(client, login="ann@example.com", password=PASSWORD) -> dict:
    answer = client.post("/signin", json={"id": login, "password": password})
    assert answer.status_code == 401 and error_code(answer) == "mfa_required", answer.json
    return answer.json["error"]["details"]


def test_an_authenticator_app_is_set_up_by_scanning_and_a_first_code(client):
    headers = bearer(sign_up(client)["access_token"])
    begun = client.post("/mfa/totp", headers=headers)
    assert begun.status_code == 201
    data = begun.json["data"]
    assert data["otpauth_uri"].startswith("otpauth://totp/Files:ann%40example.com?secret=")
    assert data["qr_svg"].startswith("<svg") and 'xmlns="http://www.w3.org/2000/svg"' in data["qr_svg"]
    assert len(data["secret"]) == 32  # 160 bits, base32
    totp = pyotp.parse_uri(data["otpauth_uri"])
    assert totp.digits == 6 and totp.interval == 30 and totp.issuer == "Files"
    # not active yet: sign-in is one step
    assert client.post("/signin", json={"id": "ann@example.com", "password": PASSWORD}).status_code == 200
    assert client.get("/mfa", headers=headers).json["data"] == {"totp": False, "recovery_codes_left": 0, "passkeys": 0}
    wrong = client.post("/mfa/totp/confirm", headers=headers, json={"code": f"{(int(totp.now()) + 1) % 10**6:06d}"})
    assert wrong.status_code == 401 and error_code(wrong) == "invalid_code"
    confirmed = client.post("/mfa/totp/confirm", headers=headers, json={"code": totp.now()})
    assert confirmed.status_code == 200 and confirmed.json["data"]["enabled"] is True
    codes = confirmed.json["data"]["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert client.get("/mfa", headers=headers).json["data"] == {"totp": True, "recovery_codes_left": 10, "passkeys": 0}
    again = client.post("/mfa/totp", headers=headers)
    assert again.status_code == 409 and error_code(again) == "conflict"


def test_sign_in_asks_for_a_code_after_the_password(client):
    sign_up(client)
    totp, _ = enrol(client, bearer(client.post("/signin", json={"id": "ann@example.com", "password": PASSWORD})
                                   .json["data"]["access_token"]))
    details = mfa_token_of(client)
    assert details["methods"] == ["totp", "recovery_code"]
    assert len(details["mfa_token"]) >= 43
    wrong_password = client.post("/signin", json={"id": "ann@example.com", "password": "not the password"})
    assert error_code(wrong_password) == "invalid_credentials"  # no mfa_token without the password
    signed = client.post("/signin/mfa", json={"mfa_token": details["mfa_token"], "code": next_code(totp)})
    assert signed.status_code == 200, signed.json
    assert client.get("/info", headers=bearer(signed.json["data"]["access_token"])).status_code == 200
    reused = client.post("/signin/mfa", json={"mfa_token": details["mfa_token"], "code": totp.now()})
    assert reused.status_code == 401 and error_code(reused) == "invalid_code"  # the mfa_token is single use
    history = client.get("/login/history", headers=bearer(signed.json["data"]["access_token"])).json["data"]["items"]
    assert history[0]["method"] == "totp" and history[0]["success"] is True


def test_a_code_is_accepted_once_and_one_step_of_clock_skew_either_way(client):
    sign_up(client)
    headers = bearer(client.post("/signin", json={"id": "ann@example.com", "password": PASSWORD}).json["data"]["access_token"])
    totp, _ = enrol(client, headers)
    code = next_code(totp)
    assert client.post("/signin/mfa", json={"mfa_token": mfa_token_of(client)["mfa_token"], "code": code}).status_code == 200
    replay = client.post("/signin/mfa", json={"mfa_token": mfa_token_of(client)["mfa_token"], "code": code})
    assert replay.status_code == 401 and error_code(replay) == "invalid_code"
    # an earlier step than the last one taken is refused too (the code of 30 s ago)
    old = client.post("/signin/mfa", json={"mfa_token": mfa_token_of(client)["mfa_token"], "code": totp.now()})
    assert error_code(old) == "invalid_code"


def test_clock_skew_of_one_step_is_allowed_but_not_two(client):
    sign_up(client)
    headers = bearer(client.post("/signin", json={"id": "ann@example.com", "password": PASSWORD}).json["data"]["access_token"])
    begun = client.post("/mfa/totp", headers=headers).json["data"]
    totp = pyotp.TOTP(begun["secret"])
    two_behind = totp.at(time.time() - 60)
    if two_behind in {totp.at(time.time() + d) for d in (-30, 0, 30)}:
        pytest.skip("two steps share a code by chance")
    assert error_code(client.post("/mfa/totp/confirm", headers=headers, json={"code": two_behind})) == "invalid_code"
    one_behind = client.post("/mfa/totp/confirm", headers=headers, json={"code": totp.at(time.time() - 30)})
    assert one_behind.status_code == 200
    ahead = client.post("/signin/mfa", json={"mfa_token": mfa_token_of(client)["mfa_token"],
                                             "code": totp.at(time.time() + 30)})
    assert ahead.status_code == 200


def test_two_parallel_uses_of_one_code_let_one_through(make_app):
    app = make_app(**RP)
    client = app.test_client()
    sign_up(client)
    headers = bearer(client.post("/signin", json={"id": "ann@example.com", "password": PASSWORD}).json["data"]["access_token"])
    totp, _ = enrol(client, headers)
    tokens = [mfa_token_of(client)["mfa_token"] for _ in range(6)]
    code = next_code(totp)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda t: app.test_client().post("/signin/mfa", json={"mfa_token": t, "code": code}),
                                tokens))
    assert sorted(a.status_code for a in answers) == [200] + [401] * 5


def test_recovery_codes_work_once_each_in_any_case_and_spacing(client):
    sign_up(client)
    headers = bearer(client.post("/signin", json={"id": "ann@example.com", "password": PASSWORD}).json["data"]["access_token"])
    _, codes = enrol(client, headers)
    typed = " " + codes[0].upper().replace("-", " ") + " "
    signed = client.post("/signin/mfa", json={"mfa_token": mfa_token_of(client)["mfa_token"], "recovery_code": typed})
    assert signed.status_code == 200, signed.json
    again = client.post("/signin/mfa", json={"mfa_token": mfa_token_of(client)["mfa_token"], "recovery_code": codes[0]})
    assert again.status_code == 401 and error_code(again) == "invalid_code"
    assert client.get("/mfa", headers=headers).json["data"]["recovery_codes_left"] == 9
    history = client.get("/login/history", headers=headers).json["data"]["items"]
    assert [e["method"] for e in history[:2]] == ["recovery_code", "recovery_code"]
    assert [e["success"] for e in history[:2]] == [False, True]


def test_wrong_codes_count_as_failed_sign_ins_and_void_the_mfa_token(make_app):
    client = make_app(**{**RP, "RATELIMIT_SIGNIN": "7 per minute"}).test_client()
    sign_up(client)
    headers = bearer(client.post("/signin", json={"id": "ann@example.com", "password": PASSWORD}).json["data"]["access_token"])
    totp, _ = enrol(client, headers)
    token = mfa_token_of(client)["mfa_token"]
    wrong = f"{(int(next_code(totp)) + 500_000) % 10**6:06d}"
    answers = [client.post("/signin/mfa", json={"mfa_token": token, "code": wrong}) for _ in range(5)]
    assert [error_code(a) for a in answers] == ["invalid_code"] * 5
    # the token took its 5 wrong codes: the right one no longer helps
    assert error_code(client.post("/signin/mfa", json={"mfa_token": token, "code": next_code(totp)})) == "invalid_code"
    # 2 sign-ins + 5 wrong codes: the address's 7 per minute are spent
    limited = client.post("/signin", json={"id": "ann@example.com", "password": PASSWORD})
    assert limited.status_code == 429 and error_code(limited) == "rate_limited" and limited.headers["Retry-After"]
    failures = [e for e in client.get("/login/history", headers=headers).json["data"]["items"] if not e["success"]]
    assert len(failures) == 5 and {e["method"] for e in failures} == {"totp"}


def test_the_mfa_token_expires(make_app):
    client = make_app(**RP, MFA_TOKEN_TTL=1).test_client()
    sign_up(client)
    headers = bearer(client.post("/signin", json={"id": "ann@example.com", "password": PASSWORD}).json["data"]["access_token"])
    totp, _ = enrol(client, headers)
    token = mfa_token_of(client)["mfa_token"]
    time.sleep(1.2)
    late = client.post("/signin/mfa", json={"mfa_token": token, "code": next_code(totp)})
    assert late.status_code == 401 and error_code(late) == "invalid_code"


def test_signin_mfa_refuses_bad_bodies_with_400(client):
    for body, field in (({}, "mfa_token"), ({"mfa_token": "x"}, "code"), ({"mfa_token": "x", "code": "12345"}, "code"),
                        ({"mfa_token": "x", "code": 123456}, "code"), ({"mfa_token": "a b", "code": "123456"}, "mfa_token")):
        answer = client.post("/signin/mfa", json=body)
        assert answer.status_code == 400 and field in answer.json["error"]["details"]["fields"], (body, answer.json)
    unknown = client.post("/signin/mfa", json={"mfa_token": "x" * 43, "code": "123456"})
    assert unknown.status_code == 401 and error_code(unknown) == "invalid_code"


def test_changing_or_deleting_the_account_and_removing_totp_ask_for_a_code(client):
    sign_up(client)
    headers = bearer(client.post("/signin", json={"id": "ann@example.com", "password": PASSWORD}).json["data"]["access_token"])
    totp, codes = enrol(client, headers)
    new_password = "another horse battery"
    missing = client.patch("/user", headers=headers, json={"current_password": PASSWORD, "password": new_password})
    assert missing.status_code == 401 and error_code(missing) == "mfa_required"
    assert "mfa_token" not in missing.json["error"]["details"] and "totp" in missing.json["error"]["details"]["methods"]
    wrong = client.patch("/user", headers=headers, json={"current_password": PASSWORD, "password": new_password,
                                                          "code": f"{(int(next_code(totp)) + 1) % 10**6:06d}"})
    assert error_code(wrong) == "invalid_code"
    changed = client.patch("/user", headers=headers, json={"current_password": PASSWORD, "password": new_password,
                                                            "code": next_code(totp)})
    assert changed.status_code == 200, changed.json
    assert error_code(client.delete("/user", headers=headers, json={"current_password": new_password})) == "mfa_required"
    no_code = client.delete("/mfa/totp", headers=headers, json={"current_password": new_password})
    assert no_code.status_code == 400 and "code" in no_code.json["error"]["details"]["fields"]
    wrong_password = client.delete("/mfa/totp", headers=headers, json={"current_password": PASSWORD, "recovery_code": codes[1]})
    assert wrong_password.status_code == 403
    removed = client.delete("/mfa/totp", headers=headers, json={"current_password": new_password, "recovery_code": codes[1]})
    assert removed.status_code == 200 and removed.json["data"] == {"enabled": False}
    assert client.post("/signin", json={"id": "ann@example.com", "password": new_password}).status_code == 200
    assert error_code(client.delete("/mfa/totp", headers=headers, json={"current_password": new_password,
                                                                        "code": "123456"})) == "conflict"
    assert client.delete("/user", headers=headers, json={"current_password": new_password}).status_code == 200


def test_the_secret_is_sealed_at_rest_and_opens_after_a_secret_rotation(make_app):
    app = make_app(**RP)
    client = app.test_client()
    sign_up(client)
    headers = bearer(client.post("/signin", json={"id": "ann@example.com", "password": PASSWORD}).json["data"]["access_token"])
    totp, _ = enrol(client, headers)
    with app.extensions["engine"].connect() as connection:
        stored = connection.execute(sa.text("SELECT secret FROM totp_factors")).scalar_one()
        hashes = connection.execute(sa.text("SELECT code_hash FROM recovery_codes")).scalars().all()
    assert totp.secret not in stored and len(hashes) == 10
    rotated = make_app(**RP, JWT_SECRET="a new secret of at least thirty-two bytes!!",
                       JWT_SECRET_PREVIOUS=app.config["JWT_SECRET"]).test_client()
    signed = rotated.post("/signin/mfa", json={"mfa_token": mfa_token_of(rotated)["mfa_token"], "code": next_code(totp)})
    assert signed.status_code == 200, signed.json
    with app.extensions["engine"].connect() as connection:
        resealed = connection.execute(sa.text("SELECT secret FROM totp_factors")).scalar_one()
    assert resealed != stored  # sealed again under the new secret on use
    # a secret rotated without JWT_SECRET_PREVIOUS: the operator is told (503 and the log), the user not blamed
    forgotten = make_app(**RP, JWT_SECRET="yet another secret of at least thirty-two bytes").test_client()
    unopened = forgotten.post("/signin/mfa", json={"mfa_token": mfa_token_of(forgotten)["mfa_token"],
                                                   "code": totp.at(time.time() + 60)})
    assert unopened.status_code == 503 and "JWT_SECRET_PREVIOUS" in unopened.json["error"]["message"]


# -- passkeys ------------------------------------------------------------------------------------------


def add_passkey(client, headers, passkey: SoftPasskey, name: str | None = None) -> dict:
    options = client.post("/passkeys/register/options", headers=headers)
    assert options.status_code == 200, options.json
    body = {"credential": passkey.create(options.json["data"])}
    if name is not None:
        body["name"] = name
    added = client.post("/passkeys/register", headers=headers, json=body)
    assert added.status_code == 201, added.json
    return added.json["data"]


def passkey_sign_in(client, passkey: SoftPasskey, login: str | None = "ann@example.com", **assertion):
    options = client.post("/signin/passkey/options", json={"id": login} if login else {})
    assert options.status_code == 200, options.json
    data = options.json["data"]
    return client.post("/signin/passkey", json={"challenge_id": data["challenge_id"],
                                                "credential": passkey.get(data, **assertion)})


def test_a_passkey_is_registered_listed_renamed_used_and_deleted(client):
    headers = bearer(sign_up(client)["access_token"])
    options = client.post("/passkeys/register/options", headers=headers).json["data"]
    assert options["rp"] == {"id": "app.example.com", "name": "Files"}
    assert options["user"]["name"] == "ann@example.com" and options["attestation"] == "none"
    assert {"type": "public-key", "alg": -7} in options["pubKeyCredParams"] and options["challenge_id"]
    passkey = SoftPasskey(ORIGIN)
    added = add_passkey(client, headers, passkey, name="Laptop")
    assert added["name"] == "Laptop" and added["last_used_at"] is None
    listed = client.get("/passkeys", headers=headers).json["data"]["items"]
    assert [k["id"] for k in listed] == [added["id"]]
    # the next registration's options exclude it
    again = client.post("/passkeys/register/options", headers=headers).json["data"]
    assert [c["id"] for c in again["excludeCredentials"]] == [b64url(passkey.credential_id)]
    signed = passkey_sign_in(client, passkey)
    assert signed.status_code == 200, signed.json
    assert signed.json["data"]["id"] == "ann@example.com"
    me = bearer(signed.json["data"]["access_token"])
    assert client.get("/info", headers=me).status_code == 200
    assert client.get("/login/history", headers=me).json["data"]["items"][0]["method"] == "passkey"
    assert client.get("/passkeys", headers=me).json["data"]["items"][0]["last_used_at"] is not None
    renamed = client.patch(f"/passkeys/{added['id']}", headers=me, json={"name": "Work laptop"})
    assert renamed.status_code == 200 and renamed.json["data"]["name"] == "Work laptop"
    assert client.delete(f"/passkeys/{added['id']}", headers=me).json["data"] == {"id": added["id"], "deleted": True}
    gone = passkey_sign_in(client, passkey)
    assert gone.status_code == 401 and error_code(gone) == "invalid_credentials"


def test_a_discoverable_passkey_signs_in_without_a_login(client):
    headers = bearer(sign_up(client)["access_token"])
    passkey = SoftPasskey(ORIGIN)
    add_passkey(client, headers, passkey)
    options = client.post("/signin/passkey/options", json={}).json["data"]
    assert options.get("allowCredentials", []) == []
    signed = client.post("/signin/passkey", json={"challenge_id": options["challenge_id"], "credential": passkey.get(options)})
    assert signed.status_code == 200 and signed.json["data"]["id"] == "ann@example.com"


def test_an_unknown_login_gets_options_that_look_like_a_real_ones(client):
    headers = bearer(sign_up(client)["access_token"])
    add_passkey(client, headers, SoftPasskey(ORIGIN))
    known = client.post("/signin/passkey/options", json={"id": "ann@example.com"}).json["data"]
    unknown = client.post("/signin/passkey/options", json={"id": "nobody@example.com"}).json["data"]
    assert sorted(known) == sorted(unknown) and len(unknown["allowCredentials"]) == 1
    assert unknown == {**unknown, "allowCredentials": client.post(
        "/signin/passkey/options", json={"id": "nobody@example.com"}).json["data"]["allowCredentials"]}


def test_a_passkey_challenge_is_single_use_and_expires(make_app):
    client = make_app(**RP, MFA_TOKEN_TTL=1).test_client()
    headers = bearer(sign_up(client)["access_token"])
    passkey = SoftPasskey(ORIGIN)
    add_passkey(client, headers, passkey)
    options = client.post("/signin/passkey/options", json={"id": "ann@example.com"}).json["data"]
    first = client.post("/signin/passkey", json={"challenge_id": options["challenge_id"], "credential": passkey.get(options)})
    assert first.status_code == 200
    replay = client.post("/signin/passkey", json={"challenge_id": options["challenge_id"], "credential": passkey.get(options)})
    assert replay.status_code == 401 and error_code(replay) == "invalid_code"
    late = client.post("/signin/passkey/options", json={"id": "ann@example.com"}).json["data"]
    time.sleep(1.2)
    expired = client.post("/signin/passkey", json={"challenge_id": late["challenge_id"], "credential": passkey.get(late)})
    assert expired.status_code == 401 and error_code(expired) == "invalid_code"
    stale = client.post("/passkeys/register/options", headers=headers).json["data"]
    time.sleep(1.2)
    refused = client.post("/passkeys/register", headers=headers, json={"credential": SoftPasskey(ORIGIN).create(stale)})
    assert refused.status_code == 401 and error_code(refused) == "invalid_code"


def test_a_signature_counter_that_does_not_grow_is_refused(client):
    headers = bearer(sign_up(client)["access_token"])
    passkey = SoftPasskey(ORIGIN)
    add_passkey(client, headers, passkey)
    assert passkey_sign_in(client, passkey, count=5).status_code == 200
    cloned = passkey_sign_in(client, passkey, count=5)  # a copy of the key, still at the count it was copied at
    assert cloned.status_code == 401 and error_code(cloned) == "invalid_credentials"
    assert passkey_sign_in(client, passkey, count=6).status_code == 200


def test_a_passkey_is_checked_for_origin_rp_signature_and_owner(client):
    headers = bearer(sign_up(client)["access_token"])
    passkey = SoftPasskey(ORIGIN)
    add_passkey(client, headers, passkey)
    elsewhere = passkey_sign_in(client, passkey, origin="https://evil.example.net")
    assert elsewhere.status_code == 400 and "credential" in elsewhere.json["error"]["details"]["fields"]
    # someone else's signature over the right challenge
    impostor = SoftPasskey(ORIGIN)
    impostor.credential_id, impostor.rp_id = passkey.credential_id, passkey.rp_id
    forged = passkey_sign_in(client, impostor)
    assert forged.status_code == 401 and error_code(forged) == "invalid_credentials"
    # bob's passkey cannot answer options made for ann's login
    bob = bearer(sign_up(client, "bob@example.com")["access_token"])
    bobs = SoftPasskey(ORIGIN)
    add_passkey(client, bob, bobs)
    crossed = passkey_sign_in(client, bobs, login="ann@example.com")
    assert crossed.status_code == 401 and error_code(crossed) == "invalid_credentials"
    # a registration from a page of another origin is refused
    options = client.post("/passkeys/register/options", headers=headers).json["data"]
    wrong_origin = client.post("/passkeys/register", headers=headers,
                               json={"credential": SoftPasskey("https://evil.example.net").create(options)})
    assert wrong_origin.status_code == 400
    # the same authenticator cannot be added twice; another user's passkey id is 404
    again = client.post("/passkeys/register/options", headers=headers).json["data"]
    twice = client.post("/passkeys/register", headers=headers, json={"credential": passkey.create(again)})
    assert twice.status_code == 409
    bobs_id = client.get("/passkeys", headers=bob).json["data"]["items"][0]["id"]
    assert client.delete(f"/passkeys/{bobs_id}", headers=headers).status_code == 404
    assert client.patch(f"/passkeys/{bobs_id}", headers=headers, json={"name": "mine"}).status_code == 404


def test_a_registration_answers_only_the_callers_own_challenge(client):
    ann = bearer(sign_up(client)["access_token"])
    bob = bearer(sign_up(client, "bob@example.com")["access_token"])
    options = client.post("/passkeys/register/options", headers=ann).json["data"]
    stolen = client.post("/passkeys/register", headers=bob, json={"credential": SoftPasskey(ORIGIN).create(options)})
    assert stolen.status_code == 401 and error_code(stolen) == "invalid_code"


def test_bad_passkey_bodies_are_400(client):
    headers = bearer(sign_up(client)["access_token"])
    for body in ({}, {"credential": {}}, {"credential": {"id": "x", "rawId": "x", "type": "public-key", "response": {}}},
                 {"credential": "text"}, {"credential": {"id": 1, "rawId": [], "type": "x", "response": {"clientDataJSON": "!!"}}},
                 {"credential": {"id": "a", "rawId": "a", "type": "public-key",
                                 "response": {"clientDataJSON": "e30", "attestationObject": "oA"}}}):
        answer = client.post("/passkeys/register", headers=headers, json=body)
        assert answer.status_code == 400, (body, answer.json)
    for body in ({"challenge_id": "0" * 32}, {"challenge_id": "nothex", "credential": {}},
                 {"challenge_id": "0" * 32, "credential": {"id": "a", "rawId": "a", "type": "public-key",
                                                           "response": {"clientDataJSON": "e30"}}}):
        answer = client.post("/signin/passkey", json=body)
        assert answer.status_code == 400, (body, answer.json)
    assert client.patch("/passkeys/" + "0" * 32, headers=headers, json={"name": ""}).status_code == 400
    assert client.delete("/passkeys/" + "0" * 32, headers=headers).status_code == 404


def test_a_passkey_stands_in_for_the_second_factor(client):
    sign_up(client)
    headers = bearer(client.post("/signin", json={"id": "ann@example.com", "password": PASSWORD}).json["data"]["access_token"])
    enrol(client, headers)
    passkey = SoftPasskey(ORIGIN)
    add_passkey(client, headers, passkey)
    assert mfa_token_of(client)["methods"] == ["totp", "recovery_code", "passkey"]
    assert passkey_sign_in(client, passkey).status_code == 200


def test_a_disabled_user_cannot_use_a_code_or_a_passkey(client, admin):
    sign_up(client)
    headers = bearer(client.post("/signin", json={"id": "ann@example.com", "password": PASSWORD}).json["data"]["access_token"])
    totp, _ = enrol(client, headers)
    passkey = SoftPasskey(ORIGIN)
    add_passkey(client, headers, passkey)
    token = mfa_token_of(client)["mfa_token"]
    assert client.get("/admin/users/ann@example.com", headers=admin).json["data"]["mfa"] is True
    assert client.post("/admin/users/ann@example.com/disable", headers=admin).status_code == 200
    assert error_code(client.post("/signin/mfa", json={"mfa_token": token, "code": next_code(totp)})) == "account_disabled"
    assert error_code(passkey_sign_in(client, passkey)) == "account_disabled"


def test_an_operator_resets_a_user_who_lost_every_factor(app, client):
    sign_up(client)
    headers = bearer(client.post("/signin", json={"id": "ann@example.com", "password": PASSWORD}).json["data"]["access_token"])
    enrol(client, headers)
    add_passkey(client, headers, SoftPasskey(ORIGIN))
    result = app.test_cli_runner().invoke(args=["users", "reset-mfa", "ann@example.com"])
    assert result.exit_code == 0 and "removed" in result.output, result.output
    signed = client.post("/signin", json={"id": "ann@example.com", "password": PASSWORD})
    assert signed.status_code == 200  # one step again
    me = bearer(signed.json["data"]["access_token"])
    assert client.get("/mfa", headers=me).json["data"] == {"totp": False, "recovery_codes_left": 0, "passkeys": 0}
    assert client.get("/login/history", headers=me).json["data"]["items"][1]["method"] == "mfa_reset"
    unknown = app.test_cli_runner().invoke(args=["users", "reset-mfa", "nobody@example.com"])
    assert unknown.exit_code != 0 and "no such user" in unknown.output


def test_webauthn_settings_are_checked_at_start(make_app):
    with pytest.raises(RuntimeError, match="WEBAUTHN_ORIGINS"):
        make_app(WEBAUTHN_ORIGINS="app.example.com")
    app = make_app(WEBAUTHN_RP_ID="", WEBAUTHN_ORIGINS="", PUBLIC_URL="https://files.example.org")
    assert app.extensions["relying_party"].id == "files.example.org"
    rp = app.extensions["relying_party"]
    assert rp.allows("https://files.example.org") and rp.allows("https://app.files.example.org")
    assert not rp.allows("http://files.example.org") and not rp.allows("https://example.org")
    assert not rp.allows("https://evilfiles.example.org")



def test_the_console_reseals_every_secret_after_a_rotation(make_app):
    old = make_app(**RP)
    client = old.test_client()
    for login in ("ann@example.com", "bob@example.com"):
        sign_up(client, login)
        enrol(client, bearer(client.post("/signin", json={"id": login, "password": PASSWORD}).json["data"]["access_token"]))
    new_secret = "a new secret of at least thirty-two bytes!!"
    moving = make_app(**RP, JWT_SECRET=new_secret, JWT_SECRET_PREVIOUS=old.config["JWT_SECRET"])
    resealed = moving.test_cli_runner().invoke(args=["users", "reseal-factors"])
    assert resealed.exit_code == 0 and "2 secrets sealed" in resealed.output, resealed.output
    assert "0 secrets sealed" in moving.test_cli_runner().invoke(args=["users", "reseal-factors"]).output
    # the former secret can go: the new one alone opens every secret
    after = make_app(**RP, JWT_SECRET=new_secret)
    assert after.test_cli_runner().invoke(args=["users", "reseal-factors"]).exit_code == 0
    unknown = make_app(**RP, JWT_SECRET="yet another secret of at least thirty-two bytes")
    refused = unknown.test_cli_runner().invoke(args=["users", "reseal-factors"])
    assert refused.exit_code != 0 and "2 secrets opened by no known secret" in refused.output


def test_passkey_options_are_limited_per_address_and_expired_challenges_go(make_app, monkeypatch):
    app = make_app(**{**RP, "RATELIMIT_SIGNIN": "3 per minute", "MFA_TOKEN_TTL": 1})
    client = app.test_client()
    answers = [client.post("/signin/passkey/options", json={}) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429] and answers[3].headers["Retry-After"]
    time.sleep(1.2)
    monkeypatch.setattr("app.services.factors._swept", [0.0])  # as if a minute had passed in this process
    fresh = make_app(**RP).test_client()
    assert fresh.post("/signin/passkey/options", json={}).status_code == 200
    with app.extensions["engine"].connect() as connection:
        assert connection.execute(sa.text("SELECT COUNT(*) FROM challenges")).scalar_one() == 1


def test_housekeeping_removes_expired_steps_and_keeps_live_ones(make_app):
    short = make_app(**RP, MFA_TOKEN_TTL=1)
    client = short.test_client()
    assert client.post("/signin/passkey/options", json={}).status_code == 200
    time.sleep(1.2)
    live = make_app(**RP).test_client().post("/signin/passkey/options", json={}).json["data"]["challenge_id"]
    result = short.test_cli_runner().invoke(args=["housekeeping"])
    assert result.exit_code == 0, result.output
    with short.extensions["engine"].connect() as connection:
        assert connection.execute(sa.text("SELECT id FROM challenges")).scalars().all() == [live]
