"""Choosing the file storage by STORAGE_URL, multipart uploads to S3, and exact ranges through gunicorn."""
import errno
import io
import json
import os
import time

import pytest

from app import create_app
from app.storage import LocalStorage
from app.storage.base import PIECE, write_behind
from app.storage.s3 import S3Storage
from tests.conftest import BACKEND_STORAGE, JWT_TEST_SECRET, S3_BUCKET, S3_CREDENTIALS, S3_ONCE, stored_files
from tests.support.api import bearer, sign_up
from tests.support.api import sha
from tests.support.live import get, live_token, multipart, send
from tests.support.api import TUS, created, patch

MIB = 1 << 20


def settings(**overrides) -> dict:
    return {"DATABASE_URL": "sqlite://", "JWT_SECRET": JWT_TEST_SECRET, **overrides}


def test_storage_url_picks_the_backend(tmp_path, s3_server):
    assert isinstance(create_app(settings(UPLOAD_DIR=str(tmp_path / "a"))).extensions["storage"], LocalStorage)
    chosen = create_app(settings(STORAGE_URL=f"file://{tmp_path / 'b b'}".replace(" ", "%20"))).extensions["storage"]
    assert isinstance(chosen, LocalStorage) and chosen.root == (tmp_path / "b b").resolve()
    s3 = create_app(settings(**s3_server.settings("some/prefix/"))).extensions["storage"]
    assert isinstance(s3, S3Storage) and (s3.bucket, s3.prefix) == ("filesvc-test", "some/prefix")


@pytest.mark.parametrize("url", ["ftp://host/x", "s3:/no-bucket", "file://otherhost/x", "file:relative/x", "/plain/path"])
def test_an_unknown_storage_url_refuses_to_start(url):
    with pytest.raises(RuntimeError, match="STORAGE_URL"):
        create_app(settings(STORAGE_URL=url))


def test_a_part_size_below_the_s3_minimum_refuses_to_start(s3_server):
    with pytest.raises(ValueError, match="S3_PART_SIZE"):
        create_app(settings(**s3_server.settings("p"), S3_PART_SIZE=MIB))


@pytest.mark.parametrize(("backend", "storage_kind"), S3_ONCE, indirect=["backend"])
def test_a_file_of_several_parts_round_trips(make_app):
    app = make_app(S3_PART_SIZE=5 * MIB)
    client = app.test_client()
    headers = bearer(sign_up(client)["access_token"])
    content = os.urandom(12 * MIB)  # parts of 5, 5 and 2 MiB
    response = client.post("/file/upload", headers=headers, data={"file": (io.BytesIO(content), "big.bin")})
    assert response.status_code == 201 and response.json["data"]["size"] == len(content)
    url = f"/file/download/{response.json['data']['id']}"
    assert sha(client.get(url, headers=headers).data) == sha(content)
    part = client.get(url, headers={**headers, "Range": f"bytes={5 * MIB - 3}-{10 * MIB + 2}"})
    assert part.status_code == 206 and part.data == content[5 * MIB - 3:10 * MIB + 3]
    [blob] = stored_files(app)
    assert sha(blob.read_bytes()) == sha(content)


@pytest.mark.parametrize(("backend", "storage_kind"), S3_ONCE, indirect=["backend"])
def test_a_missing_bucket_is_503_not_500(make_app, s3_endpoint):
    app = make_app(STORAGE_URL="s3://no-such-bucket/files", AWS_ENDPOINT_URL_S3=s3_endpoint.url, **S3_CREDENTIALS)
    client = app.test_client()
    headers = bearer(sign_up(client)["access_token"])
    response = client.post("/file/upload", headers=headers, data={"file": (io.BytesIO(b"x"), "x.txt")})
    assert response.status_code == 503 and response.json["error"]["code"] == "service_unavailable"
    assert client.get("/health").status_code == 503
    assert client.get("/file/list", headers=headers).status_code == 200


def bucket_names(s3_endpoint, prefix: str) -> list[str]:
    listed = s3_endpoint.client.list_objects_v2(Bucket=S3_BUCKET, Prefix=prefix).get("Contents", [])
    return sorted(item["Key"] for item in listed)


@pytest.mark.parametrize(("backend", "storage_kind"), S3_ONCE, indirect=["backend"])
def test_a_resumable_uploads_marker_and_tail_are_listed_so_storage_check_tells_live_from_orphan(app, client):
    """SeaweedFS leaves every `.uploads/` folder out of listings (its own multipart uploads live there): kept
    there, a live upload's multipart upload looked orphaned and `storage-check --repair` aborted it."""
    headers = bearer(sign_up(client)["access_token"])
    path = created(client, {**headers, **TUS}, 10)
    assert patch(client, {**headers, **TUS}, path, 0, b"12345").status_code == 204
    storage = app.extensions["storage"]
    assert [partial.size for partial in storage.partials()] == [5]  # its tail, the bytes short of a part
    assert [blob for blob in stored_files(app) if blob.unfinished] == []  # its multipart upload is accounted for
    runner = app.test_cli_runner()
    result = runner.invoke(args=["storage-check", "--repair", "--min-age", "0"])
    assert result.exit_code == 0 and "orphan:" not in result.output and "removed:" not in result.output, result.output
    done = patch(client, {**headers, **TUS}, path, 5, b"67890")
    assert done.status_code == 204, done.json
    assert client.get(f"/file/download/{done.headers['X-File-Id']}", headers=headers).data == b"1234567890"
    assert list(storage.partials()) == []


@pytest.mark.parametrize(("backend", "storage_kind"), S3_ONCE, indirect=["backend"])
def test_a_resumable_upload_begun_under_the_old_partial_folder_still_finishes(app, client, s3_endpoint, storage_kind):
    """Marker and tail as versions before `.partial/` kept them, under `.uploads/`: read there, removed after."""
    headers = bearer(sign_up(client)["access_token"])
    path = created(client, {**headers, **TUS}, 10)
    assert patch(client, {**headers, **TUS}, path, 0, b"12345").status_code == 204
    prefix = app.extensions["storage"].prefix
    legacy = []
    for name in bucket_names(s3_endpoint, f"{prefix}/.partial/"):
        legacy.append(name.replace("/.partial/", "/.uploads/"))
        body = s3_endpoint.client.get_object(Bucket=S3_BUCKET, Key=name)["Body"].read()
        s3_endpoint.client.put_object(Bucket=S3_BUCKET, Key=legacy[-1], Body=body)
        s3_endpoint.client.delete_object(Bucket=S3_BUCKET, Key=name)
    assert len(legacy) == 2
    done = patch(client, {**headers, **TUS}, path, 5, b"67890")
    assert done.status_code == 204, done.json
    assert client.get(f"/file/download/{done.headers['X-File-Id']}", headers=headers).data == b"1234567890"
    if storage_kind == "s3":  # listed by AWS S3 and MinIO as by moto, so removed; SeaweedFS never lists them
        assert bucket_names(s3_endpoint, f"{prefix}/.uploads/") == []
    assert stored_files(app) != [] and all(not blob.unfinished for blob in stored_files(app))


@pytest.mark.parametrize(("backend", "storage_kind"), S3_ONCE, indirect=["backend"])
def test_a_part_written_again_counts_with_its_last_bytes(make_app):
    """An append whose new offset was never committed is made again from the old offset, possibly with other
    bytes (the client's file changed): the upload holds the last ones. SeaweedFS lists every upload of a part
    number, the older ones too, where S3 lists only the last; taking any of them mixed two attempts' bytes."""
    storage = make_app(S3_PART_SIZE=5 * MIB).extensions["storage"]
    for _ in range(4):  # the listing's order of the two uploads of part 1 varies
        ref = storage.start_partial()
        first, second = os.urandom(5 * MIB + 10), os.urandom(5 * MIB + 10)
        assert storage.append_partial(ref, 0, io.BytesIO(first)) == len(first)
        assert storage.append_partial(ref, 0, io.BytesIO(second)) == len(second)  # the first one's offset was lost
        key = storage.finish_partial(ref, len(second))
        storage.drop_partial(ref)
        with storage.open(key) as stream:
            assert sha(stream.read()) == sha(second)
    same = storage.start_partial()  # the same bytes twice, as a client resuming after a lost answer sends them
    content = os.urandom(11 * MIB)
    storage.append_partial(same, 0, io.BytesIO(content))
    storage.append_partial(same, 0, io.BytesIO(content))
    key = storage.finish_partial(same, len(content))
    with storage.open(key) as stream:
        assert sha(stream.read()) == sha(content)


@pytest.mark.parametrize(("backend", "storage_kind"), BACKEND_STORAGE, indirect=["backend"])
def test_ranges_through_gunicorn_are_exact(live_server):
    token = live_token(live_server)
    content = os.urandom(3 * MIB + 17)
    head, tail, content_type = multipart(content, "r.bin")
    status, _, body = send(live_server, "POST", "/file/upload", token, [head, tail], content_type)
    assert status == 201
    url = f"/file/download/{json.loads(body)['data']['id']}"
    size = len(content)
    for header, start, end in [
        ("bytes=0-0", 0, 0), ("bytes=1000-2999", 1000, 2999), ("bytes=-10", size - 10, size - 1),
        (f"bytes={MIB}-{2 * MIB}", MIB, 2 * MIB), (f"bytes={size - 5}-{size + 100}", size - 5, size - 1),
    ]:
        status, headers, data = get(live_server, url, token, {"Range": header})
        assert status == 206, header
        assert data == content[start:end + 1], header
        assert headers["Content-Length"] == str(end - start + 1)
        assert headers["Content-Range"] == f"bytes {start}-{end}/{size}"
    status, headers, data = get(live_server, url, token, {"Range": "bytes=0-0", "If-None-Match": f'"{sha(content)}"'})
    assert status == 304 and data == b""


# -- writing behind the reader: a real thread hashes and writes while the body is still being read ------------


class Chunks:
    """A stream answering the given chunks, then b""; `fail_at` raises instead of answering that chunk."""

    def __init__(self, chunks: list[bytes], fail_at: int | None = None):
        self.chunks, self.fail_at, self.reads = list(chunks), fail_at, 0

    def read(self, size: int = -1, /) -> bytes:
        self.reads += 1
        if self.fail_at is not None and self.reads == self.fail_at:
            raise ConnectionResetError("the client went away")
        return self.chunks.pop(0) if self.chunks else b""


def test_write_behind_passes_every_chunk_on_in_order():
    chunks = [os.urandom(n) for n in (MIB, 17, MIB, 3 * MIB, 1, MIB // 2)] * 5
    seen: list[bytes] = []
    assert write_behind(Chunks(chunks), seen.append) == sum(map(len, chunks))
    assert b"".join(seen) == b"".join(chunks)
    assert write_behind(Chunks([]), seen.append) == 0


def test_write_behind_stops_reading_when_writing_fails_and_raises_that_error():
    written: list[bytes] = []

    def store(chunk: bytes) -> None:
        if len(written) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(chunk)

    source = Chunks([b"x" * MIB] * 100)
    with pytest.raises(OSError) as raised:
        write_behind(source, store)
    assert raised.value.errno == errno.ENOSPC
    assert len(written) == 3 and source.reads < 20  # the rest of the body is not read for nothing
    time.sleep(0.05)
    assert len(written) == 3  # nothing is written after the error is raised


def test_write_behind_raises_the_readers_error_after_the_writer_has_finished():
    written: list[bytes] = []

    def store(chunk: bytes) -> None:
        time.sleep(0.01)
        written.append(chunk)

    with pytest.raises(ConnectionResetError):
        write_behind(Chunks([b"y" * MIB] * 10, fail_at=6), store)
    # The batch being written when the reader failed is finished before the error reaches the caller, who
    # then removes what was written: nothing may still be writing.
    done = list(written)
    time.sleep(0.05)
    assert written == done and len(b"".join(written)) <= 5 * MIB


def test_write_behind_gives_a_slow_body_to_the_writer_piece_by_piece():
    """A body that trickles in is written as it arrives, not gathered up to a MiB in memory first."""
    seen: list[bytes] = []
    pieces = [os.urandom(PIECE) for _ in range(8)]

    class Slow(Chunks):
        def read(self, size: int = -1, /) -> bytes:
            time.sleep(0.02)  # longer than writing a piece takes
            return super().read(size)

    assert write_behind(Slow(pieces), seen.append) == 8 * PIECE
    assert b"".join(seen) == b"".join(pieces) and max(map(len, seen)) <= 2 * PIECE


@pytest.mark.parametrize(("backend", "storage_kind"), BACKEND_STORAGE, indirect=["backend"])
def test_files_past_several_writeback_steps_are_stored_whole(live_server, client):
    """Uploads long enough that their disk writes start while they arrive: every byte, once, in order."""
    token = live_token(live_server)
    content = os.urandom(21 * MIB + 5)
    head, tail, content_type = multipart(content, "long.bin")
    status, _, body = send(live_server, "POST", "/file/upload", token, [head, tail], content_type)
    assert status == 201
    stored = json.loads(body)["data"]
    assert stored["size"] == len(content) and stored["sha256"] == sha(content)
    assert get(live_server, f"/file/download/{stored['id']}", token)[2] == content

    # A resumable upload whose chunks each span several steps, appended to one file.
    headers = {**bearer(token), **TUS}
    path = created(client, headers, len(content), "long-tus.bin")
    for start in range(0, len(content), 17 * MIB):
        response = patch(client, headers, path, start, content[start:start + 17 * MIB])
        assert response.status_code == 204
    file_id = response.headers["X-File-Id"]  # the last chunk completes the upload
    assert client.get(f"/file/download/{file_id}", headers=bearer(token)).data == content
