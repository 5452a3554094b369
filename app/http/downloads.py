"""HTTP answers that carry a file's bytes, shared by the bearer download and file links: the one byte range
a request asks for, preconditions, 304/206/416, and the headers of SPEC §4 and §7 (and their OpenAPI declarations).
"""
import base64
import hashlib
import unicodedata
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Callable
from urllib.parse import quote

from flask import Response, request
from werkzeug.datastructures import ContentRange
from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.http import dump_options_header, parse_range_header
from werkzeug.wsgi import wrap_file

from app.db.models import File
from app.errors import PreconditionFailed
from app.services.files import Download, WantedRange

DOWNLOAD_CHUNK = 256 * 1024  # per read from storage when the bytes cannot be sendfile(2)d


def wanted_range() -> WantedRange | None:
    """The request's one byte range, if it asks for exactly one; several ranges or another unit: the whole file."""
    ranges = parse_range_header(request.headers.get("Range"))
    if ranges is None or ranges.units != "bytes" or len(ranges.ranges) != 1:
        return None
    start, stop = ranges.ranges[0]  # werkzeug's [start, stop); a suffix range is (-n, None)
    if_etag = if_unmodified = None
    if "If-Range" in request.headers:
        condition = request.if_range
        if request.headers["If-Range"].lstrip().startswith("W/") or (condition.etag is None and condition.date is None):
            return None  # a weak ETag, or an If-Range we cannot read, never holds (RFC 9110 §13.1.5)
        if_etag = condition.etag
        if_unmodified = condition.date.replace(tzinfo=None) if condition.date is not None else None
    if start < 0:
        return WantedRange(None, -start, if_etag, if_unmodified)
    return WantedRange(start, None if stop is None else stop - 1, if_etag, if_unmodified)


def download_response(got: Download, wanted: WantedRange | None, disposition: str = "attachment") -> Response:
    """The bytes with the headers of the spec: 304 for If-None-Match, 412, 206 for the part, 416 outside the file.

    `got.stream` already holds only the part, if any. The server's file wrapper sends a real file (or a
    slice of one) with sendfile(2), as `send_file` would.
    """
    record = got.record
    # content_type, not mimetype: the stored type exactly, without a charset guessed for text/*.
    response = Response(
        wrap_file(request.environ, got.stream, DOWNLOAD_CHUNK), content_type=record.mime_type,
        direct_passthrough=True,
    )
    response.content_length = record.size
    response.headers["Content-Disposition"] = content_disposition(record.name, disposition)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-cache"
    response.set_etag(record.sha256)
    response.headers["Repr-Digest"] = repr_digest(record.sha256)
    response.last_modified = record.updated_at
    check_preconditions(record)
    # werkzeug answers If-None-Match / If-Modified-Since (304); the range was settled above, precondition too.
    drop = {"HTTP_IF_MATCH", "HTTP_IF_UNMODIFIED_SINCE", "HTTP_RANGE", "HTTP_IF_RANGE"}
    environ = {key: value for key, value in request.environ.items() if key not in drop}
    response = response.make_conditional(environ, accept_ranges=True)
    if response.status_code != 200:  # 304: If-None-Match comes before Range
        return response
    if got.part is not None:
        start, stop = got.part
        response.status_code = 206
        response.content_range = ContentRange("bytes", start, stop, record.size)
        response.content_length = stop - start
    elif wanted is not None and record.size and wanted.applies(record):
        # An empty file has no range to cut: it is served whole, like a Range the server ignores.
        raise RequestedRangeNotSatisfiable(length=record.size)
    return response


def repr_digest(sha256_hex: str) -> str:
    """RFC 9530: the SHA-256 of the whole file (not of a range), base64 between colons."""
    return "sha-256=:" + base64.b64encode(bytes.fromhex(sha256_hex)).decode("ascii") + ":"


def check_preconditions(record: File) -> None:
    """If-Match, else If-Unmodified-Since (RFC 9110 §13.2.2 steps 1 and 2): 412 when it does not hold.

    An empty If-Match names no version at all: it is taken as not sent.
    """
    if request.headers.get("If-Match", "").strip():
        if not request.if_match.contains(record.sha256):
            raise PreconditionFailed("If-Match: the file's content is not that version")
    elif request.if_unmodified_since is not None:
        if record.updated_at.replace(microsecond=0, tzinfo=timezone.utc) > request.if_unmodified_since:
            raise PreconditionFailed("If-Unmodified-Since: the file has changed since then")


def content_disposition(name: str, disposition: str = "attachment") -> str:
    """`attachment` (or `inline`) with an ASCII `filename` for old clients and the exact name in `filename*`."""
    fallback = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    fallback = "".join(c if c.isprintable() and c not in '"\\%' else "_" for c in fallback).strip()
    if fallback != name and not fallback.lstrip(".").strip():
        fallback = "file"
    elif fallback != name and fallback.startswith("."):  # "файл.pdf" → "file.pdf", not a hidden ".pdf"
        fallback = "file" + fallback
    return dump_options_header(
        disposition, {"filename": fallback, "filename*": "UTF-8''" + quote(name, safe="!#$&+-.^_`|~")}
    )


def thumbnail_response(name: str, etag: str, updated_at: datetime, make: Callable[[], bytes]) -> Response:
    """A thumbnail with the headers of a download (its own length and `Repr-Digest`, `ETag`, `Last-Modified`);
    werkzeug answers `If-None-Match` with 304 and one `Range` with 206, as the thumbnail is in memory."""
    data = make()  # a kept thumbnail is one small read from storage
    response = Response(data, content_type="image/webp")
    response.set_etag(etag)
    response.last_modified = updated_at
    response.headers["Cache-Control"] = "private, no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Disposition"] = content_disposition(PurePosixPath(name).stem + ".webp", "inline")
    response.headers["Repr-Digest"] = repr_digest(hashlib.sha256(data).hexdigest())
    environ = dict(request.environ)
    if wanted_range() is None:  # no range, several, another unit or an empty header: the whole thumbnail
        environ.pop("HTTP_RANGE", None)
        environ.pop("HTTP_IF_RANGE", None)
    return response.make_conditional(environ, accept_ranges=True, complete_length=len(data))
