"""Extension objects created unbound, so blueprints can import them; bound in create_app."""
from flask import request
from flask_limiter import Limiter


def client_address() -> str:
    return request.remote_addr or "unknown"


limiter = Limiter(key_func=client_address)
