"""Blobs as files in a local directory."""
import fcntl
import hashlib
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO, Iterator, cast

from app import threads
from app.storage.base import (
    KEY_LENGTH, VARIANT, BlobInfo, ByteStream, DerivedInfo, PartialInfo, StoredBlob, new_key, write_behind
)

TMP_DIR = ".tmp"
PARTIAL_DIR = ".uploads"
DERIVED_DIR = ".derived"


class LocalStorage:
    """Blobs as files under `root/<2 hex>/<key>`; writes go to `root/.tmp` and are renamed into place."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()
        self.tmp = self.root / TMP_DIR
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.partial_dir = self.root / PARTIAL_DIR
        self.partial_dir.mkdir(exist_ok=True)
        self.derived_dir = self.root / DERIVED_DIR

    def path(self, key: str) -> Path:
        # Keys are ours (hex from `save`), but a key read from anywhere must still not leave the root.
        if len(key) != KEY_LENGTH or not all(c in "0123456789abcdef" for c in key):
            raise FileNotFoundError(f"not a storage key: {key!r}")
        return self.root / key[:2] / key

    def save(self, stream: ByteStream) -> StoredBlob:
        key = new_key()
        digest = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, suffix=".part")
        try:
            # Held while this process writes: a .part whose lock anyone can take is a dead writer's leftover.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with open(fd, "wb") as out:
                size = write_behind(stream, WriteBack(out, digest=digest).write)
                out.flush()
                # The database row that will point here is committed durably; the bytes must be too.
                threads.blocking(os.fsync, out.fileno())
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
        for blob in _files(self.tmp):
            yield replace(blob, abandoned=_unlocked(self.tmp / blob.key))

    def delete_unfinished(self, key: str) -> None:
        if "/" not in key and key.endswith(".part"):
            (self.tmp / key).unlink(missing_ok=True)

    # -- derived blobs: `root/.derived/<2 hex>/<key>.<variant>`, written like blobs (locked in .tmp, renamed) --

    def derived_path(self, key: str, variant: str) -> Path:
        if not VARIANT.match(variant):
            raise FileNotFoundError(f"not a variant: {variant!r}")
        self.path(key)  # the same check of the key
        return self.derived_dir / key[:2] / f"{key}.{variant}"

    def save_derived(self, key: str, variant: str, data: bytes) -> None:
        final = self.derived_path(key, variant)
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, suffix=".part")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with open(fd, "wb") as out:
                out.write(data)
                out.flush()
                # A cache, but a torn one would be served for good: its bytes are on disk before its name.
                threads.blocking(os.fsync, out.fileno())
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_name, final)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def open_derived(self, key: str, variant: str) -> BinaryIO:
        return open(self.derived_path(key, variant), "rb")

    def delete_derived(self, key: str) -> None:
        try:
            self.path(key)
        except FileNotFoundError:
            return
        for item in (self.derived_dir / key[:2]).glob(f"{key}.*"):
            item.unlink(missing_ok=True)

    def derived(self) -> Iterator[DerivedInfo]:
        if not self.derived_dir.is_dir():
            return
        for entry in sorted(self.derived_dir.iterdir()):
            if entry.is_dir():
                for blob in _files(entry):
                    key, _, variant = blob.key.partition(".")
                    yield DerivedInfo(key, variant, blob.size, blob.modified)

    # -- partial uploads: an append-only file `root/.uploads/<ref>`, linked into place when complete --

    def partial_path(self, ref: str) -> Path:
        if len(ref) != KEY_LENGTH or not all(c in "0123456789abcdef" for c in ref):
            raise FileNotFoundError(f"not a partial upload: {ref!r}")
        return self.partial_dir / ref

    def start_partial(self) -> str:
        ref = new_key()
        # Readable by the service's user only, like every stored blob (mkstemp's 0600); a finished upload
        # becomes its file as a second name of these same bytes, so it keeps this mode.
        os.close(os.open(self.partial_path(ref), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        _fsync_dir(self.partial_dir)
        return ref

    def append_partial(self, ref: str, offset: int, stream: ByteStream) -> int:
        with open(self.partial_path(ref), "r+b") as out:
            if os.fstat(out.fileno()).st_size < offset:
                raise FileNotFoundError(f"partial upload {ref} has lost bytes before {offset}")
            out.truncate(offset)  # what an attempt never committed left behind
            out.seek(offset)
            try:
                size = offset + write_behind(stream, WriteBack(out, start=offset).write)
                out.flush()
                threads.blocking(os.fsync, out.fileno())
            except BaseException:
                out.truncate(offset)
                raise
        return size

    def finish_partial(self, ref: str, size: int) -> str:
        source = self.partial_path(ref)
        if source.stat().st_size != size:
            raise FileNotFoundError(f"partial upload {ref} does not hold {size} bytes")
        key = new_key()
        final = self.path(key)
        final.parent.mkdir(exist_ok=True)
        # A second name for the same bytes, not a move: until the caller commits, the upload is intact.
        os.link(source, final)
        _fsync_dir(final.parent)
        return key

    def drop_partial(self, ref: str) -> None:
        try:
            self.partial_path(ref).unlink(missing_ok=True)
        except FileNotFoundError:
            pass

    def partials(self) -> Iterator[PartialInfo]:
        for blob in _files(self.partial_dir):
            yield PartialInfo(blob.key, blob.size, blob.modified)

    def check(self) -> None:
        if not os.access(self.tmp, os.W_OK | os.X_OK):
            raise OSError(f"{self.tmp} is not a writable directory")


# Bytes written between two starts of their write to disk.
WRITEBACK_EVERY = 8 << 20


class WriteBack:
    """Writes chunks to `out` (and into `digest`), and starts the disk write of every WRITEBACK_EVERY bytes
    as soon as they are written, so the fsync before the commit waits for the last few MiB, not the whole file.

    posix_fadvise(POSIX_FADV_DONTNEED) on Linux starts writing dirty pages back without waiting for it, and
    drops the pages already clean: an upload does not push other files out of the page cache (the gain is in
    bench/README.md, "Writeback while an upload arrives"). Where there is no posix_fadvise (macOS), the fsync
    does all of it.
    """

    def __init__(self, out: BinaryIO, digest: "hashlib._Hash | None" = None, start: int = 0):
        self.out, self.digest = out, digest
        self.written = self.started = start

    def write(self, chunk: bytes) -> None:
        if self.digest is not None:
            self.digest.update(chunk)
        self.out.write(chunk)
        self.written += len(chunk)
        if self.written - self.started >= WRITEBACK_EVERY and hasattr(os, "posix_fadvise"):
            self.out.flush()
            os.posix_fadvise(self.out.fileno(), self.started, self.written - self.started, os.POSIX_FADV_DONTNEED)
            self.started = self.written


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


def _unlocked(path: Path) -> bool:
    """Whether no process holds the write lock of `path` (see LocalStorage.save)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    threads.blocking(_fsync_dir_now, path)


def _fsync_dir_now(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
