"""Password-reset timing: `/password/forgot` for an existing login against an unknown one, interleaved (A B B A),
through gunicorn on MySQL, MAIL_URL=log. Both answer 202 before the login is looked up, so the answer's
timing cannot tell which logins exist. Prints medians and quartiles of each and their difference.
`BENCH_ROUNDS` (default 300) pairs; rate limits on, set high enough never to refuse.
"""
import http.client
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BENCH_DB_URL, WORK, Server, fresh_database, git_revision, machine  # noqa: E402
from bench.signin_timing import quartiles  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "300"))
# Seconds between two requests: with 0, a request right after an existing login's shares the worker with that
# login's reset work (a lookup, a code, a message), which runs after its answer.
PAUSE = float(os.environ.get("BENCH_PAUSE", "0.02"))


def timed_forgot(port: int, login: str) -> tuple[int, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.perf_counter()
    connection.request("POST", "/password/forgot", body=json.dumps({"id": login}),
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    elapsed = (time.perf_counter() - started) * 1000
    connection.close()
    return response.status, elapsed


def main() -> None:
    fresh_database()
    server = Server({"RATELIMIT_ENABLED": "true", "RATELIMIT_MAIL": "1000000 per hour", "WEB_CONCURRENCY": "1",
                     "MAIL_URL": "log", "RATELIMIT_SIGNUP": "1000000 per hour", "INSTANCE_DIR": str(WORK / "forgot-instance")})
    try:
        port = server.port
        # Each round asks for a login never asked before on both sides, as a prober would: the first ask of
        # any login creates its rate-limit counters, whether or not the login is a user's.
        for i in range(ROUNDS + 10):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("POST", "/signup", body=json.dumps({"id": f"known{i}@example.com", "password": "the right one 1"}),
                               headers={"Content-Type": "application/json"})
            assert connection.getresponse().status == 201
            connection.close()
        for i in range(10):  # warm-up
            timed_forgot(port, f"known{ROUNDS + i}@example.com")
            timed_forgot(port, f"warm{i}@example.com")
        unknown, known = [], []
        for i in range(ROUNDS):
            pairs = [(unknown, f"nobody{i}@example.com"), (known, f"known{i}@example.com")]
            for sink, login in (pairs if i % 2 else pairs[::-1]):
                status, ms = timed_forgot(port, login)
                assert status == 202, status
                sink.append(ms)
                time.sleep(PAUSE)  # the reset work of an existing login runs after its answer
        difference = statistics.median(unknown) - statistics.median(known)
        print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()}, git {git_revision()}, {BENCH_DB_URL}")
        print(f"POST /password/forgot, {ROUNDS} each, interleaved, {PAUSE * 1000:.0f} ms apart, one worker, MAIL_URL=log")
        print(f"  unknown login:  {quartiles(unknown)}")
        print(f"  existing login: {quartiles(known)}")
        print(f"  difference of medians: {difference:+.3f} ms ({difference / statistics.median(known) * 100:+.1f} %)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
