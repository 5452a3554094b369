"""Proving a login and getting back in (SPEC §10): verification messages and password resets."""
from flask import Blueprint, current_app

from app.db import utcnow
from app.errors import AccountDisabled, InvalidCode, RateLimited
from app.http.auth import caller, token_required
from app.http.context import client, client_address, code_key, get_db, mailing, passwords, throttle, tokens
from app.http.parsing import body, parse
from app.http.responses import ok, token_response
from app.openapi.fragments import NEW_SESSION, TOKEN_LINKS
from app.openapi.operation import operation
from app.schemas import responses as shapes
from app.schemas.requests import PasswordForgot, PasswordReset, VerifyConfirm
from app.services.recovery import confirm_verification, forgot_password, request_verification, reset_password

bp = Blueprint("recovery", __name__)

PROOF = ("Send the `token` of the message's link, or the login `id` with its 6-digit `code`. A token or code "
         "works once, until it expires; a newer message voids the older ones; a code takes 5 wrong tries.")


@bp.post("/verify/request")
@operation("requestVerification", "account", "Send a message that proves my login", returns=shapes.MessageSent,
           status=202, errors=(RateLimited,), body_required=False, description=(
               "An email login is sent an email, a phone login a text message, with a link and a code "
               "(`VERIFY_TOKEN_TTL`). Limited per login and per address (`RATELIMIT_MAIL`)."))
@token_required
def verify_request():
    me = caller()
    request_verification(get_db(), mailing(), throttle(), user_id=me.user_id, login=me.login,
                         address=client_address(), now=utcnow())
    return ok(shapes.MessageSent(), 202)


@bp.post("/verify/confirm")
@operation("confirmVerification", "account", "Prove a login with the message's token or code",
           returns=shapes.Verified, body=VerifyConfirm, errors=(InvalidCode,), security=(), description=PROOF)
def verify_confirm():
    data = parse(VerifyConfirm, body())
    login = confirm_verification(get_db(), code_key(), token=data.token, login=data.id, code=data.code, now=utcnow())
    return ok(shapes.Verified(id=login))


@bp.post("/password/forgot")
@operation("forgotPassword", "auth", "Send a password reset message", returns=shapes.MessageSent, status=202,
           body=PasswordForgot, errors=(RateLimited,), security=(), description=(
               "The same answer, in the same time, whether or not the login exists; a user's login is sent a "
               "link and a code (`RESET_TOKEN_TTL`). Limited per login and per address (`RATELIMIT_MAIL`)."))
def password_forgot():
    data = parse(PasswordForgot, body())
    forgot_password(current_app.extensions["sessionmaker"], mailing(), throttle(), login=data.id,
                    address=client_address(), now=utcnow())
    return ok(shapes.MessageSent(), 202)


@bp.post("/password/reset")
@operation("resetPassword", "auth", "Set a new password with the message's token or code",
           returns=shapes.TokenPair, body=PasswordReset, errors=(InvalidCode, AccountDisabled), security=(),
           links=TOKEN_LINKS, description=(
               f"{PROOF} Every session of the user is signed out (their file links stop working), the login "
               f"counts as verified, and a new session starts: the answer is a token pair. {NEW_SESSION}"))
def password_reset():
    data = parse(PasswordReset, body())
    issued = reset_password(
        get_db(), code_key(), passwords=passwords(), policy=tokens(), token=data.token, login=data.id,
        code=data.code, password=data.password, client=client(), now=utcnow(),
    )
    return token_response(issued, 200)
