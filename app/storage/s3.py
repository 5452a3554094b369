"""File bytes in an S3-compatible object store (AWS S3, SeaweedFS, Ceph, MinIO), behind the interface of local disk.

Objects are named `<prefix>/<key>`; uploads stream as multipart uploads, one part in memory at a time;
any failure to reach the store surfaces as StorageUnavailable (503), never as a hang or a 500.
"""
import contextlib
import hashlib
import io
import logging
import re
from typing import Any, BinaryIO, Iterator, cast
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.errors import InsufficientStorage, StorageUnavailable
from app.storage.base import CHUNK, VARIANT, BlobInfo, ByteStream, DerivedInfo, PartialInfo, StoredBlob, new_key

log = logging.getLogger("app.storage")

MIN_PART_SIZE = 5 << 20  # S3's smallest part but the last
KEY = re.compile(r"^[0-9a-f]{32}$")
UPLOAD_SEPARATOR = "?uploadId="  # unfinished writes are named `<key>?uploadId=<id>`: both are needed to abort one
MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}
DERIVED_DIR = ".derived"  # `<prefix>/.derived/<key>.<variant>`: what was made from a blob (its thumbnails)
PARTIAL_DIR = ".partial"  # `<prefix>/.partial/<id>/`: a partial upload's marker and unaligned tail objects
# Where partial uploads started by earlier versions keep theirs. SeaweedFS keeps its own multipart state in `.uploads`
# folders and leaves every `.uploads/` out of listings (objects there can be read but never listed), so their
# markers and tails were invisible there. Still read, listed and removed, so that uploads under way across the
# upgrade finish and storage-check cleans up after them; no longer written.
LEGACY_PARTIAL_DIR = ".uploads"
MARKER = "key-"  # `key-<blob key>`: the multipart upload on that key belongs to this partial upload
TAIL = "tail-"  # `tail-<start offset>`: the bytes from there on that do not yet fill a part
# `part-<n>`: the ETag of part n as last uploaded. S3 lists only the last upload of a part number; SeaweedFS
# lists each one, and its complete takes whichever ETag it is given, so the last must be known.
PART = "part-"
# Refusals that mean "the store cannot serve us now" (or is misconfigured), not "this request is wrong".
FULL = {"XMinioStorageFull", "InsufficientStorage", "StorageFull", "EntityTooLarge", "QuotaExceeded"}
UNAVAILABLE = {
    "SlowDown", "RequestTimeout", "ServiceUnavailable", "InternalError", "Throttling", "RequestTimeTooSkewed",
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket",
}


def make_client(
    endpoint_url: str | None, access_key: str | None, secret_key: str | None, region: str | None,
    connect_timeout: float, read_timeout: float,
) -> Any:
    """A thread-safe S3 client; unset settings fall back to boto3's own chain (environment, ~/.aws, instance role)."""
    session = boto3.session.Session(
        aws_access_key_id=access_key or None, aws_secret_access_key=secret_key or None, region_name=region or None,
    )
    config = Config(
        # boto3 ≥ 1.36 adds CRC checksums by default, which several S3-compatible servers reject.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        signature_version="s3v4",
        s3={"addressing_style": "path"},  # SeaweedFS, MinIO and Ceph serve buckets by path, not by host name
        # Two retries (three attempts) and bounded socket waits: a store that refuses connections gives 503
        # at once, one that stops answering after about three read timeouts, never a hung request.
        retries={"max_attempts": 2, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=16,
    )
    return session.client("s3", endpoint_url=endpoint_url or None, config=config)


def parse_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` → ("bucket", "some/prefix")."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"not an s3://bucket/prefix URL: {url!r}")
    return parts.netloc, parts.path.strip("/")


@contextlib.contextmanager
def unavailable_on_error(action: str) -> Iterator[None]:
    """Turn the store being unreachable (or refusing us) into StorageUnavailable; let other errors through."""
    try:
        yield
    except BotoCoreError as e:
        log.warning("object store unavailable while %s: %s", action, e)
        raise StorageUnavailable(f"the file storage is unreachable ({type(e).__name__}); retry later") from e
    except ClientError as e:
        if _status(e) == 507 or _code(e) in FULL:
            log.error("object store full while %s: %s", action, e)
            raise InsufficientStorage() from e
        if _status(e) >= 500 or _status(e) == 403 or _code(e) in UNAVAILABLE:
            log.warning("object store refused %s: %s", action, e)
            raise StorageUnavailable(f"the file storage is unavailable ({_code(e)}); retry later") from e
        raise


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _status(e: ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


class ObjectStream(io.RawIOBase):
    """An object's body as a read-only file; close() releases the HTTP connection."""

    def __init__(self, body: Any):
        super().__init__()
        self._body = body

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        with unavailable_on_error("reading an object"):
            return self._body.read(None if size is None or size < 0 else size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3Storage:
    """Blobs as objects `<prefix>/<key>` in one bucket; the bucket must exist (creating it is the operator's job)."""

    def __init__(self, client: Any, bucket: str, prefix: str = "", part_size: int = 8 << 20):
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"S3_PART_SIZE must be at least {MIN_PART_SIZE} bytes (S3's minimum part size)")
        self.client, self.bucket, self.prefix, self.part_size = client, bucket, prefix.strip("/"), part_size

    def name(self, key: str) -> str:
        # Keys are ours (hex from `save`); anything else must not address another object of the bucket.
        if not KEY.match(key):
            raise FileNotFoundError(f"not a storage key: {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    @property
    def _listing_prefix(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def save(self, stream: ByteStream) -> StoredBlob:
        key = new_key()
        name = self.name(key)
        digest, size = hashlib.sha256(), 0
        part = _read_part(stream, self.part_size)
        digest.update(part)
        size += len(part)
        if len(part) < self.part_size:  # the whole file fits in one part: a single PUT, nothing to clean up
            with unavailable_on_error("storing an object"):
                self.client.put_object(Bucket=self.bucket, Key=name, Body=part)
            return StoredBlob(key, size, digest.hexdigest())
        with unavailable_on_error("starting an upload"):
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=name)["UploadId"]
        try:
            parts = []
            while part:
                with unavailable_on_error("uploading a part"):
                    etag = self.client.upload_part(
                        Bucket=self.bucket, Key=name, UploadId=upload_id, PartNumber=len(parts) + 1, Body=part,
                    )["ETag"]
                parts.append({"ETag": etag, "PartNumber": len(parts) + 1})
                part = bytearray()  # let the part go before the next one is read: one part in memory at a time
                part = _read_part(stream, self.part_size)
                digest.update(part)
                size += len(part)
            with unavailable_on_error("completing an upload"):
                self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=name, UploadId=upload_id, MultipartUpload={"Parts": parts},
                )
        except BaseException:
            self._abort(name, upload_id)
            raise
        return StoredBlob(key, size, digest.hexdigest())

    def _abort(self, name: str, upload_id: str) -> None:
        """Drop the parts stored so far; if that fails too, storage-check --repair finds the upload later."""
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
        except (BotoCoreError, ClientError) as e:
            log.warning("could not abort upload %s of %s (storage-check --repair will): %s", upload_id, name, e)

    def open(self, key: str, start: int = 0, stop: int | None = None) -> BinaryIO:
        name = self.name(key)
        ranged = {} if start == 0 and stop is None else {"Range": f"bytes={start}-{'' if stop is None else stop - 1}"}
        try:
            with unavailable_on_error("opening an object"):
                response = self.client.get_object(Bucket=self.bucket, Key=name, **ranged)
        except ClientError as e:
            if _code(e) in MISSING:
                raise FileNotFoundError(key) from None
            raise
        return cast(BinaryIO, ObjectStream(response["Body"]))

    def delete(self, key: str) -> None:
        try:
            name = self.name(key)
        except FileNotFoundError:  # not a key at all: nothing of ours to remove
            return
        with unavailable_on_error("deleting an object"):
            self.client.delete_object(Bucket=self.bucket, Key=name)  # S3 answers 204 for a missing key too

    def exists(self, key: str) -> bool:
        try:
            with unavailable_on_error("looking up an object"):
                self.client.head_object(Bucket=self.bucket, Key=self.name(key))
        except FileNotFoundError:
            return False
        except ClientError as e:
            if _code(e) in MISSING:
                return False
            raise
        return True

    def blobs(self) -> Iterator[BlobInfo]:
        """Every object under the prefix named like a key; other objects there are not ours and are left alone."""
        prefix = self._listing_prefix
        with unavailable_on_error("listing objects"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    key = item["Key"][len(prefix):]
                    if KEY.match(key):
                        yield BlobInfo(key, item["Size"], item["LastModified"].timestamp())

    def unfinished(self) -> Iterator[BlobInfo]:
        """Multipart uploads never completed or aborted (a killed worker's); `modified` is their last activity."""
        prefix = self._listing_prefix
        partial_keys: set[str] | None = None
        with unavailable_on_error("listing uploads"):
            for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    key = upload["Key"][len(prefix):]
                    if not KEY.match(key):
                        continue
                    if partial_keys is None:
                        partial_keys = {name.rpartition("/")[2].partition(MARKER)[2]
                                        for _, name, _, _ in self._partial_objects() if MARKER in name}
                    if key in partial_keys:  # a resumable upload's, alive while its partial upload is
                        continue
                    sizes: dict[int, int] = {}  # by part number: SeaweedFS lists a part written twice twice
                    modified = upload["Initiated"].timestamp()
                    try:
                        for parts in self.client.get_paginator("list_parts").paginate(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"],
                        ):
                            for part in parts.get("Parts", []):
                                sizes[part["PartNumber"]] = max(sizes.get(part["PartNumber"], 0), part["Size"])
                                modified = max(modified, part["LastModified"].timestamp())
                    except ClientError as e:
                        if _code(e) == "NoSuchUpload":  # completed or aborted since the listing
                            continue
                        raise
                    yield BlobInfo(f"{key}{UPLOAD_SEPARATOR}{upload['UploadId']}", sum(sizes.values()), modified)

    def delete_unfinished(self, key: str) -> None:
        blob_key, _, upload_id = key.partition(UPLOAD_SEPARATOR)
        if not upload_id:
            return
        try:
            with unavailable_on_error("aborting an upload"):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.name(blob_key), UploadId=upload_id)
        except ClientError as e:
            if _code(e) != "NoSuchUpload":  # finished or aborted meanwhile
                raise

    # -- derived blobs --

    def derived_name(self, key: str, variant: str = "") -> str:
        """The object of one variant of `key`; with no variant, the prefix of all of them."""
        if variant and not VARIANT.match(variant):
            raise FileNotFoundError(f"not a variant: {variant!r}")
        self.name(key)  # the same check of the key
        return f"{self._listing_prefix}{DERIVED_DIR}/{key}.{variant}"

    def save_derived(self, key: str, variant: str, data: bytes) -> None:
        with unavailable_on_error("storing an object"):
            self.client.put_object(Bucket=self.bucket, Key=self.derived_name(key, variant), Body=data)

    def open_derived(self, key: str, variant: str) -> BinaryIO:
        name = self.derived_name(key, variant)
        try:
            with unavailable_on_error("opening an object"):
                response = self.client.get_object(Bucket=self.bucket, Key=name)
        except ClientError as e:
            if _code(e) in MISSING:
                raise FileNotFoundError(name) from None
            raise
        return cast(BinaryIO, ObjectStream(response["Body"]))

    def delete_derived(self, key: str) -> None:
        try:
            prefix = self.derived_name(key)
        except FileNotFoundError:
            return
        with unavailable_on_error("deleting objects"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    self.client.delete_object(Bucket=self.bucket, Key=item["Key"])

    def derived(self) -> Iterator[DerivedInfo]:
        prefix = f"{self._listing_prefix}{DERIVED_DIR}/"
        with unavailable_on_error("listing objects"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    key, _, variant = item["Key"][len(prefix):].partition(".")
                    if KEY.match(key) and VARIANT.match(variant):
                        yield DerivedInfo(key, variant, item["Size"], item["LastModified"].timestamp())

    # -- partial uploads: a multipart upload of whole parts and the unaligned tail as an object of its own --
    # Part n holds bytes [(n-1)·P, n·P) and `tail-<k·P>` the bytes from k·P on, so the size alone says
    # which objects hold what: any instance can append, and a part written by an attempt never committed
    # is simply written again under the same number.

    def _partial_name(self, pid: str, leaf: str = "", directory: str = PARTIAL_DIR) -> str:
        if not KEY.match(pid):
            raise FileNotFoundError(f"not a partial upload: {pid!r}")
        return f"{self._listing_prefix}{directory}/{pid}/{leaf}"

    def start_partial(self) -> str:
        pid, key = new_key(), new_key()
        with unavailable_on_error("starting an upload"):
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.name(key))["UploadId"]
            self.client.put_object(Bucket=self.bucket, Key=self._partial_name(pid, MARKER + key), Body=b"")
        return f"{pid}:{key}:{self.part_size}:{upload_id}"

    def append_partial(self, ref: str, offset: int, stream: ByteStream) -> int:
        pid, key, part_size, upload_id = _parse_ref(ref)
        done = offset // part_size  # whole parts stored
        part = self._tail(pid, done * part_size, offset - done * part_size)
        while True:
            filled = len(part)
            part += _read_part(stream, part_size - filled)
            if len(part) < part_size:
                break
            uploaded = self._upload_part(key, upload_id, done + 1, part)
            with unavailable_on_error("recording a part"):  # before the new offset can be committed
                self.client.put_object(Bucket=self.bucket, Key=self._partial_name(pid, f"{PART}{done + 1}"),
                                       Body=uploaded["ETag"].encode())
            done += 1
            part = bytearray()
        if part:
            with unavailable_on_error("storing an upload's tail"):
                self.client.put_object(Bucket=self.bucket, Key=self._partial_name(pid, f"{TAIL}{done * part_size}"),
                                       Body=bytes(part))
        return done * part_size + len(part)

    def _tail(self, pid: str, start: int, size: int) -> bytearray:
        if not size:
            return bytearray()
        for directory in (PARTIAL_DIR, LEGACY_PARTIAL_DIR):
            try:
                with unavailable_on_error("reading an upload's tail"):
                    body = self.client.get_object(
                        Bucket=self.bucket, Key=self._partial_name(pid, f"{TAIL}{start}", directory),
                        Range=f"bytes=0-{size - 1}",
                    )["Body"]
                    data = bytearray(body.read())
                break
            except ClientError as e:
                if _code(e) not in MISSING and _code(e) != "InvalidRange":
                    raise
        else:
            raise FileNotFoundError(f"partial upload {pid}: the tail at {start} is gone")
        if len(data) != size:
            raise FileNotFoundError(f"partial upload {pid}: the tail at {start} is short")
        return data

    def _upload_part(self, key: str, upload_id: str, number: int, body: bytearray) -> dict[str, Any]:
        try:
            with unavailable_on_error("uploading a part"):
                etag = self.client.upload_part(
                    Bucket=self.bucket, Key=self.name(key), UploadId=upload_id, PartNumber=number, Body=body,
                )["ETag"]
        except ClientError as e:
            if _code(e) in MISSING:
                raise FileNotFoundError(f"the multipart upload of {key} is gone") from None
            raise
        return {"ETag": etag, "PartNumber": number}

    def finish_partial(self, ref: str, size: int) -> str:
        pid, key, part_size, upload_id = _parse_ref(ref)
        whole, rest = divmod(size, part_size)
        listed: dict[int, list[dict[str, Any]]] = {}
        try:
            with unavailable_on_error("listing parts"):
                for page in self.client.get_paginator("list_parts").paginate(
                    Bucket=self.bucket, Key=self.name(key), UploadId=upload_id,
                ):
                    for item in page.get("Parts", []):
                        if item["PartNumber"] <= whole:
                            listed.setdefault(item["PartNumber"], []).append(item)
        except ClientError as e:
            if _code(e) in MISSING:
                raise FileNotFoundError(f"the multipart upload of {key} is gone") from None
            raise
        parts: dict[int, dict[str, Any]] = {}
        for number, items in listed.items():
            if len({item["ETag"] for item in items}) > 1:  # written more than once, with other bytes
                items = self._last_upload(pid, number, items)
            if items and items[0]["Size"] == part_size:
                parts[number] = {"ETag": items[0]["ETag"], "PartNumber": number}
        if len(parts) != whole:
            raise FileNotFoundError(f"partial upload {pid}: {whole - len(parts)} of its parts are missing")
        if rest:  # the tail becomes the last part (the only one S3 lets be smaller than the minimum)
            parts[whole + 1] = self._upload_part(key, upload_id, whole + 1, self._tail(pid, whole * part_size, rest))
        with unavailable_on_error("completing an upload"):
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=self.name(key), UploadId=upload_id,
                MultipartUpload={"Parts": [parts[number] for number in sorted(parts)]},
            )
        return key

    def _last_upload(self, pid: str, number: int, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Of several uploads of one part number, the one recorded last (the latest one for an upload begun
        before parts were recorded)."""
        try:
            with unavailable_on_error("reading a part's record"):
                recorded = self.client.get_object(
                    Bucket=self.bucket, Key=self._partial_name(pid, f"{PART}{number}"))["Body"].read().decode()
        except ClientError as e:
            if _code(e) not in MISSING:
                raise
            return [max(items, key=lambda item: item["LastModified"])]
        return [item for item in items if item["ETag"] == recorded]

    def drop_partial(self, ref: str) -> None:
        """Abort the multipart upload (if still open) and remove the marker and tails."""
        pid = ref.partition(":")[0]
        names = [name for _, name, _, _ in self._partial_objects(pid)]
        for key in {name.rpartition("/")[2].partition(MARKER)[2] for name in names if MARKER in name}:
            with unavailable_on_error("listing uploads"):
                uploads = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.name(key))
            for upload in uploads.get("Uploads", []):
                if upload["Key"] == self.name(key):
                    self.delete_unfinished(f"{key}{UPLOAD_SEPARATOR}{upload['UploadId']}")
        for name in names:
            with unavailable_on_error("deleting an object"):
                self.client.delete_object(Bucket=self.bucket, Key=name)

    def _partial_objects(self, pid: str = "") -> Iterator[tuple[str, str, int, float]]:
        """(partial upload id, object name, size, modified) of the markers and tails of one or all partial uploads."""
        for directory in (PARTIAL_DIR, LEGACY_PARTIAL_DIR):
            start = len(f"{self._listing_prefix}{directory}/")
            prefix = f"{self._listing_prefix}{directory}/{pid + '/' if pid else ''}"
            with unavailable_on_error("listing objects"):
                for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                    for item in page.get("Contents", []):
                        name = item["Key"]
                        yield name[start:].partition("/")[0], name, item["Size"], item["LastModified"].timestamp()

    def partials(self) -> Iterator[PartialInfo]:
        """One entry per partial upload; `size` counts its tails only (its parts are in the multipart upload)."""
        found: dict[str, tuple[int, float]] = {}
        for pid, name, size, modified in self._partial_objects():
            if KEY.match(pid):
                total, latest = found.get(pid, (0, 0.0))
                counted = size if name.rpartition("/")[2].startswith(TAIL) else 0  # not markers, not records
                found[pid] = (total + counted, max(latest, modified))
        for pid, (size, modified) in sorted(found.items()):
            yield PartialInfo(pid, size, modified)

    def check(self) -> None:
        with unavailable_on_error("checking the bucket"):
            self.client.head_bucket(Bucket=self.bucket)


def _parse_ref(ref: str) -> tuple[str, str, int, str]:
    pid, key, part_size, upload_id = ref.split(":", 3)
    return pid, key, int(part_size), upload_id


def _read_part(stream: ByteStream, size: int) -> bytearray:
    """Exactly `size` bytes, or fewer only at the end of the stream, read into one buffer (no second copy)."""
    part = bytearray(size)
    filled = 0
    with memoryview(part) as view:
        while filled < size:
            chunk = stream.read(min(CHUNK, size - filled))
            if not chunk:
                break
            view[filled:filled + len(chunk)] = chunk
            filled += len(chunk)
    del part[filled:]
    return part
