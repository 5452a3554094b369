"""Slow clients against one server: N slow connections of one kind, and a probe asking GET /info meanwhile.

    .venv/bin/python bench/slow_clients.py --kind download --clients 1000            # starts this service
    .venv/bin/python bench/slow_clients.py --url http://127.0.0.1:3100 --kind download   # any server

Kinds: `download` (GET a 10 MB file, read at --rate), `link` (the same through a file link), `upload`
(POST /file/upload, the multipart body sent at --rate), `tus` (PATCH of a resumable upload at --rate),
`headers` (request headers sent a byte at a time, a second apart: no account needed), `idle` (connections
that send nothing), `signins` (not slow: each client signs in back to back, an argon2 verify each; use
--clients 20). Every connection has a small receive buffer, so a slow reader holds the server's
transfer instead of the kernel holding the file.

The probe opens a new connection every 100 ms (--probe-every) and asks GET /info with a bearer token; an answer after 2 s
counts as missed. Printed: probes answered in time, their p50/p99/max, connections still open at the
end, and for a server this script started, the PSS of all its processes idle and under the load.

Without --url it starts this service with the defaults of `make run` (gunicorn.conf.py, SQLite under a
scratch directory; --db mysql for MySQL), rate limits off, and stops it afterwards.
"""
import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import WORK, Server, call, fresh_database  # noqa: E402

FILE_BYTES = 10_000_000
PASSWORD = "slow clients password"
RCVBUF = 16 << 10


def pss_mib(root: int) -> float:
    """PSS of a process and its children, in MiB (what the server costs the machine, shared pages split)."""
    pids = [root] + [int(p) for p in os.popen(f"pgrep -P {root}").read().split()]
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class Target:
    def __init__(self, url: str):
        parts = urlsplit(url)
        self.url, self.host, self.port = url.rstrip("/"), parts.hostname, parts.port or 80
        self.token = ""
        self.file_id = ""
        self.link = ""
        self.uploads: list[str] = []
        self.login = ""

    def set_up(self, kind: str, clients: int) -> None:
        login = f"slow-{uuid.uuid4().hex[:10]}@example.com"
        call(self.url + "/signup", {"id": login, "password": PASSWORD})
        if kind == "signins":  # another account: its sign-ins must not sign the probe's session out (a cap of 100)
            self.login = f"signins-{uuid.uuid4().hex[:10]}@example.com"
            call(self.url + "/signup", {"id": self.login, "password": PASSWORD})
        got = call(self.url + "/signin", {"id": login, "password": PASSWORD})
        self.token = (got.get("data") or {}).get("access_token") or got.get("accessToken")  # ours, or the original's
        if kind in ("download", "link"):
            self.file_id = upload(self.url, self.token, os.urandom(FILE_BYTES))
        if kind == "link":
            got = call(f"{self.url}/file/{self.file_id}/link", {"expires_in": 3600}, self.token)
            self.link = urlsplit(got["data"]["url"]).path
        if kind == "tus":
            for _ in range(clients):
                request = urllib_request(f"{self.url}/file/uploads", "POST", self.token, {
                    "Tus-Resumable": "1.0.0", "Upload-Length": str(FILE_BYTES), "Content-Length": "0",
                    "Upload-Metadata": "filename c2xvdy5iaW4=",
                })
                with urlopen(request) as response:
                    self.uploads.append(urlsplit(response.headers["Location"]).path)


def urllib_request(url: str, method: str, token: str, headers: dict[str, str], data: bytes | None = None):
    import urllib.request

    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    request.add_header("Authorization", f"Bearer {token}")
    return request


def urlopen(request):
    import urllib.request

    return urllib.request.urlopen(request, timeout=30)


def upload(url: str, token: str, content: bytes) -> str:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    request = urllib_request(url + "/file/upload", "POST", token,
                             {"Content-Type": f"multipart/form-data; boundary={boundary}"}, body)
    with urlopen(request) as response:
        got = json.loads(response.read())
        return str((got.get("data") or got)["id"])


async def connect(target: Target) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (target.host, target.port))
    return await asyncio.open_connection(sock=sock, limit=RCVBUF)


class Counts:
    def __init__(self) -> None:
        self.open = 0
        self.failed_to_open = 0
        self.closed_by_server = 0
        self.received = 0
        self.sent = 0


async def slow_client(kind: str, target: Target, index: int, rate: int, stop: asyncio.Event, counts: Counts) -> None:
    try:
        reader, writer = await connect(target)
    except OSError:
        counts.failed_to_open += 1
        return
    counts.open += 1
    auth = f"Authorization: Bearer {target.token}\r\n"
    try:
        if kind in ("download", "link"):
            path = f"/file/download/{target.file_id}" if kind == "download" else target.link
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n{auth if kind == 'download' else ''}\r\n".encode())
            await writer.drain()
            while not stop.is_set():
                data = await reader.read(rate)
                if not data:
                    counts.closed_by_server += 1
                    return
                counts.received += len(data)
                await sleep_or_stop(1.0, stop)
        elif kind in ("upload", "tus"):
            if kind == "upload":
                boundary = "slowboundary"
                head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.bin\"\r\n"
                        "Content-Type: application/octet-stream\r\n\r\n").encode()
                length = len(head) + FILE_BYTES + len(f"\r\n--{boundary}--\r\n")
                writer.write((f"POST /file/upload HTTP/1.1\r\nHost: bench\r\n{auth}"
                              f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                              f"Content-Length: {length}\r\n\r\n").encode() + head)
            else:
                writer.write((f"PATCH {target.uploads[index]} HTTP/1.1\r\nHost: bench\r\n{auth}"
                              "Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
                              "Content-Type: application/offset+octet-stream\r\n"
                              f"Content-Length: {FILE_BYTES}\r\n\r\n").encode())
            piece = b"x" * rate
            while not stop.is_set():
                writer.write(piece)
                await writer.drain()
                counts.sent += len(piece)
                if reader.at_eof():
                    counts.closed_by_server += 1
                    return
                await sleep_or_stop(1.0, stop)
        elif kind == "headers":
            request = f"GET /info HTTP/1.1\r\nHost: bench\r\nX-Slow: {'a' * 200}\r\n".encode()
            for byte in request:
                if stop.is_set():
                    return
                writer.write(bytes([byte]))
                await writer.drain()
                await sleep_or_stop(1.0, stop)
                if reader.at_eof() or writer.is_closing():
                    counts.closed_by_server += 1
                    return
            counts.closed_by_server += 1  # 200 s of trickling without being cut: not expected
        elif kind == "signins":  # not slow: sign-ins back to back, each an argon2 verify on the server
            body = json.dumps({"id": target.login, "password": PASSWORD}).encode()
            while not stop.is_set():
                writer.write(b"POST /signin HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                await reader.readexactly(length)
                counts.received += 1
        elif kind == "idle":
            data = await wait_or_stop(reader.read(1), stop)
            if data == b"":
                counts.closed_by_server += 1
    except (OSError, asyncio.IncompleteReadError):
        counts.closed_by_server += 1
    finally:
        counts.open -= 1
        writer.close()


async def sleep_or_stop(seconds: float, stop: asyncio.Event) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass


async def wait_or_stop(awaitable, stop: asyncio.Event):
    task = asyncio.ensure_future(awaitable)
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if task in done:
        return task.result()
    task.cancel()
    return None


async def probe(target: Target, deadline: float = 2.0) -> float | None:
    started = time.perf_counter()
    try:
        async def ask() -> bool:
            reader, writer = await asyncio.open_connection(target.host, target.port)
            try:
                writer.write(f"GET /info HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {target.token}\r\n"
                             "Connection: close\r\n\r\n".encode())
                await writer.drain()
                data = await reader.read()
                return data.startswith(b"HTTP/1.1 200")
            finally:
                writer.close()

        ok = await asyncio.wait_for(ask(), deadline)
    except (asyncio.TimeoutError, OSError):
        return None
    return (time.perf_counter() - started) * 1000 if ok else None


async def run(target: Target, kind: str, clients: int, rate: int, seconds: float, server_pid: int | None,
              probe_every: float = 0.1) -> dict:
    stop = asyncio.Event()
    counts = Counts()
    idle_pss = pss_mib(server_pid) if server_pid else None
    tasks = []
    for index in range(clients):  # opened in steps, as a crowd arrives, not in one burst
        tasks.append(asyncio.create_task(slow_client(kind, target, index, rate, stop, counts)))
        if index % 100 == 99:
            await asyncio.sleep(0.05)
    await asyncio.sleep(2.0)  # every slow client has started its transfer
    connected = counts.open
    probes: list[asyncio.Task] = []
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        probes.append(asyncio.create_task(probe(target)))
        await asyncio.sleep(probe_every)
    answers = await asyncio.gather(*probes)
    loaded_pss = pss_mib(server_pid) if server_pid else None
    still_open = counts.open
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    times = sorted(t for t in answers if t is not None)
    quantile = (lambda q: times[min(len(times) - 1, int(q * len(times)))]) if times else (lambda q: None)
    return {
        "kind": kind, "clients": clients, "connected": connected, "still_open": still_open,
        "failed_to_open": counts.failed_to_open, "closed_by_server": counts.closed_by_server,
        "probes": len(answers), "answered": len(times),
        "p50_ms": statistics.median(times) if times else None, "p99_ms": quantile(0.99),
        "max_ms": times[-1] if times else None,
        "pss_idle_mib": idle_pss, "pss_loaded_mib": loaded_pss,
        "received_mib": counts.received / 2**20, "sent_mib": counts.sent / 2**20,
        "sign_ins_per_s": counts.received / (seconds + 2.0) if kind == "signins" else None,
    }


def show(result: dict) -> None:
    def ms(value):
        return "-" if value is None else f"{value:.1f}"

    def mib(value):
        return "-" if value is None else f"{value:.0f}"

    print(f"{result.get('server', ''):>24} {result['kind']:>9} x{result['clients']}: probes {result['answered']}/{result['probes']} within 2 s, "
          f"p50 {ms(result['p50_ms'])} ms, p99 {ms(result['p99_ms'])} ms, max {ms(result['max_ms'])} ms; "
          f"connected {result['connected']}, open at the end {result['still_open']}, "
          f"cut by the server {result['closed_by_server']}; PSS idle {mib(result['pss_idle_mib'])} MiB, "
          f"loaded {mib(result['pss_loaded_mib'])} MiB"
          + (f"; {result['sign_ins_per_s']:.0f} sign-ins/s" if result.get("sign_ins_per_s") else ""), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server; without it this service is started")
    parser.add_argument("--anchor", help="another running server: each kind runs here, then there (A B)")
    parser.add_argument("--kind", default="download", help="download, link, upload, tus, headers, idle; or all")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=16 << 10, help="bytes per second per slow client")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the probe asks")
    parser.add_argument("--probe-every", type=float, default=0.1, help="seconds between two probes")
    parser.add_argument("--db", choices=["sqlite", "mysql"], default="sqlite")
    parser.add_argument("--json", help="append each result as a JSON line to this file")
    args = parser.parse_args()
    kinds = ["download", "link", "upload", "tus", "headers"] if args.kind == "all" else args.kind.split(",")
    server = None
    sides = [(args.url, kind) for kind in kinds]
    if args.anchor:
        sides = [side for kind in kinds for side in ((args.url, kind), (args.anchor, kind))]
    for url, kind in sides:
        if url:
            target, pid = Target(url), anchor_pid(url)
        else:
            env = {"MAX_OPEN_UPLOADS": str(args.clients + 10), "MAX_FILES_PER_USER": "1000000",
                   "ARGON2_TIME_COST": "2", "ARGON2_MEMORY_KIB": "19456"}  # production cost
            if args.db == "sqlite":
                scratch = WORK / f"slow-{uuid.uuid4().hex[:8]}"
                scratch.mkdir(parents=True)
                env["DATABASE_URL"] = f"sqlite:///{scratch / 'app.db'}"
                env["UPLOAD_DIR"] = str(scratch / "uploads")
            else:
                env["DATABASE_URL"] = fresh_database()
            migrate(env["DATABASE_URL"])
            server = Server(env)
            target, pid = Target(server.url), server.process.pid
        try:
            target.set_up(kind, args.clients)
            result = asyncio.run(run(target, kind, args.clients, args.rate, args.seconds, pid, args.probe_every))
        finally:
            if server is not None:
                server.stop()
                server = None
        result["server"] = url or "this service"
        show(result)
        if args.json:
            with open(args.json, "a") as out:
                out.write(json.dumps(result) + "\n")


def anchor_pid(url: str) -> int | None:
    """The pid listening on the URL's port (for its PSS), when this machine shows it."""
    port = urlsplit(url).port
    out = os.popen(f"ss -ltnpH 'sport = :{port}' 2>/dev/null").read()
    marker = "pid="
    return int(out.split(marker)[1].split(",")[0]) if marker in out else None


def migrate(url: str) -> None:
    import subprocess

    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-m", "alembic", "-c", "migrations/alembic.ini", "upgrade", "head"], cwd=root,
                   env={**os.environ, "DATABASE_URL": url}, check=True, capture_output=True)


if __name__ == "__main__":
    main()
