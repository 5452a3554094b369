"""The web client (web/) in headless Chromium, served from its own origin, against a real gunicorn.

The page and the API listen on two ports, so every API call the browser makes is cross-origin:
these tests are the proof that the CORS contract (SPEC §5) works for a real frontend.
Chromium and its driver are Debian's (`apt-get install chromium chromium-driver`); without them
the tests are skipped with a banner, and REQUIRE_BROWSER=1 turns that into a failure.
WEB_SCREENSHOT=docs/web-client.png saves the page after an upload (the README's picture).
"""
import base64
import contextlib
import functools
import hashlib
import http.server
import io
import json
import math
import os
import re
import signal
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import wave
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

import pyotp
import pytest

from tests.conftest import BACKENDS, free_port
from tests.support.api import PASSWORD
from tests.support.mail import MailServer, body_of, proof, throwaway_certificate

ROOT = Path(__file__).resolve().parent.parent
WEB_DIR = ROOT / "web"
CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")
REQUIRE_BROWSER = os.environ.get("REQUIRE_BROWSER") == "1"
SCREENSHOT = os.environ.get("WEB_SCREENSHOT")
# Without these, Chromium keeps trying to reach Google's services, and on a closed network it stalls.
LAUNCH_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--window-size=1100,1000", "--lang=en-US",
]
SHORT_TTL = 3  # seconds: long enough for one page load, short enough to wait out
WAIT = 20  # seconds for anything the page does; gthread gunicorn on loopback answers in milliseconds
CORS_ERROR = re.compile(r"CORS policy|Access-Control-Allow|preflight", re.IGNORECASE)
PAGE_ERROR = re.compile(r"Uncaught|SyntaxError|TypeError|ReferenceError|Content Security Policy")
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 3, "mobile": True}  # an iPhone 12-14's viewport
LAPTOP = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}
SIZES = {"1280x900": LAPTOP, "390x844": PHONE}
MIB = 1024 * 1024


# --- availability --------------------------------------------------------------------------


def browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install -r requirements-dev.txt)"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} not found (Debian package {package})"
    return None


class SkipBanner:
    """Makes a skipped browser suite impossible to miss at the end of the run."""

    def __init__(self, reason: str):
        self.reason = reason

    def pytest_terminal_summary(self, terminalreporter) -> None:
        terminalreporter.write_sep("!", "BROWSER TESTS SKIPPED", red=True, bold=True)
        terminalreporter.write_line(self.reason, red=True)
        terminalreporter.write_line(
            "apt-get install chromium chromium-driver to run them; REQUIRE_BROWSER=1 makes this fail.", red=True
        )


@pytest.fixture(scope="session")
def chromium(request) -> None:
    missing = browser_missing()
    if missing is None:
        return
    if REQUIRE_BROWSER:
        pytest.fail(f"REQUIRE_BROWSER=1 but {missing}", pytrace=False)
    if not request.config.pluginmanager.has_plugin("browser-skip-banner"):
        request.config.pluginmanager.register(SkipBanner(missing), "browser-skip-banner")
    pytest.skip(f"BROWSER TESTS SKIPPED: {missing}")


# --- servers -------------------------------------------------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_directory(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """What `make web` runs (http.server), in a thread, on a free loopback port."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="session")
def web_origin() -> Iterator[str]:
    server, url = serve_directory(WEB_DIR)
    yield url
    server.shutdown()
    server.server_close()


def one_backend(backend: str) -> None:
    # The browser proves the client and CORS; the API's database behaviour is covered per backend elsewhere.
    if backend != BACKENDS[0]:
        pytest.skip(f"the browser flow runs on one database backend ({BACKENDS[0]})")


@pytest.fixture
def api_server(chromium, backend, request):
    one_backend(backend)
    return request.getfixturevalue("live_server")


@pytest.fixture
def short_token_server(chromium, backend, request, monkeypatch):
    """gunicorn issuing 3-second access tokens, taken at their word (no leeway), so the page has to refresh them."""
    one_backend(backend)
    monkeypatch.setenv("ACCESS_TOKEN_TTL", str(SHORT_TTL))
    monkeypatch.setenv("JWT_LEEWAY", "0")
    return request.getfixturevalue("live_server")


# --- the browser ---------------------------------------------------------------------------


class Browser:
    """One headless Chromium with its own profile: one "device"."""

    def __init__(self, tmp_path: Path, name: str):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.tmp_path, self.name = tmp_path, name
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in LAUNCH_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={tmp_path / f'{name}-profile'}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        options.add_experimental_option("prefs", {"download.prompt_for_download": False})
        # An explicit driver path: Selenium Manager is never run, so nothing is downloaded.
        service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / f"{name}-chromedriver.log"))
        self.driver = webdriver.Chrome(service=service, options=options)
        self.console: list[dict] = []
        self.downloads = 0

    def quit(self) -> None:
        try:
            self.read_console()
        finally:
            self.driver.quit()

    def read_console(self) -> list[dict]:
        self.console += self.driver.get_log("browser")  # each call drains Chromium's buffer
        return self.console

    # page access

    def open(self, url: str) -> None:
        self.driver.get(url)
        self.wait(lambda: self.js("return document.readyState") == "complete", "page loaded")

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def el(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return self.js("const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : null", css)

    def shown(self, css: str) -> bool:
        return bool(self.js("const e = document.querySelector(arguments[0]); return !!e && !e.closest('[hidden]')", css))

    def choose(self, css: str, option: str) -> None:
        from selenium.webdriver.support.select import Select

        Select(self.el(css)).select_by_visible_text(option)

    def click(self, css: str) -> None:
        self.el(css).click()

    def fill(self, css: str, value: str) -> None:
        field = self.el(css)
        field.clear()
        field.send_keys(value)

    def wait(self, condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        """Polls until `condition()` is truthy; a timeout fails with what the page shows."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"[{self.name}] timed out waiting for: {what}\n{self.describe()}")
            time.sleep(0.05)

    def describe(self) -> str:
        lines = [
            f"error area: {self.text('#error')!r}",
            f"status area: {self.text('#status')!r}",
            f"signed in as: {self.text('#whoami')!r}",
        ]
        lines += [f"console: {entry['level']} {entry['message']}" for entry in self.read_console()[-20:]]
        return "\n".join(lines)

    def wait_status(self, text: str) -> None:
        self.wait(lambda: text in (self.text("#status") or ""), f"status {text!r}")

    def wait_error(self) -> str:
        return self.wait(lambda: self.text("#error"), "a message in the error area")

    def error_free(self) -> None:
        assert self.text("#error") == "", self.describe()

    def field_error(self, css: str) -> str | None:
        """The message shown under a field (None if it has none): it must be marked aria-invalid and name the
        message in aria-describedby, so a screen reader reads it with the field."""
        return self.js(
            """const field = document.querySelector(arguments[0]);
               if (field.getAttribute('aria-invalid') !== 'true') return null;
               const note = document.getElementById(field.id + '-error');
               const described = (field.getAttribute('aria-describedby') || '').split(' ');
               return note && described.includes(note.id) ? note.textContent : 'NOT DESCRIBED: ' + described;""", css)

    def focused(self) -> str:
        return self.js("return document.activeElement && document.activeElement.id")

    # the page's parts

    def sign(self, action: str, login: str, password: str) -> None:
        self.fill("#login-id", login)
        self.fill("#password", password)
        self.click(f"#{action}")

    def files(self) -> list[dict]:
        """The rows of the file table, read in one go (the table may re-render meanwhile)."""
        return self.js(
            """return [...document.querySelectorAll('#files tbody tr')].map(row => ({
                 id: row.dataset.id,
                 name: row.querySelector('.file-name').textContent,
                 size: Number(row.querySelector('.size').title.split(' ')[0]),
               }))"""
        )

    def file_named(self, name: str) -> dict:
        return self.wait(lambda: next((f for f in self.files() if f["name"] == name), None), f"file {name!r} listed")

    def sessions(self) -> list[dict]:
        return self.js(
            """return [...document.querySelectorAll('#sessions li')].map(item => ({
                 id: item.dataset.id, current: item.classList.contains('current'),
                 text: item.textContent,
               }))"""
        )

    def watch_progress(self) -> None:
        """Records every value the upload percentage shows, as the XHR progress events set it."""
        self.js(
            """window.seenProgress = [];
               const out = document.getElementById('upload-percent');
               new MutationObserver(() => window.seenProgress.push(out.textContent))
                 .observe(out, {childList: true, characterData: true, subtree: true});"""
        )

    def seen_progress(self) -> list[int]:
        return [int(value.split()[0]) for value in self.js("return window.seenProgress")]

    def download(self, file_id: str) -> Path:
        """Clicks Download and returns the file Chromium saved, in a directory of its own.

        The page asks for a link and follows it with a plain <a href download>: no fetch, no Blob."""
        self.downloads += 1
        target = self.tmp_path / f"{self.name}-download-{self.downloads}"
        target.mkdir()
        self.driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(target)})
        row = f'#files tr[data-id="{file_id}"]'
        self.js("document.querySelector(arguments[0])?.remove()", f"{row} a.download-link")
        self.click(f"{row} button.download")
        anchor = self.wait(lambda: self.js(
            "const a = document.querySelector(arguments[0]);"
            "return a && {href: a.href, download: a.hasAttribute('download')}", f"{row} a.download-link",
        ), "the download's anchor")
        assert anchor["download"] and urllib.parse.urlsplit(anchor["href"]).path.startswith("/file/link/"), anchor
        assert not self.js("return performance.getEntriesByType('resource').some(e => e.name === arguments[0])",
                           anchor["href"]), "the page fetched the link itself"

        def finished() -> Path | None:
            done = [p for p in target.iterdir() if not p.name.endswith(".crdownload")]
            partial = [p for p in target.iterdir() if p.name.endswith(".crdownload")]
            return done[0] if done and not partial else None

        return self.wait(finished, f"a download in {target}")

    @contextlib.contextmanager
    def slow_upload(self, bytes_per_second: int) -> Iterator[None]:
        """DevTools network throttling: on loopback a 3 MB upload is otherwise one progress event."""
        self.driver.execute_cdp_cmd("Network.enable", {})
        self.driver.execute_cdp_cmd(
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": bytes_per_second},
        )
        try:
            yield
        finally:
            self.driver.execute_cdp_cmd(
                "Network.emulateNetworkConditions",
                {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
            )

    def save_full_page(self, path: Path) -> None:
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        })
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def count_requests(self, path: str) -> int:
        """How many times the page has fetched `path` (resource timing lists fetch and XHR)."""
        return self.js(
            "return performance.getEntriesByType('resource')"
            ".filter(e => new URL(e.name).pathname === arguments[0]).length",
            path,
        )


def at_size(browser: Browser, size: str) -> None:
    """The page's viewport from now on: SIZES[size] (DevTools device metrics, as a phone's would be)."""
    browser.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", SIZES[size])


@pytest.fixture
def browsers(chromium, tmp_path) -> Iterator[Callable[[str], Browser]]:
    opened: list[Browser] = []

    def open_browser(name: str) -> Browser:
        browser = Browser(tmp_path, name)
        opened.append(browser)
        return browser

    yield open_browser
    for browser in opened:
        browser.quit()


def assert_clean_console(*browsers: Browser, expected: tuple[str, ...] = ()) -> None:
    """Any console error fails the test even if the page seemed fine: a blocked preflight, a script error, a
    resource that did not load. `expected`: patterns of the errors a test provokes on purpose (Chromium logs
    every API refusal the page then shows, e.g. "... responded with a status of 413")."""
    allowed = [re.compile(pattern) for pattern in expected]
    for browser in browsers:
        bad = [
            entry["message"] for entry in browser.read_console()
            if CORS_ERROR.search(entry["message"]) or PAGE_ERROR.search(entry["message"])
            or (entry["level"] == "SEVERE" and not any(a.search(entry["message"]) for a in allowed))
        ]
        assert not bad, f"[{browser.name}] console errors:\n" + "\n".join(bad)


def page_url(web_origin: str, api_url: str | None = None) -> str:
    return f"{web_origin}/" + (f"?api={urllib.parse.quote(api_url, safe='')}" if api_url else "")


def api_error_message(api_url: str, path: str, payload: dict) -> str:
    """What the API itself answers, to compare with what the page shows."""
    request = urllib.request.Request(
        api_url + path, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST",
    )
    try:
        urllib.request.urlopen(request, timeout=10)
    except urllib.error.HTTPError as e:
        return json.loads(e.read())["error"]["message"]
    raise AssertionError(f"{path} unexpectedly succeeded")


# --- tests ---------------------------------------------------------------------------------


def test_console_check_catches_a_blocked_cross_origin_request(browsers, web_origin):
    """The CORS check below is not vacuous: a request to an origin without CORS headers shows up."""
    other, other_url = serve_directory(WEB_DIR)  # plain http.server: no Access-Control-Allow-Origin
    try:
        browser = browsers("probe")
        browser.open(page_url(web_origin))
        outcome = browser.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0], {headers: {Authorization: 'Bearer x'}})"
            ".then(() => done('allowed'), (e) => done('blocked: ' + e.message));",
            f"{other_url}/index.html",
        )
        assert outcome.startswith("blocked"), outcome
        browser.wait(lambda: any(CORS_ERROR.search(e["message"]) for e in browser.read_console()), "a CORS console error")
    finally:
        other.shutdown()
        other.server_close()


def test_sign_in_errors_phone_login_api_address_and_token_refresh(short_token_server, web_origin, browsers):
    api = short_token_server.url
    browser = browsers("device")

    # the API address: default, edited on the page, remembered across a reload
    browser.open(page_url(web_origin))
    assert browser.el("#api-base").get_attribute("value") == "http://localhost:3000"
    browser.fill("#api-base", api)
    browser.click("#api-form button[type=submit]")
    browser.wait_status(f"Using the API at {api}")
    browser.open(page_url(web_origin))
    assert browser.el("#api-base").get_attribute("value") == api

    # each refusal is said in people's words under the field it is about, which takes the focus
    assert "without + is read in the server’s region (RU" in browser.text("#login-hint")
    browser.sign("signin", "nobody@example.com", PASSWORD)
    assert api_error_message(api, "/signin", {"id": "nobody@example.com", "password": PASSWORD}) == "wrong id or password"
    browser.wait(lambda: browser.field_error("#password") == "The email, phone or password is not right.", "under password")
    assert browser.focused() == "password" and browser.text("#error") == ""
    browser.sign("signup", "+7 (999) 123-45-67", "short")
    browser.wait(lambda: browser.field_error("#password") == "Use at least 8 characters.", "too short")
    assert browser.field_error("#login-id") is None
    browser.sign("signup", "not a login", "password")
    browser.wait(lambda: browser.field_error("#login-id") ==
                 "Enter an email address like ann@example.com or a phone number like +7 999 123-45-67.", "not a login")
    assert browser.field_error("#password") == (
        "This password is one of the most common, so it is easy to guess. Choose another.")
    assert browser.focused() == "login-id"
    browser.el("#login-id").send_keys("x")  # typing in a field takes its message away, not the other's
    assert browser.field_error("#login-id") is None and browser.field_error("#password") is not None
    browser.fill("#login-id", "")
    browser.fill("#password", "")
    browser.click("#signin")  # nothing typed: said before anything is sent
    assert browser.field_error("#login-id") == "Enter your email address or phone number."
    assert browser.field_error("#password") == "Enter your password."

    # a phone number signs up in any notation and comes back in E.164
    browser.sign("signup", "+7 (999) 123-45-67", PASSWORD)
    browser.wait(lambda: browser.text("#whoami") == "+79991234567", "signed in as +79991234567")
    browser.wait_status("Welcome")
    browser.error_free()
    assert browser.count_requests("/signin/new_token") == 0

    # the access token expires; the next requests, sent together, share one refresh and succeed
    time.sleep(SHORT_TTL + 1.2)
    browser.click("#reload")
    browser.wait_status("Up to date.")
    browser.error_free()
    assert browser.text("#whoami") == "+79991234567"
    assert browser.count_requests("/signin/new_token") == 1
    assert browser.count_requests("/info") == 3  # after sign-up, the expired try, the retry

    browser.click("#logout")
    browser.wait_status("Signed out.")
    assert browser.shown("#auth-form") and not browser.shown("#files")
    assert_clean_console(browser, expected=(r"status of 40[01]",))


def test_full_flow_across_origins(api_server, web_origin, browsers, tmp_path):
    api = api_server.url
    page = page_url(web_origin, api)
    assert urllib.parse.urlsplit(page).netloc != urllib.parse.urlsplit(api).netloc
    login = "ann@example.com"

    laptop = browsers("laptop")
    laptop.open(page)
    assert laptop.el("#api-base").get_attribute("value") == api

    # sign up
    laptop.sign("signup", login, PASSWORD)
    laptop.wait(lambda: laptop.text("#whoami") == login, f"signed in as {login}")
    laptop.wait(lambda: laptop.text("#page-info") == "No files yet", "an empty file list")
    laptop.wait(lambda: len(laptop.sessions()) == 1, "one device listed")
    assert laptop.sessions()[0]["current"]
    laptop.error_free()

    listed, report = upload_with_progress(laptop, tmp_path)
    upload_several_and_page_through(laptop, report)
    download_and_replace(laptop, listed, report, tmp_path)
    phone = second_device_signed_out_by_the_first(laptop, browsers, page, login)
    delete_and_log_out(laptop, phone, listed)


def upload_with_progress(laptop: Browser, tmp_path: Path) -> tuple[dict, Path]:
    """Upload 3 MB: the progress bar, driven by XHR upload events, reaches 100 %."""
    # upload 3 MB: the progress bar, driven by XHR upload events, reaches 100 %
    report_name = "отчёт 2026.pdf"
    report = tmp_path / "files" / report_name
    report.parent.mkdir()
    report_bytes = os.urandom(3 * 1024 * 1024)
    report.write_bytes(report_bytes)
    laptop.watch_progress()
    laptop.el("#upload-file").send_keys(str(report))
    with laptop.slow_upload(bytes_per_second=4 * 1024 * 1024):
        laptop.click("#upload")
        laptop.wait_status(f"Uploaded {report_name}")
    listed = laptop.file_named(report_name)
    assert listed["size"] == len(report_bytes)
    seen = laptop.seen_progress()
    assert seen[0] == 0 and seen[-1] == 100 and seen == sorted(seen), seen
    assert any(0 < percent < 100 for percent in seen), f"no progress between 0 and 100 %: {seen}"
    assert laptop.text("#upload-percent") == "100 %"
    assert laptop.el("#upload-progress").get_property("value") == 100
    laptop.error_free()

    return listed, report


def upload_several_and_page_through(laptop: Browser, report: Path) -> None:
    report_name = report.name
    # several files at once; then pages of 5
    notes = {
        "notes.txt": b"Meeting notes\n",
        "budget.csv": b"item,amount\nrent,1200\n",
        "todo.md": b"- [ ] ship the web client\n",
        "photo.png": png_bytes(120, 90),
        "slides.key": os.urandom(150_000),
    }
    for name, content in notes.items():
        (report.parent / name).write_bytes(content)
    laptop.el("#upload-file").send_keys("\n".join(str(report.parent / name) for name in notes))
    laptop.click("#upload")
    laptop.wait(lambda: laptop.text("#upload-label") == "5 uploads complete", "5 uploads complete")
    laptop.wait(lambda: len(laptop.files()) == 6, "6 files listed")
    assert laptop.text("#page-info") == "Page 1 of 1 · 6 files"
    laptop.error_free()
    laptop.wait(lambda: laptop.js("return [...document.querySelectorAll('img.thumb')]"
                                  ".every(image => image.complete && image.naturalWidth > 0)"), "the thumbnails drawn")
    if SCREENSHOT:
        laptop.save_full_page(ROOT / SCREENSHOT)

    laptop.choose("#page-size", "5")
    laptop.wait(lambda: laptop.text("#page-info") == "Page 1 of 2 · 6 files", "page 1 of 2")
    first_page = laptop.wait(lambda: len(laptop.files()) == 5 and laptop.files(), "5 files on page 1")
    laptop.click("#next-page")
    laptop.wait(lambda: laptop.text("#page-info") == "Page 2 of 2 · 6 files", "page 2 of 2")
    second_page = laptop.wait(lambda: len(laptop.files()) == 1 and laptop.files(), "1 file on page 2")
    assert {f["name"] for f in first_page + second_page} == {report_name, *notes}
    assert laptop.el("#next-page").get_property("disabled")
    laptop.click("#prev-page")
    laptop.wait(lambda: laptop.text("#page-info") == "Page 1 of 2 · 6 files", "back on page 1")
    laptop.choose("#page-size", "10")
    laptop.wait(lambda: len(laptop.files()) == 6, "6 files on one page again")


def download_and_replace(laptop: Browser, listed: dict, report: Path, tmp_path: Path) -> None:
    report_name, report_bytes = report.name, report.read_bytes()
    # download: the server's name (UTF-8, from Content-Disposition) and the same bytes
    saved = laptop.download(listed["id"])
    assert saved.name == report_name
    assert saved.read_bytes() == report_bytes
    laptop.wait_status(f"Downloading {report_name}")

    # replace: same id, new content, and the download now gives the new bytes
    new_version = tmp_path / "files-v2" / "отчёт 2026 v2.pdf"
    new_version.parent.mkdir()
    new_bytes = os.urandom(1024 * 1024 + 7)
    new_version.write_bytes(new_bytes)
    laptop.el(f'#files tr[data-id="{listed["id"]}"] input[type=file]').send_keys(str(new_version))
    laptop.wait_status(f"Replaced {report_name}")
    replaced = laptop.wait(
        lambda: next((f for f in laptop.files() if f["id"] == listed["id"] and f["size"] == len(new_bytes)), None),
        "the replaced file's new size",
    )
    assert len(laptop.files()) == 6
    assert laptop.text("#upload-percent") == "100 %"
    saved = laptop.download(replaced["id"])
    assert saved.name == replaced["name"]
    assert saved.read_bytes() == new_bytes


def second_device_signed_out_by_the_first(laptop: Browser, browsers, page: str, login: str) -> Browser:
    # a second device signs in; the first lists it and signs it out
    phone = browsers("phone")
    phone.open(page)
    phone.sign("signin", login.upper(), PASSWORD)
    phone.wait(lambda: phone.text("#whoami") == login, "the second device signed in")
    phone.wait(lambda: len(phone.files()) == 6, "the second device sees the files")
    laptop.click("#reload")
    laptop.wait(lambda: len(laptop.sessions()) == 2, "two devices listed")
    other = next(s for s in laptop.sessions() if not s["current"])
    laptop.click(f'#sessions li[data-id="{other["id"]}"] button.end-session')
    laptop.wait_status("That device is signed out.")
    laptop.wait(lambda: [s["current"] for s in laptop.sessions()] == [True], "only this device left")
    phone.click("#reload")
    message = phone.wait_error()
    assert message.endswith("Sign in again."), message
    phone.wait(lambda: phone.shown("#auth-form") and not phone.shown("#files"), "the second device signed out")
    laptop.click("#reload")
    laptop.wait_status("Up to date.")
    laptop.error_free()

    return phone


def delete_and_log_out(laptop: Browser, phone: Browser, listed: dict) -> None:
    # delete, after the confirmation dialog
    laptop.click(f'#files tr[data-id="{listed["id"]}"] button.delete')
    laptop.wait(lambda: alert_open(laptop), "the delete confirmation")
    laptop.driver.switch_to.alert.accept()
    laptop.wait(lambda: all(f["id"] != listed["id"] for f in laptop.files()), "the file gone from the list")
    laptop.wait(lambda: laptop.text("#page-info") == "Page 1 of 1 · 5 files", "5 files left")
    laptop.error_free()

    # log out
    laptop.click("#logout")
    laptop.wait_status("Signed out.")
    assert laptop.shown("#auth-form") and not laptop.shown("#files")
    assert laptop.text("#whoami") == ""
    assert_clean_console(laptop)
    assert_clean_console(phone, expected=(r"status of 401",))  # its session was ended from the laptop


def alert_open(browser: Browser) -> bool:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        browser.driver.switch_to.alert.text
    except NoAlertPresentException:
        return False
    return True


# --- links, usage, the phone layout, refused and resumable uploads ---------------------------


@pytest.fixture
def make_api_server(chromium, backend, make_live_server):
    """gunicorn for the page with extra environment (QUOTA_BYTES, MAX_UPLOAD_BYTES, …)."""
    one_backend(backend)
    return make_live_server


def png_bytes(width: int, height: int) -> bytes:
    """A real (decodable) RGB PNG with a gradient, so the thumbnail has pixels to show."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + bytes(v for x in range(width) for v in (x * 4 % 256, y * 5 % 256, 160)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def wav_bytes(seconds: float, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(rate)
        out.writeframes(bytes(128 + int(90 * math.sin(i * 440 * 2 * math.pi / rate)) for i in range(int(seconds * rate))))
    return buffer.getvalue()


def sign_up_on_page(browser: Browser, page: str, login: str) -> None:
    browser.open(page)
    browser.sign("signup", login, PASSWORD)
    browser.wait(lambda: browser.text("#whoami") == login, f"signed in as {login}")
    browser.wait(lambda: browser.text("#page-info") == "No files yet", "an empty file list")


def link_path(url: str) -> str:
    return urllib.parse.urlsplit(url).path


def test_links_thumbnails_player_usage_and_a_phone_screen(make_api_server, web_origin, browsers, tmp_path):
    api = make_api_server(QUOTA_BYTES="0").url  # 0 = unlimited
    page = page_url(web_origin, api)
    browser = browsers("laptop")
    sign_up_on_page(browser, page, "ann@example.com")
    browser.wait(lambda: browser.text("#usage-text") == "0 B in 0 files · unlimited", "usage: nothing, unlimited")
    assert not browser.shown("#usage-bar") or browser.js("return document.getElementById('usage-bar').hidden")

    folder = tmp_path / "files"
    folder.mkdir()
    picture, song, notes = folder / "picture.png", folder / "song.wav", folder / "notes.txt"
    picture.write_bytes(png_bytes(64, 48))
    song.write_bytes(wav_bytes(1.0))
    notes.write_bytes(b"Meeting notes: ship the links.\n")
    browser.el("#upload-file").send_keys("\n".join(map(str, (picture, song, notes))))
    browser.click("#upload")
    browser.wait(lambda: browser.text("#upload-label") == "3 uploads complete", "3 uploads complete")
    rows = {f["name"]: f for f in browser.wait(lambda: len(browser.files()) == 3 and browser.files(), "3 files")}

    # (c) the usage line counts what was stored
    total = sum(path.stat().st_size for path in (picture, song, notes))
    browser.wait(lambda: browser.js("return document.getElementById('usage').dataset.bytes") == str(total), "usage")
    assert browser.text("#usage-text").endswith("in 3 files · unlimited"), browser.text("#usage-text")

    picture_row = thumbnail_from_the_api_origin(browser, api, rows["picture.png"]["id"])
    download_and_open_in_a_tab(browser, rows["picture.png"]["id"], picture, picture_row)
    play_through_a_link(browser, rows["song.wav"]["id"])
    notes_row = share_a_link_that_works_without_a_token(browser, rows["notes.txt"]["id"], notes)
    # (d) a 390 px phone screen: no sideways scrolling, every Delete button fully on screen and clickable
    at_size(browser, "390x844")
    try:
        browser.wait(lambda: browser.js("return document.documentElement.clientWidth") == PHONE["width"], "390 px")
        assert_fits_the_screen(browser)
        browser.click(f"{notes_row} button.delete")
        browser.wait(lambda: alert_open(browser), "the delete confirmation")
        browser.driver.switch_to.alert.accept()
        browser.wait(lambda: len(browser.files()) == 2, "2 files left")
        browser.wait(lambda: browser.text("#usage-text").endswith("in 2 files · unlimited"), "usage after the delete")
        assert_fits_the_screen(browser)
    finally:
        browser.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert_clean_console(browser)


def thumbnail_from_the_api_origin(browser: Browser, api: str, file_id: int) -> str:
    row = f'#files tr[data-id="{file_id}"]'
    # (a) the picture's thumbnail is loaded from the API's origin through an inline link; other rows have none
    thumb = browser.wait(lambda: browser.js(
        "const i = document.querySelector(arguments[0]); return i && i.complete && i.naturalWidth > 0 && "
        "{src: i.src, width: i.naturalWidth, height: i.naturalHeight}", f"{row} img.thumb"), "the thumbnail drawn")
    assert (thumb["width"], thumb["height"]) == (64, 48)
    assert link_path(thumb["src"]).startswith("/file/link/")
    assert urllib.parse.urlsplit(thumb["src"]).netloc == urllib.parse.urlsplit(api).netloc
    assert browser.js("return document.querySelectorAll('#files img.thumb').length") == 1

    return row


def download_and_open_in_a_tab(browser: Browser, file_id: int, picture: Path, row: str) -> None:
    # (b) Download: a plain <a href=link download> (checked in Browser.download), the same bytes
    saved = browser.download(file_id)
    assert saved.read_bytes() == picture.read_bytes()
    browser.wait_status("Downloading picture.png")

    # Open: the inline link in a new tab
    before = set(browser.driver.window_handles)
    browser.click(f"{row} button.open")
    opened = browser.wait(lambda: set(browser.driver.window_handles) - before, "a new tab")
    main = browser.driver.current_window_handle
    browser.driver.switch_to.window(opened.pop())
    browser.wait(lambda: link_path(browser.driver.current_url).startswith("/file/link/"), "the tab on the link")
    browser.driver.close()
    browser.driver.switch_to.window(main)


def play_through_a_link(browser: Browser, file_id: int) -> None:
    # Play: an <audio> element on an inline link reads the sound's metadata (ranges through the link)
    song_row = f'#files tr[data-id="{file_id}"]'
    browser.click(f"{song_row} button.play")
    player = browser.wait(lambda: browser.js(
        "const a = document.querySelector(arguments[0]); return a && a.readyState >= 1 && "
        "{src: a.src, duration: a.duration}", f"{song_row} audio.player"), "the player's metadata")
    assert link_path(player["src"]).startswith("/file/link/")
    assert abs(player["duration"] - 1.0) < 0.05, player
    assert browser.text(f"{song_row} button.play") == "Close player"


def share_a_link_that_works_without_a_token(browser: Browser, file_id: int, notes: Path) -> str:
    # Share: the person picks download or view and how long; the link is shown with its expiry, copied, and
    # works without any token
    notes_row = f'#files tr[data-id="{file_id}"]'
    browser.click(f"{notes_row} button.share")
    browser.wait(lambda: browser.js("return document.getElementById('share').open"), "the sharing dialog")
    assert browser.text("#share-name") == "“notes.txt”" and not browser.el("#share-inline").get_property("disabled")
    browser.click("#share-inline")  # view in the browser
    browser.choose("#share-expires", "5 minutes")
    browser.click("#share-create")
    shared = browser.wait(lambda: browser.el("#share-url").get_property("value"), "the link")
    assert link_path(shared).startswith("/file/link/")
    expiry = browser.text("#share-expiry")
    assert expiry.startswith("Anyone with this link can view notes.txt until") and "(5 min)" in expiry, expiry
    with urllib.request.urlopen(shared, timeout=10) as answer:
        assert answer.read() == notes.read_bytes()
        assert answer.headers["Content-Disposition"].startswith("inline")
    copied_to_the_clipboard(browser, shared)
    browser.click("#share-close")
    browser.wait(lambda: not browser.js("return document.getElementById('share').open"), "the dialog closed")
    browser.error_free()
    return notes_row


def copied_to_the_clipboard(browser: Browser, text: str) -> None:
    origin = browser.js("return location.origin")
    browser.driver.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": origin, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    browser.click("#share-copy")
    browser.wait(lambda: browser.text("#share-copy") == "Copied", "“Copied” on the button")
    pasted = browser.driver.execute_async_script(
        "const done = arguments[arguments.length - 1]; navigator.clipboard.readText().then(done, e => done(String(e)))")
    assert pasted == text


@pytest.mark.parametrize("size", ["1280x900", "390x844"])
def test_links_are_not_used_past_their_expiry(make_api_server, web_origin, browsers, tmp_path, size):
    """With LINK_MAX_TTL=3 every link lasts 3 s: the page drops what it showed and asks for new ones."""
    api = make_api_server(LINK_MAX_TTL="3").url
    browser = browsers(size)
    at_size(browser, size)
    sign_up_on_page(browser, page_url(web_origin, api), "ann@example.com")
    folder = tmp_path / "files"
    folder.mkdir()
    notes, picture = folder / "notes.txt", folder / "picture.png"
    notes.write_bytes(b"short-lived\n")
    picture.write_bytes(png_bytes(32, 32))
    browser.el("#upload-file").send_keys(f"{notes}\n{picture}")
    browser.click("#upload")
    rows = {f["name"]: f for f in browser.wait(lambda: len(browser.files()) == 2 and browser.files(), "2 files")}
    notes_row = f'#files tr[data-id="{rows["notes.txt"]["id"]}"]'

    # a server that keeps links for 3 s gets the longest it allows; the shared link disappears when it stops working
    browser.click(f"{notes_row} button.share")
    browser.click("#share-create")  # 1 hour, the dialog's default
    shared = browser.wait(lambda: browser.el("#share-url").get_property("value"), "the shared link")
    assert "(3 s, the longest this server allows)" in browser.text("#share-expiry"), browser.text("#share-expiry")
    browser.wait(lambda: browser.text("#share-expiry") ==
                 "The link to notes.txt has expired. Create a new one if you still need it.", "the link gone")
    assert not browser.shown("#share-url") and browser.el("#share-url").get_property("value") == ""
    assert link_path(shared).startswith("/file/link/")
    browser.click("#share-close")

    # the download's anchor goes with its link; the next click asks for a new one
    first = browser.download(rows["notes.txt"]["id"])
    assert first.read_bytes() == notes.read_bytes()
    browser.wait(lambda: not browser.js("return !!document.querySelector(arguments[0])", f"{notes_row} a.download-link"),
                 "the expired anchor removed", timeout=6)
    assert browser.download(rows["notes.txt"]["id"]).read_bytes() == notes.read_bytes()

    # a list refresh gives the thumbnail a new link
    thumb = f'#files tr[data-id="{rows["picture.png"]["id"]}"] img.thumb'
    old = browser.wait(lambda: browser.js(
        "const i = document.querySelector(arguments[0]); return i && i.naturalWidth > 0 && i.src", thumb), "thumbnail")
    browser.click("#reload")
    browser.wait_status("Up to date.")
    new = browser.wait(lambda: browser.js(
        "const i = document.querySelector(arguments[0]); return i && i.naturalWidth > 0 && i.src", thumb), "thumbnail")
    assert link_path(new).startswith("/file/link/") and new != old
    # the dialog's first try (1 hour) is refused: the page learns the longest this server allows from it
    assert_clean_console(browser, expected=(r"/file/\d+/link - .*status of 400",))


def fits_sideways(browser: Browser) -> bool:
    return browser.js("return document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def assert_fits_the_screen(browser: Browser) -> None:
    assert fits_sideways(browser), "the page scrolls sideways"
    layout = browser.js(
        """return {client: document.documentElement.clientWidth,
                   deletes: [...document.querySelectorAll('#files button.delete')].map(b => {
                     const r = b.getBoundingClientRect();
                     b.scrollIntoView({block: 'center'});
                     const c = b.getBoundingClientRect();
                     const hit = document.elementFromPoint(c.left + c.width / 2, c.top + c.height / 2);
                     return {left: r.left, right: r.right, width: r.width, hit: hit === b};
                   })};""")
    assert layout["deletes"], layout
    for delete in layout["deletes"]:
        assert delete["width"] > 0 and delete["left"] >= 0 and delete["right"] <= layout["client"], layout
        assert delete["hit"], f"a Delete button is covered: {layout}"


@pytest.mark.parametrize("size", ["1280x900", "390x844"])
def test_refused_uploads_show_the_reason_not_100_percent(make_api_server, web_origin, browsers, tmp_path, size):
    api = make_api_server(MAX_UPLOAD_BYTES=str(MIB), QUOTA_BYTES="600000").url
    browser = browsers(size)
    at_size(browser, size)
    sign_up_on_page(browser, page_url(web_origin, api), "ann@example.com")
    browser.wait(lambda: browser.text("#usage-text") == "0 B of 585.9 KiB used (0 %) · 0 files", "usage with quota")
    assert browser.el("#usage-bar").get_property("max") == 600000

    folder = tmp_path / "files"
    folder.mkdir()

    def refused(name: str, size: int, reason: str) -> None:
        (folder / name).write_bytes(os.urandom(size))
        browser.el("#upload-file").send_keys(str(folder / name))
        browser.click("#upload")
        browser.wait(lambda: browser.text("#upload-label") == f"Not uploaded: {name}", "the failed upload's label")
        message = browser.wait_error()
        assert re.search(reason, message), message
        assert browser.text("#upload-percent") == "0 %"
        assert browser.el("#upload-progress").get_property("value") == 0
        assert not browser.el("#upload").get_property("disabled")
        assert browser.text("#page-info") == "No files yet"

    # 413 file_too_large, from the form upload, in the units people read
    refused("too-big.bin", 2 * MIB, r"^too-big\.bin \(2\.0 MiB\) is larger than the 1\.0 MiB this server accepts for one file\.$")
    refused("over-quota.bin", 700_000,  # 413 quota_exceeded
            r"^over-quota\.bin \(683\.6 KiB\) does not fit in your storage: 0 B of 585\.9 KiB is in use, 585\.9 KiB is free\.$")
    # the resumable upload's refusal (over both limits: the server may name either)
    refused("too-big-resumable.bin", 8 * MIB, r"^too-big-resumable\.bin \(8\.0 MiB\) (is larger than the 1\.0 MiB|does not fit)")

    # what fits is stored, and the bar moves
    (folder / "fits.bin").write_bytes(os.urandom(100_000))
    browser.el("#upload-file").send_keys(str(folder / "fits.bin"))
    browser.click("#upload")
    browser.wait_status("Uploaded fits.bin")
    browser.wait(lambda: browser.text("#usage-text") == "97.7 KiB of 585.9 KiB used (16 %) · 1 file", "usage")
    assert browser.el("#usage-bar").get_property("value") == 100000
    assert browser.text("#upload-percent") == "100 %"
    assert_clean_console(browser, expected=(r"status of 413",))


def test_resumable_upload_pauses_survives_a_lost_network_and_a_reload(make_api_server, web_origin, browsers, tmp_path):
    """Files of 8 MiB and more go through tus: pause, resume, a lost network, a page reload, and the stored
    file is the local one byte for byte. Access tokens last 3 s, so the upload's requests need fresh ones."""
    api = make_api_server(ACCESS_TOKEN_TTL=str(SHORT_TTL), JWT_LEEWAY="0").url
    page = page_url(web_origin, api)
    login = "ann@example.com"
    browser = browsers("laptop")
    sign_up_on_page(browser, page, login)
    big = tmp_path / "raw footage.bin"
    big.write_bytes(os.urandom(20 * MIB))

    browser.el("#upload-file").send_keys(str(big))
    with browser.slow_upload(bytes_per_second=2 * MIB):
        browser.click("#upload")
        browser.wait(lambda: browser.shown("#pause") and percent(browser) >= 10, "10 % sent")
        assert browser.text("#upload-label") == "Uploading raw footage.bin"

        pause_and_resume(browser)

        lose_the_network_and_get_it_back(browser)

        # a reload in the middle of a chunk; the same file continues where the server is. The tab's session
        # usually goes on; with 3-second tokens the reload may cut a refresh short, whose new token the old
        # page never kept: then the page asks to sign in again.
        browser.open(page)
    browser.wait(lambda: browser.text("#whoami") == login or (
        browser.shown("#auth-form") and browser.text("#status") != "Signing you back in…"), "the page back")
    if browser.shown("#auth-form"):
        browser.sign("signin", login, PASSWORD)
    browser.wait(lambda: browser.text("#whoami") == login, "signed in after the reload")
    browser.wait(lambda: "raw footage.bin (20.0 MiB)" in (browser.text("#unfinished") or ""), "the unfinished upload")
    browser.watch_progress()
    browser.el("#upload-file").send_keys(str(big))
    browser.click("#upload")
    browser.wait_status("Uploaded raw footage.bin (20.0 MiB)")
    seen = browser.seen_progress()
    assert seen[0] >= 40 and seen[-1] == 100, seen  # it started from the server's offset, not from 0
    assert browser.count_requests("/file/uploads") == 0  # no new upload: the old one went on
    assert not browser.shown("#unfinished") and not browser.shown("#pause") and not browser.shown("#resume")
    assert browser.js("return Object.keys(localStorage).filter(k => k.startsWith('tus::')).length") == 0

    listed = browser.file_named("raw footage.bin")
    assert listed["size"] == 20 * MIB
    expected = hashlib.sha256(big.read_bytes()).hexdigest()
    assert hashlib.sha256(browser.download(listed["id"]).read_bytes()).hexdigest() == expected
    assert file_object(api, login, listed["id"])["sha256"] == expected
    browser.error_free()

    cancel_an_upload(browser, big)
    # The reload cuts a chunk mid-way: until the server has seen that request end (at once, or a moment later
    # on a busy machine) it still holds the upload, and the resumed PATCH may be told 409, which tus clients
    # answer by asking the offset again. The page never shows it; the browser logs it.
    assert_clean_console(browser, expected=(r"ERR_INTERNET_DISCONNECTED", r"/file/uploads/[0-9a-f]+ .*status of 409",
                                            r"/signin/new_token - .*status of 401"))


def percent(browser: Browser) -> int:
    return int(browser.text("#upload-percent").split()[0])


def pause_and_resume(browser: Browser) -> None:
    # pause: nothing moves until Resume
    browser.click("#pause")
    browser.wait_status("Paused at")
    assert browser.shown("#resume") and not browser.shown("#pause")
    paused_at = percent(browser)
    time.sleep(1.5)
    assert percent(browser) == paused_at
    browser.click("#resume")
    browser.wait(lambda: percent(browser) > paused_at + 5, "progress after Resume")


def lose_the_network_and_get_it_back(browser: Browser) -> None:
    # the network goes away: the page says so; when it is back the upload goes on by itself
    browser.driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    message = browser.wait_error()
    assert "interrupted" in message, message
    assert browser.shown("#resume")
    browser.driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 2 * MIB})
    browser.wait(lambda: browser.shown("#pause"), "the upload running again")
    browser.wait_status("Resumed raw footage.bin.")
    assert browser.text("#upload-label") == "Uploading raw footage.bin"
    browser.wait(lambda: percent(browser) >= 50, "half of the file sent")
    assert browser.count_requests("/signin/new_token") >= 1  # the token expired meanwhile
    assert browser.count_requests("/file/uploads") == 1  # created once


def cancel_an_upload(browser: Browser, big: Path) -> None:
    # Cancel: the partial upload is dropped, nothing is stored, and nothing is left to resume
    browser.el("#upload-file").send_keys(str(big))
    with browser.slow_upload(bytes_per_second=2 * MIB):
        browser.click("#upload")
        browser.wait(lambda: browser.shown("#pause") and percent(browser) >= 5, "the second upload under way")
        browser.click("#cancel")
        assert "cancelled" in browser.wait_error()
    assert browser.text("#upload-label") == "Not uploaded: raw footage.bin"
    assert browser.text("#upload-percent") == "0 %"
    assert not browser.shown("#pause") and not browser.shown("#resume") and not browser.shown("#cancel")
    browser.wait(lambda: browser.js("return Object.keys(localStorage).filter(k => k.startsWith('tus::')).length") == 0,
                 "the cancelled upload forgotten")
    browser.click("#reload")
    browser.wait_status("Up to date.")
    assert [f["name"] for f in browser.files()] == ["raw footage.bin"]
    assert not browser.shown("#unfinished")


def file_object(api: str, login: str, file_id: str) -> dict:
    def call(path: str, payload: dict | None = None, token: str | None = None) -> dict:
        headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(api + path, data=data, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.load(answer)["data"]

    token = call("/signin", {"id": login, "password": PASSWORD})["access_token"]
    return call(f"/file/{file_id}", token=token)


def test_make_web_serves_the_page_for_the_given_api(api_server, browsers, tmp_path):
    """`make web API_URL=…` end to end: the address it prints opens the page on that API."""
    port = free_port()
    make = subprocess.Popen(
        ["make", "--no-print-directory", "web", f"WEB_PORT={port}", f"API_URL={api_server.url}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        printed = make.stdout.readline()
        address = re.search(r"http://\S+", printed).group(0)
        assert address == f"http://localhost:{port}/?api={api_server.url}", printed
        deadline = time.monotonic() + WAIT
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "make web did not start serving"
                time.sleep(0.1)
        browser = browsers("laptop")
        browser.open(address)
        assert browser.el("#api-base").get_attribute("value") == api_server.url
        sign_up_on_page(browser, address, "ann@example.com")
        # the address is remembered: the plain page keeps talking to that API
        browser.open(f"http://localhost:{port}/")
        assert browser.el("#api-base").get_attribute("value") == api_server.url
        assert_clean_console(browser)
    finally:
        os.killpg(make.pid, signal.SIGTERM)
        make.wait(timeout=10)


# -- proving the login, a forgotten password, leaving (SPEC §10) ---------------------------------------------


@pytest.fixture
def mail_server(tmp_path) -> Iterator[tuple[MailServer, Path]]:
    certificate = throwaway_certificate(tmp_path / "tls")
    server = MailServer(*certificate, port=free_port())
    yield server, certificate[0]
    server.stop()


def test_verify_reset_export_and_delete_an_account_in_the_page(make_api_server, web_origin, browsers, mail_server, tmp_path):
    mail, ca_file = mail_server
    page = page_url(web_origin, make_api_server(
        MAIL_URL=f"smtp://127.0.0.1:{mail.port}", MAIL_CA_FILE=str(ca_file), PUBLIC_URL=web_origin).url)
    login = "ann@example.com"
    browser = browsers("laptop")
    sign_up_on_page(browser, page, login)
    browser.wait(lambda: browser.shown("#verify-banner") and browser.text("#verify-login") == login, "the banner")
    _, code = proof(body_of(mail.wait_for(login)))
    browser.fill("#verify-code", code)
    browser.click("#verify-submit")
    browser.wait_status(f"{login} is confirmed.")
    assert not browser.shown("#verify-banner")

    browser.click("#logout")
    browser.wait_status("Signed out.")
    browser.fill("#login-id", login)
    browser.click("#forgot")
    browser.wait_status(f"If {login} has an account, a message with a code is on its way.")
    assert browser.shown("#reset-form") and browser.shown("#reset-code")
    token, _ = proof(body_of(mail.wait_for(login, count=2)))
    browser.open(f"{web_origin}/?reset={token}")  # the message's link: the page knows the API already
    browser.wait(lambda: browser.shown("#reset-form") and not browser.shown("#reset-code"), "the reset form, no code")
    browser.fill("#reset-password", "a brand new passphrase")
    browser.click("#reset-submit")
    browser.wait_status("Your new password is set; every other device was signed out.")
    assert browser.text("#whoami") == login and "reset=" not in browser.driver.current_url
    export_and_delete(browser, tmp_path, login)
    assert_clean_console(browser)


def export_and_delete(browser: Browser, tmp_path: Path, login: str) -> None:
    target = tmp_path / "export"
    target.mkdir()
    browser.driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(target)})
    browser.click("#export")
    saved = browser.wait(lambda: [p for p in target.iterdir() if p.suffix == ".zip"], "the export saved")[0]
    browser.wait_status("Your data is downloaded")
    account = json.loads(zipfile.ZipFile(saved).read("account.json"))
    assert account["account"]["id"] == login and account["account"]["verified"] is True

    browser.fill("#delete-password", "a brand new passphrase")
    browser.click("#delete-account-submit")
    browser.wait(lambda: alert_open(browser), "the delete confirmation")
    browser.driver.switch_to.alert.accept()
    browser.wait_status(f"The account {login} and all its files are deleted.")
    assert browser.shown("#auth-form") and not browser.shown("#files")


def test_an_authenticator_app_recovery_codes_and_a_passkey_in_the_page(make_api_server, web_origin, browsers):
    """SPEC §11 as a person meets it, with Chromium's virtual authenticator standing in for a fingerprint."""
    from selenium.webdriver.common.virtual_authenticator import VirtualAuthenticatorOptions

    api = make_api_server().url  # the defaults: RP id localhost, any origin on it
    web = web_origin.replace("127.0.0.1", "localhost")  # an IP address is no RP id: the page is on localhost
    login = "ann@example.com"
    browser = browsers("laptop")
    sign_up_on_page(browser, page_url(web, api), login)
    browser.driver.add_virtual_authenticator(VirtualAuthenticatorOptions(
        protocol="ctap2", transport="internal", has_resident_key=True, has_user_verification=True,
        is_user_verified=True))
    browser.wait(lambda: browser.text("#totp-state").startswith("Off"), "the app's state")

    browser.click("#totp-setup")
    browser.wait(lambda: browser.shown("#totp-enrol") and browser.js(
        "return document.getElementById('totp-qr').naturalWidth") > 0, "the QR code drawn")
    totp = pyotp.TOTP(browser.text("#totp-secret").replace(" ", ""))
    browser.fill("#totp-code", totp.now())
    browser.click("#totp-confirm")
    browser.wait_status("The authenticator app is on.")
    codes = browser.js("return [...document.querySelectorAll('#recovery-codes li')].map(li => li.textContent)")
    assert len(codes) == 10
    browser.click("#recovery-done")
    browser.wait(lambda: browser.text("#totp-state").startswith("On"), "the app on")

    browser.click("#passkey-add")
    browser.wait_status("Passkey added (Passkey 1).")
    browser.wait(lambda: browser.js("return document.querySelectorAll('#passkeys li').length") == 1, "the passkey listed")

    def sign_out() -> None:
        browser.click("#logout")
        browser.wait_status("Signed out.")

    sign_out()
    browser.sign("signin", login, PASSWORD)
    browser.wait(lambda: browser.shown("#mfa-form") and not browser.shown("#auth-form"), "the second step")
    assert browser.shown("#mfa-passkey")
    browser.fill("#mfa-code", "000000" if totp.now() != "000000" else "111111")  # a wrong code: said under the field
    browser.click("#mfa-submit")
    browser.wait(lambda: browser.field_error("#mfa-code") == "This code is wrong, has expired or was already used.",
                 "the wrong code said under its field")
    assert browser.focused() == "mfa-code" and browser.text("#error") == ""
    browser.fill("#mfa-code", totp.at(time.time() + 30))  # the confirmation's code was used up
    assert browser.field_error("#mfa-code") is None
    browser.click("#mfa-submit")
    browser.wait_status(f"Signed in as {login}.")

    sign_out()
    browser.sign("signin", login, PASSWORD)
    browser.wait(lambda: browser.shown("#mfa-form"), "the second step")
    browser.fill("#mfa-code", codes[0].upper())
    browser.click("#mfa-submit")
    browser.wait_status(f"Signed in as {login}.")
    browser.wait(lambda: "9 recovery codes left" in browser.text("#totp-state"), "one recovery code used")

    sign_out()
    browser.fill("#login-id", "")
    browser.click("#passkey-signin")  # no login, no password: the passkey on the device says who
    browser.wait_status(f"Signed in as {login} with a passkey.")
    assert browser.text("#whoami") == login

    browser.click("#totp-off-submit")  # nothing typed: each field says what it needs
    assert browser.field_error("#totp-off-password") == "Enter your password."
    assert browser.field_error("#totp-off-code") == "Enter a code from the app, or a recovery code."
    browser.fill("#totp-off-password", "not my password at all")
    browser.fill("#totp-off-code", codes[1])
    browser.click("#totp-off-submit")
    browser.wait(lambda: browser.field_error("#totp-off-password") == "This is not your password.", "a wrong password")
    browser.fill("#totp-off-password", PASSWORD)
    browser.click("#totp-off-submit")
    browser.wait_status("The authenticator app is off")
    assert_clean_console(browser, expected=(r"/signin(/mfa)? - .*status of 401", r"/mfa/totp - .*status of 403"))


@pytest.mark.parametrize("size", ["1280x900", "390x844"])
def test_a_reload_keeps_the_session_search_sort_and_a_batch_that_tries_every_file(make_api_server, web_origin,
                                                                                 browsers, tmp_path, size):
    api = make_api_server(MAX_UPLOAD_BYTES=str(64 * 1024)).url
    page = page_url(web_origin, api)
    login = "ann@example.com"
    browser = browsers(size)
    at_size(browser, size)
    sign_up_on_page(browser, page, login)
    names = {"apple notes.txt": 300, "too big.bin": 100 * 1024, "banana_100%.txt": 20, "cherry.txt": 5000}
    paths = []
    for name, size in names.items():
        path = tmp_path / name
        path.write_bytes(b"x" * size)
        paths.append(str(path))
    browser.el("#upload-file").send_keys("\n".join(paths))
    browser.click("#upload")
    message = browser.wait_error()
    assert message == ("Uploaded 3 of 4 files. Not uploaded: too big.bin (100.0 KiB) is larger than the 64.0 KiB "
                       "this server accepts for one file."), message
    browser.wait(lambda: browser.text("#page-info") == "Page 1 of 1 · 3 files", "three files listed")

    browser.open(page)  # a reload: the same session, no new device
    browser.wait(lambda: browser.text("#whoami") == login, "still signed in after the reload")
    browser.wait(lambda: len(browser.sessions()) == 1, "one device")
    browser.wait(lambda: len(browser.files()) == 3, "the files again")

    browser.fill("#search", "100%")  # % is a character of the name, not a wildcard
    browser.wait(lambda: [f["name"] for f in browser.files()] == ["banana_100%.txt"], "one match")
    assert browser.text("#page-info") == "Page 1 of 1 · 1 file named like “100%”"
    browser.fill("#search", "nothing like it")
    browser.wait(lambda: browser.text("#page-info") == "No file names contain “nothing like it”", "no match")
    browser.fill("#search", "")
    browser.choose("#sort", "Largest first")
    browser.wait(lambda: [f["name"] for f in browser.files()] == ["cherry.txt", "apple notes.txt", "banana_100%.txt"],
                 "largest first")
    browser.choose("#sort", "Name A–Z")
    browser.wait(lambda: [f["name"] for f in browser.files()] == ["apple notes.txt", "banana_100%.txt", "cherry.txt"],
                 "by name")
    assert_clean_console(browser, expected=(r"/file/upload - .*status of 413",))


def small_targets(browser: Browser) -> list[dict]:
    """Every control on screen smaller than 44 × 44 CSS pixels (WCAG 2.5.5); a tick or a choice counts by its label."""
    return browser.js(
        """const bad = [];
           const controls = 'button, select, input:not([type=checkbox]):not([type=radio]), label.pick, label.choice,'
                          + ' .button, a[href]';
           for (const el of document.querySelectorAll(controls)) {
             if (el.closest('[hidden]') || el.closest('dialog:not([open])') || el.matches('.visually-hidden')) continue;
             const r = el.getBoundingClientRect();
             if (r.width === 0 && r.height === 0) continue;
             if (r.width < 44 || r.height < 44) {
               bad.push({what: el.id || el.className || el.textContent.trim(), width: r.width, height: r.height});
             }
           }
           return bad;""")


def unreadable_buttons(browser: Browser) -> list[str]:
    """Buttons on screen whose text is drawn in their own background colour (a style that overrides another)."""
    return browser.js(
        """return [...document.querySelectorAll('button, .button')]
             .filter(b => !b.closest('[hidden]') && !b.closest('dialog:not([open])') && b.textContent.trim())
             .filter(b => { const style = getComputedStyle(b); return style.color === style.backgroundColor; })
             .map(b => b.id || b.className + ': ' + b.textContent.trim());""")


def drop_files(browser: Browser, files: dict[str, int]) -> bool:
    """Drops files (name → size) on the file list as a drag from the desktop would; answers whether the page
    refused them over its header and took them over the list (the drop effect the browser acts on, and the
    list's highlight) while they were dragged."""
    return browser.js(
        """const files = arguments[0];
           const transfer = new DataTransfer();
           for (const [name, size] of Object.entries(files)) {
             transfer.items.add(new File([new Uint8Array(size).fill(97)], name, {type: 'text/plain'}));
           }
           // The drop effect the page's handlers leave is what the browser acts on (a real drag refuses the drop
           // when it ends up "none"); a made-up DataTransfer keeps no effect, so its last setting is recorded.
           let effect = 'none';
           Object.defineProperty(transfer, 'dropEffect', {get: () => effect, set: (value) => { effect = value; }});
           const list = document.querySelector('#files');
           const card = list.closest('section');
           const fire = (target, type) => target.dispatchEvent(
             new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: transfer}));
           fire(document.querySelector('header'), 'dragover');
           const refusedOutside = transfer.dropEffect === 'none' && !card.classList.contains('dropping');
           fire(list, 'dragenter');
           fire(list, 'dragover');
           const takenOnTheList = transfer.dropEffect === 'copy' && card.classList.contains('dropping');
           fire(list, 'drop');
           return refusedOutside && takenOnTheList && !card.classList.contains('dropping');""", files)


def leaving_is_questioned(browser: Browser) -> bool:
    """Whether leaving the page now would make the browser ask first (the page's beforeunload handler)."""
    return browser.js(
        "const e = new Event('beforeunload', {cancelable: true}); window.dispatchEvent(e); return e.defaultPrevented")


@pytest.mark.parametrize("size", sorted(SIZES))
def test_field_messages_drop_speed_leaving_select_delete_share_at_both_sizes(make_api_server, web_origin, browsers,
                                                                           tmp_path, size):
    api = make_api_server(QUOTA_BYTES=str(3 * MIB)).url
    browser = browsers(size)
    at_size(browser, size)
    browser.open(page_url(web_origin, api))
    browser.wait(lambda: browser.js("return document.documentElement.clientWidth") == SIZES[size]["width"], "the size")
    phone = SIZES[size] is PHONE
    if phone:
        assert small_targets(browser) == []

    # a message next to its field, on screen, with the focus on that field
    browser.sign("signup", "ann@", PASSWORD)
    browser.wait(lambda: browser.field_error("#login-id"), "a message under the login")
    assert browser.focused() == "login-id" and browser.text("#error") == "" and fits_sideways(browser)
    note = browser.js("const r = document.getElementById('login-id-error').getBoundingClientRect();"
                      "return {left: r.left, right: r.right, width: r.width}")
    assert note["width"] > 0 and note["left"] >= 0 and note["right"] <= SIZES[size]["width"], note
    browser.sign("signup", "ann@example.com", PASSWORD)
    browser.wait(lambda: browser.text("#whoami") == "ann@example.com", "signed up")

    # files dropped on the list are uploaded
    assert browser.text("#drop-hint") == "Choose files, or drop them anywhere on this list."
    assert drop_files(browser, {"a.txt": 1000, "b.txt": 2000, "c.txt": 3000})
    browser.wait(lambda: browser.text("#upload-label") == "3 uploads complete", "3 dropped files uploaded")
    browser.wait(lambda: sorted(f["name"] for f in browser.files()) == ["a.txt", "b.txt", "c.txt"], "3 files listed")
    assert not leaving_is_questioned(browser)

    # speed and time left while a file goes up; leaving meanwhile is questioned
    slow = tmp_path / "slow.bin"
    slow.write_bytes(os.urandom(900_000))
    browser.el("#upload-file").send_keys(str(slow))
    with browser.slow_upload(bytes_per_second=150_000):
        browser.click("#upload")
        speed = browser.wait(lambda: re.fullmatch(r"\d+\.\d KiB/s · about \d+ s left", browser.text("#upload-speed"))
                             and browser.text("#upload-speed"), "speed and time left")
        kib = float(speed.split()[0])
        assert 40 < kib < 400, speed  # about 146 KiB/s
        assert leaving_is_questioned(browser)
        browser.wait_status("Uploaded slow.bin", )
    assert browser.text("#upload-speed") == "" and not leaving_is_questioned(browser)

    # tick two files, delete them with one confirmation
    rows = {f["name"]: f for f in browser.wait(lambda: len(browser.files()) == 4 and browser.files(), "4 files")}
    assert unreadable_buttons(browser) == []
    assert browser.el("#delete-selected").get_property("disabled")
    for name in ("a.txt", "c.txt"):
        browser.click(f'#files tr[data-id="{rows[name]["id"]}"] label.pick')
    assert browser.text("#delete-selected") == "Delete 2 selected"
    assert browser.js("return document.getElementById('select-all').indeterminate")
    browser.click("#delete-selected")
    browser.wait(lambda: alert_open(browser), "the confirmation")
    assert browser.driver.switch_to.alert.text == "Delete these 2 files? This cannot be undone."
    browser.driver.switch_to.alert.accept()
    browser.wait_status("Deleted 2 files.")
    browser.wait(lambda: sorted(f["name"] for f in browser.files()) == ["b.txt", "slow.bin"], "2 files left")
    assert browser.text("#delete-selected") == "Delete selected" and browser.el("#delete-selected").get_property("disabled")
    browser.click("label.pick[for=select-all]")
    assert browser.text("#delete-selected") == "Delete 2 selected"
    browser.click("label.pick[for=select-all]")
    assert browser.text("#delete-selected") == "Delete selected"

    # the sharing dialog: a day-long download link, on screen at this size
    browser.click(f'#files tr[data-id="{rows["slow.bin"]["id"]}"] button.share')
    browser.wait(lambda: browser.js("return document.getElementById('share').open"), "the sharing dialog")
    assert browser.el("#share-inline").get_property("disabled")  # a .bin is never shown inline
    assert browser.shown("#share-inline-hint")
    browser.choose("#share-expires", "1 day")
    browser.click("#share-create")
    shared = browser.wait(lambda: browser.el("#share-url").get_property("value"), "the link")
    assert "can download slow.bin until" in browser.text("#share-expiry") and "(1 day)" in browser.text("#share-expiry")
    box = browser.js("const r = document.getElementById('share').getBoundingClientRect();"
                     "return {left: r.left, right: r.right, bottom: r.bottom}")
    assert box["left"] >= 0 and box["right"] <= SIZES[size]["width"] and box["bottom"] <= SIZES[size]["height"], box
    if phone:
        assert small_targets(browser) == []
    with urllib.request.urlopen(shared, timeout=10) as answer:
        assert answer.read() == slow.read_bytes()
        assert answer.headers["Content-Disposition"].startswith("attachment")
    browser.click("#share-close")
    browser.wait(lambda: not browser.js("return document.getElementById('share').open"), "the dialog closed")

    assert fits_sideways(browser)
    if phone:
        assert small_targets(browser) == []
    browser.error_free()
    assert_clean_console(browser, expected=(r"/signup - .*status of 400",))  # the login refused on purpose


@pytest.mark.parametrize("size", ["1280x900", "390x844"])
def test_an_upload_reconnects_to_a_server_that_went_away_and_came_back(make_api_server, web_origin, browsers,
                                                                        tmp_path, size):
    """The API's gunicorn is killed mid-upload (SIGKILL, master and workers) and started again on its port: the
    page says it is reconnecting, and the upload then finishes, byte for byte."""
    from tests.support.faults import worker_pids

    server = make_api_server()
    port = int(server.url.rsplit(":", 1)[1])
    login = "ann@example.com"
    browser = browsers(size)
    at_size(browser, size)
    sign_up_on_page(browser, page_url(web_origin, server.url), login)
    big = tmp_path / "footage.bin"
    big.write_bytes(os.urandom(12 * MIB))
    browser.el("#upload-file").send_keys(str(big))
    with browser.slow_upload(bytes_per_second=2 * MIB):
        browser.click("#upload")
        browser.wait(lambda: percent(browser) >= 10, "10 % sent")
        for pid in worker_pids(server.process.pid) | {server.process.pid}:
            os.kill(pid, signal.SIGKILL)
        server.process.wait()
        browser.wait(lambda: browser.text("#upload-label") == "Reconnecting… footage.bin", "“Reconnecting…”")
        assert "reconnecting (attempt" in browser.text("#status"), browser.text("#status")
        browser.wait(lambda: nothing_listens(port), "nothing listening on the port")
        make_api_server(port=port)
        browser.wait_status("Reconnected; footage.bin continues.")
        browser.wait(lambda: browser.text("#upload-label") == "Upload complete", "the upload finished", timeout=60)
    stored = file_object(server.url, login, browser.file_named("footage.bin")["id"])
    assert stored["size"] == big.stat().st_size and stored["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()
    # The browser logs each request the dead server could not answer (and a PATCH it may refuse with 409 while
    # the killed one's offset is asked again); the page shows none of them.
    assert_clean_console(browser, expected=(r"net::ERR_(CONNECTION_REFUSED|EMPTY_RESPONSE|CONNECTION_RESET)",
                                            r"/file/uploads/[0-9a-f]+ .*status of 409"))


def nothing_listens(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("size", ["1280x900", "390x844"])
def test_too_many_sign_ins_are_said_with_the_wait_in_words(make_api_server, web_origin, browsers, size):
    api = make_api_server(RATELIMIT_ENABLED="true", RATELIMIT_SIGNIN="2 per minute").url
    browser = browsers(size)
    at_size(browser, size)
    browser.open(page_url(web_origin, api))
    for _ in range(2):
        browser.sign("signin", "nobody@example.com", PASSWORD)
        browser.wait(lambda: browser.field_error("#password") == "The email, phone or password is not right.",
                     "a wrong sign-in, under the password")
        browser.wait(lambda: not browser.el("#signin").get_property("disabled"), "the button back")
    browser.sign("signin", "nobody@example.com", PASSWORD)
    message = browser.wait_error()  # about no field: at the top, with the wait the server asks for
    assert re.fullmatch(r"Too many attempts\. Try again in ([1-9]|[1-5][0-9]|60) s\.", message), message
    assert browser.field_error("#password") is None
    assert_clean_console(browser, expected=(r"/signin - .*status of (401|429)",))
