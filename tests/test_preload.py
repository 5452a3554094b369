"""gunicorn builds the app once in the master (preload_app) and forks the workers from it: they still serve
every request, and each holds database connections of its own, none inherited from the master."""
import json
import os
import subprocess
import urllib.request

from sqlalchemy import text

from app.db import after_fork
from tests.support.api import PASSWORD
from tests.support.faults import open_files, socket_inodes, tcp_inodes

MYSQL_PORT = 3306


def call(url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    """One request on a connection of its own (urllib closes it), so successive calls may reach either worker."""
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def database_handles(pid: int, database_file: str | None) -> set[str]:
    """What `pid` holds open on the database: the SQLite file, or sockets to MySQL (by inode)."""
    if database_file is not None:
        return {target for target in open_files(pid) if target == database_file}
    return socket_inodes(pid) & tcp_inodes(remote_port=MYSQL_PORT)


def test_preloaded_workers_serve_and_hold_their_own_connections(make_live_server, backend, database_urls):
    server = make_live_server(WEB_CONCURRENCY="2", GUNICORN_PRELOAD="true")
    login = "fork@example.com"
    assert call(f"{server.url}/signup", {"id": login, "password": PASSWORD})[0] == 201
    status, signin = call(f"{server.url}/signin", {"id": login, "password": PASSWORD})
    assert status == 200
    for _ in range(20):  # a new connection each time, so both workers get some
        status, info = call(f"{server.url}/info", token=signin["data"]["access_token"])
        assert status == 200 and info["data"]["id"] == login

    workers = children(server.process.pid)
    assert len(workers) == 2
    url = database_urls[backend]
    database_file = os.path.realpath(url.removeprefix("sqlite:///")) if backend == "sqlite" else None
    master = database_handles(server.process.pid, database_file)
    held = [database_handles(pid, database_file) for pid in workers]
    assert master == set(), "the master must open no database connection for its workers to inherit"
    assert any(held), "the workers that answered hold connections"
    if database_file is None:  # a socket inherited across fork would show in both workers under one inode
        assert not held[0] & held[1]


def test_after_fork_leaves_the_parents_connections_open_and_starts_empty_pools(app):
    engine = app.extensions["engine"]
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
        raw = connection.connection.dbapi_connection
    assert engine.pool.checkedin() == 1
    after_fork(app)
    assert engine.pool.checkedin() == 0 and app.extensions["autocommit_engine"].pool.checkedin() == 0
    raw.cursor().execute("SELECT 1")  # close=False: the parent's connection is still usable by the parent
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar_one() == 1
