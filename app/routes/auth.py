"""Sign-up, sign-in, token refresh, sign-out."""
from flask import Blueprint, request

from app.db import utcnow
from app.errors import (
    AccountDisabled, InvalidCredentials, InvalidRefreshToken, MfaRequired, RateLimited, UserExists, ValidationError
)
from app.http.auth import bearer_token, caller, token_required
from app.http.context import client, factor_keys, get_db, mailing, passwords, throttle, tokens
from app.http.parsing import body, parse
from app.http.responses import REFRESH_COOKIE, clear_refresh_cookie, ok, token_response
from app.openapi.fragments import NEW_SESSION, REFRESH_LINK, TOKEN_LINKS
from app.openapi.operation import operation
from app.schemas import responses as shapes
from app.schemas.requests import Credentials, RefreshBody, SignUp
from app.services.auth import log_out, refresh, sign_in, sign_up

bp = Blueprint("auth", __name__)

REFRESH_COOKIE_PARAMETER = {
    "name": REFRESH_COOKIE, "in": "cookie", "required": False, "schema": {"type": "string"},
    "description": "Set by the token responses (HttpOnly, SameSite=Strict, Path=/signin).",
}


@bp.post("/signup")
@operation("signUp", "auth", "Create an account and sign in", returns=shapes.TokenPair, status=201, body=SignUp,
           errors=(UserExists, RateLimited), links=TOKEN_LINKS, security=(), description=NEW_SESSION)
def signup():
    data = parse(SignUp, body())
    issued = sign_up(
        get_db(), passwords=passwords(), policy=tokens(), throttle=throttle(), mailing=mailing(), login=data.id,
        password=data.password, client=client(), now=utcnow(),
    )
    return token_response(issued, 201)


@bp.post("/signin")
@operation("signIn", "auth", "Sign in (a new device session)", returns=shapes.TokenPair, body=Credentials,
           errors=(InvalidCredentials, MfaRequired, AccountDisabled, RateLimited), links=TOKEN_LINKS, security=(),
           description=NEW_SESSION + " With a second factor on, the right password answers 401 `mfa_required`: "
                                     "`details.mfa_token` continues at `POST /signin/mfa`.")
def signin():
    data = parse(Credentials, body())
    issued = sign_in(
        get_db(), passwords=passwords(), policy=tokens(), throttle=throttle(), keys=factor_keys(), login=data.id,
        password=data.password, client=client(), now=utcnow(),
    )
    return token_response(issued, 200)


@bp.post("/signin/new_token")
@operation(
    "refreshTokens", "auth", "Rotate the refresh token; get a new pair", returns=shapes.TokenPair,
    body=RefreshBody, body_required=False, errors=(InvalidRefreshToken, RateLimited), links=REFRESH_LINK,
    security=({}, {"refreshToken": []}), parameters=(REFRESH_COOKIE_PARAMETER,),
    description="The refresh token is taken from the body's `refresh_token`, else from "
                "`Authorization: Bearer <refresh token>`, else from the `refresh_token` cookie; none of "
                "them is 400. Reusing a rotated token after the grace period revokes its session.",
)
def new_token():
    raw = parse(RefreshBody, body()).refresh_token or bearer_token() or request.cookies.get(REFRESH_COOKIE)
    if not raw:
        raise ValidationError.field(
            "refresh_token", "required (in the body, as Authorization: Bearer, or in the cookie)"
        )
    issued = refresh(get_db(), policy=tokens(), throttle=throttle(), raw_token=raw, client=client(), now=utcnow())
    return token_response(issued, 200)


@bp.route("/logout", methods=["GET", "POST"])
@operation("logout", "auth", "Sign this device out", returns=shapes.LoggedOut,
           description="Revokes only the current session; its access token fails on the very next request.")
@token_required
def logout():
    log_out(get_db(), session_id=caller().session_id, now=utcnow())
    response = ok(shapes.LoggedOut())
    clear_refresh_cookie(response)
    return response
