"""Fixtures: every test runs on SQLite and on MySQL, each backend migrated once per run, rows wiped per test."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.engine import make_url

from app import create_app
from app.db import Base

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = [b.strip() for b in os.environ.get("TEST_DB", "sqlite,mysql").split(",") if b.strip()]
MYSQL_TEST_URL = os.environ.get("MYSQL_TEST_URL", "mysql+pymysql://root@127.0.0.1:3306/filesvc_test")
REQUIRE_MYSQL = os.environ.get("REQUIRE_MYSQL") == "1"
JWT_TEST_SECRET = "test-secret-" + "x" * 40
PASSWORD = "correct horse battery"

# Cheap argon2 for the suite; production cost is measured in bench/.
FAST_HASH = {"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_KIB": 8192, "ARGON2_PARALLELISM": 1}

_mysql_skip_reason: list[str] = []


def alembic_config(url: str) -> AlembicConfig:
    config = AlembicConfig(str(ROOT / "migrations" / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    return config


def migrate_round_trip(url: str) -> None:
    """upgrade → downgrade → upgrade: some downgrade errors show only on MySQL."""
    config = alembic_config(url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    command.upgrade(config, "head")


def fresh_mysql(url: str) -> str:
    parsed = make_url(url)
    server = sa.create_engine(parsed.set(database=""), connect_args={"connect_timeout": 5})
    try:
        with server.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS `{parsed.database}`"))
            connection.execute(sa.text(f"CREATE DATABASE `{parsed.database}` CHARACTER SET utf8mb4"))
    finally:
        server.dispose()
    return url


@pytest.fixture(scope="session")
def database_urls(tmp_path_factory) -> dict[str, str]:
    urls: dict[str, str] = {}
    if "sqlite" in BACKENDS:
        urls["sqlite"] = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.db'}"
        migrate_round_trip(urls["sqlite"])
    if "mysql" in BACKENDS:
        try:
            urls["mysql"] = fresh_mysql(MYSQL_TEST_URL)
        except sa.exc.OperationalError as e:
            message = f"MySQL unreachable at {MYSQL_TEST_URL}: {e.orig}"
            if REQUIRE_MYSQL:
                pytest.exit(f"REQUIRE_MYSQL=1 but {message}", returncode=3)
            _mysql_skip_reason.append(message)
        else:
            migrate_round_trip(urls["mysql"])
    return urls


def pytest_terminal_summary(terminalreporter) -> None:
    if _mysql_skip_reason:
        terminalreporter.write_sep("!", "MYSQL TESTS SKIPPED", red=True, bold=True)
        terminalreporter.write_line(_mysql_skip_reason[0], red=True)
        terminalreporter.write_line("Start MariaDB/MySQL or set MYSQL_TEST_URL; REQUIRE_MYSQL=1 makes this fail.", red=True)


@pytest.fixture(params=BACKENDS)
def backend(request, database_urls) -> str:
    if request.param not in database_urls:
        pytest.skip(_mysql_skip_reason[0] if _mysql_skip_reason else f"{request.param} unavailable")
    return request.param


def app_config(url: str, tmp_path: Path, **overrides) -> dict:
    return {
        "TESTING": True,
        "DATABASE_URL": url,
        "JWT_SECRET": JWT_TEST_SECRET,
        "UPLOAD_DIR": str(tmp_path / "uploads"),
        "RATELIMIT_ENABLED": False,
        **FAST_HASH,
        **overrides,
    }


def wipe_rows(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture
def make_app(backend, database_urls, tmp_path):
    """Build an app on this test's backend with extra settings; rows are wiped afterwards."""
    apps = []

    def build(**overrides):
        app = create_app(app_config(database_urls[backend], tmp_path, **overrides))
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["engine"].dispose()
        app.extensions["auth_engine"].dispose()
    if apps:
        wipe_rows(apps[0].extensions["engine"])
        apps[0].extensions["engine"].dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


def sign_up(client, login: str = "ann@example.com", password: str = PASSWORD, **kwargs) -> dict:
    response = client.post("/signup", json={"id": login, "password": password}, **kwargs)
    assert response.status_code == 201, response.json
    return response.json["data"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def signed_in(client) -> dict[str, str]:
    """Authorization headers of a freshly signed-up user, ann@example.com."""
    return bearer(sign_up(client)["access_token"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, url: str, process: subprocess.Popen, log_path: Path):
        self.url, self.process, self.log_path = url, process, log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_gunicorn(env_overrides: dict[str, str], tmp_path: Path, port: int | None = None) -> LiveServer:
    """A real gunicorn (gthread) on a free loopback port, with the production config file."""
    port = port or free_port()
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "WEB_CONCURRENCY": "2", **env_overrides}
    log_path = tmp_path / f"gunicorn-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "wsgi:app"],
        cwd=ROOT, env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {log_path.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.1)
    else:
        process.kill()
        raise RuntimeError(f"gunicorn did not start: {log_path.read_text()}")
    return LiveServer(f"http://127.0.0.1:{port}", process, log_path)


def stop_gunicorn(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture
def make_live_server(backend, database_urls, tmp_path, app) -> Iterator:
    """Start gunicorn on this test's backend with extra environment (e.g. MAX_UPLOAD_BYTES); stopped afterwards."""
    servers: list[LiveServer] = []

    def start(**env_overrides: str) -> LiveServer:
        env = {
            "DATABASE_URL": database_urls[backend],
            "JWT_SECRET": JWT_TEST_SECRET,
            "UPLOAD_DIR": app.config["UPLOAD_DIR"],
            "RATELIMIT_ENABLED": "false",
            "ARGON2_TIME_COST": "1",
            "ARGON2_MEMORY_KIB": "8192",
            "LOG_LEVEL": "WARNING",
            **env_overrides,
        }
        servers.append(start_gunicorn(env, tmp_path))
        return servers[-1]

    yield start
    for server in servers:
        stop_gunicorn(server)


@pytest.fixture
def live_server(make_live_server) -> LiveServer:
    """gunicorn serving this test's backend; `app` is the same database, for setup and the final wipe."""
    return make_live_server()
