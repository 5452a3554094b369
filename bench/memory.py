"""Memory of the whole server (gunicorn master + workers): idle, after three big uploads, after /info load,
and across repeated load runs (a leak check). Prints numbers; not part of `make test`.

RSS counts a page shared by several processes once in each of them; PSS divides it among them, so the
PSS sum is what the server really costs the machine. Both are summed over every process of the server.

    .venv/bin/python bench/memory.py          # or: make bench-memory

BENCH_MEMORY_DATABASE_URL (default database `filesvc_mem_bench`, recreated), BENCH_MEMORY_UPLOAD_BYTES
(default 200 MB), BENCH_MEMORY_RUNS (default 5), BENCH_SECONDS (default 10). Any other variable in the
environment (WEB_CONCURRENCY, GUNICORN_THREADS, GUNICORN_PRELOAD, MALLOC_ARENA_MAX…) reaches gunicorn.
"""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

DATABASE_URL = os.environ.get("BENCH_MEMORY_DATABASE_URL", "mysql://root@127.0.0.1:3306/filesvc_mem_bench")
UPLOAD_BYTES = int(os.environ.get("BENCH_MEMORY_UPLOAD_BYTES", str(200_000_000)))
RUNS = int(os.environ.get("BENCH_MEMORY_RUNS", "5"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
WORK = common.WORK / "memory"
MIB = 1 << 20


def kib(path: str, field: str) -> int:
    for line in Path(path).read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def snapshot(server: common.Server) -> dict:
    """RSS and PSS (MiB) of the master and each worker, and their sums."""
    pids = [server.process.pid, *sorted(server.workers())]
    rss = [kib(f"/proc/{pid}/status", "VmRSS") / 1024 for pid in pids]
    pss = [kib(f"/proc/{pid}/smaps_rollup", "Pss") / 1024 for pid in pids]
    return {"rss": sum(rss), "pss": sum(pss), "each_rss": rss, "each_pss": pss}


def show(label: str, snap: dict, extra: str = "") -> None:
    each = " + ".join(f"{r:.0f}" for r in snap["each_rss"])
    each_pss = " + ".join(f"{p:.0f}" for p in snap["each_pss"])
    print(f"{label:<22} RSS sum {snap['rss']:6.1f} MiB ({each})   PSS sum {snap['pss']:6.1f} MiB ({each_pss}){extra}",
          flush=True)


def make_source(path: Path) -> None:
    if path.exists() and path.stat().st_size == UPLOAD_BYTES:
        return
    with path.open("wb") as out:
        left = UPLOAD_BYTES
        while left:
            out.write(os.urandom(min(MIB, left)))
            left -= min(MIB, left)


def upload(server: common.Server, token: str, source: Path) -> None:
    subprocess.run(
        ["curl", "-sS", "--fail-with-body", "-o", "/dev/null", "-H", f"Authorization: Bearer {token}",
         "-F", f"file=@{source};filename=big.bin", server.url + "/file/upload"],
        check=True,
    )


def main() -> None:
    if shutil.which("curl") is None:
        sys.exit("curl is required")
    WORK.mkdir(parents=True, exist_ok=True)
    uploads = WORK / "uploads"
    shutil.rmtree(uploads, ignore_errors=True)
    source = WORK / "upload.bin"
    make_source(source)
    common.fresh_database(DATABASE_URL)
    server = common.Server({
        "DATABASE_URL": DATABASE_URL, "UPLOAD_DIR": str(uploads), "MAX_UPLOAD_BYTES": str(max(UPLOAD_BYTES, 1 << 30)),
    })
    try:
        workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
        while len(server.workers()) < workers:
            time.sleep(0.1)
        time.sleep(2)  # let the workers finish booting
        print(f"{common.machine()}, git {common.git_revision()}, {workers} workers × "
              f"{os.environ.get('GUNICORN_THREADS', '8')} threads, preload "
              f"{os.environ.get('GUNICORN_PRELOAD', 'default')}, MALLOC_ARENA_MAX "
              f"{os.environ.get('MALLOC_ARENA_MAX', 'default')}")
        show("idle", snapshot(server))
        tokens = common.call(server.url + "/signup", {"id": "memory@example.com", "password": "bench password"})
        token = tokens["data"]["access_token"]
        took = []
        for _ in range(3):
            started = time.monotonic()
            upload(server, token, source)
            took.append(time.monotonic() - started)
        show(f"after 3 × {UPLOAD_BYTES / 1e6:g} MB up", snapshot(server),
             "   " + ", ".join(f"{UPLOAD_BYTES / 1e6 / t:.0f}" for t in took) + " MB/s")
        auth = {"Authorization": f"Bearer {token}"}
        after = []
        for run in range(1, RUNS + 1):
            result = common.wrk(server.url + "/info", SECONDS, headers=auth)
            if result["non2xx"]:
                raise RuntimeError(f"/info load was not clean: {result['non2xx']} non-2xx responses")
            snap = snapshot(server)
            after.append(snap)
            show(f"after /info run {run}", snap,
                 f"   {result['rps']:.0f} req/s, p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms"
                 + (f", socket errors: {result['socket_errors']}" if result["socket_errors"] else ""))
        if len(after) >= 5:
            growth = after[4]["rss"] / after[1]["rss"] - 1
            pss_growth = after[4]["pss"] / after[1]["pss"] - 1
            print(f"leak check: run 5 vs run 2: RSS {growth:+.1%}, PSS {pss_growth:+.1%} (goal within ±5 %)")
    finally:
        server.stop()
        shutil.rmtree(uploads, ignore_errors=True)


if __name__ == "__main__":
    main()
