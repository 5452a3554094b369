"""Pieces of the document that are not one operation's own: shared parameters, headers, bodies and links."""
from typing import Any, Callable

from app.openapi.operation import link
from app.schemas.requests import LIST_SIZE_MAX, MIME_TOKEN, PAGE_MAX, SEARCH_MAX
from app.services.files import DEFAULT_SORT, SORTS
from app.services.thumbnails import DEFAULT_SIZE as DEFAULT_THUMBNAIL, SIZES as THUMBNAIL_SIZES


def header(description: str, schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    """A response header."""
    return {"description": description, "required": required, "schema": schema}


def header_parameter(name: str, description: str, schema: dict[str, Any] | None = None,
                     required: bool = False) -> dict[str, Any]:
    """A request header."""
    return {"name": name, "in": "header", "required": required, "schema": schema or {"type": "string"},
            "description": description}


PAGE_PARAMETERS = (
    {"name": "page", "in": "query", "required": False, "description": "1-based page; empty means 1.",
     "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": 1}},
    {"name": "list_size", "in": "query", "required": False, "description": "Items per page; empty means 10.",
     "schema": {"type": "integer", "minimum": 1, "maximum": LIST_SIZE_MAX, "default": 10}},
)

# The document's patterns are ECMA-262 without flags: the type is matched in either case, as the app does.
_MIME_TOKEN_ANY_CASE = MIME_TOKEN.replace("a-z0-9", "A-Za-z0-9")
FIND_PARAMETERS = (
    {"name": "q", "in": "query", "required": False, "schema": {"type": "string", "maxLength": SEARCH_MAX},
     "description": "Only files whose name contains this, in any case; `%` and `_` are plain characters. "
                    "Empty means no search."},
    {"name": "type", "in": "query", "required": False, "description": (
        "Only files of this MIME type (`image/png`), or of this family when it ends with `/` or `/*` "
        "(`image/`). Empty means any type."),
     "schema": {"type": "string", "pattern": f"^$|^{_MIME_TOKEN_ANY_CASE}/(\\*|{_MIME_TOKEN_ANY_CASE})?$"}},
    {"name": "sort", "in": "query", "required": False, "description": (
        "`uploaded_at`, `name` or `size`, ascending; a leading `-` for descending. Equal values are ordered by "
        "id the same way, so pages never overlap. Empty means the default."),
     "schema": {"type": "string", "enum": [*SORTS, ""], "default": DEFAULT_SORT}},
)


# -- files ----------------------------------------------------------------------------------------------

FILE_OPERATION_LINKS = {
    "getFile": link("getFile", "Metadata of the file just stored.", file_id="$response.body#/data/id"),
    "downloadFile": link("downloadFile", "Its bytes.", file_id="$response.body#/data/id"),
    "replaceFile": link("replaceFile", "Replace its content.", file_id="$response.body#/data/id"),
    "deleteFile": link("deleteFile", "Delete it.", file_id="$response.body#/data/id"),
    "createFileLink": link("createFileLink", "A short-lived link to it.", file_id="$response.body#/data/id"),
}
UPLOAD_BODY = {
    "required": True,
    "description": "multipart/form-data with a part named `file`; its file name becomes the file's `name`. "
                   "The part is streamed to storage; a file over `MAX_UPLOAD_BYTES`, or one that would take the "
                   "user past their quota, is refused with 413 and nothing is stored. An optional part `sha256`, "
                   "before or after `file`, is checked against the bytes received: 400 on `sha256` if it does "
                   "not match, and nothing is stored.",
    "content": {"multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {"type": "string", "format": "binary", "contentMediaType": "application/octet-stream"},
                "sha256": {"type": "string", "minLength": 64, "maxLength": 64, "pattern": "^[0-9a-fA-F]{64}$",
                           "description": "The hex SHA-256 of the file's bytes (either case)."},
            },
        },
        "encoding": {"file": {"contentType": "application/octet-stream"}, "sha256": {"contentType": "text/plain"}},
    }},
}


# -- downloads: plain, and through a link --------------------------------------------------------------

def download_headers(*extra: str) -> dict[str, Any]:
    headers = {
        "ETag": header("A strong validator of the content; send it back in `If-None-Match` or `If-Range`.",
                       {"type": "string"}),
        "Accept-Ranges": header("`bytes`: single ranges are served.", {"type": "string", "const": "bytes"}),
        "Content-Disposition": header(
            "`attachment` with an ASCII `filename=` fallback and the exact name in `filename*=UTF-8\'\'…`.",
            {"type": "string"}),
        "X-Content-Type-Options": header("Always `nosniff`.", {"type": "string", "const": "nosniff"}),
        "Repr-Digest": header(
            "RFC 9530: `sha-256=:<base64 of the SHA-256>:` of the whole file, also on a 206 and a 304.",
            {"type": "string", "pattern": "^sha-256=:[A-Za-z0-9+/]{43}=:$"}),
    }
    optional = {
        "Content-Length": header("Bytes in this response.", {"type": "integer", "minimum": 0}),
        "Content-Range": header("`bytes <first>-<last>/<size>`.", {"type": "string"}),
        "Last-Modified": header("When the content was last replaced.", {"type": "string"}),
    }
    return {**headers, **{name: optional[name] for name in extra}}


def download_responses(headers: Callable[..., dict[str, Any]] = download_headers) -> dict[str, Any]:
    """The 200/206/304 of a route that answers with a file's bytes, with `headers(*extra)` for each."""
    return {
        "200": {"description": "The whole content, with `Content-Type` = the stored `mime_type`.",
                "headers": headers("Content-Length", "Last-Modified"), "content": BINARY},
        "206": {"description": "The requested single range.",
                "headers": headers("Content-Length", "Content-Range"), "content": BINARY},
        "304": {"description": "`If-None-Match` matched: the client's copy is current.", "headers": headers()},
    }


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


def link_headers(*extra: str) -> dict[str, Any]:
    return {
        **download_headers(*extra),
        "Content-Disposition": {
            "description": "`inline` or `attachment`, as the link was made, with an ASCII `filename=` fallback and "
                           "the exact name in `filename*=UTF-8''…`.",
            "required": True, "schema": {"type": "string"},
        },
        "Referrer-Policy": header("Always `no-referrer`.", {"type": "string", "const": "no-referrer"}),
        "Content-Security-Policy": header(
            "`sandbox`, except on an inline PDF (browsers' PDF viewers refuse to render in a sandbox).",
            {"type": "string", "const": "sandbox"}, required=False),
    }


# -- token answers ----------------------------------------------------------------------------------------

NEW_SESSION = "A new device session: the token pair, and the refresh token as an HttpOnly cookie (Path=/signin)."
REFRESH_LINK = {"refreshTokens": {
    "operationId": "refreshTokens", "description": "Rotate the refresh token just issued.",
    "requestBody": {"refresh_token": "$response.body#/data/refresh_token"},
}}
TOKEN_LINKS = {**REFRESH_LINK, "rolesOfUser": link("rolesOfUser", "The user's roles.", login="$response.body#/data/id")}


# -- thumbnails --------------------------------------------------------------------------------------------

def _thumbnail_size(name: str, description: str, default: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "enum": list(THUMBNAIL_SIZES)}
    if default is not None:
        schema["default"] = default
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


THUMBNAIL_PARAMETERS = (
    _thumbnail_size("size", f"The square the image is scaled to fit, in pixels; empty means {DEFAULT_THUMBNAIL}.",
                    DEFAULT_THUMBNAIL),
    header_parameter("If-None-Match", "An `ETag` of an earlier thumbnail: 304 while it still matches."),
    header_parameter("Range", "One range of the thumbnail's bytes, e.g. `bytes=0-1023`."),
)
LINK_THUMBNAIL_PARAMETERS = (_thumbnail_size(
    "thumbnail", "Serve a thumbnail of this size instead of the file (a link made with disposition `inline` to a "
                 "JPEG, PNG, GIF or WebP; another link is 400 on `thumbnail`). Empty means the file itself."),)


def thumbnail_responses() -> dict[str, Any]:
    """A thumbnail answers as a download does, of its own bytes (`Repr-Digest` is the thumbnail's)."""
    def headers(*extra: str) -> dict[str, Any]:
        return {**download_headers(*extra), "Content-Disposition": header(
            "`inline`, named after the file with `.webp`.", {"type": "string"})}
    webp = {"image/webp": {"schema": {"type": "string", "format": "binary"}}}
    return {
        "200": {"description": "The thumbnail.", "headers": headers("Content-Length", "Last-Modified"), "content": webp},
        "206": {"description": "The requested single range of it.", "headers": headers("Content-Length", "Content-Range"),
                "content": webp},
        "304": {"description": "`If-None-Match` matched: the client's copy is current.", "headers": headers()},
    }
