"""Where file bytes live: a small interface and the local-directory backend behind it."""
import hashlib
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Protocol

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

    def open(self, key: str) -> BinaryIO:
        """A readable, seekable binary stream; FileNotFoundError if the key is not stored."""
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
        key = secrets.token_hex(KEY_LENGTH // 2)
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

    def open(self, key: str) -> BinaryIO:
        return open(self.path(key), "rb")

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
    url = app.config.get("STORAGE_URL") or ""
    if url:
        raise RuntimeError(f"STORAGE_URL={url!r} is not supported yet; leave it unset to store files in UPLOAD_DIR")
    app.extensions["storage"] = LocalStorage(app.config["UPLOAD_DIR"])


def get_storage() -> Storage:
    return current_app.extensions["storage"]
