"""File links: a short-lived URL for one file, for a browser, a player or another person; the link is the credential."""

from flask import Blueprint, Response, current_app, g, request, url_for

from app.db import utcnow
from app.errors import LinkExpired, NotFound, PreconditionFailed, RangeNotSatisfiable, UnsupportedMediaType
from app.http.auth import caller, token_required
from app.http.context import get_db, link_signer, storage
from app.http.downloads import download_response, thumbnail_response, wanted_range
from app.http.parsing import body, parse, thumbnail_size
from app.http.responses import ok
from app.openapi.fragments import DOWNLOAD_PARAMETERS, LINK_THUMBNAIL_PARAMETERS, download_responses, link_headers
from app.openapi.operation import FILE_ID, FILE_ID_DOC, operation
from app.schemas import responses as shapes
from app.schemas.requests import LinkRequest
from app.services.links import create_link, open_linked_file
from app.services.thumbnails import linked_image, thumbnail, thumbnail_etag

bp = Blueprint("links", __name__, url_prefix="/file")

LINK_PREFIX = "/file/link/"
TOKEN_DOC = {"token": "The token of a link made by `POST /file/{file_id}/link`."}


@bp.post(f"/{FILE_ID}/link")
@operation(
    "createFileLink", "files", "A short-lived link to one of my files", returns=shapes.FileLink, status=201,
    body=LinkRequest, body_required=False, path_docs=FILE_ID_DOC, description=(
        "Anyone holding the link can fetch the file until it expires, the file is deleted or replaced, or this "
        "session is signed out. The body is optional."),
)
@token_required
def create(file_id: int):
    wanted = parse(LinkRequest, body())
    made = create_link(
        get_db(), link_signer(), owner_id=caller().user_id, file_id=file_id, session_id=caller().session_id,
        seconds=wanted.expires_in, inline=wanted.disposition == "inline", now=utcnow(),
    )
    path = url_for(".fetch", token=made.token)
    return ok(shapes.FileLink(
        url=request.host_url.rstrip("/") + path, path=path, expires_at=made.expires_at, expires_in=wanted.expires_in,
        disposition=made.disposition,
    ), 201)


@bp.get("/link/<token>")
@operation(
    "fetchFileLink", "files", "A file's bytes, through a link", security=(), path_docs=TOKEN_DOC,
    errors=(LinkExpired, PreconditionFailed, RangeNotSatisfiable, UnsupportedMediaType), description=(
        "No `Authorization`: the link is the credential. `HEAD` too. The answers are those of `downloadFile`; "
        "with `thumbnail`, those of `fileThumbnail` (a WebP, `ETag`, 304, 415). "
        "A malformed or forged token, or a link whose file was deleted or replaced or whose session was signed "
        "out, is 404; a link past its expiry is 410."),
    responses=download_responses(link_headers),
    parameters=DOWNLOAD_PARAMETERS + LINK_THUMBNAIL_PARAMETERS,
)
def fetch(token: str):
    size = thumbnail_size("thumbnail", None)
    if size is not None:
        row = linked_image(get_db(), link_signer(), token=token, now=utcnow())
        return thumbnail_response(row.name, thumbnail_etag(row, size), row.updated_at, lambda: thumbnail(
            get_db(), storage(), row, size=size, max_pixels=int(current_app.config["THUMBNAIL_MAX_PIXELS"]),
            gone=NotFound("this file link is no longer valid")))
    wanted = wanted_range()
    got = open_linked_file(get_db(), storage(), link_signer(), token=token, wanted=wanted, now=utcnow())
    try:
        # Browsers' PDF viewers refuse to render under a sandbox; the exact type and nosniff keep it a PDF.
        g.link_unsandboxed = got.disposition == "inline" and got.download.record.mime_type == "application/pdf"
        return download_response(got.download, wanted, got.disposition)
    except BaseException:
        got.download.stream.close()
        raise


@bp.after_app_request
def protect_link_answers(response: Response) -> Response:
    """Every answer on a link's path, errors included: no Referer to carry the link onwards, and whatever
    the content is, it runs nothing in the browser."""
    if request.path.startswith(LINK_PREFIX):
        response.headers["Referrer-Policy"] = "no-referrer"
        if not (g.get("link_unsandboxed") and response.status_code < 400):
            response.headers["Content-Security-Policy"] = "sandbox"
    return response
