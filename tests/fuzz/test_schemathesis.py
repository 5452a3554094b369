"""schemathesis against a real gunicorn on MySQL: every operation of /openapi.json, stateless and stateful.

The run signs in as a superuser (so the role operations get past 403) through the document's own
`bearerAuth` scheme, and signs in again whenever an example has signed that session out. Checks:
no 5xx, every status documented, bodies and headers as documented, content types as documented.
Settings are in schemathesis.toml beside this file; FUZZ_MAX_EXAMPLES and FUZZ_SEED override.
Reproduce a failure by hand with the `curl` line it prints, against `make run`.
"""
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from xml.etree import ElementTree

import pytest

from app import create_app
from tests.conftest import FAST_HASH, JWT_TEST_SECRET, app_config, start_gunicorn, stop_gunicorn, wipe_rows

CONFIG = Path(__file__).with_name("schemathesis.toml")
FUZZ_LOGIN = "fuzz@example.com"
FUZZ_PASSWORD = "fuzzing superuser 7f3c"  # unlike any example in the document, so no example can change it
FUZZ_VICTIM = "fuzz-victim@example.com"
FUZZ_METRICS_TOKEN = "fuzz-metrics-token-" + "m" * 16
MAX_UPLOAD_BYTES = 64 * 1024
PHASES = ("Examples", "Coverage", "Fuzzing", "Stateful")


@pytest.fixture
def fuzz_server(database_urls, tmp_path):
    if "mysql" not in database_urls:
        pytest.skip("the schemathesis run needs MySQL (REQUIRE_MYSQL=1 makes a missing MySQL fail)")
    url = database_urls["mysql"]
    app = create_app(app_config(url, tmp_path))
    result = app.test_cli_runner().invoke(
        args=["create-superuser", "--id", FUZZ_LOGIN], env={"SUPERUSER_PASSWORD": FUZZ_PASSWORD}
    )
    assert result.exit_code == 0, result.output
    # The admin operations act on this user, never on the superuser the run signs in as.
    victim = app.test_client().post("/signup", json={"id": FUZZ_VICTIM, "password": FUZZ_PASSWORD})
    assert victim.status_code == 201, victim.json
    server = start_gunicorn({
        "DATABASE_URL": url,
        "JWT_SECRET": JWT_TEST_SECRET,
        "UPLOAD_DIR": app.config["UPLOAD_DIR"],
        "MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        "RATELIMIT_ENABLED": "false",
        "ARGON2_TIME_COST": str(FAST_HASH["ARGON2_TIME_COST"]),
        "ARGON2_MEMORY_KIB": str(FAST_HASH["ARGON2_MEMORY_KIB"]),
        "LOG_LEVEL": "WARNING",
        "METRICS_TOKEN": FUZZ_METRICS_TOKEN,  # so /metrics is a route, and its gate is fuzzed too
    }, tmp_path)
    yield server
    stop_gunicorn(server)
    wipe_rows(app.extensions["engine"])
    for name in ("engine", "autocommit_engine"):
        if name in app.extensions:
            app.extensions[name].dispose()


def served_document(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/openapi.json", timeout=10) as response:
        return json.loads(response.read())


def test_schemathesis_finds_no_failures(fuzz_server, tmp_path):
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "--no-color",
        "run", f"{fuzz_server.url}/openapi.json",
        "--report", "junit", "--report-junit-path", str(tmp_path / "schemathesis.xml"),
    ]
    for variable, option in (("FUZZ_MAX_EXAMPLES", "--max-examples"), ("FUZZ_SEED", "--seed")):
        if os.environ.get(variable):
            command += [option, os.environ[variable]]
    env = {**os.environ, "FUZZ_LOGIN": FUZZ_LOGIN, "FUZZ_PASSWORD": FUZZ_PASSWORD, "FUZZ_VICTIM": FUZZ_VICTIM,
           "FUZZ_METRICS_TOKEN": FUZZ_METRICS_TOKEN,
           "SCHEMATHESIS_HOOKS": "tests.fuzz.hooks"}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    report = run.stdout + run.stderr
    print(report)  # pytest shows it for a failure, and with -s always
    assert run.returncode == 0, f"{report}\n--- gunicorn log ---\n{fuzz_server.log()[-5000:]}"

    # schemathesis leaves out the operation that serves the document it was given.
    expected = {f"{method.upper()} {path}" for path, item in served_document(fuzz_server.url)["paths"].items() for method in item}
    expected.discard("GET /openapi.json")
    tested = {case.get("name") for case in ElementTree.parse(tmp_path / "schemathesis.xml").iter("testcase")}
    assert expected <= tested, f"operations not exercised: {sorted(expected - tested)}"
    for phase in PHASES:
        assert re.search(rf"✅\s+{phase}\b", report), f"phase {phase} did not pass"
    assert "No tests were run" not in report
    assert re.search(r"\d+ generated, \d+ passed", report)
