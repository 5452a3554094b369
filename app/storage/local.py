"""Blobs as files in a local directory."""
import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator, cast

from app.storage.base import CHUNK, KEY_LENGTH, BlobInfo, ByteStream, StoredBlob, new_key

TMP_DIR = ".tmp"


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
