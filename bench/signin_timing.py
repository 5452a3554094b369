"""Sign-in timing: an unknown login against a wrong password for a real one, interleaved, through gunicorn.

Both must cost the same (a dummy argon2 verify for the unknown login, and the same counter writes), so the
answer's timing does not tell which logins exist. Prints medians and quartiles of each, and their difference.
`BENCH_ROUNDS` (default 200) pairs; production argon2 cost; rate limits on, set high enough never to refuse.
"""
import http.client
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BENCH_DB_URL, Server, fresh_database, git_revision, machine  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "200"))


def timed_sign_in(port: int, login: str, password: str) -> tuple[int, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps({"id": login, "password": password})
    started = time.perf_counter()
    connection.request("POST", "/signin", body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    elapsed = (time.perf_counter() - started) * 1000
    connection.close()
    return response.status, elapsed


def quartiles(values: list[float]) -> str:
    q1, median, q3 = statistics.quantiles(values, n=4)
    return f"median {median:.2f} ms (quartiles {q1:.2f}–{q3:.2f})"


def main() -> None:
    fresh_database()
    server = Server({"RATELIMIT_ENABLED": "true", "RATELIMIT_SIGNIN": "1000000 per minute", "WEB_CONCURRENCY": "1"})
    try:
        port = server.port
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("POST", "/signup", body=json.dumps({"id": "known@example.com", "password": "the right one"}),
                           headers={"Content-Type": "application/json"})
        assert connection.getresponse().status == 201
        for _ in range(10):  # warm-up
            timed_sign_in(port, "known@example.com", "a wrong guess")
            timed_sign_in(port, "nobody@example.com", "a wrong guess")
        unknown, wrong = [], []
        for i in range(ROUNDS):
            pairs = [(unknown, f"nobody{i}@example.com"), (wrong, "known@example.com")]
            for sink, login in (pairs if i % 2 else pairs[::-1]):  # A B B A: neither side always goes first
                status, ms = timed_sign_in(port, login, "a wrong guess")
                assert status == 401, status
                sink.append(ms)
        difference = statistics.median(unknown) - statistics.median(wrong)
        print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()}, git {git_revision()}, {BENCH_DB_URL}")
        print(f"POST /signin, {ROUNDS} each, interleaved, one worker, argon2id production cost")
        print(f"  unknown login:               {quartiles(unknown)}")
        print(f"  known login, wrong password: {quartiles(wrong)}")
        print(f"  difference of medians: {difference:+.2f} ms "
              f"({difference / statistics.median(wrong) * 100:+.1f} %)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
