"""The cost the quota check adds to an upload: small multipart uploads against the service without any quota
code (BENCH_QUOTA_BEFORE, the commit before quotas were wired in) and with it, default quota and QUOTA_BYTES=0,
three servers on one machine, rounds interleaved. Prints medians of req/s and of server CPU per request.

    .venv/bin/python bench/quota_cost.py

Each side is gunicorn with gunicorn.conf.py (gthread, 2 workers), APP_ENV=production, on a MariaDB database
of its own (recreated), files on local disk; load is `wrk -t1 -c8` posting one 4 KiB file per request.
BENCH_QUOTA_ROUNDS (default 5), BENCH_SECONDS (default 8), BENCH_QUOTA_FILE_BYTES (default 4096).
Not part of `make test`.
"""
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402
from bench.compare import cpu_seconds, database_pids, tree  # noqa: E402

BEFORE = os.environ.get("BENCH_QUOTA_BEFORE", "cb92480")
ROUNDS = int(os.environ.get("BENCH_QUOTA_ROUNDS", "5"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
FILE_BYTES = int(os.environ.get("BENCH_QUOTA_FILE_BYTES", "4096"))
WORK = common.WORK / "quota"
BOUNDARY = "quota-bench-boundary"
PASSWORD = "bench password"


def database(name: str) -> str:
    return common.BENCH_DB_URL.rsplit("/", 1)[0] + f"/filesvc_quota_bench_{name}"


def checkout(commit: str, where: Path) -> Path:
    """The tree of `commit`, to run with this venv (same packages on both sides)."""
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit], cwd=common.ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


class Side:
    def __init__(self, name: str, cwd: Path, env: dict[str, str]):
        self.name = name
        url = common.fresh_database(database(name))
        self.server = common.Server({"DATABASE_URL": url, "UPLOAD_DIR": str(WORK / name / "uploads"), **env}, cwd=cwd)
        common.call(f"{self.server.url}/signup", {"id": f"{name}@example.com", "password": PASSWORD})
        self.rps: list[float] = []
        self.cpu_us: list[float] = []
        self.db_us: list[float] = []

    def script(self) -> Path:
        """A wrk script posting one FILE_BYTES file per request, with a token signed in just now."""
        token = common.call(f"{self.server.url}/signin", {"id": f"{self.name}@example.com", "password": PASSWORD})
        body = (f"--{BOUNDARY}\\r\\nContent-Disposition: form-data; name=\\\"file\\\"; filename=\\\"small.txt\\\"\\r\\n"
                f"Content-Type: text/plain\\r\\n\\r\\n{'q' * FILE_BYTES}\\r\\n--{BOUNDARY}--\\r\\n")
        path = WORK / f"{self.name}.lua"
        path.write_text(
            'wrk.method = "POST"\n'
            f'wrk.body = "{body}"\n'
            f'wrk.headers["Content-Type"] = "multipart/form-data; boundary={BOUNDARY}"\n'
            f'wrk.headers["Authorization"] = "Bearer {token["data"]["access_token"]}"\n'
        )
        return path

    def round(self, seconds: int) -> None:
        script = self.script()
        server = tree([self.server.process.pid])
        cpu, db = cpu_seconds(server), cpu_seconds(database_pids())
        result = common.wrk(f"{self.server.url}/file/upload", seconds=seconds, connections=8, threads=1, script=script)
        if result["non2xx"] or result["socket_errors"]:
            raise RuntimeError(f"{self.name}: {result['non2xx']} failed uploads, {result['socket_errors']}")
        requests = result["requests"]
        self.rps.append(result["rps"])
        self.cpu_us.append((cpu_seconds(server) - cpu) / requests * 1e6)
        self.db_us.append((cpu_seconds(database_pids()) - db) / requests * 1e6)

    def stop(self) -> None:
        self.server.stop()


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    common.ensure_wrk()
    before = checkout(BEFORE, WORK / "before-tree")
    sides = [
        Side("before", before, {}),
        Side("quota", common.ROOT, {}),  # QUOTA_BYTES's default, 10 GiB: the check runs on every upload
        Side("unlimited", common.ROOT, {"QUOTA_BYTES": "0"}),
    ]
    try:
        for side in sides:
            side.round(2)  # warm-up, not counted
            side.rps.clear(), side.cpu_us.clear(), side.db_us.clear()
        for n in range(ROUNDS):
            for side in sides[n % len(sides):] + sides[:n % len(sides)]:  # each side goes first in turn
                side.round(SECONDS)
                print(f"round {n + 1} {side.name}: {side.rps[-1]:.0f} req/s, {side.cpu_us[-1]:.0f} µs CPU/req",
                      file=sys.stderr)
    finally:
        for side in sides:
            side.stop()
    report(sides)
    shutil.rmtree(WORK, ignore_errors=True)


def spread(values: list[float], unit: str = "") -> str:
    return f"{statistics.median(values):.0f}{unit} ({min(values):.0f}–{max(values):.0f})"


def report(sides: list[Side]) -> None:
    base = sides[0]
    print(f"{time.strftime('%Y-%m-%d')}, {common.machine()}, git {common.git_revision()} against {BEFORE}; "
          f"MariaDB on loopback; wrk -t1 -c8 -d{SECONDS}s, {FILE_BYTES}-byte files, {ROUNDS} interleaved rounds: "
          "median (lowest–highest round).\n")
    print("| server | uploads/s | server CPU per upload, µs | MariaDB CPU per upload, µs | CPU vs before |")
    print("|---|---|---|---|---|")
    labels = {"before": f"{BEFORE}, no quota code", "quota": "with quotas, QUOTA_BYTES default (10 GiB)",
              "unlimited": "with quotas, QUOTA_BYTES=0"}
    for side in sides:
        total = statistics.median(side.cpu_us) + statistics.median(side.db_us)
        base_total = statistics.median(base.cpu_us) + statistics.median(base.db_us)
        versus = "" if side is base else f"{total - base_total:+.0f} µs ({total / base_total - 1:+.0%})"
        print(f"| {labels[side.name]} | {spread(side.rps)} | {spread(side.cpu_us)} | {spread(side.db_us)} | {versus} |")


if __name__ == "__main__":
    main()
