"""make bench: hot paths against their floors, in one run, on MySQL through a real gunicorn.

Prints one table and writes it to bench/results.md with the date, machine and git revision.
"""
import os
import secrets
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.security import Passwords  # noqa: E402
from bench.common import (  # noqa: E402
    BENCH_DB_URL, ROOT, WORK, Server, call, fresh_database, git_revision, machine, wrk,
)
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


def write_results() -> None:
    header = (
        f"# Latest benchmark\n\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}, "
        f"git {git_revision()}, MySQL at {BENCH_DB_URL.split('@')[-1]}, wrk -t2 -c32 -d{SECONDS}s unless noted.\n\n"
        "| scenario | measured | against its floor / goal | verdict |\n|---|---|---|---|\n"
    )
    body = "".join(f"| {a} | {b} | {c} | {d} |\n" for a, b, c, d in rows)
    (ROOT / "bench" / "results.md").write_text(header + body)
    print(f"\nwritten to bench/results.md")


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    fresh_database()
    engine = sa.create_engine(BENCH_DB_URL)
    server = Server({})
    try:
        bench_info(server, engine)
        bench_signin(server)
    finally:
        server.stop()
        engine.dispose()
    write_results()


if __name__ == "__main__":
    main()
