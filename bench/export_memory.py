"""The account export's memory: a user with one big file (BENCH_EXPORT_BYTES, default 1 GiB) downloads
`/user/export` through gunicorn while the workers' RSS is sampled every 10 ms. Prints the zip's size and
speed, whether its bytes match, and the largest RSS growth of the server during the download."""
import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import WORK, Server, fresh_database, git_revision, machine  # noqa: E402
from bench.files_bench import PeakRss, make_source  # noqa: E402

SIZE = int(os.environ.get("BENCH_EXPORT_BYTES", str(1 << 30)))


def main() -> None:
    fresh_database()
    server = Server({"MAX_UPLOAD_BYTES": str(SIZE * 2), "QUOTA_BYTES": "0"})
    try:
        source = WORK / "export-source.bin"
        make_source(source, SIZE)
        token = json.loads(subprocess.run(
            ["curl", "-s", f"{server.url}/signup", "-H", "Content-Type: application/json",
             "-d", json.dumps({"id": "export@example.com", "password": "export bench password"})],
            capture_output=True, check=True).stdout)["data"]["access_token"]
        subprocess.run(["curl", "-s", "-o", "/dev/null", "-H", f"Authorization: Bearer {token}",
                        "-F", f"file=@{source}", f"{server.url}/file/upload"], check=True)
        target = WORK / "export.zip"
        with PeakRss(server.workers()) as peak:
            started = time.perf_counter()
            subprocess.run(["curl", "-s", "-o", str(target), "-H", f"Authorization: Bearer {token}",
                            f"{server.url}/user/export"], check=True)
            seconds = time.perf_counter() - started
        archive = zipfile.ZipFile(target)
        name = next(n for n in archive.namelist() if n.startswith("files/"))
        digest = hashlib.sha256()
        with archive.open(name) as stored:
            while piece := stored.read(1 << 20):
                digest.update(piece)
        expected = hashlib.sha256()
        with open(source, "rb") as original:
            while piece := original.read(1 << 20):
                expected.update(piece)
        print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()}, git {git_revision()}")
        print(f"GET /user/export with one {SIZE / 2**20:.0f} MiB file: zip {target.stat().st_size / 2**20:.1f} MiB "
              f"in {seconds:.2f} s ({target.stat().st_size / seconds / 1e6:.0f} MB/s); bytes match: "
              f"{digest.hexdigest() == expected.hexdigest()}; server RSS growth during it: {peak.growth_mib:.1f} MiB")
        target.unlink()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
