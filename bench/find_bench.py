"""Finding files (SPEC §14): /file/list with 10,000 files of one user, before and after `q`, `type` and `sort`.

"Before" is the service at BASE (the commit before the list took those parameters, extracted with
`git archive` and migrated by its own migrations), "after" is this tree; each runs its own production-like
gunicorn (one worker) on its own MariaDB database with the same 10,000 rows. Rounds alternate A B A B …;
each round is LIST_REQUESTS sequential keep-alive requests, and the table shows the median of the rounds'
medians. Then the SQL of a name-sorted page 1 with its index and without it. Prints the numbers; they are
copied into bench/README.md ("Finding files").

    .venv/bin/python bench/find_bench.py
"""
import http.client
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

ROOT = common.ROOT
WORK = common.WORK / "find"
BASE = os.environ.get("BENCH_FIND_BASE", "45fd4a2")  # the commit before /file/list took q, type and sort
URL_A = os.environ.get("BENCH_FIND_DATABASE_A", "mysql://root@127.0.0.1:3306/filesvc_bench_find_a")
URL_B = os.environ.get("BENCH_FIND_DATABASE_B", "mysql://root@127.0.0.1:3306/filesvc_bench_find_b")
FILES = int(os.environ.get("BENCH_FIND_FILES", "10000"))
ROUNDS = max(3, int(os.environ.get("BENCH_ROUNDS", "5")))
LIST_REQUESTS = int(os.environ.get("BENCH_LIST_REQUESTS", "200"))
LOGIN = "bench@example.com"
PASSWORD = "bench password 1"
KINDS = [("photo-{i}.jpg", "jpg", "image/jpeg"), ("scan_{i}.png", "png", "image/png"),
         ("Report {i}.pdf", "pdf", "application/pdf"), ("notes-{i}.txt", "txt", "text/plain")]
PLAIN = "/file/list?page=1&list_size=10"
AFTER_ONLY = [
    ("sort=name, page 1", "/file/list?page=1&list_size=10&sort=name"),
    ("sort=-size, page 1", "/file/list?page=1&list_size=10&sort=-size"),
    ("sort=name, page 500 (offset 4,990)", "/file/list?page=500&list_size=10&sort=name"),
    ("q=report (2,500 match), page 1", "/file/list?page=1&list_size=10&q=report"),
    ("q=%25 (none match)", "/file/list?page=1&list_size=10&q=%25"),
    ("type=image/ (5,000 match), page 1", "/file/list?page=1&list_size=10&type=image/"),
    ("q=photo&type=image/jpeg&sort=-size, page 1", "/file/list?page=1&list_size=10&q=photo&type=image/jpeg&sort=-size"),
]


def base_tree() -> Path:
    """The service at BASE, as files in a temporary directory (outside the repository, so linting the tree
    never reads it; no git worktree to clean up)."""
    tree = Path(tempfile.mkdtemp(prefix="find-bench-base-"))
    archive = subprocess.run(["git", "archive", BASE], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def migrated(url: str, tree: Path) -> str:
    """A new database, migrated by `tree`'s own migrations."""
    url = common.with_driver(url)
    parsed = sa.engine.make_url(url)
    server = sa.create_engine(parsed.set(database=""))
    with server.connect() as connection:
        connection.execute(sa.text(f"DROP DATABASE IF EXISTS `{parsed.database}`"))
        connection.execute(sa.text(f"CREATE DATABASE `{parsed.database}` CHARACTER SET utf8mb4"))
    server.dispose()
    subprocess.run([sys.executable, "-m", "alembic", "-c", "migrations/alembic.ini", "upgrade", "head"], cwd=tree,
                   env={**os.environ, "DATABASE_URL": url}, check=True, capture_output=True)
    return url


def seed(url: str) -> None:
    """FILES rows of the one user: four kinds of name and type, sizes at random, one a second."""
    engine = sa.create_engine(url)
    rng = random.Random(14)
    start = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=FILES)
    rows = []
    for i in range(FILES):
        name, extension, mime = KINDS[i % len(KINDS)]
        at = start + timedelta(seconds=i)
        rows.append({"n": name.format(i=i), "e": extension, "m": mime, "s": rng.randint(1, 50 << 20),
                     "k": f"{i:032x}", "t": at})
    with engine.begin() as connection:
        owner = connection.execute(sa.text("SELECT id FROM users WHERE login = :l"), {"l": LOGIN}).scalar_one()
        connection.execute(sa.text(
            "INSERT INTO files (owner_id, name, extension, mime_type, size, storage_key, sha256, uploaded_at, "
            f"updated_at) VALUES ({owner}, :n, :e, :m, :s, :k, '{'0' * 64}', :t, :t)"), rows)
        connection.execute(sa.text("UPDATE users SET file_count = :n WHERE id = :o"), {"n": FILES, "o": owner})
        connection.execute(sa.text("ANALYZE TABLE files"))
    engine.dispose()


def token(server: common.Server) -> str:
    return common.call(server.url + "/signup", {"id": LOGIN, "password": PASSWORD})["data"]["access_token"]


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes have used so far (every thread), from /proc."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def median_ms(server: common.Server, bearer: str, path: str, requests: int = LIST_REQUESTS,
              cpu: list[float] | None = None) -> float:
    """The median time of `requests` sequential requests; `cpu` gets the server's CPU ms per request."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    samples = []
    workers = server.workers()
    for index in range(requests + 10):
        if index == 10:
            used = cpu_seconds(workers)
        started = time.perf_counter()
        connection.request("GET", path, headers={"Authorization": f"Bearer {bearer}"})
        response = connection.getresponse()
        body = response.read()
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status == 200, body
    connection.close()
    if cpu is not None:
        cpu.append((cpu_seconds(workers) - used) * 1000 / requests)
    return statistics.median(samples[10:])  # the first few warm the connection pool and caches


def sql_ms(url: str, sql: str, runs: int = 50) -> float:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        samples = []
        for _ in range(runs + 5):
            started = time.perf_counter()
            connection.execute(sa.text(sql)).all()
            samples.append((time.perf_counter() - started) * 1000)
    engine.dispose()
    return statistics.median(samples[5:])


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    tree = base_tree()
    url_a, url_b = migrated(URL_A, tree), migrated(URL_B, ROOT)
    servers = {
        "A": common.Server({"DATABASE_URL": url_a, "WEB_CONCURRENCY": "1", "UPLOAD_DIR": str(WORK / "uploads-a")}, cwd=tree),
        "B": common.Server({"DATABASE_URL": url_b, "WEB_CONCURRENCY": "1", "UPLOAD_DIR": str(WORK / "uploads-b")}),
    }
    try:
        tokens = {side: token(server) for side, server in servers.items()}
        seed(url_a)
        seed(url_b)
        total = common.call(servers["B"].url + "/file/list?q=report", token=tokens["B"])
        assert total["data"]["total"] == FILES // 4, total
        plain: dict[str, list[float]] = {"A": [], "B": []}
        cpu: dict[str, list[float]] = {"A": [], "B": []}
        after: dict[str, list[float]] = {label: [] for label, _ in AFTER_ONLY}
        for round_ in range(ROUNDS):
            for side in ("A", "B") if round_ % 2 == 0 else ("B", "A"):
                plain[side].append(median_ms(servers[side], tokens[side], PLAIN, cpu=cpu[side]))
            for label, path in AFTER_ONLY:
                after[label].append(median_ms(servers["B"], tokens["B"], path, LIST_REQUESTS // 4))
            print(f"round {round_ + 1}: page 1 before {plain['A'][-1]:.2f} ms ({cpu['A'][-1]:.2f} ms CPU), "
                  f"after {plain['B'][-1]:.2f} ms ({cpu['B'][-1]:.2f} ms CPU)", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    owner = "(SELECT id FROM users WHERE login = 'bench@example.com')"
    page = f"WHERE owner_id = {owner} ORDER BY name, id LIMIT 10"
    columns = "id, name, extension, mime_type, size, sha256, uploaded_at, updated_at"
    indexed = sql_ms(url_b, f"SELECT {columns} FROM files {page}")
    unindexed = sql_ms(url_b, f"SELECT {columns} FROM files IGNORE INDEX (ix_files_owner_id_name) {page}")
    print(f"\n{FILES:,} files of one user; {ROUNDS} rounds A B A B, {LIST_REQUESTS} sequential requests each; "
          f"one gevent worker per side; {common.machine()}")
    print("| request | before (A) | after (B) |\n|---|---|---|")
    print(f"| `{PLAIN}` | {statistics.median(plain['A']):.2f} ms | {statistics.median(plain['B']):.2f} ms |")
    print(f"| the same, server CPU per request | {statistics.median(cpu['A']):.2f} ms | "
          f"{statistics.median(cpu['B']):.2f} ms |")
    for label, samples in after.items():
        print(f"| {label} | – | {statistics.median(samples):.2f} ms |")
    print(f"| SQL: a name-sorted page 1, with ix_files_owner_id_name / without | | {indexed:.2f} ms / "
          f"{unindexed:.2f} ms |")
    print("round medians, ms:", {side: [round(v, 2) for v in values] for side, values in plain.items()})
    shutil.rmtree(tree, ignore_errors=True)
    shutil.rmtree(WORK / "uploads-a", ignore_errors=True)
    shutil.rmtree(WORK / "uploads-b", ignore_errors=True)


if __name__ == "__main__":
    main()
