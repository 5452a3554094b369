"""Several instances behind a load balancer: two gunicorns over one MySQL, one S3 endpoint and one Redis.

Each instance has its own instance and upload directories, so whatever works across them cannot come
from local memory or disk. Also: sign-in while the rate limits' Redis is down.
"""
import json
import os
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest
import redis

from tests.conftest import S3_KINDS
from tests.support.api import PASSWORD
from tests.support.faults import TcpProxy
from tests.support.api import sha
from tests.support.live import get, multipart, send

pytestmark = [
    pytest.mark.parametrize("backend", ["mysql"], indirect=True),
    pytest.mark.parametrize("storage_kind", S3_KINDS),
]
CREDENTIALS = {"id": "ann@example.com", "password": PASSWORD}


def call(server, method: str, path: str, token: str | None = None, body: dict | None = None) -> tuple[int, dict, dict]:
    request = urllib.request.Request(
        server.url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_two_instances_share_sessions_files_and_sign_in_limits(make_live_server, redis_url, redis_prefix, tmp_path):
    shared = {
        "RATELIMIT_ENABLED": "true", "RATELIMIT_STORAGE_URI": redis_url, "RATELIMIT_KEY_PREFIX": redis_prefix,
        "RATELIMIT_SIGNIN": "5 per minute",
    }
    local = {name: tmp_path / name for name in ("a-instance", "a-disk", "b-instance", "b-disk")}
    a = make_live_server(**shared, INSTANCE_DIR=str(local["a-instance"]), UPLOAD_DIR=str(local["a-disk"]))
    b = make_live_server(**shared, INSTANCE_DIR=str(local["b-instance"]), UPLOAD_DIR=str(local["b-disk"]))

    assert call(a, "POST", "/signup", body=CREDENTIALS)[0] == 201
    status, _, body = call(a, "POST", "/signin", body=CREDENTIALS)  # attempt 1 of 5, on A
    assert status == 200
    token = body["data"]["access_token"]
    content = os.urandom(9 << 20)  # a multipart upload
    head, tail, content_type = multipart(content, "shared.bin")
    status, _, created = send(a, "POST", "/file/upload", token, [head, tail], content_type)
    assert status == 201
    status, headers, data = get(b, f"/file/download/{json.loads(created)['data']['id']}", token)
    assert status == 200 and sha(data) == sha(content) and headers["ETag"] == f'"{sha(content)}"'

    assert call(b, "POST", "/logout", token)[0] == 200
    status, _, body = call(a, "GET", "/info", token)
    assert status == 401 and body["error"]["code"] == "invalid_token"

    # Attempts 2 to 5 alternate between the instances; the sixth is refused on either.
    assert [call(server, "POST", "/signin", body=CREDENTIALS)[0] for server in (b, a, b, a)] == [200] * 4
    for server in (b, a):
        status, headers, body = call(server, "POST", "/signin", body=CREDENTIALS)
        assert status == 429 and body["error"]["code"] == "rate_limited"
        assert 0 < int(headers["Retry-After"]) <= 60
    # Nothing of the service's state is local: only the copies of messages MAIL_URL=log keeps (instance/mail/).
    kept = [p for path in local.values() if path.exists() for p in path.rglob("*") if p.is_file()]
    assert all(p.parent.name == "mail" and p.suffix == ".eml" for p in kept), kept


def test_sign_in_works_and_stays_limited_while_redis_is_down(make_live_server, redis_url, redis_prefix):
    target = urlsplit(redis_url)
    proxy = TcpProxy(target.hostname, target.port or 6379)
    try:
        server = make_live_server(
            RATELIMIT_ENABLED="true", RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{proxy.port}{target.path}",
            RATELIMIT_KEY_PREFIX=redis_prefix, RATELIMIT_SIGNIN="3 per minute",
            WEB_CONCURRENCY="1",  # one process, so the in-memory fallback counts every attempt
        )
        assert call(server, "POST", "/signup", body=CREDENTIALS)[0] == 201

        proxy.blackhole()  # Redis stops answering: its timeout (1 s) bounds the wait, then memory counts
        started = time.monotonic()
        assert call(server, "POST", "/signin", body=CREDENTIALS)[0] == 200
        assert time.monotonic() - started < 3
        proxy.restore()
        proxy.cut()  # Redis is gone
        assert [call(server, "POST", "/signin", body=CREDENTIALS)[0] for _ in range(3)] == [200, 200, 429]

        proxy.restore()
        deadline, status = time.monotonic() + 15, 429
        while status == 429 and time.monotonic() < deadline:  # the limiter looks at Redis again after a pause
            time.sleep(0.5)
            status = call(server, "POST", "/signin", body=CREDENTIALS)[0]
        assert status == 200  # counted in Redis again, where no sign-in was recorded yet
        keys = redis.Redis.from_url(redis_url).keys(f"*{redis_prefix}*")
        assert any(b"signin" in key for key in keys), keys
        assert "Traceback" not in server.log()
    finally:
        proxy.close()
