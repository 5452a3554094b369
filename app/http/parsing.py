"""Reading the request: its body (JSON or a form) into a checked model, the page parameters."""
from typing import Any, TypeVar

from flask import current_app, request
from pydantic import BaseModel
from pydantic import ValidationError as PydanticError
from werkzeug.exceptions import RequestEntityTooLarge

from app.errors import ValidationError
from app.http.multipart import boundary_of
from app.schemas.requests import (
    LIST_SIZE_MAX, MIME_FILTER, PAGE_MAX, SEARCH_MAX, context_of, normalize_login
)
from app.services.files import DEFAULT_SORT, SORTS, FileFilter
from app.services.thumbnails import SIZES

M = TypeVar("M", bound=BaseModel)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def body() -> dict[str, Any]:
    """The request body as a dict: JSON or form-encoded; an empty body is an empty dict."""
    mimetype = request.mimetype
    if mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json")):
        if not request.content_length and not request.headers.get("Transfer-Encoding"):
            return {}  # a client that declares JSON by default but sends nothing has sent no fields
        try:
            data = request.get_json(silent=True)
        except RecursionError:  # nesting deeper than the parser's stack; `silent` covers only ValueError
            data = None
        if not isinstance(data, dict):
            raise ValidationError("the body must be a JSON object", {"fields": {"body": "malformed JSON"}})
        return data
    if mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return form_fields()
    if not mimetype and not request.content_length and not request.headers.get("Transfer-Encoding"):
        return {}
    raise ValidationError(
        "the body must be JSON or form-encoded",
        {"fields": {"body": f"unsupported content type {mimetype or '(none)'}"}},
    )


def form_fields() -> dict[str, Any]:
    """A form body's fields; a multipart one with a boundary werkzeug cannot use, or too many parts, is 400.

    werkzeug drops a multipart body it cannot parse (the fields would just be "required"), and answers
    too many parts or too large a field with 413, as if the body were over the size limit.
    """
    if request.mimetype == "multipart/form-data":
        boundary_of(request.content_type or "", "body")
    try:
        return request.form.to_dict()
    except RequestEntityTooLarge:
        if _body_over_limit():
            raise
        raise ValidationError.field("body", "the form has too many parts, or a part too large") from None


def _body_over_limit() -> bool:
    limit = request.max_content_length
    if limit is None:
        return False
    if request.content_length is not None:
        return request.content_length > limit
    return bool(getattr(request.stream, "is_exhausted", False))  # a chunked body cut off at the limit


def parse(model: type[M], data: dict[str, Any]) -> M:
    """The model, with every bad field named at once; logins come back normalised."""
    try:
        context = context_of(current_app.config["DEFAULT_PHONE_REGION"], current_app.config["LINK_MAX_TTL"],
                             form=request.mimetype in FORM_TYPES)
        return model.model_validate(data, context=context)
    except PydanticError as e:
        fields: dict[str, str] = {}
        for err in e.errors():
            if err["type"] == "fields":  # a rule over several fields names each of them
                for name, why in err["ctx"]["fields"].items():
                    fields.setdefault(name, why)
                continue
            name = ".".join(str(part) for part in err["loc"]) or "body"
            fields.setdefault(name, _reason(err))
        raise ValidationError.fields(fields) from None


def _reason(err: dict[str, Any]) -> str:
    kind = err["type"]
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("string_type", "str_type"):
        return "must be a string"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "must be an integer"
    if kind == "string_pattern_mismatch":
        return "only lower-case letters, digits and _ . : - are allowed"
    return err["msg"]


def login_of(raw: str) -> str:
    """A login typed anywhere (a URL, the console), normalised with the configured phone region."""
    return normalize_login(raw, current_app.config["DEFAULT_PHONE_REGION"])


def page_params(max_size: int = LIST_SIZE_MAX) -> tuple[int, int]:
    """`page` (default 1) and `list_size` (default 10); an empty parameter means the default."""
    reasons: dict[str, str] = {}
    page = _positive_int("page", 1, PAGE_MAX, reasons)
    list_size = _positive_int("list_size", 10, max_size, reasons)
    if reasons:
        raise ValidationError.fields(reasons)
    return page, list_size


def find_params() -> tuple[FileFilter, str]:
    """`q`, `type` and `sort` of /file/list; an empty parameter means none (the default sort)."""
    reasons: dict[str, str] = {}
    q = request.args.get("q", "")
    if len(q) > SEARCH_MAX:
        reasons["q"] = f"at most {SEARCH_MAX} characters"
    mime_type = request.args.get("type", "").lower()
    if mime_type.endswith("/*"):  # "image/*", as an HTML accept attribute writes a family
        mime_type = mime_type[:-1]
    if mime_type and not MIME_FILTER.fullmatch(mime_type):
        reasons["type"] = "must be a MIME type (image/png) or a family ending in / (image/)"
    sort = request.args.get("sort", "") or DEFAULT_SORT
    if sort not in SORTS:
        reasons["sort"] = "must be one of " + ", ".join(SORTS)
    if reasons:
        raise ValidationError.fields(reasons)
    return FileFilter(q, mime_type), sort


def thumbnail_size(name: str, default: int | None) -> int | None:
    """A thumbnail size parameter: one of SIZES; empty or absent means `default`."""
    raw = request.args.get(name, "")
    if raw == "":
        return default
    if raw not in {str(size) for size in SIZES}:
        raise ValidationError.field(name, "must be one of " + ", ".join(str(size) for size in SIZES))
    return int(raw)


def _positive_int(name: str, default: int, maximum: int, reasons: dict[str, str]) -> int:
    raw = request.args.get(name, "").strip()
    if raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > len(str(PAGE_MAX)):
        reasons[name] = "must be a positive integer"
        return default
    value = int(raw)
    if not 1 <= value <= maximum:
        reasons[name] = f"must be 1 to {maximum}"
    return value


def login_in_url(raw: str) -> str | None:
    """The login in the URL, normalised like a sign-up id; None when it cannot be anyone's (so: not found)."""
    try:
        return login_of(raw)
    except ValidationError:
        return None
