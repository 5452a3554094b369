"""The files service. The app itself is built by `create_app` (app.factory)."""
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(overrides: dict[str, Any] | None = None) -> "Flask":
    # Imported here, not above: gunicorn's master imports app.server without building the app, and stays small.
    from app.factory import create_app as build

    return build(overrides)
