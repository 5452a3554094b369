"""SPEC §12 operability: GET /metrics (its gate, and its counts from a real gunicorn under traffic),
LOG_FORMAT=json, and housekeeping (what it removes, what it keeps, and never two runs at once)."""
import fcntl
import http.client
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from app import metrics
from app.housekeeping import run, run_if_due
from app.ratelimit.counters import DatabaseCounters
from app.services.housekeeping import claim, release
from tests.conftest import free_port
from tests.support.api import bearer, b64, error_code, sign_up
from tests.support.live import call, live_user

TOKEN = "metrics-" + "t" * 24


def samples(text: str) -> dict[tuple, float]:
    """{(name, ((label, value), …)): value} of a scrape, parsed by prometheus-client's own parser."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(server, port: int | None = None, token: str | None = TOKEN) -> dict:
    url = server.url if port is None else f"http://127.0.0.1:{port}"
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"} if token else {})
        response = connection.getresponse()
        body = response.read().decode()
    finally:
        connection.close()
    assert response.status == 200, body
    assert response.getheader("Content-Type").startswith("text/plain; version=0.0.4")
    return samples(body)


def settled(server, done, seconds: float = 15) -> dict:
    """A scrape once `done(scrape)` holds: each worker writes its counts once a second (FLUSH_SECONDS)."""
    deadline = time.monotonic() + seconds
    while not done(found := scrape(server)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


# -- the gate ------------------------------------------------------------------------------------------------


def test_without_a_token_or_port_the_metrics_route_is_not_there(client):
    for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 404 and error_code(response) == "not_found"
        assert response.json["error"]["message"] == client.get("/no-such-route").json["error"]["message"].replace(
            "/no-such-route", "/metrics")


def test_metrics_are_in_the_openapi_document_only_where_served(make_app):
    assert "/metrics" not in make_app().test_client().get("/openapi.json").json["paths"]
    served = make_app(METRICS_TOKEN=TOKEN).test_client().get("/openapi.json").json
    assert served["paths"]["/metrics"]["get"]["security"] == [{"metricsToken": []}]


def test_the_metrics_token_is_required_and_checked(make_app):
    client = make_app(METRICS_TOKEN=TOKEN).test_client()
    missing = client.get("/metrics")
    assert missing.status_code == 401 and error_code(missing) == "missing_token"
    for wrong in (TOKEN[:-1], TOKEN + "x", TOKEN.upper(), "é" * 30):
        answer = client.get("/metrics", headers={"Authorization": f"Bearer {wrong}"})
        assert answer.status_code == 401 and error_code(answer) == "invalid_token", wrong
    assert client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    good = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert good.status_code == 200 and good.mimetype == "text/plain"
    found = samples(good.get_data(as_text=True))
    assert value(found, "filesvc_http_requests_total", route="/metrics", method="GET", status="401") >= 6
    assert ("filesvc_tus_uploads_open", ()) in found


@pytest.mark.parametrize("setting", [{"METRICS_TOKEN": "short"}, {"METRICS_PORT": 70000}, {"LOG_FORMAT": "xml"}])
def test_a_bad_operations_setting_stops_the_start(make_app, setting):
    with pytest.raises(RuntimeError):
        make_app(**setting)


# -- counts from a real gunicorn -----------------------------------------------------------------------------


def test_metrics_from_every_worker_match_the_requests_sent(make_live_server, app):
    metrics_port = free_port()
    server = make_live_server(METRICS_TOKEN=TOKEN, METRICS_PORT=str(metrics_port), RATELIMIT_ENABLED="true",
                              RATELIMIT_SIGNIN="2 per minute")
    user = live_user(server)
    assert call(server, "GET", "/metrics", {})[0] == 401  # the service's port still wants the token
    before = scrape(server, port=metrics_port, token=None)  # the loopback port needs none
    # The metrics port answers nothing else.
    assert call(server, "GET", "/ping", {}, None)[0] == 200
    other = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=10)
    other.request("GET", "/info", headers=user)
    refused = other.getresponse()
    assert refused.status == 404 and json.loads(refused.read())["error"]["code"] == "not_found"
    other.close()

    infos, misses, link_token = 60, 7, "s3cr3t-link-token-" + "z" * 20
    mid_scrapes = []

    def traffic(index: int) -> int:
        if index == infos // 2:
            mid_scrapes.append(scrape(server))  # a scrape in the middle of the traffic is answered too
        return call(server, "GET", "/info", user)[0]

    with ThreadPoolExecutor(8) as pool:  # several connections at once, so both workers serve
        statuses = list(pool.map(traffic, range(infos)))
    assert statuses == [200] * infos
    for file_id in range(misses):
        assert call(server, "GET", f"/file/{900000 + file_id}", user)[0] == 404
    assert call(server, "GET", f"/file/link/{link_token}", {})[0] == 404
    assert call(server, "GET", "/no/such/route/123", {})[0] == 404
    for _ in range(3):  # the third wrong password is over "2 per minute"
        status = call(server, "POST", "/signin", {"Content-Type": "application/json"},
                      json.dumps({"id": "ann@example.com", "password": "wrong password!"}).encode())[0]
    assert status == 429
    assert call(server, "POST", "/file/uploads", {**user, "Tus-Resumable": "1.0.0", "Upload-Length": "10",
                                                  "Upload-Metadata": f"filename {b64('a.txt')}"})[0] == 201

    expected = {  # (route, method, status): requests sent
        ("/info", "GET", "200"): infos, ("/info", "GET", "404"): 1, ("/file/{file_id}", "GET", "404"): misses,
        ("/file/link/{token}", "GET", "404"): 1, ("unmatched", "GET", "404"): 1, ("/signup", "POST", "201"): 1,
        ("/signin", "POST", "429"): 1, ("/file/uploads", "POST", "201"): 1,
    }

    def counted(found: dict) -> dict:
        return {key: value(found, "filesvc_http_requests_total", route=key[0], method=key[1], status=key[2])
                for key in expected}

    settled(server, lambda found: all(counted(found)[key] >= sent for key, sent in expected.items()))
    time.sleep(metrics.FLUSH_SECONDS * 1.5)  # anything counted twice would show by now
    after = scrape(server)
    assert counted(after) == expected
    text = json.dumps(list(after))
    assert mid_scrapes and value(mid_scrapes[0], "filesvc_http_requests_total", route="/info", method="GET",
                                 status="200") <= infos
    assert value(after, "filesvc_http_request_duration_seconds_count", route="/info", method="GET") == infos + 1
    assert value(after, "filesvc_http_request_duration_seconds_bucket", route="/info", method="GET",
                 le="+Inf") == infos + 1
    assert value(after, "filesvc_rate_limit_refusals_total", limit="signin-address") == 1
    assert value(after, "filesvc_tus_uploads_open") == 1
    assert value(after, "filesvc_http_bytes_total", direction="in") > value(before, "filesvc_http_bytes_total",
                                                                           direction="in")
    assert value(after, "filesvc_http_bytes_total", direction="out") > 60 * 30
    assert value(after, "filesvc_db_pool_capacity", pool="transactions") >= 20  # 10 + 10 overflow per worker
    assert value(after, "filesvc_db_pool_in_use", pool="transactions") == 0
    # No value becomes a label: not the link's token, not a file id, not who asked.
    for secret in (link_token, "900000", "ann@example.com", "/no/such"):
        assert secret not in text
    assert not any(name.startswith("user") for _, labels in after for name, _ in labels)


def test_a_download_in_progress_is_a_transfer_in_flight(make_live_server, app):
    server = make_live_server(METRICS_TOKEN=TOKEN)
    user = live_user(server)
    content = os.urandom(16 << 20)  # far more than the socket buffers hold: the server waits for the reader
    boundary = "b" + os.urandom(6).hex()
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\r\n").encode() \
        + content + f"\r\n--{boundary}--\r\n".encode()
    status, _, answer = call(server, "POST", "/file/upload",
                             {**user, "Content-Type": f"multipart/form-data; boundary={boundary}"}, body)
    assert status == 201
    file_id = json.loads(answer)["data"]["id"]
    downloading = http.client.HTTPConnection(urlsplit(server.url).netloc, timeout=30)
    downloading.request("GET", f"/file/download/{file_id}", headers=user)
    response = downloading.getresponse()
    response.read(1 << 10)  # started, then the reader stalls
    during = settled(server, lambda found: value(found, "filesvc_transfers_in_flight", direction="download") >= 1)
    assert value(during, "filesvc_transfers_in_flight", direction="download") == 1
    assert response.read() == content[1 << 10:]
    downloading.close()
    found = settled(server, lambda found: value(found, "filesvc_transfers_in_flight", direction="download") == 0
                    and value(found, "filesvc_http_bytes_total", direction="out") >= len(content)
                    and value(found, "filesvc_http_bytes_total", direction="in") >= len(content))
    assert value(found, "filesvc_transfers_in_flight", direction="download") == 0
    assert value(found, "filesvc_http_bytes_total", direction="out") >= len(content)
    assert value(found, "filesvc_http_bytes_total", direction="in") >= len(content)


# -- JSON logs -----------------------------------------------------------------------------------------------


def test_json_logs_are_one_object_per_line_with_the_request_fields(make_live_server, app):
    server = make_live_server(LOG_FORMAT="json", LOG_LEVEL="INFO")
    user = live_user(server)
    assert call(server, "GET", "/info", {**user, "X-Request-ID": "req-json-1"})[0] == 200
    assert call(server, "GET", "/file/link/very-secret-token", {"X-Request-ID": "req-json-2"})[0] == 404
    assert call(server, "GET", "/x%0A{\"forged\":1}", {"X-Request-ID": "req-json-3"})[0] == 404
    with app.extensions["engine"].connect() as connection:
        user_id = connection.execute(sa.text("SELECT id FROM users WHERE login = 'ann@example.com'")).scalar_one()
    deadline = time.monotonic() + 5
    while "req-json-3" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [line for line in server.log().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line, gunicorn's own too
    assert any(entry["logger"] == "gunicorn.error" for entry in entries)
    by_id = {entry.get("request_id"): entry for entry in entries if entry.get("logger") == "app.request"}
    info = by_id["req-json-1"]
    assert {key: info[key] for key in ("level", "method", "path", "status", "user_id")} == {
        "level": "info", "method": "GET", "path": "/info", "status": 200, "user_id": user_id}
    assert isinstance(info["duration_ms"], float) and info["time"].endswith("Z")
    assert by_id["req-json-2"]["path"] == "/file/link/<redacted>" and by_id["req-json-2"]["user_id"] is None
    assert by_id["req-json-3"]["path"] == "/x\n{\"forged\":1}"  # one line still: JSON escapes the newline
    assert "very-secret-token" not in server.log()


def test_text_logs_stay_the_default_line(make_live_server, app):
    server = make_live_server(LOG_LEVEL="INFO")
    assert call(server, "GET", "/ping", {"X-Request-ID": "req-text-1"})[0] == 200
    deadline = time.monotonic() + 5
    while "req-text-1" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(line for line in server.log().splitlines() if "req-text-1" in line)
    assert " INFO app.request req-text-1 GET /ping 200 " in line and not line.startswith("{")


# -- housekeeping --------------------------------------------------------------------------------------------


def rows(app, table: str, where: str = "1 = 1") -> int:
    with app.extensions["engine"].connect() as connection:
        return connection.execute(sa.text(f"SELECT COUNT(*) FROM {table} WHERE {where}")).scalar_one()


def leftover(directory: Path, name: str, age: float) -> Path:
    path = directory / name
    path.write_bytes(b"half written")
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_housekeeping_removes_what_expired_and_keeps_what_lives(make_app, tmp_path):
    short = make_app(REFRESH_TOKEN_TTL=1, RESET_TOKEN_TTL=1, UPLOAD_EXPIRY=1, RATELIMIT_ENABLED=True,
                     RATELIMIT_SIGNUP="100 per second")
    lasting = make_app()  # the same database and storage, with the usual lifetimes
    client, other = short.test_client(), lasting.test_client()
    gone = bearer(sign_up(client, "gone@example.com")["access_token"])  # its session ends in a second
    assert client.post("/password/forgot", json={"id": "gone@example.com"}).status_code == 202
    upload = client.post("/file/uploads", headers={**gone, "Tus-Resumable": "1.0.0", "Upload-Length": "100",
                                                   "Upload-Metadata": f"filename {b64('a.txt')}"})
    assert upload.status_code == 201
    assert client.patch(urlsplit(upload.headers["Location"]).path, data=b"x" * 40, headers={
        **gone, "Tus-Resumable": "1.0.0", "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream"}).status_code == 204
    stays = sign_up(other, "stays@example.com")
    stays_headers = bearer(stays["access_token"])
    kept_upload = other.post("/file/uploads", headers={**stays_headers, "Tus-Resumable": "1.0.0",
                                                       "Upload-Length": "100"})
    assert kept_upload.status_code == 201
    assert other.post("/password/forgot", json={"id": "stays@example.com"}).status_code == 202
    storage = lasting.extensions["storage"]
    old_write = leftover(storage.tmp, "stale.part", age=7200)
    crashed_write = leftover(storage.tmp, "crashed.part", age=0)  # its writer gone: no lock on it
    young_write = leftover(storage.tmp, "writing.part", age=0)
    held = os.open(young_write, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)  # a writer still at it (LocalStorage.save holds this lock while it writes)
    old_partial = leftover(storage.partial_dir, "f" * 32, age=7200)
    young_partial = leftover(storage.partial_dir, "e" * 32, age=0)
    deadline = time.monotonic() + 10
    while rows(short, "account_codes", "purpose = 'reset'") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # a reset message (and its code) is made after the answer
    assert rows(short, "account_codes", "purpose = 'reset'") == 2 and rows(short, "uploads") == 2
    time.sleep(2.1)
    now = int(time.time())
    assert rows(short, "rate_counters", f"expires_at <= {now}") >= 1
    codes = rows(short, "account_codes")

    try:
        result = lasting.test_cli_runner().invoke(args=["housekeeping", "--min-age", "60"])
        assert result.exit_code == 0, result.output
        assert "removed 1 sessions" in result.output and "1 expired uploads" in result.output
        assert young_write.exists()
    finally:
        os.close(held)
    assert not old_write.exists() and not crashed_write.exists()
    assert not old_partial.exists() and young_partial.exists()
    assert rows(short, "sessions") == 1 and rows(short, "uploads") == 1
    assert rows(short, "account_codes", "purpose = 'reset'") == 1 and rows(short, "account_codes") == codes - 1
    assert rows(short, "rate_counters", f"expires_at <= {now}") == 0
    assert rows(short, "rate_counters") >= 1  # the mail limit's hour-long windows stay
    assert rows(short, "users", "bytes_reserved <> 0 AND login = 'gone@example.com'") == 0
    live_partials = [p for p in storage.partial_dir.iterdir() if p.name not in ("e" * 32,)]
    assert len(live_partials) == 1  # the live upload's bytes
    # Through HTTP: the expired session is unknown, the live one still works, the expired upload is gone.
    assert error_code(client.get("/info", headers=gone)) in ("invalid_token", "token_expired")
    assert other.get("/info", headers=stays_headers).status_code == 200
    assert other.head(urlsplit(kept_upload.headers["Location"]).path,
                      headers={**stays_headers, "Tus-Resumable": "1.0.0"}).status_code == 200
    # The writer is gone now, its file left half-written: the next run takes it, and nothing else.
    again = lasting.test_cli_runner().invoke(args=["housekeeping", "--min-age", "60"])
    assert again.exit_code == 0 and "removed 0 sessions" in again.output and "1 half-written files" in again.output
    assert not young_write.exists() and young_partial.exists()


def test_housekeeping_never_runs_twice_at_once_across_instances(make_app):
    first, second = make_app(HOUSEKEEPING_INTERVAL=3600), make_app(HOUSEKEEPING_INTERVAL=3600)
    counters = DatabaseCounters(first.extensions["autocommit_engine"])
    assert claim(counters)  # the first instance is running it
    held = second.test_cli_runner().invoke(args=["housekeeping"])
    assert held.exit_code == 1 and "running already" in held.output
    assert run(second) is None
    release(counters)
    assert second.test_cli_runner().invoke(args=["housekeeping"]).exit_code == 0

    # The server's own runs: of many instances asking at once, one runs; then none until the interval ends.
    barrier = threading.Barrier(6)
    apps = [first, second] * 3

    def ask(app):
        barrier.wait()
        return run_if_due(app)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(ask, apps))
    assert sum(result is not None for result in results) == 1, results
    assert run_if_due(first) is None and run_if_due(second) is None


def test_the_server_runs_housekeeping_itself_once_per_interval_over_two_instances(make_live_server, make_app, app):
    short = make_app(REFRESH_TOKEN_TTL=1)
    sign_up(short.test_client(), "gone@example.com")
    assert rows(app, "sessions") == 1
    started = time.monotonic()
    servers = [make_live_server(HOUSEKEEPING_INTERVAL="1", LOG_LEVEL="INFO") for _ in range(2)]
    deadline = started + 20
    while rows(app, "sessions") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert rows(app, "sessions") == 0  # expired, and removed by a server without any command
    time.sleep(3)
    elapsed = time.monotonic() - started
    runs = [server.log().count("housekeeping removed") for server in servers]
    # Two instances of two workers each look about every second; one window of 1 s allows one run.
    assert 1 <= sum(runs) <= elapsed + 2, (runs, elapsed)
    assert "housekeeping failed" not in "".join(server.log() for server in servers)
