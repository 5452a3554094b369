"""File links against the bearer download: a 1 GiB transfer, and the cost of checking a link per request.

Starts the production gunicorn (gunicorn.conf.py, APP_ENV=production) on MySQL database `filesvc_bench_links`
(recreated; BENCH_LINKS_DATABASE_URL overrides), uploads on local disk, rate limits off. Every comparison runs
its sides in interleaved rounds (A B A B …) and prints medians:

  (a) a BENCH_LINK_FILE_BYTES (1 GiB) file downloaded with curl to /dev/null through `/file/download/<id>`
      (bearer) and through `/file/link/<token>`: MB/s, and the whole server's RSS before and after;
  (b) a 1 KiB file under wrk (-t2 -c32, BENCH_SECONDS each, default 5) through the same two routes, with
      `/ping` (no token, no database) as the floor: requests/s and the server's CPU per request (master and
      workers, from /proc), and the token check alone in-process (LinkSigner.read).

    .venv/bin/python bench/links_bench.py        # BENCH_ROUNDS (default 3)

Prints a table; paste it into bench/README.md under "File links".
"""
import json
import os
import statistics
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402
from bench.files_bench import MIB, PeakRss, api, curl, make_source, rss_kib  # noqa: E402

DATABASE_URL = os.environ.get("BENCH_LINKS_DATABASE_URL", "mysql://root@127.0.0.1:3306/filesvc_bench_links")
SIZE = int(os.environ.get("BENCH_LINK_FILE_BYTES", str(1 << 30)))
ROUNDS = max(3, int(os.environ.get("BENCH_ROUNDS", "3")))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
WORK = common.WORK / "links"
TICK = os.sysconf("SC_CLK_TCK")
LABEL = f"{SIZE / (1 << 30):g} GiB" if SIZE >= 1 << 30 else f"{SIZE / MIB:g} MiB"


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text[text.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime, every thread
    return total / TICK


def server_pids(server: common.Server) -> list[int]:
    return [server.process.pid, *server.workers()]


def rss_sum_mib(server: common.Server) -> float:
    return sum(rss_kib(pid) for pid in server_pids(server)) / 1024


def transfer(server: common.Server, token: str, file_id: int, link_path: str) -> list[tuple[str, str, str]]:
    sides = {
        "/file/download/<id> (bearer)": ["-H", f"Authorization: Bearer {token}",
                                         f"{server.url}/file/download/{file_id}"],
        "/file/link/<token>": [server.url + link_path],
    }
    for args in sides.values():  # one warm run each: the page cache and the workers
        curl(["-o", "/dev/null", *args])
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    growth: dict[str, list[float]] = {name: [] for name in sides}
    before = rss_sum_mib(server)
    for _ in range(ROUNDS):
        for name, args in sides.items():
            with PeakRss(server.workers()) as rss:
                took, _ = curl(["-o", "/dev/null", *args])
            seconds[name].append(took)
            growth[name].append(rss.growth_mib)
    after = rss_sum_mib(server)
    rows = []
    for name in sides:
        median = statistics.median(seconds[name])
        rows.append((f"download {LABEL} to /dev/null via {name}", f"{SIZE / MIB / median:.0f} MB/s ({median:.2f} s)",
                     f"median of {ROUNDS}, interleaved; worker RSS growth max {max(growth[name]):.1f} MiB"))
    rows.append(("server RSS (master + workers), before → after the transfers", f"{before:.0f} → {after:.0f} MiB",
                 f"{after - before:+.1f} MiB over {2 * ROUNDS} transfers of {LABEL}"))
    return rows


def per_request(server: common.Server, token: str, file_id: int, link_path: str) -> list[tuple[str, str, str]]:
    sides = {
        "GET /ping (floor: no token, no database)": (server.url + "/ping", {}),
        "GET /file/download/<id> of 1 KiB, bearer": (f"{server.url}/file/download/{file_id}",
                                                     {"Authorization": f"Bearer {token}"}),
        "GET /file/link/<token> of 1 KiB": (server.url + link_path, {}),
    }
    for url, headers in sides.values():
        common.wrk(url, 2, headers=headers)  # warm-up
    results: dict[str, list[dict]] = {name: [] for name in sides}
    for _ in range(ROUNDS):
        for name, (url, headers) in sides.items():
            pids = server_pids(server)
            cpu = cpu_seconds(pids)
            run = common.wrk(url, SECONDS, headers=headers)
            run["cpu_us"] = (cpu_seconds(pids) - cpu) / run["requests"] * 1e6
            if run["non2xx"]:
                raise RuntimeError(f"{name}: {run['non2xx']} answers were not 2xx")
            results[name].append(run)
    rows, cpu = [], {}
    for name, runs in results.items():
        rps = statistics.median(r["rps"] for r in runs)
        cpu[name] = statistics.median(r["cpu_us"] for r in runs)
        p50 = statistics.median(r["p50"] for r in runs)
        rows.append((name, f"{rps:.0f} req/s, server CPU {cpu[name]:.0f} µs/request",
                     f"p50 {p50:.1f} ms; median of {ROUNDS} interleaved {SECONDS} s wrk runs (-t2 -c32)"))
    ping, bearer, link = cpu.values()
    rows.append(("server CPU per request over /ping: bearer download vs link",
                 f"{bearer - ping:.0f} µs vs {link - ping:.0f} µs",
                 f"the link costs {link - bearer:+.0f} µs ({(link - ping) / (bearer - ping):.2f}×) of the bearer "
                 "route's"))
    return rows


def token_check() -> tuple[str, str, str]:
    from app.security import LinkClaims, LinkSigner

    signer = LinkSigner(common.SECRET)
    token = signer.sign(LinkClaims(1, "ab" * 16, "cd" * 16, 2**31, False))
    loops = 100_000
    seconds = min(timeit.repeat(lambda: signer.read(token), number=loops, repeat=5))
    return ("the token alone: format check, base64, HMAC-SHA256, unpack (in-process)",
            f"{seconds / loops * 1e6:.2f} µs", f"best of 5 × {loops} calls of LinkSigner.read")


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    source, tiny = WORK / "big.bin", WORK / "tiny.bin"
    make_source(source, SIZE)
    tiny.write_bytes(os.urandom(1024))
    common.fresh_database(DATABASE_URL)
    server = common.Server({"DATABASE_URL": DATABASE_URL, "UPLOAD_DIR": str(WORK / "uploads"),
                            "MAX_UPLOAD_BYTES": str(max(SIZE, 1 << 30)), "LINK_MAX_TTL": "86400"})
    try:
        signed_up = api(server, "POST", "/signup", body={"id": "bench@example.com", "password": "bench password"})
        token = signed_up["data"]["access_token"]
        ids = {}
        for name, path in (("big", source), ("tiny", tiny)):
            _, body = curl(["-H", f"Authorization: Bearer {token}", "-F", f"file=@{path}", server.url + "/file/upload"])
            ids[name] = json.loads(body)["data"]["id"]
        links = {name: api(server, "POST", f"/file/{file_id}/link", token, {"expires_in": 3600})["data"]["path"]
                 for name, file_id in ids.items()}
        rows = transfer(server, token, ids["big"], links["big"])
        rows += per_request(server, token, ids["tiny"], links["tiny"])
        rows.append(token_check())
    finally:
        server.stop()
    print(f"\n`.venv/bin/python bench/links_bench.py`, {common.machine()}, commit {common.git_revision()}\n")
    print("| scenario | measured | note |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
