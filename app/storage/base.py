"""The storage interface: what every backend offers, and the shapes of what it returns."""
import secrets
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Protocol

CHUNK = 1 << 20
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
