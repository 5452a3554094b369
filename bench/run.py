"""make bench: hot paths against their floors, in one run, on MySQL through a real gunicorn.

Prints one table and writes it to bench/results.md with the date, machine and git revision.
"""
import json
import os
import secrets
import shutil
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.security import Passwords  # noqa: E402
from bench.common import (  # noqa: E402
    BENCH_DB_URL, ROOT, WORK, SendfileServer, Server, call, fresh_database, git_revision, machine, wrk,
)
from bench.files_bench import MIB, PeakRss, curl, latencies, make_source, seed_files, timed, warm_up  # noqa: E402
from config import Config  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
rows: list[tuple[str, str, str, str]] = []  # scenario, measured, floor / goal, verdict


def record(scenario: str, measured: str, floor: str, verdict: str) -> None:
    rows.append((scenario, measured, floor, verdict))
    print(f"{scenario:55} {measured:38} {floor:40} {verdict}", flush=True)


def fmt(result: dict) -> str:
    return f"{result['rps']:.0f} req/s, p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms"


def check_clean(result: dict, name: str) -> None:
    if result["non2xx"] or result["socket_errors"]:
        print(f"warning: {name}: {result['non2xx']} non-2xx, socket errors: {result['socket_errors']}", file=sys.stderr)


def seed_sessions(engine: sa.Engine, users: int = 10_000, sessions: int = 100_000) -> None:
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    later = now + timedelta(days=30)
    dummy = Passwords(1, 8192, 1).hash("not used")
    with engine.begin() as connection:
        first_id = connection.execute(sa.text("SELECT COALESCE(MAX(id), 0) FROM users")).scalar() + 1
        connection.execute(
            sa.text("INSERT INTO users (id, login, password_hash, created_at) VALUES (:id, :login, :h, :t)"),
            [{"id": first_id + i, "login": f"seed{i}@example.com", "h": dummy, "t": now} for i in range(users)],
        )
        batch = []
        for i in range(sessions):
            batch.append({"id": secrets.token_hex(16), "u": first_id + i % users, "t": now, "e": later})
            if len(batch) == 10_000:
                connection.execute(sa.text(
                    "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, user_agent, ip) "
                    "VALUES (:id, :u, :t, :t, :e, 'seed', '127.0.0.1')"), batch)
                batch = []


def bench_info(server: Server, engine: sa.Engine) -> None:
    tokens = call(server.url + "/signup", {"id": "bench@example.com", "password": "bench password"})["data"]
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    floor = wrk(server.url + "/ping", SECONDS)
    check_clean(floor, "/ping")
    small = wrk(server.url + "/info", SECONDS, headers=auth)
    check_clean(small, "/info")
    record("floor: GET /ping (no auth, no DB), 32 conn", fmt(floor), "", "")
    ratio = small["rps"] / floor["rps"]
    record("GET /info, a handful of sessions", fmt(small), f"{ratio:.0%} of floor (goal ≥ 60 %)",
           "met" if ratio >= 0.6 else "MISSED")
    seed_sessions(engine)
    big = wrk(server.url + "/info", SECONDS, headers=auth)
    check_clean(big, "/info big")
    change = big["rps"] / small["rps"] - 1
    record("GET /info, 100,000 sessions of 10,000 users", fmt(big), f"{change:+.0%} vs few sessions (goal within 10 %)",
           "met" if abs(change) <= 0.10 or change > 0 else "MISSED")
    express = 465
    record("  vs the Express original (~465 req/s)", f"{big['rps'] / express:.1f}×", "goal 2×",
           "met" if big["rps"] >= 2 * express else "MISSED")


def bench_signin(server: Server) -> None:
    call(server.url + "/signup", {"id": "signin@example.com", "password": "bench password"})
    script = WORK / "signin.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        'wrk.body = \'{"id": "signin@example.com", "password": "bench password"}\'\n'
    )
    result = wrk(server.url + "/signin", SECONDS, connections=8, script=script)
    check_clean(result, "/signin")
    passwords = Passwords(Config.ARGON2_TIME_COST, Config.ARGON2_MEMORY_KIB, Config.ARGON2_PARALLELISM)
    stored = passwords.hash("bench password")
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        passwords.verify(stored, "bench password")
        timings.append(time.perf_counter() - started)
    verify = statistics.median(timings)
    floor = (os.cpu_count() or 1) / verify
    params = f"argon2id m={Config.ARGON2_MEMORY_KIB} KiB t={Config.ARGON2_TIME_COST} p={Config.ARGON2_PARALLELISM}"
    record(f"POST /signin, 8 conn ({params})", fmt(result),
           f"{result['rps'] / floor:.0%} of hash floor {floor:.0f}/s ({verify * 1000:.1f} ms × {os.cpu_count()} cores)", "")
    record("  vs the Express original (~3.8 sign-ins/s)", f"{result['rps'] / 3.8:.1f}×", "goal 2×",
           "met" if result["rps"] >= 7.6 else "MISSED")


def bench_list(server: Server, engine: sa.Engine) -> None:
    small = call(server.url + "/signup", {"id": "list200@example.com", "password": "bench password"})["data"]
    big = call(server.url + "/signup", {"id": "list100k@example.com", "password": "bench password"})["data"]
    with engine.connect() as connection:
        ids = dict(connection.execute(sa.text(
            "SELECT login, id FROM users WHERE login IN ('list200@example.com', 'list100k@example.com')")).all())
    seed_files(engine, ids["list200@example.com"], 200)
    seed_files(engine, ids["list100k@example.com"], 100_000)
    auth = {"Authorization": f"Bearer {small['access_token']}"}
    result = wrk(server.url + "/file/list?page=1&list_size=10", SECONDS, headers=auth)
    check_clean(result, "list 200")
    record("GET /file/list page 1 of a 200-file user, 32 conn", fmt(result), f"{result['rps'] / 372:.1f}× the Express original (~372 req/s; goal 2×)",
           "met" if result["rps"] >= 744 else "MISSED")
    for label, page in (("page 1", 1), ("page 9,990 (offset 99,890)", 9_990)):
        p50, p99 = latencies(server, big["access_token"], f"/file/list?page={page}&list_size=10")
        record(f"GET /file/list {label}, 100,000 files, sequential", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms",
               "goal p99 < 25 ms", "met" if p99 < 25 else "MISSED")
        loaded = wrk(server.url + f"/file/list?page={page}&list_size=10", SECONDS,
                     headers={"Authorization": f"Bearer {big['access_token']}"})
        record(f"GET /file/list {label}, 100,000 files, 32 conn", fmt(loaded), "", "")


def bench_transfers(server: Server) -> None:
    token = call(server.url + "/signup", {"id": "transfer@example.com", "password": "bench password"})["data"]["access_token"]
    auth = ["-H", f"Authorization: Bearer {token}"]
    size = int(os.environ.get("BENCH_FILE_BYTES", str(1 << 30)))
    source = WORK / "big.bin"
    make_source(source)
    # 10 MB downloads per second, the Express original's figure
    ten = WORK / "ten.bin"
    ten.write_bytes(os.urandom(10_000_000))
    _, body = curl([*auth, "-F", f"file=@{ten}", server.url + "/file/upload"])
    ten_id = json.loads(body)["data"]["id"]
    result = wrk(f"{server.url}/file/download/{ten_id}", SECONDS, headers={"Authorization": f"Bearer {token}"})
    check_clean(result, "10 MB download")
    record("GET /file/download of a 10 MB file, 32 conn", f"{result['rps']:.0f} downloads/s ({result['rps'] * 10:.0f} MB/s)",
           f"{result['rps'] / 26:.1f}× the Express original (~26/s; goal 2×)", "met" if result["rps"] >= 52 else "MISSED")
    # 1 GiB upload against cp on the same disk, with the workers' memory watched
    copy = WORK / "copy.bin"
    cps = []
    for _ in range(3):
        cps.append(timed(["cp", str(source), str(copy)]))
        copy.unlink()
    cp = statistics.median(cps)
    warm_up(server, token, 10_000_000, 5)  # so the RSS growth below is the transfer's own
    uploads = []
    with PeakRss(server.workers()) as rss:
        for _ in range(3):
            elapsed, body = curl([*auth, "-F", f"file=@{source};filename=big.bin", server.url + "/file/upload"])
            uploads.append(elapsed)
            big_id = json.loads(body)["data"]["id"]
    seconds = statistics.median(uploads)
    up = size / MIB / seconds
    record("POST /file/upload of 1 GiB (curl -F), median of 3", f"{up:.0f} MB/s", f"{cp / seconds:.0%} of cp ({size / MIB / cp:.0f} MB/s; goal ≥ 30 %)",
           "met" if cp / seconds >= 0.3 else "MISSED")
    record("  worker RSS growth during the upload", f"{rss.growth_mib:.1f} MiB (peak {rss.peak_mib:.0f} MiB)", "goal ≤ 64 MiB",
           "met" if rss.growth_mib <= 64 else "MISSED")
    # 1 GiB download against cat of the stored file (warm cache) and against bare sendfile over loopback
    stored = max((p for p in (WORK / "uploads").rglob("*") if p.is_file()), key=lambda p: p.stat().st_mtime)
    cat = min(timed(["sh", "-c", f"cat '{stored}' > /dev/null"]) for _ in range(3))
    floor = SendfileServer(stored)
    try:
        bare = min(curl(["-o", "/dev/null", floor.url])[0] for _ in range(3))
    finally:
        floor.close()
    with PeakRss(server.workers()) as rss:
        down = min(curl([*auth, "-o", "/dev/null", f"{server.url}/file/download/{big_id}"])[0] for _ in range(3))
    record("GET /file/download of 1 GiB (curl to /dev/null)", f"{size / MIB / down:.0f} MB/s",
           f"{cat / down:.0%} of cat ({size / MIB / cat:.0f} MB/s; goal ≥ 50 %); {bare / down:.0%} of bare sendfile over loopback ({size / MIB / bare:.0f} MB/s)",
           "met" if cat / down >= 0.5 else "MISSED")
    record("  worker RSS growth during the downloads", f"{rss.growth_mib:.1f} MiB", "goal ≤ 64 MiB",
           "met" if rss.growth_mib <= 64 else "MISSED")
    for leftover in (source, ten):
        leftover.unlink(missing_ok=True)


def write_results() -> None:
    header = (
        f"# Latest benchmark\n\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}, "
        f"git {git_revision()}, MySQL at {BENCH_DB_URL.split('@')[-1]}, wrk -t2 -c32 -d{SECONDS}s unless noted.\n\n"
        "| scenario | measured | against its floor / goal | verdict |\n|---|---|---|---|\n"
    )
    body = "".join(f"| {a} | {b} | {c} | {d} |\n" for a, b, c, d in rows)
    (ROOT / "bench" / "results.md").write_text(header + body)
    print("\nwritten to bench/results.md")


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    fresh_database()
    engine = sa.create_engine(BENCH_DB_URL)
    server = Server({"MAX_UPLOAD_BYTES": str(2 << 30)})
    try:
        bench_info(server, engine)
        bench_list(server, engine)
        bench_transfers(server)
        bench_signin(server)
    finally:
        server.stop()
        engine.dispose()
        shutil.rmtree(WORK / "uploads", ignore_errors=True)
    write_results()


if __name__ == "__main__":
    main()
