"""The log cannot be forged or leak statement parameters; production refuses debug; tokens allow clock skew."""
import logging
import os
import subprocess
import sys
import time

import jwt
import pytest

from app import create_app
from tests.conftest import JWT_TEST_SECRET, ROOT, app_config
from tests.support.api import bearer, sign_up
from tests.support.logs import captured

# -- the request log -----------------------------------------------------------------------------


@pytest.mark.parametrize("path, shown", [
    ("/x%0AFORGED 200", "/x\\x0aFORGED 200"),
    ("/x%0D%0AFORGED", "/x\\x0d\\x0aFORGED"),
    ("/a%09b%00c%1Bd%7Fe", "/a\\x09b\\x00c\\x1bd\\x7fe"),
    ("/a%C2%85b%C2%9Bc", "/a\\x85b\\x9bc"),  # C1 controls, NEL among them
    ("/a%E2%80%A8b", "/a\\u2028b"),
    ("/file/отчёт", "/file/отчёт"),  # printable text is kept as it is
])
def test_control_characters_in_the_path_are_escaped_in_one_log_line(client, caplog, path, shown):
    caplog.set_level(logging.INFO, logger="app.request")
    with captured("app.request", caplog):
        response = client.get(path, headers={"X-Request-ID": "probe-1"})
    assert response.status_code == 404
    [record] = [r for r in caplog.records if r.name == "app.request"]
    line = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s").format(record)
    assert len(line.splitlines()) == 1
    assert f"probe-1 GET {shown} 404 " in line
    assert not any(line.startswith(text) for text in ("FORGED", "\nFORGED"))


def test_both_engines_hide_statement_parameters(app):
    assert app.extensions["engine"].hide_parameters is True
    assert app.extensions["autocommit_engine"].hide_parameters is True


def test_a_database_error_names_no_parameter_in_the_log_or_the_answer(tmp_path, caplog):
    """An unmigrated database: the sign-in's lookup fails with the statement in the error, not its values."""
    app = create_app(app_config(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path, DEBUG=True))
    try:
        with captured("app", caplog):
            response = app.test_client().post("/signin", json={"id": "leaky.login@example.com", "password": "pw-1234567"})
    finally:
        app.extensions["engine"].dispose()
    assert response.status_code == 503
    stack = response.json["error"]["stack"]  # debug mode: the exception's text is in the answer too
    assert "no such table" in stack and "hide_parameters" in stack
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "no such table" in logged and "[SQL:" in logged
    for text in (stack, logged):
        assert "leaky.login" not in text and "pw-1234567" not in text


# -- production refuses debug ----------------------------------------------------------------------

PRODUCTION = {"APP_ENV": "production", "JWT_SECRET": "p" * 48, "DATABASE_URL": "sqlite://"}


def test_production_refuses_debug_mode(tmp_path):
    with pytest.raises(RuntimeError, match="APP_ENV=production refuses to start in debug mode"):
        create_app({**PRODUCTION, "INSTANCE_DIR": str(tmp_path), "DEBUG": True})
    app = create_app({**PRODUCTION, "INSTANCE_DIR": str(tmp_path), "DEBUG": False})
    assert not app.debug
    debug_in_development = create_app({**PRODUCTION, "INSTANCE_DIR": str(tmp_path), "DEBUG": True,
                                        "APP_ENV": "development"})
    assert debug_in_development.debug


def server_start(tmp_path, **env: str) -> subprocess.CompletedProcess:
    """Import wsgi (what gunicorn and `flask run` load) in a fresh interpreter with only these settings."""
    keep = {name: value for name, value in os.environ.items() if name in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
    settings = {**keep, "DOTENV_PATH": str(tmp_path / "none.env"), "INSTANCE_DIR": str(tmp_path),
                "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}", **env}
    return subprocess.run([sys.executable, "-c", "import wsgi"], cwd=ROOT, env=settings, capture_output=True,
                          text=True, timeout=60)


def test_a_production_server_with_flask_debug_does_not_start(tmp_path):
    refused = server_start(tmp_path, APP_ENV="production", JWT_SECRET="p" * 48, FLASK_DEBUG="1")
    assert refused.returncode != 0
    assert "APP_ENV=production refuses to start in debug mode" in refused.stderr
    started = server_start(tmp_path, APP_ENV="production", JWT_SECRET="p" * 48, FLASK_DEBUG="0")
    assert started.returncode == 0, started.stderr


# -- clock difference on access tokens --------------------------------------------------------------


def minted(client, login: str = "ann@example.com", **times: int) -> str:
    """An access token of a real session (signed up just now), with iat/nbf/exp moved to the given offsets."""
    issued = jwt.decode(sign_up(client, login)["access_token"], options={"verify_signature": False})
    now = int(time.time())
    claims = {**issued, "iat": now, "exp": now + 600, **{name: now + offset for name, offset in times.items()}}
    return jwt.encode(claims, JWT_TEST_SECRET, algorithm="HS256")


@pytest.mark.parametrize("times, status, code", [
    ({"iat": 3}, 200, None),  # minted by an instance whose clock is 3 s ahead
    ({"iat": 30}, 401, "invalid_token"),
    ({"nbf": 3}, 200, None),
    ({"nbf": 30}, 401, "invalid_token"),
    ({"iat": -603, "exp": -3}, 200, None),  # expired 3 s ago by this clock
    ({"iat": -630, "exp": -30}, 401, "token_expired"),
])
def test_access_tokens_allow_five_seconds_of_clock_difference(client, times, status, code):
    response = client.get("/info", headers=bearer(minted(client, **times)))
    assert response.status_code == status, response.json
    if code:
        assert response.json["error"]["code"] == code
    else:
        assert response.json["data"] == {"id": "ann@example.com", "verified": False}


def test_jwt_leeway_is_a_setting(make_app):
    strict = make_app(JWT_LEEWAY=0).test_client()
    assert strict.get("/info", headers=bearer(minted(strict, iat=3))).status_code == 401
    generous = make_app(JWT_LEEWAY=60).test_client()
    assert generous.get("/info", headers=bearer(minted(generous, "bob@example.com", iat=30))).status_code == 200
    with pytest.raises(RuntimeError, match="JWT_LEEWAY"):
        make_app(JWT_LEEWAY=-1)
