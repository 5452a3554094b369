"""Typed accessors for what create_app puts in `app.extensions`, and the caller's address."""
from flask import current_app, request
from sqlalchemy.engine import Engine

from app.ratelimit.throttle import Throttle
from app.security import LinkSigner, Passwords, TokenPolicy
from app.storage import Storage


def client_address() -> str:
    """The peer's address (the client's own behind TRUSTED_PROXIES), as the limits and the session list see it."""
    return (request.remote_addr or "unknown")[:45]


def engine() -> Engine:
    return current_app.extensions["engine"]


def autocommit_engine() -> Engine:
    """Autocommit: single statements (the bearer check, counters, read-only pages) without BEGIN/ROLLBACK."""
    return current_app.extensions["autocommit_engine"]


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
