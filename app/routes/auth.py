from flask import Blueprint, Response, current_app, g, request

from app.auth import bearer_token, token_required
from app.db import get_db, utcnow
from app.errors import ApiError, ValidationError
from app.extensions import client_address, limiter
from app.responses import COOKIE_PATH, REFRESH_COOKIE, clear_refresh_cookie, ok, token_json
from app.services.accounts import Client, IssuedTokens, log_out, refresh, sign_in, sign_up
from app.validation import Credentials, RefreshBody, SignUp, body, normalize_login, parse

bp = Blueprint("auth", __name__)


def login_key() -> str:
    """Rate-limit key for sign-in: the login from the body, normalised when it is valid."""
    try:
        raw = body().get("id")
    except ApiError:
        raw = None
    raw = raw if isinstance(raw, str) else ""
    try:
        login = normalize_login(raw, current_app.config["DEFAULT_PHONE_REGION"])
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


def credentials(model: type[Credentials] = Credentials) -> tuple[str, str]:
    data = parse(model, body())
    login = normalize_login(data.id, current_app.config["DEFAULT_PHONE_REGION"])
    return login, data.password


def token_response(tokens: IssuedTokens, status: int) -> tuple[Response, int]:
    response, status = ok(token_json(tokens), status)
    response.set_cookie(
        REFRESH_COOKIE, tokens.refresh_token, max_age=tokens.refresh_expires_in, path=COOKIE_PATH,
        httponly=True, samesite="Strict", secure=request.is_secure,
    )
    return response, status


@bp.post("/signup")
@limiter.limit(signup_limit)
def signup():
    login, password = credentials(SignUp)
    ext = current_app.extensions
    tokens = sign_up(get_db(), ext["passwords"], ext["tokens"], login, password, client(), utcnow())
    return token_response(tokens, 201)


@bp.post("/signin")
@limiter.limit(signin_limit)
@limiter.limit(signin_limit, key_func=login_key, deduct_when=failed_sign_in)
def signin():
    login, password = credentials()
    ext = current_app.extensions
    tokens = sign_in(get_db(), ext["passwords"], ext["tokens"], login, password, client(), utcnow())
    return token_response(tokens, 200)


@bp.post("/signin/new_token")
def new_token():
    raw = parse(RefreshBody, body()).refresh_token or bearer_token() or request.cookies.get(REFRESH_COOKIE)
    if not raw:
        raise ValidationError.field(
            "refresh_token", "required (in the body, as Authorization: Bearer, or in the cookie)"
        )
    tokens = refresh(get_db(), current_app.extensions["tokens"], raw, client(), utcnow())
    return token_response(tokens, 200)


@bp.route("/logout", methods=["GET", "POST"])
@token_required
def logout():
    log_out(get_db(), g.session_id, utcnow())
    response, status = ok({"logged_out": True})
    clear_refresh_cookie(response)
    return response, status
