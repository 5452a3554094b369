"""The storage interface: what every backend offers, and the shapes of what it returns."""
import re
import secrets
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator, Protocol

from app import threads
from app.threads import Pending

CHUNK = 1 << 20
# One read of a request body: what a slow client's upload holds in memory at most while it trickles in.
PIECE = 64 << 10
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
    abandoned: bool = False  # an unfinished write known to have no writer left (its process died)


@dataclass(frozen=True)
class DerivedInfo:
    key: str  # the blob it was made from
    variant: str
    size: int
    modified: float  # seconds since the epoch


# A derived blob's variant: a short name of our own ("thumb-256.webp"), never a client's.
VARIANT = re.compile(r"^[a-z0-9][a-z0-9.-]{0,31}$")


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

    # Derived blobs are made from a blob (its thumbnails) and named by the blob's key and a variant, apart from
    # the blobs themselves: `blobs()` never lists them. They go with their blob (`delete_derived`), and one
    # whose blob no row points at any more is found by `derived()`.

    def save_derived(self, key: str, variant: str, data: bytes) -> None:
        """Store (or overwrite) the variant of `key`, whole or not at all."""
        ...

    def open_derived(self, key: str, variant: str) -> BinaryIO:
        """The variant's bytes; FileNotFoundError if it was never made (or was removed)."""
        ...

    def delete_derived(self, key: str) -> None:
        """Remove every variant of `key`; none is not an error."""
        ...

    def derived(self) -> Iterator[DerivedInfo]:
        """Every derived blob in storage, whether or not its blob still exists."""
        ...

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


def write_behind(stream: ByteStream, consume: Callable[[bytes], None], batch_max: int = CHUNK) -> int:
    """Read `stream` to its end and `consume` every byte, in order; the number of bytes read.

    `consume` (hashing and writing) runs on a real thread (app.threads) while this one reads on: reading a
    request body is Python and the event loop's, hashing and writing release the GIL. What arrives while
    one batch is being consumed becomes the next batch, up to `batch_max`: a fast upload is consumed in
    batches of a MiB, a slow one piece by piece as it arrives, so a slow client never has more than a
    piece of its body held in memory. An error on either side stops both and is raised here.
    """
    size = 0
    batch: list[bytes] = []
    batched = 0
    pending: Pending | None = None
    try:
        while piece := stream.read(PIECE):
            size += len(piece)
            batch.append(piece)
            batched += len(piece)
            if pending is None or pending.ready() or batched >= batch_max:
                if pending is not None:
                    pending.get()  # raises what consuming the batch before raised
                pending = threads.start(consume, b"".join(batch))
                batch, batched = [], 0
        if pending is not None:
            pending.get()
            pending = None
        if batch:
            consume(b"".join(batch))
    finally:
        if pending is not None:  # the reader failed: the writer must be done before the caller cleans up
            try:
                pending.get()
            except BaseException:
                pass
    return size
