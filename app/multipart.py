"""Read one file part out of a multipart/form-data body as a stream, without spooling the body anywhere."""
from typing import Iterator

from werkzeug.sansio.multipart import NEED_DATA, Data, Epilogue, Field, File, MultipartDecoder

from app.errors import ValidationError
from app.storage.base import ByteStream

CHUNK = 1 << 20
# Part headers and the preamble are buffered until their end is seen; real clients need a few hundred bytes.
HEADER_LIMIT = 64 * 1024
MAX_PARTS = 100


class FilePart:
    """The bytes of the first part named `field`, read on demand from the request body."""

    def __init__(self, filename: str, chunks: Iterator[bytes]):
        self.filename = filename
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1, /) -> bytes:
        """Up to `size` bytes (fewer is not the end; b"" is)."""
        if size is None or size < 0:
            data, self._buffer = self._buffer + b"".join(self._chunks), b""
            return data
        if not self._buffer:
            chunk = next(self._chunks, b"")
            if len(chunk) <= size:  # the common case: hand the decoder's chunk on without copying it
                return chunk
            self._buffer = chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def open_file_part(source: ByteStream, boundary: bytes, field: str = "file") -> FilePart | None:
    """Skip to the part named `field` and return a reader of its bytes; None if the body has no such part."""
    events = _events(source, MultipartDecoder(boundary, max_parts=MAX_PARTS))
    for event in events:
        if isinstance(event, (File, Field)) and event.name == field:
            return FilePart(event.filename if isinstance(event, File) else "", _part_data(events))
        if isinstance(event, Epilogue):
            return None
    return None


def _part_data(events: Iterator) -> Iterator[bytes]:
    for event in events:
        if isinstance(event, Data):
            if event.data:
                yield event.data
            if not event.more_data:
                return


def _events(source: ByteStream, decoder: MultipartDecoder) -> Iterator:
    ended = False
    while True:
        try:
            event = decoder.next_event()
        except ValueError as e:
            why = "the multipart body ended early" if ended else f"malformed multipart body: {e}"
            raise ValidationError.field("file", why) from None
        if event is NEED_DATA:
            chunk = source.read(CHUNK)
            ended = not chunk
            decoder.receive_data(chunk or None)
            # Outside part data the decoder buffers until it finds a boundary or a blank line.
            if len(decoder.buffer) > HEADER_LIMIT + CHUNK:
                raise ValidationError.field("file", "multipart headers are too long")
            continue
        yield event
        if isinstance(event, Epilogue):
            return
