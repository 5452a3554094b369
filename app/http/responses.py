"""The success envelope, and the refresh-token cookie the token routes set and clear."""
from flask import Response, current_app, request

from app.schemas.responses import Shape

REFRESH_COOKIE = "refresh_token"
COOKIE_PATH = "/signin"


def ok(shape: Shape, status: int = 200) -> Response:
    """`{"data": <shape>, "error": null}`, serialised by the shape's own schema (UTF-8, not \\u escapes)."""
    data = shape.__pydantic_serializer__.to_json(shape)
    return current_app.response_class(b'{"data":' + data + b',"error":null}', status, mimetype="application/json")


def set_refresh_cookie(response: Response, token: str, max_age: int) -> None:
    response.set_cookie(
        REFRESH_COOKIE, token, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="Strict",
        secure=request.is_secure,
    )


def clear_refresh_cookie(response: Response) -> None:
    response.delete_cookie(
        REFRESH_COOKIE, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=request.is_secure
    )
