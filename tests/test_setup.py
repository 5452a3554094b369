"""A fresh clone's set-up: gunicorn honours `.env` like the app does, and `make run` needs no test packages."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import start_gunicorn, stop_gunicorn

ROOT = Path(__file__).resolve().parent.parent
# Everything gunicorn.conf.py reads, so the developer's own environment cannot leak into these tests.
SERVER_SETTINGS = ("HOST", "PORT", "WEB_CONCURRENCY", "WORKER_CONNECTIONS", "HEADER_TIMEOUT", "KEEPALIVE_TIMEOUT", "BODY_TIMEOUT", "GUNICORN_TIMEOUT",
                   "GUNICORN_MAX_REQUESTS", "LOG_LEVEL", "FORWARDED_ALLOW_IPS", "DOTENV_PATH")
READ_SETTINGS = (
    "import json, runpy; c = runpy.run_path('gunicorn.conf.py'); "
    "print(json.dumps({k: c[k] for k in ('bind', 'workers', 'worker_connections', 'keepalive', 'timeout', 'max_requests', "
    "'loglevel', 'forwarded_allow_ips')}))"
)


def clean_env(dotenv: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVER_SETTINGS}
    return {**env, "DOTENV_PATH": str(dotenv), **extra}


def gunicorn_settings(dotenv: Path, **extra: str) -> dict:
    run = subprocess.run([sys.executable, "-c", READ_SETTINGS], cwd=ROOT, env=clean_env(dotenv, **extra),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.fixture
def dotenv(tmp_path) -> Path:
    path = tmp_path / ".env"
    path.write_text(
        "PORT=3901\n"
        "HOST=127.0.0.1\n"
        "WEB_CONCURRENCY=3   # comment\n"
        "WORKER_CONNECTIONS=500\n"
        "KEEPALIVE_TIMEOUT=7\n"
        "GUNICORN_TIMEOUT=45\n"
        "GUNICORN_MAX_REQUESTS=1000\n"
        "LOG_LEVEL=WARNING\n"
        "FORWARDED_ALLOW_IPS=10.0.0.1\n"
    )
    return path


def test_gunicorn_reads_dotenv(dotenv):
    settings = gunicorn_settings(dotenv)
    assert settings == {
        "bind": "127.0.0.1:3901", "workers": 3, "worker_connections": 500, "keepalive": 7, "timeout": 45, "max_requests": 1000,
        "loglevel": "warning", "forwarded_allow_ips": "10.0.0.1",
    }


def test_the_real_environment_beats_dotenv(dotenv):
    settings = gunicorn_settings(dotenv, PORT="3902", WEB_CONCURRENCY="1")
    assert settings["bind"] == "127.0.0.1:3902"
    assert settings["workers"] == 1
    assert settings["worker_connections"] == 500  # not in the environment: still from .env


def test_defaults_without_dotenv(tmp_path):
    settings = gunicorn_settings(tmp_path / "missing.env")
    assert settings["bind"] == "127.0.0.1:3000"
    assert (settings["workers"], settings["worker_connections"], settings["keepalive"]) == (2, 10000, 5)


def test_gunicorn_itself_binds_where_dotenv_says(dotenv, tmp_path):
    """The way `make run` starts it, from another directory too: the settings file finds config.py."""
    with dotenv.open("a") as env_file:
        env_file.write(f"INSTANCE_DIR={tmp_path / 'instance'}\nDATABASE_URL=sqlite:///{tmp_path / 'app.db'}\n")
    run = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "--chdir", str(ROOT),
         "--print-config", "wsgi:app"],
        cwd=tmp_path, env=clean_env(dotenv), capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    printed = dict(line.split("=", 1) for line in run.stdout.splitlines() if "=" in line)
    printed = {key.strip(): value.strip() for key, value in printed.items()}
    assert printed["bind"] == "['127.0.0.1:3901']"
    assert (printed["workers"], printed["worker_connections"], printed["keepalive"]) == ("3", "500", "7")
    assert printed["worker_class"] == "app.server.worker.JsonErrorWorker"


def test_the_app_reads_the_same_dotenv(dotenv, tmp_path):
    with dotenv.open("a") as env_file:
        env_file.write(f"INSTANCE_DIR={tmp_path / 'instance'}\nACCESS_TOKEN_TTL=123\n")
    code = "import config; print(config.Config.ACCESS_TOKEN_TTL, config.Config.INSTANCE_DIR)"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean_env(dotenv),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["123", str(tmp_path / "instance")]


def make_dry_run(*args: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    run = subprocess.run(["make", "--dry-run", "--always-make", *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_make_run_installs_runtime_packages_only():
    commands = make_dry_run("run")
    assert "-r requirements.txt" in commands
    assert "requirements-dev.txt" not in commands


@pytest.mark.parametrize("target", ["test", "fuzz", "docs-check", "bench"])
def test_test_targets_add_dev_packages(target):
    assert "-r requirements-dev.txt" in make_dry_run(target)


def test_make_web_takes_the_api_address():
    assert "http://localhost:8080/?api=http://127.0.0.1:3901" in make_dry_run("web", "API_URL=http://127.0.0.1:3901")


def test_the_start_up_log_names_the_address_to_open(tmp_path):
    """`make run`'s log says where the server is: gunicorn's own line would name no address, since the
    master makes a socket per worker itself (app/server/listeners.py)."""
    server = start_gunicorn({"DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}", "LOG_LEVEL": "info",
                             "LOG_FORMAT": "text", "METRICS_PORT": "", "GUNICORN_REUSE_PORT": "true"}, tmp_path)
    try:
        url = server.url  # http://127.0.0.1:<port>
        log = server.log()
        assert f"Listening at: {url} (2 sockets, one per worker; master {server.process.pid})" in log, log
        assert f"filesvc is serving {url} (API docs: {url}/docs)" in log, log
    finally:
        stop_gunicorn(server)
