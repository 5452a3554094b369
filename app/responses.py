"""The success envelope and the JSON shapes of what the API returns."""
from datetime import datetime
from typing import Any

from flask import Response, jsonify, request

from app.models import DeviceSession, File, LoginEvent, Role
from app.services.accounts import IssuedTokens

REFRESH_COOKIE = "refresh_token"
COOKIE_PATH = "/signin"


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


def file_json(record: File) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "extension": record.extension,
        "mime_type": record.mime_type,
        "size": record.size,
        "uploaded_at": iso(record.uploaded_at),
        "updated_at": iso(record.updated_at),
    }


def page_json(items: list[Any], page: int, list_size: int, total: int) -> dict[str, Any]:
    return {
        "items": items,
        "page": page,
        "list_size": list_size,
        "total": total,
        "pages": (total + list_size - 1) // list_size,
    }


def clear_refresh_cookie(response: Response) -> None:
    response.delete_cookie(
        REFRESH_COOKIE, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=request.is_secure
    )


def session_json(device: DeviceSession, current_session_id: str) -> dict[str, Any]:
    return {
        "id": device.id,
        "created_at": iso(device.created_at),
        "last_used_at": iso(device.last_used_at),
        "user_agent": device.user_agent,
        "ip": device.ip,
        "current": device.id == current_session_id,
    }


def login_event_json(event: LoginEvent) -> dict[str, Any]:
    return {"at": iso(event.at), "ip": event.ip, "user_agent": event.user_agent, "success": event.success}


def role_json(role: Role) -> dict[str, Any]:
    return {"id": role.id, "name": role.name, "description": role.description, "permissions": role.permissions}
