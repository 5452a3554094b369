"""The success envelope, the token answer, and the refresh-token cookie the token routes set and clear."""
from flask import Response, current_app, request

from app.schemas.responses import Shape, TokenPair
from app.services.sessions import IssuedTokens

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


def token_response(issued: IssuedTokens, status: int) -> Response:
    response = ok(TokenPair(
        id=issued.login, access_token=issued.access_token, refresh_token=issued.refresh_token,
        expires_in=issued.expires_in, refresh_expires_in=issued.refresh_expires_in, verified=issued.verified,
    ), status)
    set_refresh_cookie(response, issued.refresh_token, issued.refresh_expires_in)
    response.headers["Cache-Control"] = "no-store"  # RFC 6749 §5.1: no cache keeps a token
    return response
