"""Read one file part out of a multipart/form-data body as a stream, without spooling the body anywhere."""
import re
from typing import Iterator

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import NEED_DATA, Data, Epilogue, Field, File, MultipartDecoder, State

from app.errors import ValidationError
from app.storage.base import ByteStream

# What one read of the request body asks for: a slow client's upload holds no more than this while it trickles in.
READ_SIZE = 64 << 10
# Part headers and the preamble are buffered until their end is seen; real clients need a few hundred bytes.
# The limit holds for all of them in the body together, so many parts cannot add up to more.
HEADER_LIMIT = 16 * 1024
MAX_PARTS = 100
# RFC 2046 §5.1.1: 1 to 70 of these characters, not ending in a space.
# RFC 2046's characters. Its 70-character cap is not enforced: clients exceed it (werkzeug's own test client
# does, now and then), and a longer plain-ASCII boundary is matched just as well.
BOUNDARY_MAX = 200
BOUNDARY = re.compile(rf"[0-9A-Za-z'()+_,\-./:=? ]{{0,{BOUNDARY_MAX - 1}}}[0-9A-Za-z'()+_,\-./:=?]")
EXTENDED_BOUNDARY = re.compile(r";\s*boundary\*", re.IGNORECASE)


def boundary_of(content_type: str, field: str) -> bytes:
    """The boundary of a multipart Content-Type; 400 on `field` unless it is one RFC 2046 allows.

    werkzeug decodes an RFC 2231 `boundary*=UTF-8''…` into any characters, and anything but plain
    ASCII cannot be matched against the body's bytes; both are refused before the body is read.
    """
    if EXTENDED_BOUNDARY.search(content_type):
        raise ValidationError.field(field, "the multipart boundary must be a plain boundary=, not boundary*=")
    boundary = parse_options_header(content_type)[1].get("boundary", "")
    if not boundary and "boundary" not in content_type.lower():
        raise ValidationError.field(field, "the multipart Content-Type has no boundary")
    if not BOUNDARY.fullmatch(boundary):  # werkzeug gives "" for a value it cannot read
        raise ValidationError.field(
            field, f"the multipart boundary must be 1 to {BOUNDARY_MAX} ASCII letters, digits or '()+_,-./:=? "
                   "(RFC 2046)")
    return boundary.encode("ascii")


FIELD_MAX = 1024  # bytes of a small field read beside the file (the `sha256` part)


class Fields:
    """Small form fields named in `wanted`, collected as the body is read: before the file part, and after
    it once the file has been read to its end. Other parts are skipped."""

    def __init__(self, wanted: tuple[str, ...]):
        self.wanted = wanted
        self.values: dict[str, bytes] = {}
        self._current: str | None = None

    def start(self, event: File | Field) -> None:
        self._current = event.name if event.name in self.wanted else None
        if self._current is None:
            return
        if self._current in self.values:
            raise ValidationError.field(self._current, "sent more than once")
        self.values[self._current] = b""

    def add(self, data: bytes) -> None:
        if self._current is None:
            return
        value = self.values[self._current] + data
        if len(value) > FIELD_MAX:
            raise ValidationError.field(self._current, f"longer than {FIELD_MAX} bytes")
        self.values[self._current] = value


class FilePart:
    """The bytes of the first part named `field`, read on demand from the request body."""

    def __init__(self, filename: str, chunks: Iterator[bytes], fields: Fields):
        self.filename = filename
        self._chunks = chunks
        self._buffer = b""
        self._fields = fields

    @property
    def fields(self) -> dict[str, bytes]:
        """The wanted fields sent so far: all of them once `read` has returned b""."""
        return self._fields.values

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


def open_file_part(source: ByteStream, boundary: bytes, field: str = "file", wanted: tuple[str, ...] = ()
                   ) -> FilePart | None:
    """Skip to the part named `field` and return a reader of its bytes; None if the body has no such part.

    Fields named in `wanted` are collected on the way, and after the part when it has been read to its end.
    """
    events = _events(source, MultipartDecoder(boundary, max_parts=MAX_PARTS))
    fields = Fields(wanted)
    for event in events:
        if isinstance(event, (File, Field)):
            if event.name == field:
                filename = event.filename if isinstance(event, File) else ""
                return FilePart(filename, _part_data(events, fields), fields)
            fields.start(event)
        elif isinstance(event, Data):
            fields.add(event.data)
        elif isinstance(event, Epilogue):
            return None
    return None


def _part_data(events: Iterator, fields: Fields) -> Iterator[bytes]:
    for event in events:
        if isinstance(event, Data):
            if event.data:
                yield event.data
            if not event.more_data:
                break
    _collect_rest(events, fields)


def _collect_rest(events: Iterator, fields: Fields) -> None:
    """Read the parts after the file to the closing boundary, keeping the wanted fields."""
    for event in events:
        if isinstance(event, (File, Field)):
            fields.start(event)
        elif isinstance(event, Data):
            fields.add(event.data)


def _events(source: ByteStream, decoder: MultipartDecoder) -> Iterator:
    ended = False
    header_bytes = 0  # preamble, boundary lines and part headers taken so far
    while True:
        buffered = len(decoder.buffer)
        try:
            event = decoder.next_event()
        except ValueError as e:
            why = "the multipart body ended early" if ended else f"malformed multipart body: {e}"
            raise ValidationError.field("file", why) from None
        except RequestEntityTooLarge:  # werkzeug's answer to more than max_parts parts: the body is not too large
            raise ValidationError.field("file", f"the multipart body has more than {MAX_PARTS} parts") from None
        if event is NEED_DATA:
            if decoder.state == State.EPILOGUE:  # past the closing boundary: no part follows, the rest is not read
                yield Epilogue(data=b"")
                return
            # Outside part data the decoder buffers until it finds a boundary or a blank line.
            if decoder.state in (State.PREAMBLE, State.PART) and header_bytes + len(decoder.buffer) > HEADER_LIMIT:
                raise _headers_too_long()
            chunk = source.read(READ_SIZE)
            ended = not chunk
            decoder.receive_data(chunk or None)
            continue
        if not isinstance(event, Data):
            header_bytes += buffered - len(decoder.buffer)
            if header_bytes > HEADER_LIMIT:
                raise _headers_too_long()
        yield event
        if isinstance(event, Epilogue):
            return


def _headers_too_long() -> ValidationError:
    return ValidationError.field("file", f"multipart headers are too long (at most {HEADER_LIMIT} bytes in all)")
