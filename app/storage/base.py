"""The storage interface: what every backend offers, and the shapes of what it returns."""
import queue
import secrets
import threading
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator, Protocol

CHUNK = 1 << 20
# Chunks read ahead of the writing thread: at most this many MiB more per upload in flight.
WRITE_BEHIND_DEPTH = 4
KEY_LENGTH = 32  # hex characters: 128 random bits


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


@dataclass(frozen=True)
class PartialInfo:
    ref: str  # what `start_partial` returned, or enough of it to drop the partial upload
    size: int
    modified: float  # seconds since the epoch: its last write


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

    # A partial upload grows by appends that may come from any instance, and becomes a blob when complete.
    # Its state between requests is its size alone, which the caller keeps (in the database).

    def start_partial(self) -> str:
        """A new, empty partial upload; the reference names it for the other calls (at most 255 characters)."""
        ...

    def append_partial(self, ref: str, offset: int, stream: ByteStream) -> int:
        """Write `stream` to its end at `offset` (bytes past `offset` from an attempt never committed are
        dropped) and return the new size, every byte of it durable. On an error, the partial upload is
        as it was at `offset`. FileNotFoundError if its bytes up to `offset` are gone.
        """
        ...

    def finish_partial(self, ref: str, size: int) -> str:
        """Make the first `size` bytes a blob and return its key; `drop_partial` cleans up afterwards."""
        ...

    def drop_partial(self, ref: str) -> None:
        """Remove whatever the partial upload still holds; a missing one is not an error."""
        ...

    def partials(self) -> Iterator[PartialInfo]:
        """Every partial upload in storage, whether or not anything still refers to it."""
        ...

    def check(self) -> None:
        """Raise if the storage cannot be reached right now."""
        ...


def new_key() -> str:
    return secrets.token_hex(KEY_LENGTH // 2)


def write_behind(stream: ByteStream, consume: Callable[[bytes], None], depth: int = WRITE_BEHIND_DEPTH) -> int:
    """Read `stream` to its end and `consume` every chunk, in order; the number of bytes read.

    From the second chunk on, `consume` runs on a thread of its own while this one reads the next chunk:
    reading is Python (the server's body reader, the multipart parser) and holds the GIL; hashing and
    writing a chunk of a MiB release it, so on two cores the upload takes about the longer of the two,
    not their sum. A body of one chunk (most files) starts no thread. An error on either side stops both
    and is raised here, the reader's first.
    """
    first = stream.read(CHUNK)
    if not first:
        return 0
    chunk = stream.read(CHUNK)
    consume(first)
    if not chunk:
        return len(first)
    size = len(first)
    chunks: "queue.Queue[bytes | None]" = queue.Queue(maxsize=depth)
    failed: list[BaseException] = []

    def work() -> None:
        while (item := chunks.get()) is not None:
            if not failed:  # after a failure, only drain, so the reader never blocks on a full queue
                try:
                    consume(item)
                except BaseException as e:  # raised on the reading thread below
                    failed.append(e)

    worker = threading.Thread(target=work, name="write-behind", daemon=True)
    worker.start()
    try:
        while chunk and not failed:
            chunks.put(chunk)
            size += len(chunk)
            chunk = stream.read(CHUNK)
    finally:
        chunks.put(None)
        worker.join()
    if failed:
        raise failed[0]
    return size
