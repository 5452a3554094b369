"""/docs in headless Chromium against a real gunicorn: Swagger UI loads from the server's own assets,
reads /openapi.json and renders every documented path. Offline by construction: Chromium's own
background traffic is switched off and the page references nothing outside the server.

Needs Debian's `chromium`; without it the test is skipped with a banner, and REQUIRE_BROWSER=1 turns
that into a failure. DOCS_SCREENSHOT=path keeps the screenshot.
"""
import json
import os
import shutil
import struct
import subprocess
import urllib.request

import pytest

from tests.conftest import JWT_TEST_SECRET, start_gunicorn, stop_gunicorn

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
REQUIRE_BROWSER = os.environ.get("REQUIRE_BROWSER") == "1"
WIDTH, HEIGHT = 1280, 900
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--lang=en-US",
    f"--window-size={WIDTH},{HEIGHT}", "--virtual-time-budget=5000",
]


class SkipBanner:
    def __init__(self, reason: str):
        self.reason = reason

    def pytest_terminal_summary(self, terminalreporter) -> None:
        terminalreporter.write_sep("!", "/docs RENDER CHECK SKIPPED", red=True, bold=True)
        terminalreporter.write_line(f"{self.reason}; apt-get install chromium. REQUIRE_BROWSER=1 makes this fail.",
                                    red=True)


@pytest.fixture
def chromium(request) -> str:
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    reason = f"{CHROMIUM} not found (Debian package chromium)"
    if REQUIRE_BROWSER:
        pytest.fail(f"REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    if not request.config.pluginmanager.has_plugin("docs-skip-banner"):
        request.config.pluginmanager.register(SkipBanner(reason), "docs-skip-banner")
    pytest.skip(reason)


@pytest.fixture
def docs_server(database_urls, tmp_path):
    """gunicorn on any available backend: the page reads no table."""
    url = database_urls.get("sqlite") or next(iter(database_urls.values()))
    server = start_gunicorn({
        "DATABASE_URL": url, "JWT_SECRET": JWT_TEST_SECRET, "UPLOAD_DIR": str(tmp_path / "uploads"),
        "LOG_LEVEL": "WARNING",
    }, tmp_path)
    yield server
    stop_gunicorn(server)


def run_chromium(chromium: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    return subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=90,
    )


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_swagger_ui_renders_every_documented_operation(chromium, docs_server, tmp_path):
    page = f"{docs_server.url}/docs"
    dom = run_chromium(chromium, tmp_path, "--dump-dom", page)
    assert dom.returncode == 0, dom.stderr[-3000:]
    html = dom.stdout
    assert "swagger-ui" in html and "Failed to load API definition" not in html
    with urllib.request.urlopen(f"{docs_server.url}/openapi.json", timeout=10) as response:
        document = json.loads(response.read())
    for path, item in document["paths"].items():
        assert f'data-path="{path}"' in html, f"{path} is not rendered"
        for operation in item.values():
            assert operation["operationId"] in html, operation["operationId"]

    shot = tmp_path / "docs.png"
    result = run_chromium(chromium, tmp_path, f"--screenshot={shot}", page)
    assert result.returncode == 0 and shot.exists(), result.stderr[-3000:]
    data = shot.read_bytes()
    assert png_size(data) == (WIDTH, HEIGHT)
    assert len(data) > 30_000, "a blank page compresses to a few KiB; a rendered Swagger UI does not"
    if os.environ.get("DOCS_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["DOCS_SCREENSHOT"])
