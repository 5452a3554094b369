"""The OpenAPI 3.1 document, served at /openapi.json, and Swagger UI at /docs from the package's own assets.

Request bodies are the pydantic models the routes validate with, so the document cannot describe a
body the code does not accept. Responses, parameters and headers are written here from the contract;
tests/test_openapi.py holds them to the URL map, and the schemathesis run holds them to real responses.
"""
import hashlib
import json
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from flask_swagger_ui import get_swaggerui_blueprint
from pydantic import BaseModel

from app.errors import (
    HTTP_CODES, ApiError, Conflict, FileTooLarge, Forbidden, InvalidCredentials, InvalidRefreshToken, InvalidToken,
    MissingToken, NotFound, RoleExists, ServiceUnavailable, TokenExpired, UserExists, ValidationError,
)
from app.validation import (
    LIST_SIZE_MAX, NAME_MAX, NAME_PATTERN, PAGE_MAX, AccountChange, Credentials, RefreshBody, RoleCreate, RoleUpdate,
    SignUp,
)

DOCUMENT_URL = "/openapi.json"
DOCS_URL = "/docs"
REQUEST_MODELS: tuple[type[BaseModel], ...] = (Credentials, SignUp, RefreshBody, AccountChange, RoleCreate, RoleUpdate)

bp = Blueprint("openapi", __name__)


@bp.get(DOCUMENT_URL)
def document() -> Response:
    response = Response(cached_document(current_app), mimetype="application/json")
    response.set_etag(current_app.extensions["openapi_etag"])
    return response.make_conditional(request)


def cached_document(app: Flask) -> bytes:
    """Built on first use and kept: the document depends only on the code, not on the request."""
    if "openapi" not in app.extensions:
        data = json.dumps(build_document(), ensure_ascii=False).encode()
        app.extensions["openapi_etag"] = hashlib.sha256(data).hexdigest()[:32]
        app.extensions["openapi"] = data
    return app.extensions["openapi"]


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    swagger = get_swaggerui_blueprint(
        DOCS_URL, DOCUMENT_URL,
        # validatorUrl None: no badge fetched from swagger.io, so the page works offline.
        config={"app_name": "filesvc API", "displayOperationId": True, "validatorUrl": None},
    )
    app.register_blueprint(swagger)
    # The blueprint lives at /docs/; answer /docs itself rather than redirecting to it.
    app.add_url_rule(DOCS_URL, "docs", app.view_functions[f"{swagger.name}.show"])


# -- error responses -----------------------------------------------------------------------------

ErrorKind = tuple[int, str, str]  # status, code, an example message
RATE_LIMITED: ErrorKind = (429, HTTP_CODES[429], "too many attempts (10 per 1 minute); retry later")
RANGE_NOT_SATISFIABLE: ErrorKind = (416, HTTP_CODES[416], "The server cannot provide the requested range.")
PRECONDITION_FAILED: ErrorKind = (412, HTTP_CODES[412], "If-Match: the file's content is not that version")
URI_TOO_LONG: ErrorKind = (414, HTTP_CODES[414], "Request Line is too large (5475 > 4094)")
HEADERS_TOO_LARGE: ErrorKind = (431, HTTP_CODES[431], "Error parsing headers: 'limit request headers fields size'")
INTERNAL_ERROR: ErrorKind = (500, "internal_error", "internal server error")

ERROR_CODES = {
    "validation_error": "missing or invalid field, malformed JSON, an unsupported body type, bad `page`/`list_size`, "
                        "no `file` part",
    "missing_token": "no `Authorization: Bearer …` on a protected route",
    "invalid_token": "bad signature, malformed, wrong token type, unknown or revoked session",
    "token_expired": "a well-formed access token past its `exp`: refresh it",
    "invalid_credentials": "sign-in with an unknown id or a wrong password (one message for both)",
    "invalid_refresh_token": "refresh token unknown, expired, revoked or already rotated",
    "forbidden": "authenticated, but lacking the permission (or a wrong `current_password`)",
    "not_found": "unknown route; a file, session, role or user that does not exist or is not the caller's",
    "method_not_allowed": "known route, wrong method (the `Allow` header lists the right ones)",
    "user_exists": "sign-up, or change of login, to an id already taken",
    "role_exists": "a role with this name already exists",
    "conflict": "the file was changed by another request meanwhile; retry",
    "file_too_large": "body over the limit (`MAX_UPLOAD_BYTES` for uploads, 1 MiB otherwise); nothing is stored",
    "range_not_satisfiable": "a `Range` outside the file",
    "precondition_failed": "`If-Match` names another version of the file, or it changed after `If-Unmodified-Since`",
    "uri_too_long": "the request line is longer than the server's limit (4094 bytes)",
    "headers_too_large": "a request header is longer than the server's limit (8190 bytes)",
    "rate_limited": "too many sign-in/sign-up attempts; see `Retry-After`",
    "internal_error": "unexpected failure; a generic message, details only in the server log",
    "service_unavailable": "the database or the storage is unreachable; retry later",
    "http_error": "any other HTTP-level refusal",
}

STATUS_TEXT = {
    400: "Invalid input: `error.details.fields` names each bad field and why.",
    401: "Not authenticated.",
    403: "Authenticated, but not allowed.",
    404: "Not found.",
    409: "Conflict with the current state.",
    412: "`If-Match` or `If-Unmodified-Since` does not hold for the file; the content is not sent.",
    413: "The body is too large.",
    414: "The URL is too long.",
    416: "The range is outside the file; `Content-Range: bytes */<size>`.",
    429: "Too many attempts; retry after `Retry-After` seconds.",
    431: "A request header is too large.",
    500: "Unexpected failure.",
    503: "A backing service is unavailable.",
}


def kind(error: type[ApiError] | ErrorKind) -> ErrorKind:
    return error if isinstance(error, tuple) else (error.status, error.code, error.message)


def failures(*errors: type[ApiError] | ErrorKind, invalid: tuple[str, str] = ("body", "malformed JSON")) -> dict:
    """Error responses grouped by status, each with `error.code` narrowed to the codes that status carries.

    `invalid` is the example of a 400: a field and why it was refused.
    """
    by_status: dict[int, dict[str, str]] = {}
    for status, code, message in map(kind, errors):
        by_status.setdefault(status, {}).setdefault(code, message)
    return {
        str(status): failure_response(status, messages, invalid) for status, messages in sorted(by_status.items())
    }


def failure_response(status: int, messages: dict[str, str], invalid: tuple[str, str]) -> dict[str, Any]:
    code, message = next(iter(messages.items()))
    example: dict[str, Any] = {"code": code, "message": message}
    if status == 400:
        field, why = invalid
        example.update(message=f"{field}: {why}", details={"fields": {field: why}})
    error = {
        "type": "object",
        "required": ["code", "message", "details"] if status == 400 else ["code", "message"],
        "additionalProperties": False,
        "properties": {
            "code": {"type": "string", "enum": list(messages)},
            "message": {"type": "string"},
            "details": ref("ValidationDetails" if status == 400 else "ErrorDetails"),
            "stack": {"type": "string", "description": "The traceback; only when the server runs in debug mode."},
        },
    }
    headers = {**REQUEST_ID_HEADER}
    if status == 429:
        headers["Retry-After"] = header("Seconds until another attempt may succeed.", {"type": "integer"}, True)
    if status == 416:
        headers["Content-Range"] = header("`bytes */<size>`.", {"type": "string"}, True)
    return {
        "description": STATUS_TEXT[status],
        "headers": headers,
        "content": {"application/json": {
            "schema": {
                "type": "object",
                "required": ["data", "error"],
                "additionalProperties": False,
                "properties": {"data": {"type": "null"}, "error": error},
            },
            "example": {"data": None, "error": example},
        }},
    }


AUTH_FAILURES = (MissingToken, InvalidToken, TokenExpired)
BAD_PAGE = ("page", "must be a positive integer")
NO_FILE_PART = ("file", "required: the body has no part named 'file'")
NAME_REFUSED = ("name", "only lower-case letters, digits and _ . : - are allowed")
# Refused by the HTTP server before the app runs, on any operation.
ALWAYS = (URI_TOO_LONG, HEADERS_TOO_LARGE, INTERNAL_ERROR)
WITH_DATABASE = (*ALWAYS, ServiceUnavailable)
WITH_BODY = (ValidationError, FileTooLarge)


# -- building blocks -------------------------------------------------------------------------------


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def header(description: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema}


REQUEST_ID_HEADER = {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}}


def success(data: str | dict[str, Any], description: str, links: dict[str, Any] | None = None) -> dict[str, Any]:
    data_schema = ref(data) if isinstance(data, str) else data
    response: dict[str, Any] = {
        "description": description,
        "headers": {**REQUEST_ID_HEADER},
        "content": {"application/json": {"schema": envelope(data_schema)}},
    }
    if links:
        response["links"] = links
    return response


def envelope(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["data", "error"],
        "additionalProperties": False,
        "properties": {"data": data, "error": {"type": "null"}},
    }


def obj(properties: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    """A closed object whose every property is always present."""
    schema: dict[str, Any] = {
        "type": "object", "required": list(properties), "additionalProperties": False, "properties": properties,
    }
    if description:
        schema["description"] = description
    return schema


def page_of(item: str) -> dict[str, Any]:
    return obj({
        "items": {"type": "array", "items": ref(item)},
        "page": {"type": "integer", "minimum": 1},
        "list_size": {"type": "integer", "minimum": 1, "maximum": LIST_SIZE_MAX},
        "total": {"type": "integer", "minimum": 0},
        "pages": {"type": "integer", "minimum": 0},
    }, "Newest first. A page past the end has no items.")


def body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """JSON or form-encoded, both validated by the same model."""
    return {
        "required": required,
        "content": {
            "application/json": {"schema": ref(model.__name__)},
            "application/x-www-form-urlencoded": {"schema": ref(model.__name__)},
        },
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

ISO_TIME = {"type": "string", "format": "date-time", "description": "UTC, ISO 8601, e.g. 2026-11-22T10:00:00Z"}
NAME_RULE = {"type": "string", "minLength": 1, "maxLength": NAME_MAX, "pattern": NAME_PATTERN}


def path_param(name: str, schema: dict[str, Any], description: str, example: Any) -> dict[str, Any]:
    return {
        "name": name, "in": "path", "required": True, "schema": schema, "description": description,
        "example": example,
    }


FILE_ID = path_param("file_id", {"type": "integer", "minimum": 0, "maximum": 2147483647},
                     "The file's id; another user's file answers 404, exactly like a missing one.", 7)
ROLE_ID = path_param("role_id", {"type": "integer", "minimum": 0}, "The role's id.", 1)
LOGIN = path_param("login", {"type": "string", "minLength": 1},
                   "An email address or a phone number, normalised like a sign-up `id`.", "ann@example.com")
SESSION_ID = path_param("sid", {"type": "string", "minLength": 1}, "A session id, as listed by `GET /sessions`.",
                        "3f0c6a1d9b7e4c2a8d5f1e0b6c9a7d4e")
PAGE_PARAMS = [
    {"name": "page", "in": "query", "required": False, "description": "1-based page; empty means 1.",
     "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": 1}},
    {"name": "list_size", "in": "query", "required": False, "description": "Items per page; empty means 10.",
     "schema": {"type": "integer", "minimum": 1, "maximum": LIST_SIZE_MAX, "default": 10}},
]
BEARER = [{"bearerAuth": []}]
OPEN: list[dict[str, list]] = []


def op(
    operation_id: str, tag: str, summary: str, responses: dict[str, Any], *,
    security: list[dict[str, list]] = BEARER, description: str | None = None, **extra: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"operationId": operation_id, "tags": [tag], "summary": summary}
    if description:
        spec["description"] = description
    spec.update(extra)
    spec["security"] = security
    spec["responses"] = responses
    return spec


def link(operation_id: str, description: str, **parameters: str) -> dict[str, Any]:
    return {"operationId": operation_id, "description": description, "parameters": parameters}


# -- schemas ---------------------------------------------------------------------------------------


def response_schemas() -> dict[str, Any]:
    return {
        "ErrorCode": {"type": "string", "enum": list(ERROR_CODES), "description": "\n".join(
            f"- `{code}`: {why}" for code, why in ERROR_CODES.items())},
        "ErrorDetails": {"type": "object", "description": "More about the error, when there is more to say."},
        "ValidationDetails": {
            "type": "object",
            "required": ["fields"],
            "properties": {"fields": {
                "type": "object", "minProperties": 1, "additionalProperties": {"type": "string"},
                "description": "Field name → why it was refused.",
            }},
        },
        "TokenPair": obj({
            "id": {"type": "string", "description": "The login, normalised."},
            "access_token": {"type": "string", "description": "JWT (HS256): sub, sid, jti, iat, exp, typ, roles."},
            "refresh_token": {"type": "string", "description": "Opaque; every refresh rotates it."},
            "token_type": {"type": "string", "enum": ["Bearer"]},
            "expires_in": {"type": "integer", "description": "Seconds the access token is valid."},
            "refresh_expires_in": {"type": "integer", "description": "Seconds the refresh token is valid."},
        }),
        "File": obj({
            "id": {"type": "integer"},
            "name": {"type": "string", "description": "The client's file name without any directory part."},
            "extension": {"type": "string", "description": "Lower-case, without the dot; empty if none."},
            "mime_type": {"type": "string"},
            "size": {"type": "integer", "minimum": 0},
            "uploaded_at": ISO_TIME,
            "updated_at": ISO_TIME,
        }),
        "FilePage": page_of("File"),
        "Session": obj({
            "id": {"type": "string", "description": "The `sid` claim of this device's access tokens."},
            "created_at": ISO_TIME,
            "last_used_at": ISO_TIME,
            "user_agent": {"type": "string"},
            "ip": {"type": "string"},
            "current": {"type": "boolean", "description": "True for the session of the token used to ask."},
        }),
        "LoginEvent": obj({
            "at": ISO_TIME, "ip": {"type": "string"}, "user_agent": {"type": "string"}, "success": {"type": "boolean"},
        }),
        "LoginEventPage": page_of("LoginEvent"),
        "Role": obj({
            "id": {"type": "integer"},
            "name": NAME_RULE,
            "description": {"type": "string"},
            "permissions": {"type": "array", "items": {"type": "string"}},
        }),
        "Grant": obj({"user": {"type": "string"}, "role_id": {"type": "integer"}, "granted": {"type": "boolean"}}),
        "UserRoles": obj({
            "user": {"type": "string"},
            "superuser": {"type": "boolean", "description": "A superuser passes every permission check."},
            "roles": {"type": "array", "items": ref("Role")},
            "permissions": {"type": "array", "items": {"type": "string"}, "description": "Union of the roles'."},
        }),
    }


def request_schemas() -> dict[str, Any]:
    """The routes' pydantic models as JSON Schema, with their nested definitions hoisted into components."""
    schemas: dict[str, Any] = {}
    for model in REQUEST_MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


# -- operations ------------------------------------------------------------------------------------


def auth_paths() -> dict[str, Any]:
    tokens = "A new device session: the token pair, and the refresh token as an HttpOnly cookie (Path=/signin)."
    refresh_link = {"refreshTokens": {
        "operationId": "refreshTokens", "description": "Rotate the refresh token just issued.",
        "requestBody": {"refresh_token": "$response.body#/data/refresh_token"},
    }}
    roles_link = {"rolesOfUser": link("rolesOfUser", "The user's roles.", login="$response.body#/data/id")}
    logout = op(
        "logout", "auth", "Sign this device out", {
            "200": success(obj({"logged_out": {"const": True}}), "This session is revoked; the cookie is cleared."),
            **failures(*AUTH_FAILURES, *WITH_DATABASE),
        },
        description="Revokes only the current session; its access token fails on the very next request.",
    )
    return {
        "/signup": {"post": op(
            "signUp", "auth", "Create an account and sign in", {
                "201": success("TokenPair", tokens, {**refresh_link, **roles_link}),
                **failures(*WITH_BODY, UserExists, RATE_LIMITED, *WITH_DATABASE,
                           invalid=("password", "String should have at least 8 characters")),
            },
            security=OPEN, requestBody=body(SignUp),
        )},
        "/signin": {"post": op(
            "signIn", "auth", "Sign in (a new device session)", {
                "200": success("TokenPair", tokens, {**refresh_link, **roles_link}),
                **failures(*WITH_BODY, InvalidCredentials, RATE_LIMITED, *WITH_DATABASE,
                           invalid=("id", "must be an email address or a phone number")),
            },
            security=OPEN, requestBody=body(Credentials),
        )},
        "/signin/new_token": {"post": op(
            "refreshTokens", "auth", "Rotate the refresh token; get a new pair", {
                "200": success("TokenPair", "The new pair; the refresh token used is no longer valid.", refresh_link),
                **failures(*WITH_BODY, InvalidRefreshToken, *WITH_DATABASE, invalid=(
                    "refresh_token", "required (in the body, as Authorization: Bearer, or in the cookie)")),
            },
            security=[{}, {"refreshToken": []}],
            description="The refresh token is taken from the body's `refresh_token`, else from "
                        "`Authorization: Bearer <refresh token>`, else from the `refresh_token` cookie; none of "
                        "them is 400. Reusing a rotated token after the grace period revokes its session.",
            requestBody=body(RefreshBody, required=False),
            parameters=[{
                "name": "refresh_token", "in": "cookie", "required": False, "schema": {"type": "string"},
                "description": "Set by the token responses (HttpOnly, SameSite=Strict, Path=/signin).",
            }],
        )},
        "/logout": {"get": logout, "post": {**logout, "operationId": "logoutPost"}},
    }


def account_paths() -> dict[str, Any]:
    return {
        "/info": {"get": op("info", "account", "Who am I", {
            "200": success(obj({"id": {"type": "string"}}), "The caller's login.", {
                "rolesOfUser": link("rolesOfUser", "My roles.", login="$response.body#/data/id"),
            }),
            **failures(*AUTH_FAILURES, *WITH_DATABASE),
        })},
        "/sessions": {"get": op("listSessions", "account", "My signed-in devices", {
            "200": success(
                obj({"items": {"type": "array", "items": ref("Session")}}), "Live sessions, newest first.",
                {"revokeSession": link("revokeSession", "Sign the newest device out.",
                                       sid="$response.body#/data/items/0/id")},
            ),
            **failures(*AUTH_FAILURES, *WITH_DATABASE),
        })},
        "/sessions/{sid}": {"delete": op("revokeSession", "account", "Sign one of my devices out", {
            "200": success(obj({"id": {"type": "string"}, "revoked": {"const": True}}), "That session is revoked."),
            **failures(*AUTH_FAILURES, NotFound, *WITH_DATABASE),
        }, parameters=[SESSION_ID], description="Another user's session id answers 404, like an unknown one.")},
        "/logout/all": {"post": op("logoutAll", "account", "Sign all my devices out", {
            "200": success(obj({"logged_out": {"const": True}, "sessions": {"type": "integer", "minimum": 0}}),
                           "Every session of mine is revoked, this one included."),
            **failures(*AUTH_FAILURES, *WITH_DATABASE),
        })},
        "/login/history": {"get": op("loginHistory", "account", "My sign-in attempts", {
            "200": success("LoginEventPage", "One page of sign-in attempts, newest first."),
            **failures(ValidationError, *AUTH_FAILURES, *WITH_DATABASE, invalid=BAD_PAGE),
        }, parameters=PAGE_PARAMS)},
        "/user": {"patch": op("updateAccount", "account", "Change my login and/or password", {
            "200": success(obj({"id": {"type": "string"}}), "The login after the change."),
            **failures(*WITH_BODY, *AUTH_FAILURES, Forbidden, UserExists, *WITH_DATABASE,
                       invalid=("current_password", "required")),
        }, requestBody=body(AccountChange), description=(
            "`current_password` is required; a wrong one is 403. Give `id`, `password` or both. "
            "A new password signs out every other device."
        ))},
    }


def role_paths() -> dict[str, Any]:
    managed = (*AUTH_FAILURES, Forbidden)
    role_links = {
        "updateRole": link("updateRole", "Change the role just created.", role_id="$response.body#/data/id"),
        "deleteRole": link("deleteRole", "Delete the role just created.", role_id="$response.body#/data/id"),
    }
    needs = "Needs the permission `roles:manage` (superusers pass every check)."
    form_lists = " In a form, repeat `permissions` once per item."
    return {
        "/roles": {
            "get": op("listRoles", "roles", "List roles", {
                "200": success(obj({"items": {"type": "array", "items": ref("Role")}}), "Every role, by name."),
                **failures(*managed, *WITH_DATABASE),
            }, description=needs),
            "post": op("createRole", "roles", "Create a role", {
                "201": success("Role", "The new role.", role_links),
                **failures(*WITH_BODY, *managed, RoleExists, *WITH_DATABASE, invalid=NAME_REFUSED),
            }, requestBody=body(RoleCreate), description=needs + form_lists),
        },
        "/roles/{role_id}": {
            "put": op("updateRole", "roles", "Rename a role or change its description or permissions", {
                "200": success("Role", "The role after the change."),
                **failures(*WITH_BODY, *managed, NotFound, RoleExists, *WITH_DATABASE, invalid=NAME_REFUSED),
            }, parameters=[ROLE_ID], requestBody=body(RoleUpdate),
                description=needs + " Only the fields sent change." + form_lists),
            "delete": op("deleteRole", "roles", "Delete a role (and its grants)", {
                "200": success(obj({"id": {"type": "integer"}, "deleted": {"const": True}}), "The role is gone."),
                **failures(*managed, NotFound, *WITH_DATABASE),
            }, parameters=[ROLE_ID], description=needs),
        },
        "/users/{login}/roles": {"get": op("rolesOfUser", "roles", "A user's roles and effective permissions", {
            "200": success("UserRoles", "The user's roles and the union of their permissions."),
            **failures(*managed, NotFound, *WITH_DATABASE),
        }, parameters=[LOGIN], description="Allowed for the user themself, or with `roles:manage`.")},
        "/users/{login}/roles/{role_id}": {
            "post": op("grantRole", "roles", "Grant a role", {
                "200": success("Grant", "The user holds the role (granting twice changes nothing)."),
                **failures(*managed, NotFound, *WITH_DATABASE),
            }, parameters=[LOGIN, ROLE_ID], description=needs),
            "delete": op("revokeRole", "roles", "Revoke a role", {
                "200": success("Grant", "The user does not hold the role (revoking twice changes nothing)."),
                **failures(*managed, NotFound, *WITH_DATABASE),
            }, parameters=[LOGIN, ROLE_ID], description=needs),
        },
    }


def download_headers(*extra: str) -> dict[str, Any]:
    headers = {
        **REQUEST_ID_HEADER,
        "ETag": header("A strong validator of the content; send it back in `If-None-Match` or `If-Range`.",
                       {"type": "string"}, True),
        "Accept-Ranges": header("`bytes`: single ranges are served.", {"type": "string", "const": "bytes"}, True),
        "Content-Disposition": header(
            "`attachment` with an ASCII `filename=` fallback and the exact name in `filename*=UTF-8''…`.",
            {"type": "string"}, True),
        "X-Content-Type-Options": header("Always `nosniff`.", {"type": "string", "const": "nosniff"}, True),
    }
    optional = {
        "Content-Length": header("Bytes in this response.", {"type": "integer", "minimum": 0}, True),
        "Content-Range": header("`bytes <first>-<last>/<size>`.", {"type": "string"}, True),
        "Last-Modified": header("When the content was last replaced.", {"type": "string"}, True),
    }
    return {**headers, **{name: optional[name] for name in extra}}


def file_paths() -> dict[str, Any]:
    file_links = {
        "getFile": link("getFile", "Metadata of the file just stored.", file_id="$response.body#/data/id"),
        "downloadFile": link("downloadFile", "Its bytes.", file_id="$response.body#/data/id"),
        "replaceFile": link("replaceFile", "Replace its content.", file_id="$response.body#/data/id"),
        "deleteFile": link("deleteFile", "Delete it.", file_id="$response.body#/data/id"),
    }
    owned = (*AUTH_FAILURES, NotFound)
    binary = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
    return {
        "/file/upload": {"post": op("uploadFile", "files", "Store a file", {
            "201": success("File", "The stored file.", file_links),
            **failures(*WITH_BODY, *AUTH_FAILURES, *WITH_DATABASE, invalid=NO_FILE_PART),
        }, requestBody=UPLOAD_BODY, description=(
            "`mime_type` comes from the content where recognisable, else from the extension, "
            "else `application/octet-stream`."
        ))},
        "/file/list": {"get": op("listFiles", "files", "My files, a page at a time", {
            "200": success("FilePage", "One page of my files, newest first."),
            **failures(ValidationError, *AUTH_FAILURES, *WITH_DATABASE, invalid=BAD_PAGE),
        }, parameters=PAGE_PARAMS)},
        "/file/{file_id}": {"get": op("getFile", "files", "A file's metadata", {
            "200": success("File", "The file."),
            **failures(*owned, *WITH_DATABASE),
        }, parameters=[FILE_ID])},
        "/file/download/{file_id}": {"get": op("downloadFile", "files", "A file's bytes", {
            "200": {"description": "The whole content, with `Content-Type` = the stored `mime_type`.",
                    "headers": download_headers("Content-Length", "Last-Modified"), "content": binary},
            "206": {"description": "The requested single range.",
                    "headers": download_headers("Content-Length", "Content-Range"), "content": binary},
            "304": {"description": "`If-None-Match` matched: the client's copy is current.",
                    "headers": download_headers()},
            **failures(*owned, PRECONDITION_FAILED, RANGE_NOT_SATISFIABLE, *WITH_DATABASE),
        }, parameters=[
            FILE_ID,
            {"name": "Range", "in": "header", "required": False, "schema": {"type": "string"},
             "description": "One range, e.g. `bytes=0-1023`; several ranges are answered with the whole file."},
            {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"},
             "description": "An `ETag` from an earlier download: 304 while it still matches."},
            {"name": "If-Range", "in": "header", "required": False, "schema": {"type": "string"},
             "description": "Serve the `Range` only if the content is still this `ETag`, else the whole file."},
            {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"},
             "description": "Serve only if the content is still this `ETag` (or `*`), else 412."},
            {"name": "If-Unmodified-Since", "in": "header", "required": False, "schema": {"type": "string"},
             "description": "An HTTP date: 412 if the content was replaced after it. Ignored with `If-Match`."},
        ], description="Streamed; never read whole into memory.")},
        "/file/update/{file_id}": {"put": op("replaceFile", "files", "Replace a file's content, keeping its id", {
            "200": success("File", "The file after the replacement."),
            **failures(*WITH_BODY, *owned, Conflict, *WITH_DATABASE, invalid=NO_FILE_PART),
        }, parameters=[FILE_ID], requestBody=UPLOAD_BODY, description=(
            "Atomic: if the upload fails, the old content and metadata are intact. "
            "Without a file name in the part, the old name is kept."
        ))},
        "/file/delete/{file_id}": {"delete": op("deleteFile", "files", "Delete a file and its bytes", {
            "200": success(obj({"id": {"type": "integer"}, "deleted": {"const": True}}), "The file is gone."),
            **failures(*owned, Conflict, *WITH_DATABASE),
        }, parameters=[FILE_ID])},
    }


def service_paths() -> dict[str, Any]:
    return {
        "/ping": {"get": op("ping", "service", "Liveness, without touching the database", {
            "200": success(obj({"pong": {"const": True}}), "The process answers."),
            **failures(*ALWAYS),
        }, security=OPEN)},
        "/health": {"get": op("health", "service", "Readiness: the database and the file storage answer", {
            "200": success(obj({"status": {"const": "ok"}, "database": {"const": "ok"}, "storage": {"const": "ok"}}),
                           "Ready."),
            **failures(*WITH_DATABASE),
        }, security=OPEN)},
        DOCUMENT_URL: {"get": op("openapiDocument", "service", "This document", {
            "200": {"description": "OpenAPI 3.1, as JSON (not wrapped in the envelope).",
                    "headers": {**REQUEST_ID_HEADER},
                    "content": {"application/json": {"schema": {"type": "object", "required": ["openapi"]}}}},
            "304": {"description": "`If-None-Match` matched.", "headers": {**REQUEST_ID_HEADER}},
            **failures(*ALWAYS),
        }, security=OPEN)},
        DOCS_URL: {"get": op("docs", "service", "Swagger UI for this document", {
            "200": {"description": "The Swagger UI page; its scripts and styles are served from this server.",
                    "headers": {**REQUEST_ID_HEADER},
                    "content": {"text/html": {"schema": {"type": "string"}}}},
            **failures(*ALWAYS),
        }, security=OPEN)},
    }


def build_document() -> dict[str, Any]:
    paths = {**auth_paths(), **account_paths(), **file_paths(), **role_paths(), **service_paths()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "filesvc",
            "version": "1.0.0",
            "summary": "Accounts, per-device sessions, roles and private files.",
            "description": (
                "Every JSON response is `{\"data\": …, \"error\": null}` or "
                "`{\"data\": null, \"error\": {\"code\", \"message\", \"details\"?}}` and carries `X-Request-ID`. "
                "Request bodies are JSON or form-encoded, except uploads (multipart, part `file`). "
                "Protected operations need `Authorization: Bearer <access token>`, from `/signup`, `/signin` or "
                "`/signin/new_token`. Any origin may call the API (CORS, without credentials)."
            ),
        },
        "tags": [
            {"name": "auth", "description": "Sign-up, sign-in, token refresh, sign-out."},
            {"name": "account", "description": "The caller's own account and devices."},
            {"name": "files", "description": "Private files: each user sees only their own."},
            {"name": "roles", "description": "Roles and permissions."},
            {"name": "service", "description": "Probes and this documentation."},
        ],
        "paths": paths,
        "components": {
            "schemas": {**response_schemas(), **request_schemas()},
            "headers": {"X-Request-ID": header(
                "The request's id: the client's own `X-Request-ID` if it sent a sane one, else a new one.",
                {"type": "string", "pattern": "^[A-Za-z0-9._:\\-]{1,128}$"}, True,
            )},
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "The access token of a sign-in; valid ACCESS_TOKEN_TTL seconds (600 by default).",
                },
                "refreshToken": {
                    "type": "http", "scheme": "bearer",
                    "description": "A refresh token, accepted by `/signin/new_token` only.",
                },
            },
        },
    }
