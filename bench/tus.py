"""A large file through tus (PATCH after PATCH) against the single multipart POST /file/upload, on local disk,
against a real gunicorn in production mode. Rounds interleave (tus, single, tus, single, …); medians printed.

    .venv/bin/python bench/tus.py

BENCH_TUS_BYTES (default 1 GiB), BENCH_TUS_CHUNK (default 8 MiB), BENCH_TUS_ROUNDS (default 3),
BENCH_TUS_DATABASE_URL (default database `filesvc_tus_bench`, recreated). Not part of `make test`.
"""
import base64
import http.client
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

SIZE = int(os.environ.get("BENCH_TUS_BYTES", str(1 << 30)))
CHUNK = int(os.environ.get("BENCH_TUS_CHUNK", str(8 << 20)))
ROUNDS = int(os.environ.get("BENCH_TUS_ROUNDS", "3"))
DATABASE_URL = os.environ.get("BENCH_TUS_DATABASE_URL", "mysql://root@127.0.0.1:3306/filesvc_tus_bench")
BLOCK = os.urandom(1 << 20)  # the content: this MiB over and over, generated as it is sent
WORK = common.WORK / "tus"


def content(start: int, stop: int):
    """Bytes [start, stop) of the content, in pieces of at most 1 MiB."""
    while start < stop:
        offset = start % len(BLOCK)
        piece = BLOCK[offset: offset + min(len(BLOCK) - offset, stop - start)]
        yield piece
        start += len(piece)


def request(url: str, method: str, path: str, headers: dict, body=None) -> tuple[int, dict, bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        connection.close()


def rss_mib(server: common.Server) -> float:
    total = 0
    for pid in [server.process.pid, *server.workers()]:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def by_tus(url: str, token: str) -> tuple[float, list[float], int]:
    """Seconds for the whole upload, seconds per PATCH, and the file id."""
    auth = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
    started = time.perf_counter()
    status, headers, _ = request(url, "POST", "/file/uploads", {
        **auth, "Upload-Length": str(SIZE), "Upload-Metadata": "filename " + base64.b64encode(b"big.bin").decode()})
    assert status == 201, status
    path = urlsplit(headers["Location"]).path
    chunks = []
    for start in range(0, SIZE, CHUNK):
        stop = min(SIZE, start + CHUNK)
        began = time.perf_counter()
        status, headers, body = request(url, "PATCH", path, {
            **auth, "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(start),
            "Content-Length": str(stop - start)}, content(start, stop))
        assert status == 204, (status, body)
        chunks.append(time.perf_counter() - began)
    return time.perf_counter() - started, chunks, int(headers["X-File-Id"])


def by_post(url: str, token: str) -> tuple[float, int]:
    boundary = "benchboundary7f3c"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body():
        yield head
        yield from content(0, SIZE)
        yield tail

    started = time.perf_counter()
    status, _, data = request(url, "POST", "/file/upload", {
        "Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(head) + SIZE + len(tail))}, body())
    assert status == 201, (status, data)
    return time.perf_counter() - started, json.loads(data)["data"]["id"]


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    common.fresh_database(DATABASE_URL)
    server = common.Server({"DATABASE_URL": DATABASE_URL, "UPLOAD_DIR": str(WORK / "uploads"),
                            "MAX_UPLOAD_BYTES": str(max(SIZE, 1 << 30)), "QUOTA_BYTES": "0"})
    try:
        token = common.call(server.url + "/signup", {"id": "bench@example.com", "password": "bench password 1"})[
            "data"]["access_token"]
        rss_before = rss_mib(server)
        tus_seconds, post_seconds, per_chunk, last_chunk = [], [], [], []
        for _ in range(ROUNDS):
            seconds, chunks, file_id = by_tus(server.url, token)
            tus_seconds.append(seconds)
            per_chunk.append(statistics.median(chunks[:-1]) if len(chunks) > 1 else chunks[0])
            last_chunk.append(chunks[-1])
            common.call(f"{server.url}/file/delete/{file_id}", token=token, method="DELETE")
            seconds, file_id = by_post(server.url, token)
            post_seconds.append(seconds)
            common.call(f"{server.url}/file/delete/{file_id}", token=token, method="DELETE")
        rss_after = rss_mib(server)
    finally:
        server.stop()
    chunks = -(-SIZE // CHUNK)
    tus, post = statistics.median(tus_seconds), statistics.median(post_seconds)
    mb = SIZE / 1e6
    print(f"{SIZE} bytes, {CHUNK}-byte chunks ({chunks} PATCHes), {ROUNDS} interleaved rounds; "
          f"{common.machine()}; commit {common.git_revision()}; {time.strftime('%Y-%m-%d')}")
    print(f"tus:    median {tus:.2f} s = {mb / tus:.0f} MB/s  (rounds: {', '.join(f'{s:.2f}' for s in tus_seconds)})")
    print(f"single: median {post:.2f} s = {mb / post:.0f} MB/s  (rounds: {', '.join(f'{s:.2f}' for s in post_seconds)})")
    print(f"overhead per chunk: {(tus - post) / chunks * 1000:.1f} ms; a middle PATCH takes "
          f"{statistics.median(per_chunk) * 1000:.1f} ms, the completing one {statistics.median(last_chunk) * 1000:.0f} ms "
          "(it reads the whole file back for its SHA-256)")
    print(f"server RSS (master + workers): {rss_before:.0f} MiB before, {rss_after:.0f} MiB after")


if __name__ == "__main__":
    main()
