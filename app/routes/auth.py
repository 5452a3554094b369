"""Sign-up, sign-in, token refresh, sign-out."""
from flask import Blueprint, Response, current_app, g, request

from app import shapes
from app.api import link, operation
from app.auth import bearer_token, token_required
from app.db import get_db, utcnow
from app.errors import ApiError, InvalidCredentials, InvalidRefreshToken, RateLimited, UserExists, ValidationError
from app.extensions import client_address, limiter, passwords, tokens
from app.responses import REFRESH_COOKIE, clear_refresh_cookie, ok, set_refresh_cookie
from app.services.auth import Client, IssuedTokens, log_out, refresh, sign_in, sign_up
from app.validation import Credentials, RefreshBody, SignUp, body, login_of, parse

bp = Blueprint("auth", __name__)

NEW_SESSION = "A new device session: the token pair, and the refresh token as an HttpOnly cookie (Path=/signin)."
REFRESH_LINK = {"refreshTokens": {
    "operationId": "refreshTokens", "description": "Rotate the refresh token just issued.",
    "requestBody": {"refresh_token": "$response.body#/data/refresh_token"},
}}
TOKEN_LINKS = {**REFRESH_LINK, "rolesOfUser": link("rolesOfUser", "The user's roles.", login="$response.body#/data/id")}
REFRESH_COOKIE_PARAMETER = {
    "name": REFRESH_COOKIE, "in": "cookie", "required": False, "schema": {"type": "string"},
    "description": "Set by the token responses (HttpOnly, SameSite=Strict, Path=/signin).",
}


def login_key() -> str:
    """Rate-limit key for sign-in: the login from the body, normalised when it is valid."""
    try:
        raw = body().get("id")
    except ApiError:
        raw = None
    raw = raw if isinstance(raw, str) else ""
    try:
        login = login_of(raw)
    except ApiError:
        login = raw.strip().lower()
    return f"login:{login}"


def signin_limit() -> str:
    return current_app.config["RATELIMIT_SIGNIN"]


def signup_limit() -> str:
    return current_app.config["RATELIMIT_SIGNUP"]


def failed_sign_in(response: Response) -> bool:
    return response.status_code == 401


def client() -> Client:
    return Client(ip=client_address()[:45], user_agent=request.user_agent.string[:255])


def token_response(issued: IssuedTokens, status: int) -> Response:
    response = ok(shapes.TokenPair(
        id=issued.login, access_token=issued.access_token, refresh_token=issued.refresh_token,
        expires_in=issued.expires_in, refresh_expires_in=issued.refresh_expires_in,
    ), status)
    set_refresh_cookie(response, issued.refresh_token, issued.refresh_expires_in)
    return response


@bp.post("/signup")
@operation("signUp", "auth", "Create an account and sign in", returns=shapes.TokenPair, status=201, body=SignUp,
           errors=(UserExists, RateLimited), links=TOKEN_LINKS, security=(), description=NEW_SESSION)
@limiter.limit(signup_limit)
def signup():
    data = parse(SignUp, body())
    issued = sign_up(
        get_db(), passwords=passwords(), policy=tokens(), login=data.id, password=data.password, client=client(),
        now=utcnow(),
    )
    return token_response(issued, 201)


@bp.post("/signin")
@operation("signIn", "auth", "Sign in (a new device session)", returns=shapes.TokenPair, body=Credentials,
           errors=(InvalidCredentials, RateLimited), links=TOKEN_LINKS, security=(), description=NEW_SESSION)
@limiter.limit(signin_limit)
@limiter.limit(signin_limit, key_func=login_key, deduct_when=failed_sign_in)
def signin():
    data = parse(Credentials, body())
    issued = sign_in(
        get_db(), passwords=passwords(), policy=tokens(), login=data.id, password=data.password, client=client(),
        now=utcnow(),
    )
    return token_response(issued, 200)


@bp.post("/signin/new_token")
@operation(
    "refreshTokens", "auth", "Rotate the refresh token; get a new pair", returns=shapes.TokenPair,
    body=RefreshBody, body_required=False, errors=(InvalidRefreshToken,), links=REFRESH_LINK,
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
    issued = refresh(get_db(), policy=tokens(), raw_token=raw, client=client(), now=utcnow())
    return token_response(issued, 200)


@bp.route("/logout", methods=["GET", "POST"])
@operation("logout", "auth", "Sign this device out", returns=shapes.LoggedOut,
           description="Revokes only the current session; its access token fails on the very next request.")
@token_required
def logout():
    log_out(get_db(), session_id=g.session_id, now=utcnow())
    response = ok(shapes.LoggedOut())
    clear_refresh_cookie(response)
    return response
