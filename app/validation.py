"""Request bodies and parameters into checked values, or a ValidationError naming the field."""
import re
from typing import Annotated, Any, Literal, TypeVar

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import DNS_LABEL_LENGTH_LIMIT, EMAIL_MAX_LENGTH, LOCAL_PART_MAX_LENGTH
from flask import current_app, has_app_context, has_request_context, request
from pydantic import (
    AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr, StringConstraints,
    ValidationInfo, model_validator,
)
from pydantic import ValidationError as PydanticError
from pydantic_core import PydanticCustomError
from werkzeug.exceptions import RequestEntityTooLarge

from app.common_passwords import is_common
from app.errors import ValidationError
from app.multipart import boundary_of
from config import Config

PASSWORD_MIN, PASSWORD_MAX = 8, 128
LOGIN_MAX = EMAIL_MAX_LENGTH  # a phone number is far shorter
# What email-validator accepts, as far as a JSON Schema pattern can say it: lengths of the local part and
# of each domain label (no whitespace, one @); the rest is checked by email-validator itself.
EMAIL_PATTERN = (rf"^[^@\s]{{1,{LOCAL_PART_MAX_LENGTH}}}@([^@\s.]{{1,{DNS_LABEL_LENGTH_LIMIT}}}\.)+"
                 rf"[^@\s.]{{2,{DNS_LABEL_LENGTH_LIMIT}}}$")
LIST_SIZE_MAX = 100
PAGE_MAX = 999_999_999  # nine digits: longer `page` values are refused before int() sees them
PHONE_CHARS = re.compile(r"^\+?[0-9 ()\-.]{3,32}$")
# Role and permission names travel in JWTs and are compared byte for byte: keep them plain lower-case.
NAME_PATTERN = r"^[a-z0-9_.:-]+$"
NAME_MAX, DESCRIPTION_MAX, PERMISSIONS_MAX = 64, 255, 100

M = TypeVar("M", bound=BaseModel)


def _no_null_defaults(schema: dict[str, Any]) -> None:
    """An optional field may be left out, never sent as null: its `None` default is not a value to document."""
    for field in schema.get("properties", {}).values():
        if "default" in field and field["default"] is None:
            del field["default"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=4096, json_schema_extra=_no_null_defaults)


def _normalised_login(value: str, info: ValidationInfo) -> str:
    """A login field is checked with the others, so one answer names every bad field."""
    try:
        return normalize_login(value, info.context["region"])  # parse() gives DEFAULT_PHONE_REGION
    except ValidationError as e:
        raise PydanticCustomError("login", e.details["fields"]["id"]) from None


Login = Annotated[StrictStr, Field(
    max_length=LOGIN_MAX,
    description="An email address, or a phone number (E.164, or national in DEFAULT_PHONE_REGION).",
    examples=["ann@example.com", "+79991234567"],
    json_schema_extra={"anyOf": [
        {"format": "email", "pattern": EMAIL_PATTERN}, {"pattern": PHONE_CHARS.pattern},
    ]},
), AfterValidator(_normalised_login)]
COMMON_PASSWORD = "is one of the most commonly used passwords; choose another"


def _uncommon(value: str) -> str:
    if is_common(value):
        raise PydanticCustomError("common_password", COMMON_PASSWORD)
    return value


Password = Annotated[StrictStr, Field(
    min_length=PASSWORD_MIN, max_length=PASSWORD_MAX,
    description=f"{PASSWORD_MIN} to {PASSWORD_MAX} characters, not one of the most commonly used passwords.",
    examples=["correct horse battery"],
), AfterValidator(_uncommon)]


class Credentials(Strict):
    id: Login
    password: StrictStr


class SignUp(Credentials):
    password: Password


# Optional fields are not nullable: a form cannot say null, and JSON and forms share one schema.
class RefreshBody(Strict):
    refresh_token: StrictStr = None  # type: ignore[assignment]


def _id_or_password(schema: dict[str, Any]) -> None:
    _no_null_defaults(schema)
    schema["anyOf"] = [{"required": ["id"]}, {"required": ["password"]}]


class AccountChange(Strict):
    """`id`, `password` or both: the route refuses a change of nothing, naming both fields."""

    model_config = ConfigDict(json_schema_extra=_id_or_password)
    current_password: StrictStr
    id: Login = None  # type: ignore[assignment]
    password: Password = None  # type: ignore[assignment]


Name = Annotated[StrictStr, StringConstraints(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN)]
Description = Annotated[StrictStr, StringConstraints(max_length=DESCRIPTION_MAX)]
Permissions = Annotated[list[Name], Field(max_length=PERMISSIONS_MAX)]


class RoleCreate(Strict):
    name: Name
    description: Description = ""
    permissions: Permissions


def only_sent_fields(schema: dict[str, Any]) -> None:
    """The JSON Schema of a partial update: the defaults only make fields optional, they are never applied."""
    for field in schema["properties"].values():
        field.pop("default", None)
    schema["minProperties"] = 1
    schema["description"] = "Only the fields sent change; `null` is not a value."


class RoleUpdate(Strict):
    """Only the fields sent change (read with `model_dump(exclude_unset=True)`); null is not a value."""

    model_config = ConfigDict(json_schema_extra=only_sent_fields)
    name: Name = ""
    description: Description = ""
    permissions: Permissions = []


LINK_SECONDS_DEFAULT = 300
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _form_integer(value: Any) -> Any:
    """A form carries every value as text: digits there are the integer; JSON must send a number."""
    if isinstance(value, str) and has_request_context() and request.mimetype in FORM_TYPES:
        text = value.strip()
        if text.isascii() and text.removeprefix("-").isdigit() and len(text) <= 20:
            return int(text)
    if isinstance(value, float) and value.is_integer():
        return int(value)  # JSON Schema counts 60.0 as an integer
    return value


def _link_max_seconds() -> int:
    """LINK_MAX_TTL of the app at hand (the OpenAPI document is built from one), else of the environment."""
    return current_app.config["LINK_MAX_TTL"] if has_app_context() else Config.LINK_MAX_TTL


def _within_link_lifetime(value: int) -> int:
    limit = _link_max_seconds()
    if not 1 <= value <= limit:
        raise PydanticCustomError("link_seconds", f"must be an integer from 1 to {limit}")
    return value


def _link_seconds_schema(schema: dict[str, Any]) -> None:
    schema.update(minimum=1, maximum=_link_max_seconds())


LinkSeconds = Annotated[StrictInt, BeforeValidator(_form_integer), AfterValidator(_within_link_lifetime), Field(
    description="Seconds the link works, at most `LINK_MAX_TTL` (86400 by default); the expiry is rounded up "
                "to a whole second.",
    json_schema_extra=_link_seconds_schema,
)]


class LinkRequest(Strict):
    expires_in: LinkSeconds = LINK_SECONDS_DEFAULT
    disposition: Literal["attachment", "inline"] = Field("attachment", description=(
        "`inline` is honoured for images other than SVG, PDF, audio, video and `text/plain`; anything else is "
        "served as an attachment."))

    @model_validator(mode="after")
    def _default_within_limit(self) -> "LinkRequest":
        if "expires_in" not in self.model_fields_set:  # the default never outlives a smaller LINK_MAX_TTL
            self.expires_in = min(self.expires_in, _link_max_seconds())
        return self


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
        return model.model_validate(data, context={"region": current_app.config["DEFAULT_PHONE_REGION"]})
    except PydanticError as e:
        fields: dict[str, str] = {}
        for err in e.errors():
            name = ".".join(str(part) for part in err["loc"]) or "body"
            fields.setdefault(name, _reason(err))
        raise ValidationError.fields(fields) from None


def login_of(raw: str) -> str:
    """A login typed anywhere (a URL, the console), normalised with the configured phone region."""
    return normalize_login(raw, current_app.config["DEFAULT_PHONE_REGION"])


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


def normalize_login(value: str, region: str) -> str:
    """An email (lower-cased, normalised) or a phone number in E.164; anything else is a 400 on `id`."""
    value = value.strip()
    if not value:
        raise ValidationError.field("id", "required")
    if len(value) > LOGIN_MAX:
        raise ValidationError.field("id", f"at most {LOGIN_MAX} characters")
    if "@" in value:
        try:
            email = validate_email(value, check_deliverability=False).normalized
        except EmailNotValidError as e:
            raise ValidationError.field("id", f"not a valid email address: {e}") from None
        return email.lower()
    if PHONE_CHARS.match(value):
        try:
            number = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            number = None
        if number is not None and phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        raise ValidationError.field("id", "not a valid phone number")
    raise ValidationError.field("id", "must be an email address or a phone number")


def check_password(password: str, field: str = "password") -> str:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise ValidationError.field(field, f"must be {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    if is_common(password):
        raise ValidationError.field(field, COMMON_PASSWORD)
    return password


PAGE_PARAMETERS = (
    {"name": "page", "in": "query", "required": False, "description": "1-based page; empty means 1.",
     "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": 1}},
    {"name": "list_size", "in": "query", "required": False, "description": "Items per page; empty means 10.",
     "schema": {"type": "integer", "minimum": 1, "maximum": LIST_SIZE_MAX, "default": 10}},
)


def page_params(max_size: int = LIST_SIZE_MAX) -> tuple[int, int]:
    """`page` (default 1) and `list_size` (default 10); an empty parameter means the default."""
    reasons: dict[str, str] = {}
    page = _positive_int("page", 1, PAGE_MAX, reasons)
    list_size = _positive_int("list_size", 10, max_size, reasons)
    if reasons:
        raise ValidationError.fields(reasons)
    return page, list_size


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
