"""The success envelope and the JSON shapes of what the API returns."""
from datetime import datetime
from typing import Any

from flask import Response, jsonify

from app.services.accounts import IssuedTokens


def ok(data: Any, status: int = 200) -> tuple[Response, int]:
    return jsonify({"data": data, "error": None}), status


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.replace(microsecond=0).isoformat() + "Z"


def token_json(tokens: IssuedTokens) -> dict[str, Any]:
    return {
        "id": tokens.login,
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "token_type": "Bearer",
        "expires_in": tokens.expires_in,
        "refresh_expires_in": tokens.refresh_expires_in,
    }


def page_json(items: list[Any], page: int, list_size: int, total: int) -> dict[str, Any]:
    return {
        "items": items,
        "page": page,
        "list_size": list_size,
        "total": total,
        "pages": (total + list_size - 1) // list_size,
    }
