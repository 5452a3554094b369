"""/docs in headless Chromium against a real gunicorn: Swagger UI loads from the server's own assets,
reads /openapi.json and renders every documented path. Offline by construction: Chromium's own
background traffic is switched off and the page references nothing outside the server.

Needs Debian's `chromium`; without it the test is skipped with a banner, and REQUIRE_BROWSER=1 turns
that into a failure. DOCS_SCREENSHOT=path keeps the screenshot.
"""
import base64
import json
import os
import struct
import urllib.request

import pytest

from tests.conftest import JWT_TEST_SECRET, start_gunicorn, stop_gunicorn

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")
REQUIRE_BROWSER = os.environ.get("REQUIRE_BROWSER") == "1"
WIDTH, HEIGHT = 1280, 900
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--lang=en-US",
    f"--window-size={WIDTH},{HEIGHT}",
]
RENDER_WAIT = 60  # seconds for Swagger UI to fetch the document and draw every operation


class SkipBanner:
    def __init__(self, reason: str):
        self.reason = reason

    def pytest_terminal_summary(self, terminalreporter) -> None:
        terminalreporter.write_sep("!", "/docs RENDER CHECK SKIPPED", red=True, bold=True)
        terminalreporter.write_line(f"{self.reason}; apt-get install chromium. REQUIRE_BROWSER=1 makes this fail.",
                                    red=True)


@pytest.fixture
def chromium(request) -> str:
    missing = [f"{path} not found (Debian package {package})"
               for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver"))
               if not os.access(path, os.X_OK)]
    if not missing:
        return CHROMIUM
    reason = missing[0]
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


def open_rendered(chromium: str, tmp_path, url: str, operations: int):
    """Chromium (through its driver) on `url`, once Swagger UI has drawn `operations` operations or said it
    could not load the document; a wait for what the page shows, not a guess at how long it takes."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.get(url)
        WebDriverWait(driver, RENDER_WAIT).until(lambda d: d.execute_script(
            "return document.querySelectorAll('.opblock').length >= arguments[0]"
            " || document.body.innerText.includes('Failed to load API definition')", operations))
    except Exception:
        driver.quit()
        raise
    return driver


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_swagger_ui_renders_every_documented_operation(chromium, docs_server, tmp_path):
    with urllib.request.urlopen(f"{docs_server.url}/openapi.json", timeout=10) as response:
        document = json.loads(response.read())
    operations = sum(len(item) for item in document["paths"].values())
    driver = open_rendered(chromium, tmp_path, f"{docs_server.url}/docs", operations)
    try:
        html = driver.page_source
        assert "swagger-ui" in html and "Failed to load API definition" not in html
        for path, item in document["paths"].items():
            assert f'data-path="{path}"' in html, f"{path} is not rendered"
            for operation in item.values():
                assert operation["operationId"] in html, operation["operationId"]
        data = base64.b64decode(driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})["data"])
        assert png_size(data)[0] == WIDTH, png_size(data)
        assert len(data) > 30_000, "a blank page compresses to a few KiB; a rendered Swagger UI does not"
        if os.environ.get("DOCS_SCREENSHOT"):
            with open(os.environ["DOCS_SCREENSHOT"], "wb") as out:
                out.write(data)
    finally:
        driver.quit()
