"""Typed accessors for what create_app puts in `app.extensions`, and the caller's address."""
from flask import current_app, g, request
from sqlalchemy.orm import Session

from app.ratelimit.throttle import Throttle
from app.security import LinkSigner, Passwords, TokenPolicy
from app.services.codes import CodeKey
from app.services.factors import FactorKeys
from app.services.passkeys import RelyingParty
from app.services.recovery import Mailing
from app.services.sessions import Client
from app.storage import Storage


def client_address() -> str:
    """The peer's address (the client's own behind TRUSTED_PROXIES), as the limits and the session list see it."""
    return (request.remote_addr or "unknown")[:45]


def storage() -> Storage:
    return current_app.extensions["storage"]


def tokens() -> TokenPolicy:
    return current_app.extensions["tokens"]


def link_signer() -> LinkSigner:
    return current_app.extensions["link_signer"]


def passwords() -> Passwords:
    return current_app.extensions["passwords"]


def throttle() -> Throttle:
    return current_app.extensions["throttle"]


def get_db() -> Session:
    """The request's session; opened on first use, closed at teardown."""
    if "db" not in g:
        g.db = current_app.extensions["sessionmaker"]()
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()


def mailing() -> Mailing:
    """What the services need to send a message: links point at PUBLIC_URL, else at this request's origin."""
    config = current_app.config
    return Mailing(
        outbox=current_app.extensions["outbox"], key=current_app.extensions["code_key"],
        public_url=config["PUBLIC_URL"] or request.host_url.rstrip("/"),
        verify_ttl=config["VERIFY_TOKEN_TTL"], reset_ttl=config["RESET_TOKEN_TTL"],
    )


def factor_keys() -> FactorKeys:
    return current_app.extensions["factor_keys"]


def relying_party() -> RelyingParty:
    return current_app.extensions["relying_party"]


def code_key() -> CodeKey:
    return current_app.extensions["code_key"]


def client() -> Client:
    """The device asking: its address and user agent, as its session will record them."""
    return Client(ip=client_address(), user_agent=request.user_agent.string[:255])
