"""What metrics and JSON logs cost (SPEC §12): `GET /info` on two servers, rounds interleaved A B A B ….

    python bench/ops_cost.py

A: metrics off (no METRICS_TOKEN, no METRICS_PORT) and the text log line. B: METRICS_TOKEN set (every
request counted: route, status, latency histogram, socket bytes, pool gauges) and LOG_FORMAT=json. Both log
every request (LOG_LEVEL=INFO, the production default) to a file, run gunicorn.conf.py with
APP_ENV=production, and share one MySQL database (recreated; `BENCH_DATABASE_URL`). Each round is
`wrk -t2 -c32 -d$BENCH_SECONDS` on /info after a short warm-up; the script prints medians of requests/s,
p50/p99 and the server's CPU per request (master and workers, from /proc), B against A, and checks that
B's /metrics counted exactly the /info requests wrk reports.

Environment: BENCH_SECONDS (default 10), BENCH_ROUNDS (default 5, at least 3), BENCH_DATABASE_URL.
"""
import logging
import os
import statistics
import sys
import time
import timeit
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from app import metrics  # noqa: E402
from app.metrics import FLUSH_SECONDS  # noqa: E402
from app.server.logformat import JsonFormatter  # noqa: E402
from bench.common import Server, call, fresh_database, git_revision, machine, wrk  # noqa: E402
from bench.compare import cpu_seconds, tree  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = max(3, int(os.environ.get("BENCH_ROUNDS", "5")))
METRICS_TOKEN = "bench-metrics-" + "m" * 24
PASSWORD = "bench password"
LOGIN = "ops-bench@example.com"
SIDES = {
    "A": {"LOG_LEVEL": "INFO", "LOG_FORMAT": "text", "HOUSEKEEPING_INTERVAL": "0"},
    "B": {"LOG_LEVEL": "INFO", "LOG_FORMAT": "json", "METRICS_TOKEN": METRICS_TOKEN, "HOUSEKEEPING_INTERVAL": "0"},
}


def measure(server: Server, token: str) -> dict:
    pids = tree([server.process.pid])
    before = cpu_seconds(pids)
    result = wrk(server.url + "/info", SECONDS, headers={"Authorization": f"Bearer {token}"})
    result["cpu_us"] = (cpu_seconds(tree([server.process.pid])) - before) / max(result["requests"], 1) * 1e6
    if result["non2xx"] or result["socket_errors"]:
        raise RuntimeError(f"wrk saw errors: {result['non2xx']} non-2xx, {result['socket_errors']}")
    return result


def info_count(server: Server) -> float:
    request = urllib.request.Request(server.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "filesvc_http_requests_total" and sample.labels == {
                    "route": "/info", "method": "GET", "status": "200"}:
                return sample.value
    return 0.0


def median(results: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in results)


def main() -> None:
    fresh_database()
    servers = {name: Server(env) for name, env in SIDES.items()}
    try:
        token = call(servers["A"].url + "/signup", {"id": LOGIN, "password": PASSWORD})["data"]["access_token"]
        for server in servers.values():  # warm-up: pools filled, code paths compiled
            wrk(server.url + "/info", 2, headers={"Authorization": f"Bearer {token}"})
        time.sleep(3 * FLUSH_SECONDS)  # the warm-up's counts written, by every worker
        counted_before = info_count(servers["B"])
        results: dict[str, list[dict]] = {name: [] for name in servers}
        for round_ in range(ROUNDS):
            # Access tokens live 10 minutes; a sign-in per round keeps each one fresh.
            token = call(servers["A"].url + "/signin", {"id": LOGIN, "password": PASSWORD})["data"]["access_token"]
            for name, server in servers.items():
                results[name].append(measure(server, token))
                r = results[name][-1]
                print(f"round {round_ + 1} {name}: {r['rps']:,.0f} req/s, p50 {r['p50']:.2f} ms, "
                      f"p99 {r['p99']:.2f} ms, {r['cpu_us']:.0f} µs CPU/request", flush=True)
        time.sleep(3 * FLUSH_SECONDS)  # each worker writes its counts once a second
        counted = info_count(servers["B"]) - counted_before
        sent = sum(r["requests"] for r in results["B"])
    finally:
        for server in servers.values():
            server.stop()
    report(results, counted, sent)


def best_us(statement: str, scope: dict, number: int = 20000) -> float:
    return min(timeit.repeat(statement, number=number, repeat=7, globals=scope)) / number * 1e6


def in_process() -> dict[str, float]:
    """What B adds to one request, timed in this process (best of 7): the counts a request makes, and a JSON
    request line against the text one, each written to /dev/null. Steadier than the servers' figures on a
    busy machine, since nothing else runs inside the loop."""
    log = logging.getLogger("bench.ops")
    log.propagate = False
    handler = logging.StreamHandler(open(os.devnull, "w"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    fields = {"request_id": "5f0c6b0e3c1f4b8e9a7d2c4e6f8a0b1c", "method": "GET", "path": "/info", "status": 200,
              "duration_ms": 1.2, "user_id": 42}
    scope = {"metrics": metrics, "log": log, "fields": fields}
    counts = best_us("metrics.request_done('/info', 'GET', 200, 0.0012); metrics.transferred(310, 260); "
                     "metrics._move(metrics.POOL_IN_USE, 'autocommit', 1); "
                     "metrics._move(metrics.POOL_IN_USE, 'autocommit', -1); metrics.transfer_started('info.info')",
                     scope)
    text_formatter, json_formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"), JsonFormatter()
    text, as_json = [], []
    for _ in range(5):  # alternated, best of all: another process's burst hits one kind less often than both
        handler.setFormatter(text_formatter)
        text.append(best_us("log.info('%s %s %s %s %.1fms', fields['request_id'], 'GET', '/info', 200, 1.2)", scope))
        handler.setFormatter(json_formatter)
        as_json.append(best_us("log.info('request', extra={'fields': fields})", scope))
    text, as_json = min(text), min(as_json)
    return {"counts": counts, "text": text, "json": as_json}


def report(results: dict[str, list[dict]], counted: float, sent: int) -> None:
    a, b = results["A"], results["B"]
    rps_a, rps_b = median(a, "rps"), median(b, "rps")
    cpu_a, cpu_b = median(a, "cpu_us"), median(b, "cpu_us")
    # Each round's B against the A just before it: drift of the machine's load cancels out of a ratio.
    rps_ratio = statistics.median(y["rps"] / x["rps"] for x, y in zip(a, b))
    cpu_ratio = statistics.median(y["cpu_us"] / x["cpu_us"] for x, y in zip(a, b))
    cost = in_process()
    added = cost["counts"] + cost["json"] - cost["text"]
    print()
    print(f"{machine()}, {git_revision()}; {ROUNDS} rounds of {SECONDS} s per side, wrk -t2 -c32, GET /info")
    print("| | A: no metrics, text log | B: metrics + JSON log | B / A |")
    print("|---|---|---|---|")
    print(f"| requests/s (median) | {rps_a:,.0f} | {rps_b:,.0f} | {rps_b / rps_a:.3f} |")
    print(f"| p50 ms | {median(a, 'p50'):.2f} | {median(b, 'p50'):.2f} | |")
    print(f"| p99 ms | {median(a, 'p99'):.2f} | {median(b, 'p99'):.2f} | |")
    print(f"| server CPU µs/request | {cpu_a:.0f} | {cpu_b:.0f} | {cpu_b / cpu_a:.3f} |")
    print(f"| B / A, median of the rounds' ratios | | | requests/s {rps_ratio:.3f}, CPU {cpu_ratio:.3f} |")
    print(f"\nthroughput cost {100 * (1 - rps_ratio):+.1f} %, CPU per request {100 * (cpu_ratio - 1):+.1f} % "
          f"(median of round ratios; goal: at most 5 %)")
    print(f"in process: a request's counts {cost['counts']:.1f} µs, JSON line {cost['json']:.1f} µs against text "
          f"{cost['text']:.1f} µs: B adds {added:.1f} µs, {100 * added / cpu_a:.1f} % of A's {cpu_a:.0f} µs CPU/request")
    print(f"/metrics counted {counted:,.0f} /info requests; wrk reported {sent:,} answered (it leaves out those "
          "still open when a run ends, at most 32 a run)")


if __name__ == "__main__":
    main()
