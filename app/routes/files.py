"""Private files: upload, list, metadata, download, replace, delete."""
import re

from flask import Blueprint, current_app, request

from app.db import utcnow
from app.errors import (
    Conflict, FileTooLarge, InsufficientStorage, PreconditionFailed, QuotaExceeded, RangeNotSatisfiable,
    UnsupportedMediaType, ValidationError,
)
from app.http.auth import caller, token_required
from app.http.context import get_db, storage
from app.http.downloads import download_response, thumbnail_response, wanted_range
from app.http.multipart import FilePart, boundary_of, open_file_part
from app.http.parsing import find_params, page_params, thumbnail_size
from app.http.responses import ok
from app.openapi.fragments import (
    DOWNLOAD_PARAMETERS, FILE_OPERATION_LINKS, FIND_PARAMETERS, PAGE_PARAMETERS, THUMBNAIL_PARAMETERS, UPLOAD_BODY,
    download_responses, thumbnail_responses,
)
from app.openapi.operation import FILE_ID, FILE_ID_DOC, operation
from app.schemas import responses as shapes
from app.services.files import (
    delete_file, find_files, get_own_file, list_files, open_own_file, replace_file, upload_file
)
from app.services.quota import Room
from app.services.thumbnails import DEFAULT_SIZE as DEFAULT_THUMBNAIL, own_image, thumbnail, thumbnail_etag
from app.services.uploads import room_for_upload

bp = Blueprint("files", __name__, url_prefix="/file")

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file's own bytes
SHA256_HEX = re.compile(rb"[0-9a-fA-F]{64}")


@bp.post("/upload")
@operation("uploadFile", "files", "Store a file", returns=shapes.File, status=201, body=UPLOAD_BODY,
           errors=(QuotaExceeded, InsufficientStorage), links=FILE_OPERATION_LINKS,
           description="`mime_type` comes from the content where recognisable, else from the extension, else "
                       "`application/octet-stream`.")
@token_required
def upload():
    room = upload_room()
    part = incoming_file()
    record = upload_file(
        get_db(), storage(), owner_id=caller().user_id, stream=part, client_name=part.filename, max_bytes=upload_limit(),
        room=room, digest=lambda: declared_sha256(part), now=utcnow(),
    )
    return ok(shapes.File.of(record), 201)


@bp.get("/list")
@operation("listFiles", "files", "My files, a page at a time", returns=shapes.FilePage,
           parameters=PAGE_PARAMETERS + FIND_PARAMETERS, description=(
               "Newest first unless `sort` says otherwise. With `q` or `type`, `total` and `pages` count the "
               "files that match."))
@token_required
def listing():
    page, list_size = page_params()
    where, sort = find_params()
    if where:
        items, total = find_files(get_db(), owner_id=caller().user_id, where=where, page=page, list_size=list_size,
                                  sort=sort)
    else:
        total = caller().file_count  # read with the session, in the bearer check: no count(*) for the plain list
        items = list_files(get_db(), owner_id=caller().user_id, total=total, page=page, list_size=list_size, sort=sort)
    return ok(shapes.FilePage.of([shapes.File.of(item) for item in items], page, list_size, total))


@bp.get(f"/{FILE_ID}")
@operation("getFile", "files", "A file's metadata", returns=shapes.File, path_docs=FILE_ID_DOC)
@token_required
def metadata(file_id: int):
    return ok(shapes.File.of(get_own_file(get_db(), owner_id=caller().user_id, file_id=file_id)))


@bp.get(f"/download/{FILE_ID}")
@operation(
    "downloadFile", "files", "A file's bytes", path_docs=FILE_ID_DOC,
    errors=(PreconditionFailed, RangeNotSatisfiable), description="Streamed; never read whole into memory.",
    responses=download_responses(),
    parameters=DOWNLOAD_PARAMETERS,
)
@token_required
def download(file_id: int):
    wanted = wanted_range()
    got = open_own_file(get_db(), storage(), owner_id=caller().user_id, file_id=file_id, wanted=wanted)
    try:
        return download_response(got, wanted)
    except BaseException:
        got.stream.close()
        raise


@bp.get(f"/{FILE_ID}/thumbnail")
@operation(
    "fileThumbnail", "files", "A thumbnail of an image", path_docs=FILE_ID_DOC, parameters=THUMBNAIL_PARAMETERS,
    errors=(UnsupportedMediaType, Conflict, RangeNotSatisfiable), responses=thumbnail_responses(), description=(
        "A WebP of the image (JPEG, PNG, GIF's first frame, WebP) scaled to fit a square of `size` pixels, never "
        "enlarged; made once per version of the file and kept. Any other content, or an image of more than "
        "`THUMBNAIL_MAX_PIXELS` pixels, is 415."),
)
@token_required
def thumbnail_of(file_id: int):
    size = thumbnail_size("size", DEFAULT_THUMBNAIL)
    record = own_image(get_db(), owner_id=caller().user_id, file_id=file_id)
    return thumbnail_response(record.name, thumbnail_etag(record, size), record.updated_at, lambda: thumbnail(
        get_db(), storage(), record, size=size, max_pixels=int(current_app.config["THUMBNAIL_MAX_PIXELS"]),
        gone=Conflict("the file was replaced or deleted while its thumbnail was being made; retry")))


@bp.delete(f"/delete/{FILE_ID}")
@operation("deleteFile", "files", "Delete a file and its bytes", returns=shapes.FileDeleted, errors=(Conflict,),
           path_docs=FILE_ID_DOC)
@token_required
def remove(file_id: int):
    delete_file(get_db(), storage(), owner_id=caller().user_id, file_id=file_id)
    return ok(shapes.FileDeleted(id=file_id))


@bp.put(f"/update/{FILE_ID}")
@operation("replaceFile", "files", "Replace a file's content, keeping its id", returns=shapes.File, body=UPLOAD_BODY,
           errors=(Conflict, QuotaExceeded, InsufficientStorage), path_docs=FILE_ID_DOC, description=(
               "Atomic: if the upload fails, the old content and metadata are intact. "
               "Without a file name in the part, the old name is kept. Only the growth (new size − old size) "
               "counts against the quota."))
@token_required
def replace(file_id: int):
    room = upload_room(file_id)
    part = incoming_file()
    record = replace_file(
        get_db(), storage(), owner_id=caller().user_id, file_id=file_id, stream=part, client_name=part.filename,
        max_bytes=upload_limit(), room=room, digest=lambda: declared_sha256(part), now=utcnow(),
    )
    return ok(shapes.File.of(record))


def upload_limit() -> int:
    return current_app.config["MAX_UPLOAD_BYTES"]


def upload_room(file_id: int | None = None) -> Room:
    """The caller's room under their quota, read before the body: 413 now when the announced body cannot fit.

    A body of Content-Length bytes holds a file of at least that much less MULTIPART_OVERHEAD. Over the file
    limit is refused first; a body that may hold a file over it is left to the stream, so that such a file is
    answered as too large, not as over the quota.
    """
    limit, announced = upload_limit(), request.content_length or 0
    if announced > limit + MULTIPART_OVERHEAD:
        raise FileTooLarge.over(limit)
    at_least = max(0, announced - MULTIPART_OVERHEAD) if announced <= limit else 0
    me = caller()
    standing = Room.of(used=me.bytes_used, reserved=me.bytes_reserved, own_quota=me.quota_bytes,
                       default_quota=current_app.config["QUOTA_BYTES"],
                       max_files=current_app.config["MAX_FILES_PER_USER"] if file_id is None else 0)
    return room_for_upload(get_db(), storage(), owner_id=me.user_id, standing=standing, at_least=at_least,
                           file_id=file_id, now=utcnow())


def incoming_file() -> FilePart:
    """The `file` part of a multipart body, as a stream; the body is read only as the part is."""
    limit = upload_limit()
    # Set before the body is touched: werkzeug then caps chunked bodies too, while they are read.
    request.max_content_length = limit + MULTIPART_OVERHEAD
    if request.mimetype != "multipart/form-data" or "boundary" not in request.content_type.lower():
        raise ValidationError.field("file", "required: send multipart/form-data with a part named 'file'")
    part = open_file_part(request.stream, boundary_of(request.content_type, "file"), wanted=("sha256",))
    if part is None:
        raise ValidationError.field("file", "required: the body has no part named 'file'")
    if "sha256" in part.fields:  # sent before the file: a malformed value is refused before anything is stored
        declared_sha256(part)
    return part


def declared_sha256(part: FilePart) -> str | None:
    """The `sha256` part, lower-cased, once the file part has been read (it may follow the file); None if absent."""
    value = part.fields.get("sha256")
    if value is None:
        return None
    if not SHA256_HEX.fullmatch(value):
        raise ValidationError.field("sha256", "must be 64 hexadecimal digits: the SHA-256 of the file's bytes")
    return value.decode("ascii").lower()
