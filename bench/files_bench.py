"""Files benchmark: 1 GiB through upload and download against `cp`, worker memory, and /file/list at depth;
then the same transfers on local disk and on S3 (moto's server on loopback) side by side.

Runs a production-like gunicorn (gunicorn.conf.py) on MySQL, prints a table and writes it into
bench/README.md under "## Files". Needs curl and a MySQL/MariaDB (BENCH_FILES_DATABASE_URL).

    .venv/bin/python bench/files_bench.py
"""
import hashlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work" / "files"
DATABASE_URL = os.environ.get(
    "BENCH_FILES_DATABASE_URL", "mysql://root@127.0.0.1:3306/filesvc_bench_files"
)
SIZE = int(os.environ.get("BENCH_FILE_BYTES", str(1 << 30)))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
LIST_ROWS = int(os.environ.get("BENCH_LIST_ROWS", "100000"))
LIST_REQUESTS = int(os.environ.get("BENCH_LIST_REQUESTS", "300"))
SECRET = "files-bench-" + "f" * 40
MIB = 1 << 20
LABEL = f"{SIZE / (1 << 30):g} GiB" if SIZE >= 1 << 30 else f"{SIZE / MIB:g} MiB"
# moto keeps every object in this process's memory (parts and the assembled object at once): a smaller file.
S3_SIZE = int(os.environ.get("BENCH_S3_FILE_BYTES", str(256 * MIB)))


# -- set-up ------------------------------------------------------------------------------------


def fresh_database(url: str) -> sa.Engine:
    return sa.create_engine(common.fresh_database(url))


def drop_database(url: str) -> None:
    parsed = make_url(common.with_driver(url))
    server = sa.create_engine(parsed.set(database=""))
    with server.connect() as connection:
        connection.execute(sa.text(f"DROP DATABASE IF EXISTS `{parsed.database}`"))
    server.dispose()


def make_source(path: Path, size: int = SIZE) -> None:
    if path.exists() and path.stat().st_size == size:
        return
    with path.open("wb") as out:
        for _ in range(size // MIB):
            out.write(os.urandom(MIB))
        out.write(os.urandom(size % MIB))


class Server(common.Server):
    """The production gunicorn of bench/common.py on this benchmark's database and upload directory."""

    def __init__(self, uploads: Path, extra_env: dict[str, str] | None = None):
        super().__init__({
            "JWT_SECRET": SECRET, "DATABASE_URL": DATABASE_URL, "UPLOAD_DIR": str(uploads),
            "MAX_UPLOAD_BYTES": str(max(SIZE, 1 << 30)), **(extra_env or {}),
        })
        while len(self.workers()) < int(os.environ.get("WEB_CONCURRENCY", "2")):
            time.sleep(0.1)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class PeakRss:
    """Samples every worker's VmRSS while the block runs; `growth` is the largest rise over its starting value."""

    def __init__(self, pids: list[int], every: float = 0.01):
        self.pids, self.every = pids, every
        self.start = {pid: rss_kib(pid) for pid in pids}
        self.peak = dict(self.start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], rss_kib(pid))
            time.sleep(self.every)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mib(self) -> float:
        return max(self.peak[pid] - self.start[pid] for pid in self.pids) / 1024

    @property
    def peak_mib(self) -> float:
        return max(self.peak.values()) / 1024


def api(server: Server, method: str, path: str, token: str | None = None, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        server.url + path, method=method, data=json.dumps(body).encode() if body else None,
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def timed(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, check=True)
    return time.perf_counter() - started


def curl(args: list[str]) -> tuple[float, str]:
    out = subprocess.run(
        ["curl", "-sS", "--fail-with-body", "-w", "\n%{http_code} %{time_total}", *args],
        check=True, capture_output=True, text=True,
    ).stdout
    body, _, status_line = out.rpartition("\n")
    status, seconds = status_line.split()
    return float(seconds), body


def mb_s(seconds: float) -> float:
    return SIZE / MIB / seconds


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


# -- measurements ------------------------------------------------------------------------------


def warm_up(server: Server, token: str, size: int, times: int) -> None:
    """Upload, download and delete a file of `size` bytes `times` times."""
    auth = ["-H", f"Authorization: Bearer {token}"]
    warm = WORK / "warm.bin"
    warm.write_bytes(os.urandom(size))
    for _ in range(times):
        _, body = curl([*auth, "-F", f"file=@{warm}", server.url + "/file/upload"])
        warm_id = json.loads(body)["data"]["id"]
        curl([*auth, "-o", "/dev/null", f"{server.url}/file/download/{warm_id}"])
        api(server, "DELETE", f"/file/delete/{warm_id}", token)
    warm.unlink()


def transfer(server: Server, token: str, source: Path) -> list[tuple[str, str, str]]:
    auth = ["-H", f"Authorization: Bearer {token}"]
    copy = WORK / "copy.bin"
    rows = []

    cp, cp_sync = [], []
    for _ in range(RUNS):
        cp.append(timed(["cp", str(source), str(copy)]))
        copy.unlink()
        subprocess.run(["sync"], check=True)
        cp_sync.append(timed(["sh", "-c", f"cp '{source}' '{copy}' && sync"]))
        copy.unlink()
        subprocess.run(["sync"], check=True)
    cp_s, cp_sync_s = statistics.median(cp), statistics.median(cp_sync)

    # Warm both workers (imports, pools, allocator arenas) so growth below is the transfer's own.
    warm_up(server, token, 4 * MIB, 20)

    uploads, growth, peak, file_id = [], [], [], None
    for run in range(RUNS):
        if file_id is not None:
            api(server, "DELETE", f"/file/delete/{file_id}", token)
        subprocess.run(["sync"], check=True)
        with PeakRss(server.workers()) as rss:
            seconds, body = curl([*auth, "-F", f"file=@{source};filename=big.bin", server.url + "/file/upload"])
        file_id = json.loads(body)["data"]["id"]
        uploads.append(seconds)
        growth.append(rss.growth_mib)
        peak.append(rss.peak_mib)
    up = statistics.median(uploads)
    rows.append((f"upload {LABEL} (curl -F, multipart)", f"{mb_s(up):.0f} MB/s ({up:.2f} s, median of {RUNS})",
                 f"cp: {mb_s(cp_s):.0f} MB/s → {cp_s / up:.2f}×; cp+sync: {mb_s(cp_sync_s):.0f} MB/s → {cp_sync_s / up:.2f}×"))
    rows.append(("worker RSS during upload", f"growth max {max(growth):.1f} MiB, peak {max(peak):.0f} MiB",
                 f"limit: growth ≤ 64 MiB ({RUNS} runs)"))

    cat = statistics.median(timed(["sh", "-c", f"cat '{source}' > /dev/null"]) for _ in range(RUNS))
    downloads, growth, peak = [], [], []
    for _ in range(RUNS):
        with PeakRss(server.workers()) as rss:
            seconds, _ = curl([*auth, "-o", "/dev/null", f"{server.url}/file/download/{file_id}"])
        downloads.append(seconds)
        growth.append(rss.growth_mib)
        peak.append(rss.peak_mib)
    down = statistics.median(downloads)
    rows.append((f"download {LABEL} to /dev/null (sendfile)", f"{mb_s(down):.0f} MB/s ({down:.2f} s, median of {RUNS})",
                 f"cat > /dev/null, warm cache: {mb_s(cat):.0f} MB/s → {cat / down:.2f}×"))
    with PeakRss(server.workers()) as rss:
        seconds, _ = curl([*auth, "-o", str(copy), f"{server.url}/file/download/{file_id}"])
    growth.append(rss.growth_mib)
    peak.append(rss.peak_mib)
    same = sha256_of(copy) == sha256_of(source)
    copy.unlink()
    rows.append((f"download {LABEL} to a file on the same disk", f"{mb_s(seconds):.0f} MB/s ({seconds:.2f} s)",
                 f"cp: {mb_s(cp_s):.0f} MB/s → {cp_s / seconds:.2f}×; sha256 {'matches' if same else 'DIFFERS'}"))
    rows.append(("worker RSS during download", f"growth max {max(growth):.1f} MiB, peak {max(peak):.0f} MiB",
                 f"limit: growth ≤ 64 MiB ({RUNS + 1} runs)"))
    api(server, "DELETE", f"/file/delete/{file_id}", token)
    return rows


def seed_files(engine: sa.Engine, owner_id: int, count: int) -> None:
    start = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=count)
    with engine.begin() as connection:
        batch = []
        for i in range(count):
            at = start + timedelta(seconds=i)
            batch.append({"o": owner_id, "n": f"seed-{i}.txt", "k": f"{owner_id:08x}{i:024x}", "s": "0" * 64, "t": at})
            if len(batch) == 10_000 or i == count - 1:
                connection.execute(sa.text(
                    "INSERT INTO files (owner_id, name, extension, mime_type, size, storage_key, sha256, "
                    "uploaded_at, updated_at) VALUES (:o, :n, 'txt', 'text/plain', 1, :k, :s, :t, :t)"), batch)
                batch = []
        # Rows inserted behind the service's back: bring the owner's counter in line, as the service would have.
        connection.execute(sa.text(
            "UPDATE users SET file_count = (SELECT COUNT(*) FROM files WHERE owner_id = :o) WHERE id = :o"), {"o": owner_id})
        connection.execute(sa.text("ANALYZE TABLE files"))


def latencies(server: Server, token: str, path: str) -> tuple[float, float]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    samples = []
    for _ in range(LIST_REQUESTS + 10):
        started = time.perf_counter()
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        body = response.read()
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status == 200, body
    connection.close()
    samples = sorted(samples[10:])  # the first few warm the connection pool and caches
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def sql_latency(engine: sa.Engine, sql: str, params: dict, runs: int = 50) -> float:
    with engine.connect() as connection:
        samples = []
        for _ in range(runs + 5):
            started = time.perf_counter()
            connection.execute(sa.text(sql), params).all()
            samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples[5:])


def listing(server: Server, token: str, engine: sa.Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as connection:
        owner_id = connection.execute(sa.text("SELECT id FROM users WHERE login = 'bench@example.com'")).scalar_one()
    seed_files(engine, owner_id, LIST_ROWS)
    deep = LIST_ROWS // 10 - 10
    rows = []
    for label, page in (("page 1", 1), (f"page {deep:,} (offset {(deep - 1) * 10:,})", deep)):
        p50, p99 = latencies(server, token, f"/file/list?page={page}&list_size=10")
        rows.append((f"/file/list {label}, list_size 10, {LIST_ROWS:,} files",
                     f"p50 {p50:.1f} ms, p99 {p99:.1f} ms", f"{LIST_REQUESTS} sequential requests, keep-alive"))
    offset = (deep - 1) * 10
    order = "ORDER BY uploaded_at DESC, id DESC"
    naive = sql_latency(engine, f"SELECT * FROM files WHERE owner_id = :o {order} LIMIT 10 OFFSET {offset}", {"o": owner_id})
    deferred = sql_latency(engine, (
        f"SELECT f.* FROM files f JOIN (SELECT id FROM files WHERE owner_id = :o {order} LIMIT 10 OFFSET {offset}) p "
        f"ON f.id = p.id ORDER BY f.uploaded_at DESC, f.id DESC"), {"o": owner_id})
    count = sql_latency(engine, "SELECT count(*) FROM files WHERE owner_id = :o", {"o": owner_id})
    rows.append((f"SQL at offset {offset:,}: plain LIMIT/OFFSET vs deferred join",
                 f"{naive:.1f} ms vs {deferred:.1f} ms", f"count(*) for `total`: {count:.1f} ms (medians of 50)"))
    with engine.connect() as connection:
        plan = connection.execute(sa.text(
            f"EXPLAIN SELECT id FROM files WHERE owner_id = :o {order} LIMIT 10 OFFSET {offset}"), {"o": owner_id}).mappings().one()
    rows.append(("plan of the id scan", f"key {plan['key']}", f"Extra: {plan['Extra']}"))
    return rows


def storage_comparison(uploads: Path) -> list[tuple[str, str, str]]:
    """The same file up and down through gunicorn on local disk, then on S3 (moto's server in this process)."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
    sys.path.insert(0, str(ROOT))
    from app.storage.s3 import make_client

    source = WORK / "s3-source.bin"
    with source.open("wb") as out:
        for _ in range(S3_SIZE // MIB):
            out.write(os.urandom(MIB))
    label = f"{S3_SIZE / MIB:g} MiB"
    port = common.free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    make_client(endpoint, "bench", "bench", "us-east-1", 5, 60).create_bucket(Bucket="filesvc-bench")
    s3_env = {"STORAGE_URL": "s3://filesvc-bench/files", "AWS_ENDPOINT_URL_S3": endpoint,
              "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    results: dict[str, dict[str, float]] = {}
    try:
        for name, env in (("local", {}), ("s3", s3_env)):
            server = Server(uploads, env)
            try:
                token = api(server, "POST", "/signup", body={"id": f"{name}@example.com", "password": "bench password"})
                results[name] = transfer_medians(server, token["data"]["access_token"], source)
            finally:
                server.stop()
    finally:
        moto.stop()
        source.unlink(missing_ok=True)
    local, s3 = results["local"], results["s3"]

    def rate(seconds: float) -> str:
        return f"{S3_SIZE / MIB / seconds:.0f} MB/s ({seconds:.2f} s)"

    return [
        (f"upload {label}: local disk vs S3 (moto)", f"{rate(local['up'])} vs {rate(s3['up'])}",
         f"S3 at {local['up'] / s3['up']:.2f}× local; 8 MiB parts, one in memory per upload"),
        (f"download {label} to /dev/null: local disk vs S3 (moto)", f"{rate(local['down'])} vs {rate(s3['down'])}",
         f"S3 at {local['down'] / s3['down']:.2f}× local (sendfile vs streamed from the object store)"),
        (f"worker RSS growth, {label} up and down: local vs S3", f"{local['growth']:.1f} MiB vs {s3['growth']:.1f} MiB",
         "limit: growth ≤ 64 MiB"),
    ]


def transfer_medians(server: Server, token: str, source: Path) -> dict[str, float]:
    auth = ["-H", f"Authorization: Bearer {token}"]
    # Warm both workers on files of more than one 8 MiB part, so growth below is the transfer's own.
    warm_up(server, token, 12 * MIB, 6)
    ups, downs, growth, file_id = [], [], [], None
    for _ in range(RUNS):
        if file_id is not None:
            api(server, "DELETE", f"/file/delete/{file_id}", token)
        with PeakRss(server.workers()) as rss:
            seconds, body = curl([*auth, "-F", f"file=@{source};filename=big.bin", server.url + "/file/upload"])
        ups.append(seconds)
        growth.append(rss.growth_mib)
        file_id = json.loads(body)["data"]["id"]
    for _ in range(RUNS):
        with PeakRss(server.workers()) as rss:
            seconds, _ = curl([*auth, "-o", "/dev/null", f"{server.url}/file/download/{file_id}"])
        downs.append(seconds)
        growth.append(rss.growth_mib)
    api(server, "DELETE", f"/file/delete/{file_id}", token)
    return {"up": statistics.median(ups), "down": statistics.median(downs), "growth": max(growth)}


# -- report ------------------------------------------------------------------------------------


def table(rows: list[tuple[str, str, str]]) -> str:
    lines = ["| scenario | measured | baseline / note |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def write_section(readme: Path, body: str) -> None:
    """Replace the "## Files" section of bench/README.md (or add it), leaving every other section alone."""
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    start = text.find("\n## Files\n")
    section = f"\n## Files\n\n{body}\n"
    if start == -1:
        text = text.rstrip("\n") + "\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end:] if end != -1 else "")
    readme.write_text(text)


def main() -> None:
    if shutil.which("curl") is None:
        sys.exit("curl is required")
    WORK.mkdir(parents=True, exist_ok=True)
    uploads = WORK / "uploads"
    source = WORK / "big.bin"
    print(f"making a {SIZE / MIB:.0f} MiB random file and a fresh database …", flush=True)
    make_source(source)
    engine = fresh_database(DATABASE_URL)
    server = Server(uploads)
    try:
        token = api(server, "POST", "/signup", body={"id": "bench@example.com", "password": "bench password"})["data"]["access_token"]
        print("transfer …", flush=True)
        rows = transfer(server, token, source)
        print("listing …", flush=True)
        rows += listing(server, token, engine)
        server.stop()
        if S3_SIZE:
            print("local disk vs S3 …", flush=True)
            rows += storage_comparison(uploads)
    finally:
        server.stop()
        engine.dispose()
        shutil.rmtree(uploads, ignore_errors=True)
        for leftover in ("big.bin", "copy.bin"):
            (WORK / leftover).unlink(missing_ok=True)
        drop_database(DATABASE_URL)
    result = table(rows)
    print(result)
    note = (
        f"`.venv/bin/python bench/files_bench.py`, {datetime.now(timezone.utc):%Y-%m-%d}, {common.machine()}; "
        f"gunicorn.conf.py (gthread, 2 workers), MariaDB on loopback, uploads on the same disk as the source file. "
        f"The service fsyncs every stored file before its row is committed, so `cp && sync` is the like-for-like floor. "
        f"RSS is VmRSS of the gunicorn workers sampled every 10 ms: growth over the same worker's value just before "
        f"the transfer (after a warm-up of 20 small uploads and downloads), peak = the largest worker's whole RSS. "
        f"The list rows are seeded by SQL (rows only); the latency includes the bearer check and the `total` count. "
        f"The last rows run one file through a fresh server on local disk, then on S3: moto's standalone server "
        f"in the benchmark's process on loopback, which keeps objects in memory (hence a smaller file, "
        f"BENCH_S3_FILE_BYTES); a real object store over a network will differ, this shows the service's own cost."
    )
    write_section(ROOT / "bench" / "README.md", f"{note}\n\n{result}")


if __name__ == "__main__":
    main()
