"""Private files: upload, list, metadata, download, replace, delete."""
import unicodedata
from datetime import timezone
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, current_app, g, request
from werkzeug.datastructures import ContentRange
from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.http import dump_options_header, parse_range_header
from werkzeug.wsgi import wrap_file

from app import shapes
from app.api import link, operation
from app.auth import token_required
from app.db import get_db, utcnow
from app.errors import Conflict, FileTooLarge, PreconditionFailed, RangeNotSatisfiable, ValidationError
from app.extensions import autocommit_engine, storage
from app.models import ID_MAX, File
from app.multipart import FilePart, boundary_of, open_file_part
from app.responses import ok
from app.services.files import (
    Download, WantedRange, delete_file, get_own_file, list_files, open_own_file, replace_file, upload_file,
)
from app.validation import PAGE_PARAMETERS, page_params

bp = Blueprint("files", __name__, url_prefix="/file")

FILE_ID = f"<int(max={ID_MAX}):file_id>"  # the id column's range; anything else is simply not a route
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file's own bytes
DOWNLOAD_CHUNK = 256 * 1024  # per read from storage when the bytes cannot be sendfile(2)d

FILE_ID_DOC = {"file_id": "The file's id; another user's file answers 404, exactly like a missing one."}
FILE_LINKS = {
    "getFile": link("getFile", "Metadata of the file just stored.", file_id="$response.body#/data/id"),
    "downloadFile": link("downloadFile", "Its bytes.", file_id="$response.body#/data/id"),
    "replaceFile": link("replaceFile", "Replace its content.", file_id="$response.body#/data/id"),
    "deleteFile": link("deleteFile", "Delete it.", file_id="$response.body#/data/id"),
    "createFileLink": link("createFileLink", "A short-lived link to it.", file_id="$response.body#/data/id"),
}
UPLOAD_BODY = {
    "required": True,
    "description": "multipart/form-data with a part named `file`; its file name becomes the file's `name`. "
                   "The part is streamed to storage; a body over `MAX_UPLOAD_BYTES` is refused with 413 and "
                   "nothing is stored.",
    "content": {"multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["file"],
            "properties": {"file": {
                "type": "string", "format": "binary", "contentMediaType": "application/octet-stream",
            }},
        },
        "encoding": {"file": {"contentType": "application/octet-stream"}},
    }},
}


def file_shape(record: Any) -> shapes.File:
    """From a File row object or a plain row with the same columns."""
    return shapes.File(
        id=record.id, name=record.name, extension=record.extension, mime_type=record.mime_type, size=record.size,
        sha256=record.sha256, uploaded_at=record.uploaded_at, updated_at=record.updated_at,
    )


@bp.post("/upload")
@operation("uploadFile", "files", "Store a file", returns=shapes.File, status=201, body=UPLOAD_BODY,
           links=FILE_LINKS, description="`mime_type` comes from the content where recognisable, else from the "
                                         "extension, else `application/octet-stream`.")
@token_required
def upload():
    part = incoming_file()
    record = upload_file(
        get_db(), storage(), owner_id=g.user_id, stream=part, client_name=part.filename, max_bytes=upload_limit(),
        now=utcnow(),
    )
    return ok(file_shape(record), 201)


@bp.get("/list")
@operation("listFiles", "files", "My files, a page at a time", returns=shapes.FilePage, parameters=PAGE_PARAMETERS)
@token_required
def listing():
    page, list_size = page_params()
    total = g.file_count  # read with the session, in the bearer check
    with autocommit_engine().connect() as connection:
        items = list_files(connection, owner_id=g.user_id, total=total, page=page, list_size=list_size)
    return ok(shapes.FilePage.of([file_shape(item) for item in items], page, list_size, total))


@bp.get(f"/{FILE_ID}")
@operation("getFile", "files", "A file's metadata", returns=shapes.File, path_docs=FILE_ID_DOC)
@token_required
def metadata(file_id: int):
    return ok(file_shape(get_own_file(get_db(), owner_id=g.user_id, file_id=file_id)))


def download_headers(*extra: str) -> dict[str, Any]:
    def header(description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": description, "required": True, "schema": schema}

    headers = {
        "ETag": header("A strong validator of the content; send it back in `If-None-Match` or `If-Range`.",
                       {"type": "string"}),
        "Accept-Ranges": header("`bytes`: single ranges are served.", {"type": "string", "const": "bytes"}),
        "Content-Disposition": header(
            "`attachment` with an ASCII `filename=` fallback and the exact name in `filename*=UTF-8\'\'…`.",
            {"type": "string"}),
        "X-Content-Type-Options": header("Always `nosniff`.", {"type": "string", "const": "nosniff"}),
    }
    optional = {
        "Content-Length": header("Bytes in this response.", {"type": "integer", "minimum": 0}),
        "Content-Range": header("`bytes <first>-<last>/<size>`.", {"type": "string"}),
        "Last-Modified": header("When the content was last replaced.", {"type": "string"}),
    }
    return {**headers, **{name: optional[name] for name in extra}}


def header_parameter(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "schema": {"type": "string"}, "description": description}


BINARY = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
DOWNLOAD_PARAMETERS = (
    header_parameter("Range", "One range, e.g. `bytes=0-1023`; several ranges, or another unit, are answered "
                              "with the whole file."),
    header_parameter("If-None-Match", "An `ETag` from an earlier download: 304 while it still matches."),
    header_parameter("If-Range", "Serve the `Range` only if the content is still this `ETag`, else the whole file."),
    header_parameter("If-Match", "Serve only if the content is still this `ETag` (or `*`), else 412. "
                                 "Empty means not given."),
    header_parameter("If-Unmodified-Since", "An HTTP date: 412 if the content was replaced after it. "
                                            "Ignored with `If-Match`."),
)


@bp.get(f"/download/{FILE_ID}")
@operation(
    "downloadFile", "files", "A file's bytes", path_docs=FILE_ID_DOC,
    errors=(PreconditionFailed, RangeNotSatisfiable), description="Streamed; never read whole into memory.",
    responses={
        "200": {"description": "The whole content, with `Content-Type` = the stored `mime_type`.",
                "headers": download_headers("Content-Length", "Last-Modified"), "content": BINARY},
        "206": {"description": "The requested single range.",
                "headers": download_headers("Content-Length", "Content-Range"), "content": BINARY},
        "304": {"description": "`If-None-Match` matched: the client's copy is current.", "headers": download_headers()},
    },
    parameters=DOWNLOAD_PARAMETERS,
)
@token_required
def download(file_id: int):
    wanted = wanted_range()
    got = open_own_file(get_db(), storage(), owner_id=g.user_id, file_id=file_id, wanted=wanted)
    try:
        return download_response(got, wanted)
    except BaseException:
        got.stream.close()
        raise


@bp.delete(f"/delete/{FILE_ID}")
@operation("deleteFile", "files", "Delete a file and its bytes", returns=shapes.FileDeleted, errors=(Conflict,),
           path_docs=FILE_ID_DOC)
@token_required
def remove(file_id: int):
    delete_file(get_db(), storage(), owner_id=g.user_id, file_id=file_id)
    return ok(shapes.FileDeleted(id=file_id))


@bp.put(f"/update/{FILE_ID}")
@operation("replaceFile", "files", "Replace a file's content, keeping its id", returns=shapes.File, body=UPLOAD_BODY,
           errors=(Conflict,), path_docs=FILE_ID_DOC, description=(
               "Atomic: if the upload fails, the old content and metadata are intact. "
               "Without a file name in the part, the old name is kept."))
@token_required
def replace(file_id: int):
    part = incoming_file()
    record = replace_file(
        get_db(), storage(), owner_id=g.user_id, file_id=file_id, stream=part, client_name=part.filename,
        max_bytes=upload_limit(), now=utcnow(),
    )
    return ok(file_shape(record))


def upload_limit() -> int:
    return current_app.config["MAX_UPLOAD_BYTES"]


def incoming_file() -> FilePart:
    """The `file` part of a multipart body, as a stream; the body is read only as the part is."""
    limit = upload_limit()
    if (request.content_length or 0) > limit + MULTIPART_OVERHEAD:
        raise FileTooLarge(f"the file is larger than the limit of {limit} bytes")
    # Set before the body is touched: werkzeug then caps chunked bodies too, while they are read.
    request.max_content_length = limit + MULTIPART_OVERHEAD
    if request.mimetype != "multipart/form-data" or "boundary" not in request.content_type.lower():
        raise ValidationError.field("file", "required: send multipart/form-data with a part named 'file'")
    part = open_file_part(request.stream, boundary_of(request.content_type, "file"))
    if part is None:
        raise ValidationError.field("file", "required: the body has no part named 'file'")
    return part


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
