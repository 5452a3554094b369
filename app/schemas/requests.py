"""Request bodies as pydantic models, and the rules of their fields: checked values, or a ValidationError
naming every bad field. Nothing here reads the request or the app: what a rule depends on (the phone
region, LINK_MAX_TTL, whether the body was a form) comes in the validation context (`context_of`)."""
import re
from typing import Annotated, Any, Literal

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import DNS_LABEL_LENGTH_LIMIT, EMAIL_MAX_LENGTH, LOCAL_PART_MAX_LENGTH
from pydantic import (
    AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr, StringConstraints,
    ValidationInfo, model_validator
)
from pydantic_core import PydanticCustomError

from app.errors import ValidationError
from app.schemas.common_passwords import is_common

PASSWORD_MIN, PASSWORD_MAX = 8, 128
LOGIN_MAX = EMAIL_MAX_LENGTH  # a phone number is far shorter
# What email-validator accepts, as far as a JSON Schema pattern can say it: lengths of the local part and
# of each domain label (no whitespace, one @); the rest is checked by email-validator itself.
EMAIL_PATTERN = (rf"^[^@\s]{{1,{LOCAL_PART_MAX_LENGTH}}}@([^@\s.]{{1,{DNS_LABEL_LENGTH_LIMIT}}}\.)+"
                 rf"[^@\s.]{{2,{DNS_LABEL_LENGTH_LIMIT}}}$")
LIST_SIZE_MAX = 100
PAGE_MAX = 999_999_999  # nine digits: longer `page` values are refused before int() sees them
SEARCH_MAX = 255  # a name is at most this long, so a longer search finds nothing
# A MIME type (RFC 6838's restricted names), or a family: the type and its slash alone.
MIME_TOKEN = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
MIME_FILTER = re.compile(rf"{MIME_TOKEN}/(?:{MIME_TOKEN})?")
PHONE_CHARS = re.compile(r"^\+?[0-9 ()\-.]{3,32}$")
# Role and permission names travel in JWTs and are compared byte for byte: keep them plain lower-case.
NAME_PATTERN = r"^[a-z0-9_.:-]+$"
NAME_MAX, DESCRIPTION_MAX, PERMISSIONS_MAX = 64, 255, 100


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


# -- second factor and passkeys (SPEC §11) -------------------------------------------------------------

TotpCode = Annotated[StrictStr, Field(pattern=r"^[0-9]{6}$", examples=["492039"],
                                      description="The 6 digits your authenticator app shows now.")]
RecoveryCodeText = Annotated[StrictStr, Field(
    min_length=1, max_length=64, examples=["k7wpm-3xq9d"],
    description="One of the recovery codes shown when the authenticator app was set up; case, spaces and "
                "dashes do not matter.")]
SECOND_FACTOR_DOC = ("With a second factor on, also `code` (or `recovery_code`); without it the answer is 401 "
                     "`mfa_required`, with a wrong one 401 `invalid_code`.")


def _id_or_password(schema: dict[str, Any]) -> None:
    _no_null_defaults(schema)
    schema["anyOf"] = [{"required": ["id"]}, {"required": ["password"]}]


class AccountChange(Strict):
    """`id`, `password` or both: the route refuses a change of nothing, naming both fields."""

    model_config = ConfigDict(json_schema_extra=_id_or_password)
    current_password: StrictStr
    id: Login = None  # type: ignore[assignment]
    password: Password = None  # type: ignore[assignment]
    code: TotpCode = None  # type: ignore[assignment]
    recovery_code: RecoveryCodeText = None  # type: ignore[assignment]


def _form_integer(value: Any, info: ValidationInfo) -> Any:
    """A form carries every value as text: digits there are the integer; JSON must send a number."""
    if isinstance(value, str) and (info.context or {}).get("form"):
        text = value.strip()
        if text.isascii() and text.removeprefix("-").isdigit() and len(text) <= 20:
            return int(text)
    if isinstance(value, float) and value.is_integer():
        return int(value)  # JSON Schema counts 60.0 as an integer
    return value


# -- account lifecycle (SPEC §10) ------------------------------------------------------------------------

Code = Annotated[StrictStr, Field(pattern=r"^[0-9]{6}$", description="The 6-digit code of the message.",
                                  examples=["042917"])]
LinkToken = Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$",
                                       description="The token of the message's link (`?verify=…` or `?reset=…`).")]


def _token_or_code(schema: dict[str, Any]) -> None:
    _no_null_defaults(schema)
    schema["anyOf"] = [{"required": ["token"]}, {"required": ["id", "code"]}]


class _TokenOrCode(Strict):
    """A message's proof: its link's `token`, or the login `id` with the `code` (the token wins if both)."""

    model_config = ConfigDict(json_schema_extra=_token_or_code)
    token: LinkToken = None  # type: ignore[assignment]
    id: Login = None  # type: ignore[assignment]
    code: Code = None  # type: ignore[assignment]

    @model_validator(mode="after")
    def _one_proof(self) -> "_TokenOrCode":
        if self.token is None and (self.id is None or self.code is None):
            reason = "required: the token of the link, or the id with the code"
            missing = {name: reason for name in ("token", "id", "code") if getattr(self, name) is None}
            raise PydanticCustomError("fields", "{fields}", {"fields": missing})
        return self


class VerifyConfirm(_TokenOrCode):
    pass


class PasswordForgot(Strict):
    id: Login


class PasswordReset(_TokenOrCode):
    password: Password


class AccountDelete(Strict):
    current_password: StrictStr
    code: TotpCode = None  # type: ignore[assignment]
    recovery_code: RecoveryCodeText = None  # type: ignore[assignment]


class TotpConfirm(Strict):
    code: TotpCode


def _code_or_recovery_code(schema: dict[str, Any]) -> None:
    _no_null_defaults(schema)
    schema["anyOf"] = [{"required": ["code"]}, {"required": ["recovery_code"]}]


class _SecondFactor(Strict):
    """A TOTP `code` or a `recovery_code` (the code wins if both)."""

    model_config = ConfigDict(json_schema_extra=_code_or_recovery_code)
    code: TotpCode = None  # type: ignore[assignment]
    recovery_code: RecoveryCodeText = None  # type: ignore[assignment]

    @model_validator(mode="after")
    def _one_code(self) -> "_SecondFactor":
        if self.code is None and self.recovery_code is None:
            reason = "required: a code of your authenticator app, or a recovery code"
            raise PydanticCustomError("fields", "{fields}", {"fields": {"code": reason, "recovery_code": reason}})
        if self.code is not None:
            self.recovery_code = None
        return self


class TotpDisable(_SecondFactor):
    current_password: StrictStr


class MfaSignIn(_SecondFactor):
    mfa_token: Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$",
                                          description="`error.details.mfa_token` of the `/signin` answer.")]


PasskeyName = Annotated[StrictStr, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$",
                                         description="A name to tell your passkeys apart.", examples=["Laptop"])]
Credential = Annotated[dict[str, Any], Field(
    description="The `PublicKeyCredential` that `navigator.credentials.create()` / `.get()` gave, as its "
                "`toJSON()` (binary fields base64url).",
    json_schema_extra={"required": ["id", "rawId", "type", "response"], "properties": {
        "id": {"type": "string", "minLength": 1, "pattern": "^[A-Za-z0-9_-]+$"},
        "rawId": {"type": "string", "minLength": 1, "pattern": "^[A-Za-z0-9_-]+$"},
        "type": {"const": "public-key"},
        "response": {"type": "object", "required": ["clientDataJSON"], "properties": {
            "clientDataJSON": {"type": "string", "minLength": 1, "pattern": "^[A-Za-z0-9_-]+$"}}},
    }})]
ChallengeId = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{32}$", description="`challenge_id` of the options.")]


class PasskeyRegister(Strict):
    credential: Credential
    name: PasskeyName = None  # type: ignore[assignment]


class PasskeyRename(Strict):
    name: PasskeyName


class PasskeySignInOptions(Strict):
    id: Login = None  # type: ignore[assignment]


class PasskeySignIn(Strict):
    challenge_id: ChallengeId
    credential: Credential


def _nullable_bytes(schema: dict[str, Any]) -> None:
    schema["properties"]["bytes"] = {
        "anyOf": [{"type": "integer", "minimum": 0, "maximum": QUOTA_MAX}, {"type": "null"}],
        "description": "The user's own quota in bytes (0: unlimited); null: `QUOTA_BYTES` applies again.",
    }


QUOTA_MAX = 2**63 - 1


class QuotaChange(Strict):
    model_config = ConfigDict(json_schema_extra=_nullable_bytes)
    bytes: Annotated[StrictInt, BeforeValidator(_form_integer), Field(ge=0, le=QUOTA_MAX)] | None


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


def context_of(region: str, link_max_ttl: int, form: bool = False) -> dict[str, Any]:
    """What the rules below read: DEFAULT_PHONE_REGION, LINK_MAX_TTL, and whether the body was a form."""
    return {"region": region, "link_max_ttl": link_max_ttl, "form": form}


# A maximum that is a setting: the OpenAPI document writes the app's value in its place.
MAXIMUM_FROM_SETTING = "x-maximum-from-setting"


def _within_link_lifetime(value: int, info: ValidationInfo) -> int:
    limit = info.context["link_max_ttl"]
    if not 1 <= value <= limit:
        raise PydanticCustomError("link_seconds", f"must be an integer from 1 to {limit}")
    return value


def _link_seconds_schema(schema: dict[str, Any]) -> None:
    schema.update({"minimum": 1, MAXIMUM_FROM_SETTING: "LINK_MAX_TTL"})


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
    def _default_within_limit(self, info: ValidationInfo) -> "LinkRequest":
        if "expires_in" not in self.model_fields_set:  # the default never outlives a smaller LINK_MAX_TTL
            self.expires_in = min(self.expires_in, info.context["link_max_ttl"])
        return self


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
