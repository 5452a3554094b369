"""URL converters beyond werkzeug's own, each with the JSON Schema the OpenAPI document gives its parameter."""
from typing import Any

from werkzeug.routing import BaseConverter


class HexIdConverter(BaseConverter):
    """32 lower-case hex digits (a passkey's id): anything else is not the route at all, so
    `/passkeys/register` is never read as a passkey id."""

    regex = "[0-9a-f]{32}"
    schema: dict[str, Any] = {"type": "string", "pattern": "^[0-9a-f]{32}$"}


CONVERTERS = {"hexid": HexIdConverter}
