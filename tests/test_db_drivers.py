"""Both MySQL drivers work with the service's pool: PyMySQL (pure Python) and mysqlclient (C, `mysql+mysqldb://`).

The idle-connection ping on checkout goes through the driver, whose `ping()` differs: PyMySQL takes
`reconnect`, mysqlclient takes no keyword at all. mysqlclient is optional (it needs a compiler and the
client headers, requirements-mysqlclient.txt): its case is skipped when it is not installed, unless
REQUIRE_MYSQLCLIENT=1.
"""
import importlib.util
import io
import os
import re

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from app.db import engines as db
from tests.conftest import MYSQL_TEST_URL, REQUIRE_MYSQL
from tests.support.api import bearer, sign_up

DRIVERS = {"pymysql": "pymysql", "mysqldb": "MySQLdb"}
REQUIRED = {"pymysql": REQUIRE_MYSQL, "mysqldb": os.environ.get("REQUIRE_MYSQLCLIENT") == "1"}


@pytest.fixture(params=sorted(DRIVERS))
def server_url(request) -> str:
    driver = request.param
    if importlib.util.find_spec(DRIVERS[driver]) is None:
        if REQUIRED[driver]:
            pytest.fail(f"the {driver} driver is required here but not installed")
        pytest.skip(f"{driver} is not installed")
    url = make_url(MYSQL_TEST_URL).set(drivername=f"mysql+{driver}", database="")
    probe = sa.create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with probe.connect():
            pass
    except sa.exc.OperationalError as e:
        if REQUIRE_MYSQL:
            pytest.fail(f"REQUIRE_MYSQL=1 but MySQL is unreachable at {url}: {e.orig}")
        pytest.skip(f"MySQL unreachable at {url}")
    finally:
        probe.dispose()
    return url.render_as_string(hide_password=False)


@pytest.mark.parametrize("autocommit", [False, True], ids=["session_pool", "autocommit_pool"])
def test_idle_connection_is_pinged_and_a_dead_one_replaced(server_url, autocommit, monkeypatch):
    monkeypatch.setattr(db, "IDLE_BEFORE_PING", 0.0)  # every checkout counts as idle: the ping always runs
    engine = db.make_engine(server_url, pool_size=1, autocommit=autocommit)
    pings = []
    real_ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda connection: pings.append(1) or real_ping(connection))
    killer = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            first = connection.execute(sa.text("SELECT CONNECTION_ID()")).scalar_one()
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT CONNECTION_ID()")).scalar_one() == first
        assert len(pings) >= 2

        with killer.connect() as connection:  # the server drops the pooled connection while it is idle
            connection.execute(sa.text(f"KILL {int(first)}"))
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT CONNECTION_ID()")).scalar_one() != first
    finally:
        engine.dispose()
        killer.dispose()


def test_a_mysql_url_without_a_driver_takes_mysqlclient_where_it_is_installed():
    expected = "mysqldb" if importlib.util.find_spec("MySQLdb") else "pymysql"
    assert db.with_driver("mysql://u:p@db:3306/files") == f"mysql+{expected}://u:p@db:3306/files"
    assert db.with_driver("mariadb://db/files") == f"mariadb+{expected}://db/files"
    for pinned in ("mysql+pymysql://db/files", "mysql+mysqldb://db/files", "sqlite:///instance/app.db"):
        assert db.with_driver(pinned) == pinned


@pytest.mark.parametrize("backend", ["mysql"], indirect=True)
def test_the_bearer_check_and_the_file_list_on_each_driver(server_url, database_urls, make_app):
    """The per-request reads run on the driver's own cursor: the same answers from both drivers."""
    driver = make_url(server_url).drivername
    app = make_app(DATABASE_URL=make_url(database_urls["mysql"]).set(drivername=driver).render_as_string(False))
    assert app.extensions["autocommit_engine"].dialect.driver == driver.partition("+")[2]
    client = app.test_client()
    headers = bearer(sign_up(client, "drivers@example.com")["access_token"])
    for name in ("a.txt", "b.txt", "c.txt"):
        response = client.post("/file/upload", headers=headers, data={"file": (io.BytesIO(name.encode()), name)})
        assert response.status_code == 201
    assert client.get("/info", headers=headers).json["data"] == {"id": "drivers@example.com", "verified": False}
    page = client.get("/file/list?page=1&list_size=2", headers=headers).json["data"]
    assert [item["name"] for item in page["items"]] == ["c.txt", "b.txt"]
    assert page["total"] == 3 and page["items"][0]["size"] == 5
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", page["items"][0]["uploaded_at"])
    assert client.get("/file/list?page=2&list_size=2", headers=headers).json["data"]["items"][0]["name"] == "a.txt"

    assert client.post("/logout", headers=headers).status_code == 200
    gone = client.get("/info", headers=headers)
    assert gone.status_code == 401 and gone.json["error"]["code"] == "invalid_token"
