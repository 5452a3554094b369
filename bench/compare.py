"""make bench-compare: this service and another server with the same routes, side by side, rounds interleaved.

    ANCHOR_URL=http://127.0.0.1:3100 ANCHOR_COMMIT=<its commit> make bench-compare

The other server (the "anchor", e.g. the Express original) must already run, on loopback, on a database of
its own. This script starts this service itself (gunicorn.conf.py, APP_ENV=production, MySQL database
`filesvc_bench` recreated, rate limits off), gives both sides the same data through HTTP (one user, 200
small files, one 10 MB file), then runs every scenario A B A B … with wrk and curl and prints medians,
ratios this service / anchor, server CPU per request and the whole server's RSS. The table is also
written to bench/compare-results.md.

Environment:
  ANCHOR_URL         required; the anchor's base URL
  ANCHOR_PIDS        pids of the anchor's server processes (comma-separated), each counted with its children;
  ANCHOR_PID         or one root pid whose process tree is the server; without either, the processes
                     listening on ANCHOR_URL's port (and their children) are used
  ANCHOR_COMMIT      shown in the results
  ANCHOR_FILE_FIELD  the anchor's multipart field for uploads (default `file`)
  ANCHOR_LIST_QUERY  the anchor's query for a page of 10 (default `page=1&list_size=10`)
  BENCH_SECONDS      each wrk run (default 10); BENCH_ROUNDS rounds per side (default 3, at least 3)
  BENCH_UPLOAD_BYTES the big upload (default 200 MiB); BENCH_DATABASE_URL this service's database
"""
import json
import os
import shutil
import statistics
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BENCH_DB_URL, ROOT, WORK, Server, fresh_database, git_revision, machine, wrk  # noqa: E402
from bench.files_bench import MIB, PeakRss, curl, make_source, rss_kib  # noqa: E402

ANCHOR_URL = os.environ.get("ANCHOR_URL", "").rstrip("/")
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
WARM_UP_SECONDS = int(os.environ.get("BENCH_WARMUP_SECONDS", "2"))
ROUNDS = max(3, int(os.environ.get("BENCH_ROUNDS", "3")))
UPLOAD_BYTES = int(os.environ.get("BENCH_UPLOAD_BYTES", str(200 * MIB)))
SMALL_FILES = 200
TEN_MB = 10_000_000
PASSWORD = "bench password"
TOKEN_MAX_AGE = 300  # both sides' access tokens live 10 minutes; sign in again well before that
HERE = WORK / "compare"
TICK = os.sysconf("SC_CLK_TCK")


# -- processes: CPU and RSS of a whole server, however many processes it runs ---------------------------


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()  # fields from the 3rd (state) on; comm may hold spaces


def tree(roots: list[int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(int(_stat_fields(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, ValueError, IndexError):
                pass
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.append(pid)
            todo += children.get(pid, [])
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime of every thread of the process
    return total / TICK


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            total += rss_kib(pid)
        except OSError:
            pass
    return total / 1024


def listening_pids(port: int) -> list[int]:
    """The processes holding a listening socket on `port` (the roots among them), from /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{parts[9]}]")
    owners = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                owners.add(int(entry.name))
        except OSError:
            continue
    parents = {}
    for pid in owners:
        try:
            parents[pid] = int(_stat_fields(pid)[1])
        except OSError:
            pass
    return sorted(pid for pid in owners if parents.get(pid) not in owners)


def database_pids() -> list[int]:
    """MariaDB/MySQL on this machine, whose CPU per request is shown too (it serves both sides)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("mariadbd", "mysqld"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


class TreePeakRss(PeakRss):
    """PeakRss over the sum of a whole process tree: growth = peak of the sum − the sum before."""

    def __init__(self, roots: list[int], every: float = 0.01):
        self.roots = roots
        super().__init__([], every)
        self.start_total = self.peak_total = rss_mib(tree(roots))

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_total = max(self.peak_total, rss_mib(tree(self.roots)))
            time.sleep(self.every)

    @property
    def growth_mib(self) -> float:
        return self.peak_total - self.start_total


# -- the two sides -------------------------------------------------------------------------------------


def _payload(body: dict) -> dict:
    """This service wraps answers in {"data": …}; a server with the same routes may not."""
    return body["data"] if isinstance(body.get("data"), dict) else body


@dataclass
class Side:
    name: str
    url: str
    roots: list[int]
    file_field: str = "file"
    list_query: str = "page=1&list_size=10"
    login: str = ""
    _token: str = ""
    _token_at: float = 0.0
    file_ids: list = field(default_factory=list)
    download_id: str = ""

    def pids(self) -> list[int]:
        return tree(self.roots) if self.roots else []

    def post_json(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def signup(self, login: str) -> None:
        self.login = login
        self._remember(self.post_json("/signup", {"id": login, "password": PASSWORD}))

    def token(self) -> str:
        if time.monotonic() - self._token_at > TOKEN_MAX_AGE:
            self._remember(self.post_json("/signin", {"id": self.login, "password": PASSWORD}))
        return self._token

    def sign_in_again(self) -> None:
        """The next token() signs in anew, whatever the age of the current token."""
        self._token_at = float("-inf")

    def _remember(self, body: dict) -> None:
        data = _payload(body)
        self._token = next(data[k] for k in ("access_token", "accessToken", "token") if k in data)
        self._token_at = time.monotonic()

    def upload(self, path: Path, name: str | None = None) -> tuple[float, str]:
        part = f"{self.file_field}=@{path}" + (f";filename={name}" if name else "")
        seconds, body = curl(["-H", f"Authorization: Bearer {self.token()}", "-F", part, self.url + "/file/upload"])
        return seconds, str(_payload(json.loads(body))["id"])

    def delete(self, file_id: str) -> None:
        request = urllib.request.Request(f"{self.url}/file/delete/{file_id}", method="DELETE",
                                         headers={"Authorization": f"Bearer {self.token()}"})
        urllib.request.urlopen(request, timeout=60).read()


def set_up(side: Side, login: str) -> None:
    """One user, SMALL_FILES small files for the list, one 10 MB file for the download."""
    side.signup(login)
    small = HERE / "small.txt"
    for i in range(SMALL_FILES):
        small.write_bytes(os.urandom(512).hex().encode())
        side.file_ids.append(side.upload(small, f"small-{i:03}.txt")[1])
    _, side.download_id = side.upload(HERE / "ten.bin")
    side.file_ids.append(side.download_id)


# -- measuring -----------------------------------------------------------------------------------------

DB_PIDS: list[int] = []


def run_wrk(side: Side, path: str, auth: bool, seconds: int = SECONDS, **wrk_options) -> dict:
    headers = {"Authorization": f"Bearer {side.token()}"} if auth else {}
    pids, db = side.pids(), DB_PIDS
    cpu_before, db_before = cpu_seconds(pids), cpu_seconds(db)
    result = wrk(side.url + path, seconds, headers=headers, **wrk_options)
    pids = sorted(set(pids) | set(side.pids()))
    requests = max(result["requests"], 1)
    result["cpu_us"] = (cpu_seconds(pids) - cpu_before) / requests * 1e6 if pids else None
    result["db_us"] = (cpu_seconds(db) - db_before) / requests * 1e6 if db else None
    if result["non2xx"] or result["socket_errors"]:
        print(f"  warning: {side.name} {path}: {result['non2xx']} non-2xx, socket errors: {result['socket_errors']}",
              file=sys.stderr)
    return result


def median_of(results: list[dict], key: str) -> float | None:
    values = [r[key] for r in results if r.get(key) is not None]
    return statistics.median(values) if values else None


def num(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'es' if word.endswith('s') else 's'}" if count != 1 else f"{count} {word}"


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or not b else f"{a / b:.2f}×"


def main() -> None:
    if not ANCHOR_URL:
        sys.exit("set ANCHOR_URL to a server with the same routes, e.g. ANCHOR_URL=http://127.0.0.1:3100")
    if shutil.which("curl") is None:
        sys.exit("curl is required")
    host = urlparse(ANCHOR_URL).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"ANCHOR_URL must be on loopback, not {host}")
    if os.environ.get("ANCHOR_PIDS"):
        anchor_roots = [int(p) for p in os.environ["ANCHOR_PIDS"].replace(",", " ").split()]
    elif os.environ.get("ANCHOR_PID"):
        anchor_roots = [int(os.environ["ANCHOR_PID"])]
    else:
        anchor_roots = listening_pids(urlparse(ANCHOR_URL).port or 80)
    if not anchor_roots:
        print("warning: the anchor's processes were not found (set ANCHOR_PID): no CPU or RSS for it", file=sys.stderr)
    DB_PIDS[:] = database_pids()
    anchor_commit = os.environ.get("ANCHOR_COMMIT", "unknown")

    HERE.mkdir(parents=True, exist_ok=True)
    (HERE / "ten.bin").write_bytes(os.urandom(TEN_MB))
    make_source(HERE / "upload.bin", UPLOAD_BYTES)
    uploads_dir = HERE / "uploads"
    shutil.rmtree(uploads_dir, ignore_errors=True)
    print(f"fresh database {BENCH_DB_URL.split('@')[-1]} ({BENCH_DB_URL.split(':')[0]}), starting gunicorn …", flush=True)
    fresh_database()
    server = Server({"UPLOAD_DIR": str(uploads_dir), "MAX_UPLOAD_BYTES": str(max(UPLOAD_BYTES * 2, 1 << 30))})
    anchor = Side("anchor", ANCHOR_URL, anchor_roots, os.environ.get("ANCHOR_FILE_FIELD", "file"),
                  os.environ.get("ANCHOR_LIST_QUERY", "page=1&list_size=10"))
    try:
        while len(server.workers()) < int(os.environ.get("WEB_CONCURRENCY", "2")):
            time.sleep(0.1)
        time.sleep(1)
        project = Side("project", server.url, [server.process.pid])
        sides = (project, anchor)
        rss = {"idle (after start)": {s.name: rss_mib(s.pids()) if s.roots else None for s in sides}}
        processes = {s.name: len(s.pids()) for s in sides}

        login = f"compare-{int(time.time())}@example.com"
        for side in sides:
            print(f"set-up on {side.name}: sign-up, {SMALL_FILES} small files, one 10 MB file …", flush=True)
            set_up(side, login)

        # the big upload, A B A B …
        uploads: dict[str, list[dict]] = {s.name: [] for s in sides}
        for round_ in range(ROUNDS):
            for side in sides:
                pids = side.pids()
                before = cpu_seconds(pids)
                with TreePeakRss(side.roots) as peak:
                    seconds, file_id = side.upload(HERE / "upload.bin", "upload.bin")
                cpu = cpu_seconds(sorted(set(pids) | set(side.pids()))) - before if pids else None
                uploads[side.name].append({"mb_s": UPLOAD_BYTES / MIB / seconds, "cpu_s": cpu,
                                           "growth": peak.growth_mib if side.roots else None})
                side.delete(file_id)
                print(f"  upload {UPLOAD_BYTES / MIB:.0f} MiB round {round_ + 1} {side.name:8} "
                      f"{UPLOAD_BYTES / MIB / seconds:7.0f} MB/s", flush=True)
        rss["after the uploads"] = {s.name: rss_mib(s.pids()) if s.roots else None for s in sides}

        # Sign-in at 8 connections: the password hash is its cost on both sides, by design.
        signin = HERE / "signin.lua"
        signin.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                          f'wrk.body = \'{json.dumps({"id": login, "password": PASSWORD})}\'\n')
        scenarios = [
            ("GET /info", lambda s: "/info", True, sides, {}),
            ("GET /ping (no auth, no DB)", lambda s: "/ping", False, (project,), {}),
            ("GET /file/list, page 1 of 10", lambda s: "/file/list?" + s.list_query, True, sides, {}),
            ("GET /file/download, 10 MB", lambda s: f"/file/download/{s.download_id}", True, sides, {}),
            ("POST /signin, 8 connections", lambda s: "/signin", False, sides, {"script": signin, "connections": 8}),
        ]
        results: dict[tuple[str, str], list[dict]] = {}
        for label, path, auth, on, options in scenarios:
            for side in on:  # warm-up, not recorded: pools, JIT, caches
                run_wrk(side, path(side), auth, WARM_UP_SECONDS, **options)
            for round_ in range(ROUNDS):
                for side in on:
                    result = run_wrk(side, path(side), auth, **options)
                    results.setdefault((label, side.name), []).append(result)
                    print(f"  {label:30} round {round_ + 1} {side.name:8} {result['rps']:8.0f} req/s  "
                          f"p50 {result['p50']:6.1f} ms  p99 {result['p99']:7.1f} ms  "
                          f"cpu {num(result['cpu_us'])} µs/req", flush=True)
        rss["after the load runs"] = {s.name: rss_mib(s.pids()) if s.roots else None for s in sides}

        # Leave the anchor's database as it was, for the next run. A fresh token first: the sign-in load may
        # have signed out the older sessions of this user (a server that caps sessions per user does).
        anchor.sign_in_again()
        for file_id in anchor.file_ids:
            anchor.delete(file_id)
    finally:
        server.stop()
        shutil.rmtree(uploads_dir, ignore_errors=True)
        (HERE / "upload.bin").unlink(missing_ok=True)

    report(results, uploads, rss, processes, anchor_commit)


def report(results, uploads, rss, processes, anchor_commit) -> None:
    lines = [
        "| scenario | side | req/s | p50 ms | p99 ms | server CPU µs/req | MariaDB CPU µs/req |",
        "|---|---|---|---|---|---|---|",
    ]
    medians: dict[tuple[str, str], dict] = {}
    for (label, side), runs in results.items():
        medians[(label, side)] = {k: median_of(runs, k) for k in ("rps", "p50", "p99", "cpu_us", "db_us")}
    labels = list(dict.fromkeys(label for label, _ in results))
    for label in labels:
        for side in ("project", "anchor"):
            m = medians.get((label, side))
            if m:
                lines.append(f"| {label} | {'this service' if side == 'project' else 'anchor'} | {num(m['rps'])} | "
                             f"{num(m['p50'], 1)} | {num(m['p99'], 1)} | {num(m['cpu_us'])} | {num(m['db_us'])} |")
        a, b = medians.get((label, "project")), medians.get((label, "anchor"))
        if a and b:
            lines.append(f"| {label} | **this / anchor** | **{ratio(a['rps'], b['rps'])}** | {ratio(a['p50'], b['p50'])} | "
                         f"{ratio(a['p99'], b['p99'])} | {ratio(a['cpu_us'], b['cpu_us'])} | {ratio(a['db_us'], b['db_us'])} |")
    info, ping = medians.get(("GET /info", "project")), medians.get(("GET /ping (no auth, no DB)", "project"))
    floor_line = ""
    if info and ping:
        floor_line = f"\n/info at {info['rps'] / ping['rps']:.0%} of /ping on this service (goal ≥ 60 %).\n"

    up = {side: {k: median_of(runs, k) for k in ("mb_s", "cpu_s")} for side, runs in uploads.items()}
    growth = {side: max((r["growth"] for r in runs if r["growth"] is not None), default=None)
              for side, runs in uploads.items()}
    mib = UPLOAD_BYTES / MIB
    upload_lines = [
        "| side | MB/s (median) | server CPU per upload | server RSS growth during an upload (max) |",
        "|---|---|---|---|",
        *(f"| {'this service' if side == 'project' else 'anchor'} | {num(up[side]['mb_s'])} | "
          f"{num(up[side]['cpu_s'], 2)} s | {num(growth[side], 1)} MiB |" for side in ("project", "anchor")),
        f"| **this / anchor** | **{ratio(up['project']['mb_s'], up['anchor']['mb_s'])}** | "
        f"{ratio(up['project']['cpu_s'], up['anchor']['cpu_s'])} | |",
    ]
    rss_lines = [
        f"| server RSS, all processes | this service ({plural(processes['project'], 'process')}) | "
        f"anchor ({plural(processes['anchor'], 'process')}) | this / anchor |",
        "|---|---|---|---|",
        *(f"| {moment} | {num(v['project'], 1)} MiB | {num(v['anchor'], 1)} MiB | {ratio(v['project'], v['anchor'])} |"
          for moment, v in rss.items()),
    ]
    header = (
        f"# This service next to the anchor\n\n"
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}, this service at git {git_revision()} "
        f"(gunicorn.conf.py, APP_ENV=production, {BENCH_DB_URL.split(':')[0]} on "
        f"{BENCH_DB_URL.split('@')[-1]}), anchor {ANCHOR_URL} at commit {anchor_commit}. "
        f"wrk -t2 -c32 -d{SECONDS}s, {ROUNDS} rounds per side interleaved (A B A B …) after a {WARM_UP_SECONDS} s "
        f"warm-up; medians of the rounds. CPU = utime+stime of the whole server process tree over the run, "
        f"divided by the requests; MariaDB's CPU is shared with anything else using it.\n"
    )
    text = (
        header + "\n" + "\n".join(lines) + "\n" + floor_line
        + f"\n## Upload of {mib:.0f} MiB (curl -F, {ROUNDS} per side, interleaved)\n\n" + "\n".join(upload_lines)
        + "\n\n## Memory\n\n" + "\n".join(rss_lines) + "\n"
    )
    print("\n" + text)
    (ROOT / "bench" / "compare-results.md").write_text(text)
    print("written to bench/compare-results.md")


if __name__ == "__main__":
    main()
