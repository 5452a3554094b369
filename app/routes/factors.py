"""A second factor and passkeys (SPEC §11): the authenticator app, its recovery codes, WebAuthn credentials,
and the sign-ins that use them."""
from flask import Blueprint

from app.db import utcnow
from app.errors import (
    AccountDisabled, Conflict, Forbidden, InvalidCode, InvalidCredentials, NotFound, RateLimited
)
from app.http.auth import caller, token_required
from app.http.context import client, factor_keys, get_db, passwords, relying_party, throttle, tokens
from app.http.parsing import body, parse
from app.http.responses import ok, token_response
from app.openapi.fragments import NEW_SESSION, TOKEN_LINKS
from app.openapi.operation import link, operation
from app.schemas import responses as shapes
from app.schemas.requests import (
    MfaSignIn, PasskeyRegister, PasskeyRename, PasskeySignIn, PasskeySignInOptions, TotpConfirm, TotpDisable
)
from app.services import passkeys
from app.services.account import Proof, turn_off_totp
from app.services.auth import sign_in_mfa, sign_in_passkey
from app.services.factors import begin_totp, confirm_totp, recovery_codes_left, totp_enabled

bp = Blueprint("factors", __name__)

PASSKEY_ID = "<hexid:passkey_id>"
PASSKEY_ID_DOC = {"passkey_id": "A passkey's id, as `GET /passkeys` lists it; another user's answers 404."}
CREDENTIAL_NOTE = ("`credential` is what the browser's WebAuthn call gave, as `PublicKeyCredential.toJSON()`. "
                   "The challenge is single use and valid MFA_TOKEN_TTL seconds (default 300).")


def passkey_shape(key) -> shapes.Passkey:
    return shapes.Passkey(id=key.id, name=key.name, created_at=key.created_at, last_used_at=key.last_used_at)


def options_shape(made: passkeys.Options) -> shapes.WebAuthnOptions:
    return shapes.WebAuthnOptions(**made.options, challenge_id=made.challenge_id)


@bp.get("/mfa")
@operation("getFactors", "factors", "My second factor and passkeys, in short", returns=shapes.MfaStatus)
@token_required
def status():
    db, me = get_db(), caller()
    return ok(shapes.MfaStatus(totp=totp_enabled(db, me.user_id), recovery_codes_left=recovery_codes_left(db, me.user_id),
                               passkeys=len(passkeys.my_passkeys(db, user_id=me.user_id))))


@bp.post("/mfa/totp")
@operation("beginTotp", "factors", "Set up an authenticator app: its secret and QR code", returns=shapes.TotpEnrolment,
           status=201, errors=(Conflict,), links={
               "confirmTotp": link("confirmTotp", "Turn it on with the first code the app shows."),
           }, description=(
               "Not active until `POST /mfa/totp/confirm` gets a code of it; asking again replaces a secret not yet "
               "confirmed. 409 when an app is already on (remove it first)."))
@token_required
def totp_begin():
    me = caller()
    made = begin_totp(get_db(), factor_keys(), user_id=me.user_id, login=me.login, now=utcnow())
    return ok(shapes.TotpEnrolment(secret=made.secret, otpauth_uri=made.uri, qr_svg=made.qr_svg), 201)


@bp.post("/mfa/totp/confirm")
@operation("confirmTotp", "factors", "Turn the authenticator app on; get the recovery codes", returns=shapes.TotpEnabled,
           body=TotpConfirm, errors=(InvalidCode, Conflict), description=(
               "From now on a sign-in asks for a code after the password. The 10 recovery codes are shown "
               "this once; each works once, instead of a code."))
@token_required
def totp_confirm():
    data = parse(TotpConfirm, body())
    codes = confirm_totp(get_db(), factor_keys(), user_id=caller().user_id, code=data.code, now=utcnow())
    return ok(shapes.TotpEnabled(recovery_codes=codes))


@bp.delete("/mfa/totp")
@operation("disableTotp", "factors", "Remove the authenticator app and its recovery codes", returns=shapes.TotpDisabled,
           body=TotpDisable, errors=(Forbidden, InvalidCode, Conflict, RateLimited), description=(
               "Needs `current_password` and a `code` (or a `recovery_code`); wrong ones count as in "
               "`PATCH /user`. 409 when no app is on."))
@token_required
def totp_disable():
    data = parse(TotpDisable, body())
    me = caller()
    turn_off_totp(get_db(), passwords=passwords(), throttle=throttle(), keys=factor_keys(), user_id=me.user_id,
                  login=me.login, proof=Proof(data.current_password, data.code, data.recovery_code), now=utcnow())
    return ok(shapes.TotpDisabled())


@bp.post("/signin/mfa")
@operation("signInMfa", "auth", "Sign in, second step: a code or a recovery code", returns=shapes.TokenPair,
           body=MfaSignIn, errors=(InvalidCode, AccountDisabled, RateLimited), links=TOKEN_LINKS, security=(),
           description=(
               "`mfa_token` is `error.details.mfa_token` of the `/signin` answer `mfa_required` (valid "
               "MFA_TOKEN_TTL seconds, default 300; used up by the right code, void after 5 wrong ones). A code "
               "works once. Wrong codes count as failed sign-ins of the login (RATELIMIT_SIGNIN). " + NEW_SESSION))
def signin_mfa():
    data = parse(MfaSignIn, body())
    issued = sign_in_mfa(get_db(), policy=tokens(), throttle=throttle(), keys=factor_keys(), mfa_token=data.mfa_token,
                         code=data.code, recovery_code=data.recovery_code, client=client(), now=utcnow())
    return token_response(issued, 200)


@bp.post("/passkeys/register/options")
@operation("passkeyRegistrationOptions", "factors", "Options to create a passkey", returns=shapes.WebAuthnOptions,
           errors=(Conflict,), links={"registerPasskey": link("registerPasskey", "Send the credential made of them.")},
           description="Pass them to `navigator.credentials.create({publicKey: "
                       "PublicKeyCredential.parseCreationOptionsFromJSON(options)})`. " + CREDENTIAL_NOTE)
@token_required
def passkey_options():
    me = caller()
    made = passkeys.registration_options(get_db(), relying_party(), factor_keys(), user_id=me.user_id,
                                         login=me.login, now=utcnow())
    return ok(options_shape(made))


@bp.post("/passkeys/register")
@operation("registerPasskey", "factors", "Add a passkey", returns=shapes.Passkey, status=201, body=PasskeyRegister,
           form=False, errors=(InvalidCode, Conflict), description=CREDENTIAL_NOTE + (
               " A credential that does not verify (origin, RP id, signature) is 400 naming `credential`."))
@token_required
def passkey_register():
    data = parse(PasskeyRegister, body())
    key = passkeys.register(get_db(), relying_party(), user_id=caller().user_id, credential=data.credential,
                            name=data.name, now=utcnow())
    return ok(passkey_shape(key), 201)


@bp.get("/passkeys")
@operation("listPasskeys", "factors", "My passkeys", returns=shapes.PasskeyList)
@token_required
def passkey_list():
    return ok(shapes.PasskeyList(items=[passkey_shape(k) for k in passkeys.my_passkeys(get_db(), user_id=caller().user_id)]))


@bp.patch(f"/passkeys/{PASSKEY_ID}")
@operation("renamePasskey", "factors", "Rename a passkey", returns=shapes.Passkey, body=PasskeyRename,
           errors=(NotFound,), path_docs=PASSKEY_ID_DOC)
@token_required
def passkey_rename(passkey_id: str):
    data = parse(PasskeyRename, body())
    key = passkeys.rename(get_db(), user_id=caller().user_id, passkey_id=passkey_id, name=data.name)
    return ok(passkey_shape(key))


@bp.delete(f"/passkeys/{PASSKEY_ID}")
@operation("deletePasskey", "factors", "Delete a passkey", returns=shapes.PasskeyDeleted, errors=(NotFound,),
           path_docs=PASSKEY_ID_DOC)
@token_required
def passkey_delete(passkey_id: str):
    passkeys.delete(get_db(), user_id=caller().user_id, passkey_id=passkey_id)
    return ok(shapes.PasskeyDeleted(id=passkey_id))


@bp.post("/signin/passkey/options")
@operation("passkeySignInOptions", "auth", "Options to sign in with a passkey", returns=shapes.WebAuthnOptions,
           body=PasskeySignInOptions, body_required=False, security=(), errors=(RateLimited,),
           links={"signInPasskey": link("signInPasskey", "Send the assertion made of them, with `challenge_id`.")},
           description="With `id`, the options name that login's passkeys (an unknown login gets options as "
                       "well); without, any passkey kept on the device for this site may answer. Pass them to "
                       "`navigator.credentials.get({publicKey: PublicKeyCredential.parseRequestOptionsFromJSON("
                       "options)})`. Limited per client address as sign-ins are (RATELIMIT_SIGNIN).")
def signin_passkey_options():
    data = parse(PasskeySignInOptions, body())
    throttle().count_passkey_options(client().ip)
    made = passkeys.sign_in_options(get_db(), relying_party(), factor_keys(), login=data.id, now=utcnow())
    return ok(options_shape(made))


@bp.post("/signin/passkey")
@operation("signInPasskey", "auth", "Sign in with a passkey (no password)", returns=shapes.TokenPair,
           body=PasskeySignIn, form=False, errors=(InvalidCode, InvalidCredentials, AccountDisabled, RateLimited),
           links=TOKEN_LINKS, security=(), description=(
               "A passkey is both factors: an account with an authenticator app is not asked for its code. "
               "An unknown passkey or a signature that does not verify is 401 `invalid_credentials` (so is a "
               "signature counter that did not grow: a cloned authenticator); a used or expired challenge 401 "
               "`invalid_code`. " + CREDENTIAL_NOTE + " " + NEW_SESSION))
def signin_passkey():
    data = parse(PasskeySignIn, body())
    issued = sign_in_passkey(get_db(), policy=tokens(), throttle=throttle(), rp=relying_party(),
                             challenge_id=data.challenge_id, credential=data.credential, client=client(),
                             now=utcnow())
    return token_response(issued, 200)
