"""The OpenAPI 3.1 document, served at /openapi.json, and Swagger UI at /docs from the package's own assets.

Nothing here describes a route by hand: operations come from the URL map and the `@operation`
declarations beside each view (app.openapi.operation), shapes from app.schemas.responses, request bodies
from the pydantic models the routes validate with (app.schemas.requests), error codes and their meaning
from app.errors; fragments several operations share in app.openapi.fragments.
"""
import base64
import hashlib
import json
import re
from typing import Any, Mapping

from flask import Blueprint, Flask, Response, current_app, make_response, request
from flask_swagger_ui import get_swaggerui_blueprint
from werkzeug.routing import IntegerConverter, Rule

from app.errors import (
    ApiError, FileTooLarge, HeadersTooLarge, InternalError, InvalidToken, MissingToken, NotFound, ServiceUnavailable,
    TokenExpired, UriTooLong, ValidationError, all_errors
)
from app.http.middleware import REQUEST_ID_PATTERN
from app.openapi.operation import Operation
from app.schemas import responses as shapes
from app.schemas.requests import MAXIMUM_FROM_SETTING

DOCUMENT_URL = "/openapi.json"
DOCS_URL = "/docs"
ARGUMENT = re.compile(r"<(?:[^<>]+:)?([^:<>]+)>")  # <int(max=9):file_id> → {file_id}
AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}  # added by Flask to every rule; CORS answers OPTIONS

bp = Blueprint("openapi", __name__)


@bp.get(DOCUMENT_URL)
def document() -> Response:
    data, etag = cached_document(current_app)
    response = Response(data, mimetype="application/json")
    response.set_etag(etag)
    return response.make_conditional(request)


def cached_document(app: Flask) -> tuple[bytes, str]:
    """Built on first use and kept: the document depends only on the code, not on the request."""
    if "openapi" not in app.extensions:
        data = json.dumps(build_document(app), ensure_ascii=False).encode()
        app.extensions["openapi"] = (data, hashlib.sha256(data).hexdigest()[:32])
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
    show = app.view_functions[f"{swagger.name}.show"]

    def docs() -> Any:
        response = make_response(show())
        response.headers["Content-Security-Policy"] = docs_policy(response.get_data(as_text=True))
        return response

    docs.operation = DOCS_OPERATION  # type: ignore[attr-defined]
    app.add_url_rule(DOCS_URL, "docs", docs)


INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def docs_policy(page: str) -> str:
    """The docs page runs its own assets only: its scripts and styles from /docs, its one inline script by
    hash, the document from this origin; nothing may frame it."""
    hashes = " ".join(
        "'sha256-%s'" % base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        for script in INLINE_SCRIPT.findall(page)
    )
    return ("default-src 'self'; script-src 'self' " + hashes + "; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
            "frame-ancestors 'none'")


JSON_DOCUMENT = {"200": {
    "description": "OpenAPI 3.1, as JSON (not wrapped in the envelope).",
    "content": {"application/json": {"schema": {"type": "object", "required": ["openapi"]}}},
}, "304": {"description": "`If-None-Match` matched."}}
document.operation = Operation(  # type: ignore[attr-defined]
    "openapiDocument", "service", "This document", responses=JSON_DOCUMENT, database=False,
)
DOCS_OPERATION = Operation("docs", "service", "Swagger UI for this document", database=False, responses={"200": {
    "description": "The Swagger UI page; its scripts and styles are served from this server.",
    "content": {"text/html": {"schema": {"type": "string"}}},
}})


# -- errors ------------------------------------------------------------------------------------------

TOKEN_ERRORS = (MissingToken, InvalidToken, TokenExpired)
BODY_ERRORS = (ValidationError, FileTooLarge)
# Refused by the HTTP server before the app runs, or an unexpected failure: any operation.
ALWAYS = (UriTooLong, HeadersTooLarge, InternalError)


def errors_of(op: Operation, rule: Rule, auth: Any) -> list[type[ApiError]]:
    """What the operation declares, plus what its kind implies."""
    implied: list[type[ApiError]] = []
    if op.body is not None or any(p.get("in") == "query" for p in op.parameters):
        implied += BODY_ERRORS if op.body is not None else (ValidationError,)
    if auth is not None:
        implied += TOKEN_ERRORS
    if rule.arguments:
        implied.append(NotFound)  # an id that is nobody's, or one the converter refuses
    if op.database:
        implied.append(ServiceUnavailable)
    return [*implied, *op.errors, *ALWAYS]


def failures(errors: list[type[ApiError]]) -> dict[str, Any]:
    """Error responses grouped by status, each with `error.code` narrowed to the codes that status carries."""
    by_status: dict[int, dict[str, type[ApiError]]] = {}
    for error in errors:
        by_status.setdefault(error.status, {}).setdefault(error.code, error)
    return {str(status): failure(status, codes) for status, codes in sorted(by_status.items())}


def failure(status: int, codes: dict[str, type[ApiError]]) -> dict[str, Any]:
    first = next(iter(codes.values()))
    example = ValidationError.field("id", "required") if first is ValidationError else first()
    error = {
        "type": "object",
        "required": ["code", "message", "details"] if first is ValidationError else ["code", "message"],
        "additionalProperties": False,
        "properties": {
            "code": {"type": "string", "enum": list(codes)},
            "message": {"type": "string"},
            "details": ref("ValidationDetails" if first is ValidationError else "ErrorDetails"),
            "stack": {"type": "string", "description": "The traceback; only when the server runs in debug mode."},
        },
    }
    headers = dict(REQUEST_ID_HEADER)
    for error_class in codes.values():
        headers.update({name: {"description": text, "required": True, "schema": schema}
                        for name, (text, schema) in getattr(error_class, "headers", {}).items()})
    return {
        "description": "; ".join(f"`{code}`: {cls.description}" for code, cls in codes.items()),
        "headers": headers,
        "content": {"application/json": {
            "schema": envelope({"type": "null"}, error),
            "example": example.envelope(),
        }},
    }


# -- building blocks -----------------------------------------------------------------------------------

REQUEST_ID_HEADER = {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def envelope(data: dict[str, Any], error: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["data", "error"],
        "additionalProperties": False,
        "properties": {"data": data, "error": error},
    }


def request_body(op: Operation, models: dict[str, Any]) -> dict[str, Any]:
    """A model is accepted as JSON or form-encoded, both validated by it; anything else is given whole."""
    if not isinstance(op.body, type):
        return dict(op.body or {})
    name = op.body.__name__
    models[name] = op.body
    content = {"application/json": {"schema": ref(name)}}
    if op.form:
        content["application/x-www-form-urlencoded"] = {"schema": ref(name)}
    return {"required": op.body_required, "content": content}


def path_parameter(rule: Rule, name: str, op: Operation) -> dict[str, Any]:
    converter = rule._converters[name]
    if isinstance(converter, IntegerConverter):
        schema: dict[str, Any] = {"type": "integer", "minimum": converter.min or 0}
        if converter.max is not None:
            schema["maximum"] = converter.max
    elif hasattr(converter, "schema"):
        schema = dict(converter.schema)
    else:
        schema = {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}
    parameter = {"name": name, "in": "path", "required": True, "schema": schema}
    if name in op.path_docs:
        parameter["description"] = op.path_docs[name]
    return parameter


def openapi_path(rule: Rule) -> str:
    return ARGUMENT.sub(r"{\1}", rule.rule)


def security_of(op: Operation, auth: Any) -> list[dict[str, list]]:
    if op.security is not None:
        return [dict(item) for item in op.security]
    return [{"bearerAuth": []}] if auth is not None else []


def operation_spec(
    rule: Rule, method: str, view: Any, op: Operation, operation_id: str, models: dict[str, Any],
) -> dict[str, Any]:
    auth = getattr(view, "auth", None)
    spec: dict[str, Any] = {"operationId": operation_id, "tags": [op.tag], "summary": op.summary}
    description = op.description
    if getattr(auth, "permission", None):
        description = f"Needs the permission `{auth.permission}` (superusers pass every check). {description}"
    if description:
        spec["description"] = description.strip()
    parameters = [path_parameter(rule, name, op) for name in sorted(rule.arguments)] + list(op.parameters)
    if parameters:
        spec["parameters"] = parameters
    if op.body is not None and method in ("post", "put", "patch", "delete"):
        spec["requestBody"] = request_body(op, models)
    spec["security"] = security_of(op, auth)
    responses: dict[str, Any] = {}
    if op.returns is not None:
        models[op.returns.__name__] = op.returns
        responses[str(op.status)] = {
            "description": (op.returns.__doc__ or op.summary).strip().splitlines()[0],
            "headers": dict(REQUEST_ID_HEADER),
            "content": {"application/json": {"schema": envelope(ref(op.returns.__name__), {"type": "null"})}},
        }
        if op.links:
            responses[str(op.status)]["links"] = {name: dict(value) for name, value in op.links.items()}
    for status, response in op.responses.items():
        responses[status] = {**response, "headers": {**REQUEST_ID_HEADER, **response.get("headers", {})}}
    responses.update(failures(errors_of(op, rule, auth)))
    spec["responses"] = responses
    return spec


def schemas_of(models: dict[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """Each model's JSON Schema (shapes as serialised, bodies as validated), nested definitions hoisted."""
    schemas: dict[str, Any] = {}
    for name, model in sorted(models.items(), key=lambda item: item[0]):
        if isinstance(model, dict):
            schemas[name] = model
            continue
        mode = "serialization" if issubclass(model, shapes.Shape) else "validation"
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    for schema in schemas.values():
        for field in schema.get("properties", {}).values():
            if MAXIMUM_FROM_SETTING in field:  # a limit the operator sets (LINK_MAX_TTL): this app's value
                field["maximum"] = config[field.pop(MAXIMUM_FROM_SETTING)]
    return schemas


def paths_of(app: Flask, models: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions[rule.endpoint]
        op = getattr(view, "operation", None)
        if op is None:
            continue  # static files, Swagger UI's own assets
        # A rule made for HEAD or OPTIONS alone (tus) documents that method; elsewhere they are automatic.
        methods = sorted(rule.methods - AUTOMATIC_METHODS or rule.methods, key=lambda m: (m != "GET", m))
        for index, method in enumerate(methods):
            operation_id = op.id if index == 0 else op.id + method.capitalize()
            paths.setdefault(openapi_path(rule), {})[method.lower()] = operation_spec(
                rule, method.lower(), view, op, operation_id, models,
            )
    return paths


def undocumented(app: Flask) -> list[str]:
    """API endpoints whose view declares no operation (Flask's static files and Swagger UI's assets aside)."""
    return sorted(
        rule.endpoint for rule in app.url_map.iter_rules()
        if not hasattr(app.view_functions[rule.endpoint], "operation")
        and rule.endpoint != "static" and not rule.endpoint.startswith("swagger_ui.")
    )


def build_document(app: Flask) -> dict[str, Any]:
    models: dict[str, Any] = {}
    paths = paths_of(app, models)
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
            {"name": "factors", "description": "A second factor (authenticator app, recovery codes) and passkeys."},
            {"name": "files", "description": "Private files: each user sees only their own."},
            {"name": "uploads", "description": "Resumable uploads (tus 1.0.0) that become files."},
            {"name": "roles", "description": "Roles and permissions."},
            {"name": "admin", "description": "Users, for an operator (`users:manage`)."},
            {"name": "service", "description": "Probes and this documentation."},
        ],
        "paths": paths,
        "components": {
            "schemas": {**schemas_of(models, app.config), **error_schemas()},
            "headers": {"X-Request-ID": {
                "description": "The request's id: the client's own `X-Request-ID` if it sent a sane one, else a new one.",
                "required": True, "schema": {"type": "string", "pattern": REQUEST_ID_PATTERN},
            }},
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "The access token of a sign-in; valid ACCESS_TOKEN_TTL seconds (600 by default).",
                },
                "refreshToken": {
                    "type": "http", "scheme": "bearer",
                    "description": "A refresh token, accepted by `/signin/new_token` only.",
                },
                "metricsToken": {
                    "type": "http", "scheme": "bearer",
                    "description": "METRICS_TOKEN, the operator's setting; accepted by `/metrics` only.",
                },
            },
        },
    }


def error_schemas() -> dict[str, Any]:
    codes = all_errors()
    return {
        "ErrorCode": {"type": "string", "enum": [cls.code for cls in codes], "description": "\n".join(
            f"- `{cls.code}` ({cls.status}): {cls.description}" for cls in codes)},
        "ErrorDetails": {"type": "object", "description": "More about the error, when there is more to say."},
        "ValidationDetails": {
            "type": "object",
            "required": ["fields"],
            "properties": {"fields": {
                "type": "object", "minProperties": 1, "additionalProperties": {"type": "string"},
                "description": "Field name → why it was refused.",
            }},
        },
    }
