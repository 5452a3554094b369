"""Resumable uploads with the tus 1.0.0 protocol (creation, creation-with-upload, termination, expiration,
checksum): https://tus.io/protocols/resumable-upload. Errors keep the JSON envelope."""
import re
from datetime import timezone

from flask import Blueprint, Response, current_app, request, url_for
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import ClientDisconnected
from werkzeug.http import http_date

from app.db import utcnow
from app.db.models import Upload
from app.errors import (
    ChecksumMismatch, Conflict, InsufficientStorage, PreconditionFailed, QuotaExceeded, RateLimited,
    UnsupportedMediaType, ValidationError
)
from app.http.auth import authenticate, caller, token_required
from app.http.context import get_db, storage
from app.http.responses import ok
from app.http.tus import CHECKSUM_ALGORITHMS, CHUNK_TYPE, EXTENSIONS, TUS_VERSION, tus_request
from app.openapi.fragments import header, header_parameter
from app.openapi.operation import operation
from app.openapi.tus import (
    BYTES, CHECKSUM, CHUNK_BODY, EXPIRES_HEADER, METADATA, OFFSET_HEADER, RESUMABLE_HEADER, STATE_ERRORS, TUS_RESUMABLE
)
from app.schemas import responses as shapes
from app.services.uploads import (
    Checksum, append_chunk, create_upload, file_of, get_own_upload, parse_checksum, parse_metadata, terminate_upload
)

bp = Blueprint("uploads", __name__, url_prefix="/file/uploads")

PREFIX = "/file/uploads"
NO_LIMIT = 1 << 62
INTEGER = re.compile(r"^[0-9]+$")
HUGE = 1 << 63  # any longer number of bytes is more than any upload: compared as this
UPLOAD_ID = "<upload_id>"
UPLOAD_ID_DOC = {"upload_id": "The upload's id, from the `Location` of its creation; another user's upload, or an "
                              "expired one, answers 404."}


# -- what every tus answer carries, and the version check ---------------------------------------------------


@bp.before_app_request
def unknown_upload_path() -> None:
    """A path under the prefix that names no upload (`/file/uploads/a/b`) is refused as an upload would be:
    401 without a token, 412 without `Tus-Resumable`, then 404, never 404 before the version check."""
    if request.url_rule is None and request.path.startswith(PREFIX + "/") and request.method != "OPTIONS":
        authenticate()
        if request.headers.get("Tus-Resumable") != TUS_VERSION:
            raise PreconditionFailed(f"Tus-Resumable: {TUS_VERSION} is required (the only version served)")


@bp.after_app_request
def tus_headers(response: Response) -> Response:
    # after_app_request: also on this prefix's 404 and 405, which reach no view of the blueprint.
    if request.path == PREFIX or request.path.startswith(PREFIX + "/"):
        response.headers["Tus-Resumable"] = TUS_VERSION
        if request.method == "OPTIONS" and request.path == PREFIX or response.status_code == 412:
            response.headers.update(discovery_headers())
    return response


def discovery_headers() -> dict[str, str]:
    return {
        "Tus-Version": TUS_VERSION, "Tus-Extension": EXTENSIONS,
        "Tus-Max-Size": str(current_app.config["MAX_UPLOAD_BYTES"]), "Tus-Checksum-Algorithm": CHECKSUM_ALGORITHMS,
    }


# -- routes -------------------------------------------------------------------------------------------------


@bp.route("", methods=["OPTIONS"], provide_automatic_options=False)
@operation("uploadOptions", "uploads", "What this server supports of tus", database=False, responses={"204": {
    "description": "The tus discovery headers (a CORS preflight gets them too).",
    "headers": {
        **RESUMABLE_HEADER,
        "Tus-Version": header("`1.0.0`.", {"type": "string"}),
        "Tus-Extension": header(f"`{EXTENSIONS}`.", {"type": "string"}),
        "Tus-Max-Size": header("`MAX_UPLOAD_BYTES`.", {"type": "integer", "minimum": 0}),
        "Tus-Checksum-Algorithm": header(f"`{CHECKSUM_ALGORITHMS}`.", {"type": "string"}),
    },
}})
def options():
    return empty(204)


@bp.route("", methods=["POST"], provide_automatic_options=False)
@operation(
    "createUpload", "uploads", "Start a resumable upload", body=CHUNK_BODY,
    errors=(*STATE_ERRORS, QuotaExceeded, RateLimited, InsufficientStorage, ChecksumMismatch, UnsupportedMediaType),
    description=("`Upload-Length` bytes are reserved against the quota until the upload completes, is terminated "
                 "or expires. With a body (`Content-Type: application/offset+octet-stream`) the body is the first "
                 "chunk. `Upload-Length: 0` makes the (empty) file at once: the answer carries `X-File-Id`."),
    parameters=(
        TUS_RESUMABLE,
        header_parameter("Upload-Length", "The whole upload's size in bytes; over `MAX_UPLOAD_BYTES` is 413.", BYTES,
                         required=True),
        header_parameter("Upload-Metadata", "Comma-separated `key base64(value)` pairs, each key once, each value "
                                            "UTF-8 text; `filename` names the file, other keys are ignored.", METADATA),
        header_parameter("Upload-Checksum", "`sha1|sha256 <base64 digest>` of the first chunk (empty: none).", CHECKSUM),
    ),
    responses={"201": {
        "description": "Created; `Location` is the upload's absolute URL.",
        "headers": {
            **RESUMABLE_HEADER, **EXPIRES_HEADER,
            "Location": header("The upload's absolute URL.", {"type": "string"}),
            "Upload-Offset": header("With a first chunk: bytes stored so far.", {"type": "integer", "minimum": 0},
                                    required=False),
            "X-File-Id": header("The file's id, once the upload is complete.", {"type": "integer"}, required=False),
        },
    }},
)
@token_required
@tus_request
def create():
    length = integer_header("Upload-Length", required=True)
    name = parse_metadata(request.headers.get("Upload-Metadata", "")).get("filename", "")
    chunk = has_body()
    checksum = chunk_checksum() if chunk else checksum_header()
    limit = current_app.config["MAX_UPLOAD_BYTES"]
    if chunk and length <= limit and (request.content_length or 0) > length:
        raise ValidationError.field("Content-Length", "the first chunk is longer than Upload-Length")
    upload = create_upload(
        get_db(), storage(), owner_id=caller().user_id, length=length, client_name=name, max_bytes=limit,
        default_quota=current_app.config["QUOTA_BYTES"], expiry=current_app.config["UPLOAD_EXPIRY"], now=utcnow(),
        max_files=current_app.config["MAX_FILES_PER_USER"], max_open=current_app.config["MAX_OPEN_UPLOADS"],
    )
    response = empty(201)
    response.headers["Location"] = url_for("uploads.state", upload_id=upload.id, _external=True)
    if chunk and not upload.complete:
        try:
            upload, file_id = append(upload.id, 0, checksum)
        except (ValidationError, ChecksumMismatch):
            # Nothing of a refused first chunk is kept, and no one knows the upload's URL yet: it goes too.
            terminate_upload(get_db(), storage(), owner_id=caller().user_id, upload_id=upload.id, now=utcnow())
            raise
        if file_id is not None:
            response.headers["X-File-Id"] = str(file_id)
    elif upload.complete:
        response.headers["X-File-Id"] = str(upload.file_id)
    if chunk or upload.complete:
        response.headers["Upload-Offset"] = str(upload.received)
    response.headers["Upload-Expires"] = expires(upload)
    return response


@bp.route(f"/{UPLOAD_ID}", methods=["HEAD"], provide_automatic_options=False)
@operation(
    "headUpload", "uploads", "How much of an upload is stored", errors=STATE_ERRORS, path_docs=UPLOAD_ID_DOC,
    parameters=(TUS_RESUMABLE,),
    responses={"200": {
        "description": "The upload's offset and length (no body).",
        "headers": {
            **RESUMABLE_HEADER, **OFFSET_HEADER, **EXPIRES_HEADER,
            "Upload-Length": header("The whole upload's size.", {"type": "integer", "minimum": 0}),
            "Cache-Control": header("`no-store`.", {"type": "string", "const": "no-store"}),
        },
    }},
)
@token_required
@tus_request
def head(upload_id: str):
    upload = get_own_upload(get_db(), owner_id=caller().user_id, upload_id=upload_id, now=utcnow())
    response = empty(200)
    response.headers.update({
        "Upload-Offset": str(upload.received), "Upload-Length": str(upload.length), "Cache-Control": "no-store",
        "Upload-Expires": expires(upload),
    })
    return response


@bp.route(f"/{UPLOAD_ID}", methods=["GET"], provide_automatic_options=False)
@operation("getUpload", "uploads", "An upload's state, and the file it became", returns=shapes.UploadState,
           errors=STATE_ERRORS, path_docs=UPLOAD_ID_DOC, parameters=(TUS_RESUMABLE,))
@token_required
@tus_request
def state(upload_id: str):
    db = get_db()
    upload = get_own_upload(db, owner_id=caller().user_id, upload_id=upload_id, now=utcnow())
    record = file_of(db, upload)
    return ok(shapes.UploadState(
        id=upload.id, offset=upload.received, length=upload.length, expires_at=upload.expires_at,
        file=shapes.File.of(record) if record is not None else None,
    ))


@bp.route(f"/{UPLOAD_ID}", methods=["PATCH"], provide_automatic_options=False)
@operation(
    "appendUpload", "uploads", "Send the next chunk of an upload", body={**CHUNK_BODY, "required": True},
    errors=(*STATE_ERRORS, Conflict, UnsupportedMediaType, ChecksumMismatch, InsufficientStorage),
    path_docs=UPLOAD_ID_DOC,
    description=("`Upload-Offset` must be the upload's current offset (409 otherwise, and while another request "
                 "writes to it). Bytes past `Upload-Length` are 400 and nothing of the request is kept. A chunk cut "
                 "off by a dropped connection keeps what arrived: `HEAD` says where to resume. The chunk that "
                 "completes the upload makes the file, and the answer carries `X-File-Id`."),
    parameters=(
        TUS_RESUMABLE,
        header_parameter("Upload-Offset", "Where this chunk starts: the upload's current offset.", BYTES, required=True),
        header_parameter("Upload-Checksum", "`sha1|sha256 <base64 digest>` of this chunk; a mismatch is 460 and "
                                            "the chunk is discarded (empty: none).", CHECKSUM),
    ),
    responses={"204": {
        "description": "Stored; `Upload-Offset` is the new offset.",
        "headers": {
            **RESUMABLE_HEADER, **OFFSET_HEADER, **EXPIRES_HEADER,
            "X-File-Id": header("The file's id, when this chunk completed the upload.", {"type": "integer"},
                                required=False),
        },
    }},
)
@token_required
@tus_request
def patch(upload_id: str):
    checksum = chunk_checksum()
    offset = integer_header("Upload-Offset", required=True)
    upload, file_id = append(upload_id, offset, checksum)
    response = empty(204)
    response.headers["Upload-Offset"] = str(upload.received)
    response.headers["Upload-Expires"] = expires(upload)
    if file_id is not None:
        response.headers["X-File-Id"] = str(file_id)
    return response


@bp.route(f"/{UPLOAD_ID}", methods=["DELETE"], provide_automatic_options=False)
@operation(
    "terminateUpload", "uploads", "Terminate an upload", errors=(*STATE_ERRORS, Conflict), path_docs=UPLOAD_ID_DOC,
    parameters=(TUS_RESUMABLE,),
    description=("An unfinished upload's bytes go and its reservation is released. A completed upload is "
                 "forgotten; the file it became stays. 409 while a chunk is being written to it."),
    responses={"204": {"description": "Terminated.", "headers": RESUMABLE_HEADER}},
)
@token_required
@tus_request
def terminate(upload_id: str):
    terminate_upload(get_db(), storage(), owner_id=caller().user_id, upload_id=upload_id, now=utcnow())
    return empty(204)


# -- request parsing ------------------------------------------------------------------------------------------


def integer_header(name: str, required: bool = False) -> int | None:
    value = request.headers.get(name)
    if value is None:
        if required:
            raise ValidationError.field(name, "required")
        return None
    value = value.strip()
    if not INTEGER.match(value):
        raise ValidationError.field(name, "must be a non-negative integer")
    digits = value.lstrip("0") or "0"
    # More digits than HUGE has is more than any upload: compared as HUGE, without converting (a header may
    # carry thousands of digits, and int() of those is slow and refused past sys.get_int_max_str_digits()).
    if len(digits) > len(str(HUGE)):
        return HUGE
    return min(HUGE, int(digits))


def has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def checksum_header() -> Checksum | None:
    value = request.headers.get("Upload-Checksum", "").strip(" \t")
    return parse_checksum(value) if value else None  # an empty header names no checksum: as if not sent


def chunk_checksum() -> Checksum | None:
    """Check the chunk's Content-Type and Upload-Checksum; the body itself is read later, by storage."""
    if request.mimetype != CHUNK_TYPE:
        raise UnsupportedMediaType(f"a chunk must be sent as Content-Type: {CHUNK_TYPE}")
    return checksum_header()


def append(upload_id: str, offset: int, checksum: Checksum | None) -> tuple[Upload, int | None]:
    # The upload's own length bounds the chunk (checked by the service, before and while it streams),
    # not the small limit of other bodies.
    request.max_content_length = NO_LIMIT
    got = append_chunk(
        get_db(), storage(), owner_id=caller().user_id, upload_id=upload_id, offset=offset, stream=Body(),
        announced=request.content_length, checksum=checksum,
        expiry=current_app.config["UPLOAD_EXPIRY"], now=utcnow(),
    )
    return got.upload, got.file.id if got.file is not None else None


class Body:
    """The request body as storage reads it; a dropped connection ends it early, keeping what arrived."""

    def read(self, size: int = -1, /) -> bytes:
        try:
            return request.stream.read(size)
        except (ClientDisconnected, OSError, ParseException):
            return b""


def empty(status: int) -> Response:
    response = Response(status=status)
    del response.headers["Content-Type"]  # no body, so no type
    return response


def expires(upload: Upload) -> str:
    return http_date(upload.expires_at.replace(tzinfo=timezone.utc))
