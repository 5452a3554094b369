"""Where file bytes live: a small interface and the local-directory backend behind it."""
import hashlib
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Protocol, cast
from urllib.parse import unquote, urlsplit

from flask import Flask, current_app

CHUNK = 1 << 20
KEY_LENGTH = 32  # hex characters: 128 random bits
TMP_DIR = ".tmp"


class ByteStream(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class StoredBlob:
    key: str
    size: int
    sha256: str


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    modified: float  # seconds since the epoch


class Storage(Protocol):
    """Blobs are immutable: a key is written once by `save`, read by `open`, removed by `delete`."""

    def save(self, stream: ByteStream) -> StoredBlob:
        """Read `stream` to its end in chunks; on any error nothing of it stays stored."""
        ...

    def open(self, key: str, start: int = 0, stop: int | None = None) -> BinaryIO:
        """A readable binary stream of bytes [start, stop) (to the end if None); FileNotFoundError if not stored."""
        ...

    def delete(self, key: str) -> None:
        """Remove the blob; a missing key is not an error."""
        ...

    def exists(self, key: str) -> bool: ...

    def blobs(self) -> Iterator[BlobInfo]:
        """Every stored blob."""
        ...

    def unfinished(self) -> Iterator[BlobInfo]:
        """Writes in progress, or cut short by a crash; `key` names the write, not a blob."""
        ...

    def delete_unfinished(self, key: str) -> None: ...

    def check(self) -> None:
        """Raise if the storage cannot be reached right now."""
        ...


def new_key() -> str:
    return secrets.token_hex(KEY_LENGTH // 2)


class LocalStorage:
    """Blobs as files under `root/<2 hex>/<key>`; writes go to `root/.tmp` and are renamed into place."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()
        self.tmp = self.root / TMP_DIR
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        # Keys are ours (hex from `save`), but a key read from anywhere must still not leave the root.
        if len(key) != KEY_LENGTH or not all(c in "0123456789abcdef" for c in key):
            raise FileNotFoundError(f"not a storage key: {key!r}")
        return self.root / key[:2] / key

    def save(self, stream: ByteStream) -> StoredBlob:
        key = new_key()
        digest, size = hashlib.sha256(), 0
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, suffix=".part")
        try:
            with open(fd, "wb") as out:
                while chunk := stream.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                # The database row that will point here is committed durably; the bytes must be too.
                os.fsync(out.fileno())
            final = self.path(key)
            final.parent.mkdir(exist_ok=True)
            os.replace(tmp_name, final)
            _fsync_dir(final.parent)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return StoredBlob(key, size, digest.hexdigest())

    def open(self, key: str, start: int = 0, stop: int | None = None) -> BinaryIO:
        file = open(self.path(key), "rb")
        if start == 0 and stop is None:
            return file
        return cast(BinaryIO, FileSlice(file, start, stop))

    def delete(self, key: str) -> None:
        try:
            self.path(key).unlink(missing_ok=True)
        except FileNotFoundError:  # not a key at all: nothing of ours to remove
            pass

    def exists(self, key: str) -> bool:
        try:
            return self.path(key).is_file()
        except FileNotFoundError:
            return False

    def blobs(self) -> Iterator[BlobInfo]:
        for entry in sorted(self.root.iterdir()):
            if entry.is_dir() and len(entry.name) == 2:
                yield from _files(entry)

    def unfinished(self) -> Iterator[BlobInfo]:
        yield from _files(self.tmp)

    def delete_unfinished(self, key: str) -> None:
        if "/" not in key and key.endswith(".part"):
            (self.tmp / key).unlink(missing_ok=True)

    def check(self) -> None:
        if not os.access(self.tmp, os.W_OK | os.X_OK):
            raise OSError(f"{self.tmp} is not a writable directory")


class FileSlice:
    """Bytes [start, stop) of an open file.

    `fileno` lets gunicorn sendfile(2) the slice: it sends Content-Length bytes from the file's offset.
    """

    def __init__(self, file: BinaryIO, start: int, stop: int | None):
        file.seek(start)
        self._file = file
        self._left = (stop - start) if stop is not None else None

    def read(self, size: int | None = -1, /) -> bytes:
        if self._left is None:
            return self._file.read(size)
        if size is None or size < 0 or size > self._left:
            size = self._left
        data = self._file.read(size)
        self._left -= len(data)
        return data

    def fileno(self) -> int:
        return self._file.fileno()

    def close(self) -> None:
        self._file.close()


def _files(directory: Path) -> Iterator[BlobInfo]:
    for item in directory.iterdir():
        try:
            stat = item.stat()
        except FileNotFoundError:  # removed while we looked
            continue
        if item.is_file():
            yield BlobInfo(item.name, stat.st_size, stat.st_mtime)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def init_app(app: Flask) -> None:
    app.extensions["storage"] = storage_from_config(app.config)


def storage_from_config(config: Any) -> Storage:
    """STORAGE_URL unset: UPLOAD_DIR; `file:///path`: that directory; `s3://bucket/prefix`: an object store."""
    url = config.get("STORAGE_URL") or ""
    parts = urlsplit(url)
    if not url:
        return LocalStorage(config["UPLOAD_DIR"])
    if parts.scheme == "file" and parts.netloc in ("", "localhost") and parts.path.startswith("/"):
        return LocalStorage(unquote(parts.path))
    if parts.scheme == "s3" and parts.netloc:
        from app.storage_s3 import S3Storage, make_client, parse_url  # boto3 is imported only when used

        bucket, prefix = parse_url(url)
        client = make_client(
            config.get("AWS_ENDPOINT_URL_S3"), config.get("AWS_ACCESS_KEY_ID"), config.get("AWS_SECRET_ACCESS_KEY"),
            config.get("AWS_DEFAULT_REGION"), float(config["STORAGE_CONNECT_TIMEOUT"]),
            float(config["STORAGE_READ_TIMEOUT"]),
        )
        return S3Storage(client, bucket, prefix, int(config["S3_PART_SIZE"]))
    raise RuntimeError(
        f"STORAGE_URL={url!r} is not supported: use s3://bucket/prefix, file:///absolute/path, "
        "or leave it unset to store files in UPLOAD_DIR"
    )


def get_storage() -> Storage:
    return current_app.extensions["storage"]
