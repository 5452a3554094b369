"""Extension objects created unbound (so blueprints can import them), and typed accessors for the app's own."""
from flask import current_app, request
from flask_limiter import Limiter
from sqlalchemy.engine import Engine

from app.security import Passwords, TokenPolicy
from app.storage import Storage


def client_address() -> str:
    return request.remote_addr or "unknown"


limiter = Limiter(key_func=client_address)

LIMITED_ENDPOINTS = frozenset({"auth.signup", "auth.signin"})


@limiter.request_filter
def unlimited_endpoint() -> bool:
    """Only sign-up and sign-in carry limits; every other request skips the limiter's bookkeeping (~90 µs)."""
    return request.endpoint not in LIMITED_ENDPOINTS


# -- what create_app puts in app.extensions, typed ----------------------------------------------------


def engine() -> Engine:
    return current_app.extensions["engine"]


def auth_engine() -> Engine:
    """Autocommit: the bearer check's one read (and rare write) needs no BEGIN/ROLLBACK round trips."""
    return current_app.extensions["auth_engine"]


def storage() -> Storage:
    return current_app.extensions["storage"]


def tokens() -> TokenPolicy:
    return current_app.extensions["tokens"]


def passwords() -> Passwords:
    return current_app.extensions["passwords"]
