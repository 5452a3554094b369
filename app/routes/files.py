import unicodedata
from datetime import timezone
from typing import BinaryIO
from urllib.parse import quote

from flask import Blueprint, Response, current_app, g, request
from werkzeug.datastructures import ContentRange
from werkzeug.exceptions import PreconditionFailed
from werkzeug.http import dump_options_header, is_resource_modified, parse_range_header
from werkzeug.wsgi import wrap_file

from app.auth import token_required
from app.db import get_db
from app.errors import FileTooLarge, ValidationError
from app.models import File
from app.multipart import FilePart, open_file_part
from app.responses import file_json, ok, page_json
from app.services.files import (
    delete_file, get_own_file, list_files, open_own_file, replace_file, upload_file,
)
from app.storage import get_storage
from app.validation import page_params

bp = Blueprint("files", __name__, url_prefix="/file")

FILE_ID = "<int(max=2147483647):file_id>"  # the id column's range; anything else is simply not a route
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file's own bytes
DOWNLOAD_CHUNK = 256 * 1024  # per read from storage when the bytes cannot be sendfile(2)d


@bp.post("/upload")
@token_required
def upload():
    part = incoming_file()
    record = upload_file(get_db(), get_storage(), g.user_id, part, part.filename, upload_limit())
    return ok(file_json(record), 201)


@bp.get("/list")
@token_required
def listing():
    page, list_size = page_params()
    items, total = list_files(get_db(), g.user_id, page, list_size)
    return ok(page_json([file_json(item) for item in items], page, list_size, total))


@bp.get(f"/{FILE_ID}")
@token_required
def metadata(file_id: int):
    return ok(file_json(get_own_file(get_db(), g.user_id, file_id)))


@bp.get(f"/download/{FILE_ID}")
@token_required
def download(file_id: int):
    record, stream = open_own_file(get_db(), get_storage(), g.user_id, file_id, requested_range)
    try:
        return download_response(record, stream)
    except BaseException:
        stream.close()
        raise


@bp.delete(f"/delete/{FILE_ID}")
@token_required
def remove(file_id: int):
    delete_file(get_db(), get_storage(), g.user_id, file_id)
    return ok({"id": file_id, "deleted": True})


@bp.put(f"/update/{FILE_ID}")
@token_required
def replace(file_id: int):
    part = incoming_file()
    record = replace_file(get_db(), get_storage(), g.user_id, file_id, part, part.filename, upload_limit())
    return ok(file_json(record))


def upload_limit() -> int:
    return current_app.config["MAX_UPLOAD_BYTES"]


def incoming_file() -> FilePart:
    """The `file` part of a multipart body, as a stream; the body is read only as the part is."""
    limit = upload_limit()
    if (request.content_length or 0) > limit + MULTIPART_OVERHEAD:
        raise FileTooLarge(f"the file is larger than the limit of {limit} bytes")
    # Set before the body is touched: werkzeug then caps chunked bodies too, while they are read.
    request.max_content_length = limit + MULTIPART_OVERHEAD
    boundary = request.mimetype_params.get("boundary", "")
    if request.mimetype != "multipart/form-data" or not boundary:
        raise ValidationError.field("file", "required: send multipart/form-data with a part named 'file'")
    part = open_file_part(request.stream, boundary.encode("latin-1"))
    if part is None:
        raise ValidationError.field("file", "required: the body has no part named 'file'")
    return part


def requested_range(record: File) -> tuple[int, int] | None:
    """The [start, stop) a 206 will carry, as werkzeug would pick it, so storage reads only that part.

    None: the whole file, or a Range werkzeug refuses with 416 (malformed, or outside the file).
    """
    ranges = parse_range_header(request.headers.get("Range"))
    if not record.size or ranges is None or len(ranges.ranges) != 1:
        return None
    if "If-Range" in request.headers and is_resource_modified(
        request.environ, record.sha256, last_modified=record.updated_at, ignore_if_range=False
    ):
        return None
    return ranges.range_for_length(record.size)


def download_response(record: File, stream: BinaryIO) -> Response:
    """The bytes with the headers of the spec; werkzeug answers If-None-Match, If-Range and bad ranges.

    `stream` already holds only the requested range, if any. The server's file wrapper sends a real
    file (or a slice of one) with sendfile(2), as `send_file` would.
    """
    # content_type, not mimetype: the stored type exactly, without a charset guessed for text/*.
    response = Response(
        wrap_file(request.environ, stream, DOWNLOAD_CHUNK), content_type=record.mime_type, direct_passthrough=True,
    )
    response.content_length = record.size
    response.headers["Content-Disposition"] = content_disposition(record.name)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-cache"
    response.set_etag(record.sha256)
    response.last_modified = record.updated_at
    check_preconditions(record)
    # Settled above: werkzeug would answer If-Match only alongside If-None-Match, with the file as a 412 body.
    drop = {"HTTP_IF_MATCH", "HTTP_IF_UNMODIFIED_SINCE"}
    part = requested_range(record)
    ranges = parse_range_header(request.environ.get("HTTP_RANGE"))
    if part is not None or (ranges is not None and len(ranges.ranges) > 1):
        # A part is cut below from a stream that holds only it. Several ranges get the whole file:
        # one part per response keeps downloads streamable; RFC 9110 lets a server answer 200 in full.
        drop.add("HTTP_RANGE")
    environ = {key: value for key, value in request.environ.items() if key not in drop}
    response = response.make_conditional(environ, accept_ranges=True, complete_length=record.size)
    if part is not None and response.status_code == 200:  # not 304: If-None-Match comes before Range
        start, stop = part
        response.status_code = 206
        response.content_range = ContentRange("bytes", start, stop, record.size)
        response.content_length = stop - start
    return response


def check_preconditions(record: File) -> None:
    """If-Match, else If-Unmodified-Since (RFC 9110 §13.2.2 steps 1 and 2): 412 when it does not hold."""
    if "If-Match" in request.headers:
        if not request.if_match.contains(record.sha256):
            raise PreconditionFailed("If-Match: the file's content is not that version")
    elif request.if_unmodified_since is not None:
        if record.updated_at.replace(microsecond=0, tzinfo=timezone.utc) > request.if_unmodified_since:
            raise PreconditionFailed("If-Unmodified-Since: the file has changed since then")


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII `filename` for old clients and the exact name in `filename*`."""
    fallback = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    fallback = "".join(c if c.isprintable() and c not in '"\\%' else "_" for c in fallback).strip()
    if fallback != name and not fallback.lstrip(".").strip():
        fallback = "file"
    elif fallback != name and fallback.startswith("."):  # "файл.pdf" → "file.pdf", not a hidden ".pdf"
        fallback = "file" + fallback
    return dump_options_header(
        "attachment", {"filename": fallback, "filename*": "UTF-8''" + quote(name, safe="!#$&+-.^_`|~")}
    )
